"""Audio-visual video parsing (AVVP) on LLP: trained with what a whole video holds, it says for every second which
of 25 events are heard, which are seen and which are both.

task     the config, the HAN head (the AVVP baseline's), the shared loss and metrics, the Task declarations
mgn      the MGN head DG-SCT evaluates AVVP with
metrics  LLP's segment- and event-level F-scores, per video then averaged
dataset  LLP's annotation files and layouts (mp4, extracted frames, cache): LLPDataset (``llp``)
motion   optional per-segment R(2+1)D-18 features, from torchvision's model and a local weights file
prepare  ``avadapt prepare avvp``
synth    ``avadapt synth avvp``: a small LLP of real mp4 files whose events are heard, seen or both
predict  the per-second result of a whole video and its three-track picture
demo     ``avadapt demo --task avvp``
"""

from avadapt.tasks.avvp import dataset, demo, mgn  # noqa: F401  (registration side effect)
from avadapt.tasks.avvp.task import AVVPTask

__all__ = ["AVVPTask"]
