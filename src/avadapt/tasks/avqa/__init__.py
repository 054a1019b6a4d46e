"""Audio-visual question answering (MUSIC-AVQA): a question about a performance, answered from sound and picture.

task     the AVST head (question encoder, grounding, temporal attention), its loss and the Task declarations
metrics  accuracy overall, per modality group and per question type
dataset  MUSIC-AVQA's question files, vocabularies and layouts (mp4, frames + wav, cache): MusicAVQADataset
prepare  ``avadapt prepare avqa``
synth    ``avadapt synth avqa``: a small MUSIC-AVQA of mp4 performances and released-style question files
demo     ``avadapt demo --task avqa``: the spec of the AVQA demo
"""

from avadapt.tasks.avqa import dataset, demo  # noqa: F401  (registration side effect)
from avadapt.tasks.avqa.task import AVQATask

__all__ = ["AVQATask"]
