"""The errors a user can fix: a bad file, folder or option, each named in the message.

Every one derives from :class:`AVAdaptError`, so the ``avadapt`` command can print it as one line
(``avadapt: error: <file>: <problem>``) while any other exception, a bug, keeps its traceback.
Messages start with the file or folder they are about and say what is wrong with it.

::

    AVAdaptError
    ├── OptionError        an option value that cannot work (unknown name, preset, ratio, --labels)
    ├── MediaError         a missing, empty, truncated or corrupt media file, or one without a stream
    ├── DatasetError       a dataset folder: annotations, split files, media layout, prepared cache
    │   ├── AnnotationError     a missing or malformed annotation or split file (avadapt.tasks.ave.dataset)
    │   ├── MissingMediaError   rows without media (avadapt.tasks.ave.dataset; also a FileNotFoundError)
    │   └── CacheConfigError    a cache prepared with other settings (avadapt.data.cache)
    └── CheckpointError    an adapter directory (config.json, adapter.safetensors), a weights file or a
        │                  training checkpoint
        ├── AdapterMismatchError   adapter keys or shapes that do not fit its model (avadapt.adapter_files)
        ├── BackboneFileError      an adapter's backbone weights file missing, or other bytes than it was
        │                          trained with (avadapt.adapter_files)
        ├── UnsafeCheckpointError  a file that would unpickle arbitrary objects (avadapt.checkpoint_files)
        └── ResumeError            no checkpoint to resume from, or a damaged or weights-only one
                                   (avadapt.training.checkpoints)

Each is also a ``ValueError`` (a value the user gave that cannot work), and ``MissingMediaError`` also a
``FileNotFoundError``, so code that catches the built-in kinds still catches them.
"""

from __future__ import annotations

from pathlib import Path


class AVAdaptError(Exception):
    """Base of the errors caused by a file, folder or option the user gave, not by a bug."""


class OptionError(AVAdaptError, ValueError):
    """An option value that cannot work; the command exits with status 2, as argparse does."""


class MediaError(AVAdaptError, ValueError):
    """A media file that cannot be used, with the file and the reason in the message."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DatasetError(AVAdaptError, ValueError):
    """A dataset folder whose annotations, layout or prepared cache cannot be used."""


class CheckpointError(AVAdaptError, ValueError):
    """An adapter directory, weights file or training checkpoint that is missing, damaged, foreign or too new."""


class AnnotationError(DatasetError):
    """A missing, malformed or inconsistent annotation or split file; the message starts with
    ``file:line:`` (``file:`` when the problem is the whole file)."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path, self.line, self.problem = Path(path), line, problem
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        super().__init__(f"{where}: {problem}")


class MissingMediaError(DatasetError, FileNotFoundError):
    """Rows whose media is not where the chosen layout expects it (message lists id → path)."""
