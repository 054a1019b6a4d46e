"""Audio-visual action recognition (``avar``): one label per clip, from both streams (Kinetics-Sounds, VGGSound, or
any folder of clips with a label file).

task     the head (time-mean of the per-segment features, then a classifier), its config, loss, top-1 / top-5
         accuracy (and mAP for multi-label lists) and the Task declarations
lists    the annotation files: Kinetics-Sounds' label-indexed lists, VGGSound's csv, a clip folder's labels.csv,
         class-name files
dataset  the datasets ``avar_kinetics_sounds``, ``avar_vggsound`` and ``avar_folder`` (one video file per clip, or a
         cache)
prepare  ``avadapt prepare avar [--setting vggsound]``
synth    ``avadapt synth avar``: a small Kinetics-Sounds of real mp4 files whose actions need both streams
predict  ``avadapt predict`` on a recognition adapter: the top-5 classes and a picture
demo     ``avadapt demo --task avar``: AV-STFP and STG-CMA against the probe
"""

from avadapt.tasks.avar import dataset, demo  # noqa: F401  (registration side effect)
from avadapt.tasks.avar.task import AVARTask

__all__ = ["AVARTask"]
