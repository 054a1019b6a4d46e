"""Audio-visual question answering (MUSIC-AVQA): a question about a performance, answered from sound and picture.

Modules: ``task`` (the AVST head and the Task declarations), ``metrics``, ``questions`` (question files, types and
vocabularies), ``dataset`` (MusicAVQADataset), ``prepare``, ``synth``, ``predict`` and ``demo``.
"""

from avadapt.tasks.avqa import dataset, demo  # noqa: F401  (registration side effect)
from avadapt.tasks.avqa.task import AVQATask

__all__ = ["AVQATask"]
