"""Audio-visual question answering (MUSIC-AVQA): a question about a performance, answered from sound and picture.

task     the AVST head (question encoder, grounding, temporal attention), its loss and the Task declarations
metrics  accuracy overall, per modality group and per question type
questions  MUSIC-AVQA's question files, question types, tokenisation and vocabularies
dataset  MusicAVQADataset: the questions with their videos' media (mp4, frames + wav, cache)
prepare  ``avadapt prepare avqa``
synth    ``avadapt synth avqa``: a small MUSIC-AVQA of mp4 performances and released-style question files
demo     ``avadapt demo --task avqa``: the spec of the AVQA demo
"""

from avadapt.tasks.avqa import dataset, demo  # noqa: F401  (registration side effect)
from avadapt.tasks.avqa.task import AVQATask

__all__ = ["AVQATask"]
