"""Audio-visual event localisation (AVE): which of 28 events (or background) each second shows and sounds.

task     the head (linear or CMBS-style), its config, loss, segment accuracy and the Task declarations
cmbs     the CMBS head DG-SCT evaluates AVE with
dataset  AVE's annotation files and layouts (mp4, extracted frames, cache): AVEDataset (``ave``)
prepare  ``avadapt prepare ave``
synth    ``avadapt synth ave``: a small AVE of real mp4 files whose events need both modalities
demo     ``avadapt demo`` and ``avadapt demo --method dg_sct``: the specs of the AVE demos
"""

from avadapt.tasks.ave import cmbs, dataset, demo  # noqa: F401  (registration side effect)
from avadapt.tasks.ave.task import AVETask

__all__ = ["AVETask"]
