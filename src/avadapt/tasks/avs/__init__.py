"""Audio-visual segmentation (AVSBench S4 single source, MS3 multiple sources): a mask of what sounds, per frame.

task     the segmentation head (feature pyramid, TPAVI, decoder), its losses and the Task declarations
metrics  mIoU and F-score as AVSBench computes them
metadata AVSBench settings, categories, metadata csvs and where a clip's files lie
dataset  a clip's frames, masks and wav (native or cached) as items: S4Dataset / MS3Dataset
prepare  ``avadapt prepare avs``
synth    ``avadapt synth avs``: a small AVSBench with PNG frames and masks and wav audio
demo     ``avadapt demo --task avs``: the spec of the AVS demo
"""

from avadapt.tasks.avs import dataset, demo  # noqa: F401  (registration side effect)
from avadapt.tasks.avs.task import AVSTask

__all__ = ["AVSTask"]
