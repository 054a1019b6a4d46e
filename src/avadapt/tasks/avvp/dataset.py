"""LLP (the Look, Listen and Parse dataset of Tian et al., ECCV 2020) for audio-visual video parsing, in its
released layout.

Annotations (``<root>/``), tab-separated although named ``.csv``, a header line first:

* weak labels, ``filename  event_labels``, the classes of the whole video joined by commas:
  ``AVVP_train.csv`` (10,000 videos), ``AVVP_val_pd.csv`` (649) and ``AVVP_test_pd.csv`` (1,200);
* dense labels of the val and test videos, one event a row, ``filename  onset  offset  event_labels`` in whole
  seconds, the event covering ``[onset, offset)`` of the 10 one-second segments: ``AVVP_eval_audio.csv`` (what
  is heard) and ``AVVP_eval_visual.csv`` (what is seen). What is audio-visual is their product.

``filename`` is ``{YouTube id}_{start}_{end}``; media are keyed by its first 11 characters (the id): ``mp4``
(``<media_root>/LLP_dataset/video/<id>.mp4``, a 10 s clip), ``frames`` as the reference extracts them
(``LLP_dataset/frame/<id>/000001.jpg``… at 8 fps, and ``LLP_dataset/audio/<id>.wav``), or a cache written by
:func:`~avadapt.tasks.avvp.prepare.prepare_llp`. Classes: the 25 of the reference's ``dataloader.py``, in its order.

The released files have quirks, each handled as the reference evaluation (``main_avvp.py:eval``) handles it and
reported once, as an :class:`LLPDataWarning`, when the files are first read:

* dense rows naming videos that are in no split file (truncated or mistyped ids such as ``CSWQ_HzQ_10_20``):
  never looked up, so never scored;
* rows that mark no second (onset = offset, or onset after offset as in ``9 → 0``): ``GT[c, onset:offset]``
  sets nothing, so they are skipped;
* the copy of ``AVVP_eval_audio.csv`` from before its fix in the AVVP-ECCV20 repository (April 2024; DG-SCT still
  ships it) holds two rows whose filename is a class name and one filename with a stray backtick: the videos they
  belong to lose those events, and the report says to use the fixed file.

What cannot be read that way is an error naming the file and line: a comma-separated file, an unknown class, a
time outside 0..10 s, a weak-label row without labels, a video listed twice in one weak-label file.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from avadapt.data.base import ClipDataset, register_dataset, seeded
from avadapt.data.fbank import segment_fbank
from avadapt.data.media import read_audio, read_clip, read_frame_folder
from avadapt.errors import AnnotationError, DatasetError

# The 25 classes in the index order of the reference's ``dataloader.py`` (ids_to_multinomial) and ``main_avvp.py``.
LLP_CLASSES = (
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying_(food)", "Basketball_bounce", "Fire_alarm", "Chainsaw",
    "Cello", "Banjo", "Singing", "Chicken_rooster", "Violin_fiddle", "Vacuum_cleaner", "Baby_laughter", "Accordion",
    "Lawn_mower", "Motorcycle", "Helicopter", "Acoustic_guitar", "Telephone_bell_ringing", "Baby_cry_infant_cry",
    "Blender", "Clapping",
)  # fmt: skip
LLP_SEGMENTS = 10  # LLP clips are 10 s, parsed per second
VIDEO_ID_LENGTH = 11  # media are named by the filename's first 11 characters, the YouTube id
WEAK_FILES = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}
DENSE_FILES = {"audio": "AVVP_eval_audio.csv", "visual": "AVVP_eval_visual.csv"}
WEAK_COLUMNS = ("filename", "event_labels")
DENSE_COLUMNS = ("filename", "onset", "offset", "event_labels")
DENSE_SPLITS = ("val", "test")  # the splits scored against the dense rows
_VIDEO_NAME = re.compile(r"[A-Za-z0-9_-]+")  # YouTube id characters, '_' and the seconds
_SHOWN = 6  # examples a report lists


class LLPDataWarning(UserWarning):
    """A quirk of the released LLP files, handled as the reference evaluation handles it."""


@dataclass(frozen=True)
class WeakRow:
    """One video of a weak-label file: its classes, whenever and however they occur."""

    filename: str
    labels: tuple[str, ...]
    line: int  # 1-based, in the file it was read from

    @property
    def video_id(self) -> str:
        return self.filename[:VIDEO_ID_LENGTH]


@dataclass(frozen=True)
class DenseRow:
    """One event of a dense file: ``label`` heard (or seen) in the seconds ``onset ≤ t < offset``."""

    filename: str
    onset: int
    offset: int
    label: str
    line: int

    def describe(self) -> str:
        return f"line {self.line} ({self.filename}, {self.onset}–{self.offset} s, {self.label})"


def read_table(path: Path, columns: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """The (line number, fields) of every data row of a tab-separated LLP file with these header ``columns``;
    blank lines, a byte-order mark and Windows line endings are tolerated."""
    if not path.is_file():
        raise AnnotationError(path, None, "LLP annotation file not found")
    expected = "<TAB>".join(columns)
    rows: list[tuple[int, list[str]]] = []
    header_seen = False
    for number, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not raw.strip():
            continue
        fields = [f.strip() for f in raw.split("\t")]
        comma_separated = "\t" not in raw and "," in raw
        if comma_separated and (not header_seen or len(fields) != len(columns)):
            raise AnnotationError(path, number, f"comma-separated ({raw.strip()!r}): LLP files are tab-separated "
                                                f"although named .csv, with the columns {expected}")
        if not header_seen:
            if [f.lower() for f in fields] != list(columns):
                raise AnnotationError(path, number, f"expected the header {expected}, found {raw.strip()!r}")
            header_seen = True
            continue
        if len(fields) != len(columns):
            raise AnnotationError(path, number, f"expected {len(columns)} tab-separated fields ({expected}), found "
                                                f"{len(fields)}: {raw.strip()!r}")
        rows.append((number, fields))
    if not header_seen:
        raise AnnotationError(path, None, f"empty file; expected the header {expected}")
    return rows


def _check_class(path: Path, line: int, name: str, classes: tuple[str, ...]) -> None:
    if name not in classes:
        raise AnnotationError(path, line, f"unknown class {name!r}; the {len(classes)} classes are "
                                          f"{', '.join(classes)}")


def read_weak_labels(path: str | Path, classes: tuple[str, ...] = LLP_CLASSES) -> list[WeakRow]:
    """Parse a weak-label file (``AVVP_train.csv``, ``AVVP_val_pd.csv``, ``AVVP_test_pd.csv``)."""
    path = Path(path)
    rows: list[WeakRow] = []
    first_line: dict[str, int] = {}
    for line, (filename, labels) in read_table(path, WEAK_COLUMNS):
        if not filename:
            raise AnnotationError(path, line, "empty filename")
        if filename in first_line:
            raise AnnotationError(path, line, f"duplicate filename {filename!r} (first on line "
                                              f"{first_line[filename]})")
        names = [name.strip() for name in labels.split(",") if name.strip()]
        if not names:
            raise AnnotationError(path, line, f"{filename}: empty label list; every video lists at least one class")
        for name in names:
            _check_class(path, line, name, classes)
        first_line[filename] = line
        rows.append(WeakRow(filename, tuple(dict.fromkeys(names)), line))
    return rows


def read_dense_labels(path: str | Path, classes: tuple[str, ...] = LLP_CLASSES) -> list[DenseRow]:
    """Parse a dense file (``AVVP_eval_audio.csv``, ``AVVP_eval_visual.csv``). Rows that mark no second
    (onset ≥ offset) are returned too: :class:`LLPAnnotations` reports and skips them."""
    path = Path(path)
    rows: list[DenseRow] = []
    for line, (filename, onset_text, offset_text, label) in read_table(path, DENSE_COLUMNS):
        try:
            onset, offset = int(onset_text), int(offset_text)
        except ValueError:
            raise AnnotationError(path, line, f"{filename}: onset and offset must be whole seconds, got "
                                              f"{onset_text!r} and {offset_text!r}") from None
        if not (0 <= onset <= LLP_SEGMENTS and 0 <= offset <= LLP_SEGMENTS):
            raise AnnotationError(path, line, f"{filename}: onset {onset} and offset {offset} must lie within the "
                                              f"clip's 0..{LLP_SEGMENTS} s")
        if "," in label:
            raise AnnotationError(path, line, f"{filename}: one class per dense row, found {label!r}")
        _check_class(path, line, label, classes)
        rows.append(DenseRow(filename, onset, offset, label, line))
    return rows


def _listed(items: list[str]) -> str:
    more = f", … ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


@dataclass
class LLPAnnotations:
    """The weak labels of each split found, the usable dense rows by modality and filename, and the quirks of the
    files (``notes``), reported when :meth:`load` first reads them."""

    root: Path
    weak: dict[str, list[WeakRow]]
    dense: dict[str, dict[str, list[DenseRow]]]
    notes: list[str] = field(default_factory=list)
    classes: tuple[str, ...] = LLP_CLASSES

    _loaded: ClassVar[dict[tuple, LLPAnnotations]] = {}

    @classmethod
    def load(cls, root: str | Path) -> LLPAnnotations:
        """Read ``<root>``'s weak-label files (those present) and both dense files (when present); the same
        unchanged files are read, and their quirks reported, once per process."""
        root = Path(root)
        files = [root / name for name in (*WEAK_FILES.values(), *DENSE_FILES.values())]
        key = (str(root.resolve()), *((f.stat().st_mtime_ns, f.stat().st_size) if f.is_file() else None
                                      for f in files))
        if key not in cls._loaded:
            annotations = cls.read(root)
            for note in annotations.notes:
                warnings.warn(note, LLPDataWarning, stacklevel=2)
            cls._loaded[key] = annotations
        return cls._loaded[key]

    @classmethod
    def read(cls, root: str | Path) -> LLPAnnotations:
        root = Path(root)
        weak = {split: read_weak_labels(root / name) for split, name in WEAK_FILES.items() if (root / name).exists()}
        if not weak:
            raise AnnotationError(root, None, f"no LLP weak-label file ({', '.join(WEAK_FILES.values())})")
        listed = {row.filename for rows in weak.values() for row in rows}
        dense: dict[str, dict[str, list[DenseRow]]] = {}
        notes: list[str] = []
        for modality, name in DENSE_FILES.items():
            path = root / name
            if not path.exists():
                continue
            rows = read_dense_labels(path)
            empty = [row for row in rows if row.onset >= row.offset]
            if empty:
                notes.append(f"{path}: {len(empty)} row(s) mark no second (onset ≥ offset) and are skipped, as the "
                             f"reference evaluation's GT[class, onset:offset] reads them: "
                             f"{_listed([row.describe() for row in empty])}")
            malformed = [row for row in rows if row.filename in LLP_CLASSES or not _VIDEO_NAME.fullmatch(row.filename)]
            if malformed:
                notes.append(f"{path}: {len(malformed)} row(s) whose filename is no video name: "
                             f"{_listed([f'line {row.line} ({row.filename!r})' for row in malformed])}. This is the "
                             f"copy of {name} from before its fix in the AVVP-ECCV20 repository (April 2024); the "
                             "videos these rows belong to lose those events, as in the reference evaluation. Use "
                             "the fixed file.")
            unknown = sorted({row.filename for row in rows} - listed - {row.filename for row in malformed})
            if unknown:
                notes.append(f"{path}: {len(unknown)} filename(s) are in no split file ({', '.join(weak_names(weak))})"
                             f" and are never scored, as in the reference evaluation: {_listed(unknown)}")
            by_file: dict[str, list[DenseRow]] = {}
            for row in rows:
                if row.onset < row.offset:
                    by_file.setdefault(row.filename, []).append(row)
            dense[modality] = by_file
        return cls(root, weak, dense, notes)

    def rows(self, split: str) -> list[WeakRow]:
        if split not in self.weak:
            raise AnnotationError(self.root / WEAK_FILES.get(split, split), None, "weak-label file not found")
        return self.weak[split]

    def weak_target(self, row: WeakRow) -> torch.Tensor:
        """(C,) float: 1 for the row's classes."""
        target = torch.zeros(len(self.classes))
        target[[self.classes.index(name) for name in row.labels]] = 1.0
        return target

    def segment_labels(self, filename: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, T) bool audio and visual ground truth of one video from its dense rows (all zeros without)."""
        matrices = []
        for modality, name in DENSE_FILES.items():
            if modality not in self.dense:
                raise AnnotationError(self.root / name, None, "dense label file not found")
            matrix = torch.zeros(len(self.classes), LLP_SEGMENTS, dtype=torch.bool)
            for row in self.dense[modality].get(filename, ()):
                matrix[self.classes.index(row.label), row.onset:row.offset] = True
            matrices.append(matrix)
        return matrices[0], matrices[1]


def weak_names(weak: dict[str, list[WeakRow]]) -> list[str]:
    return [WEAK_FILES[split] for split in weak]


@register_dataset
class LLPDataset(ClipDataset):
    """LLP videos of one split, each read as T = 10 frames and fbank images and its weak ``labels`` (C,); val and
    test items add the dense ``audio_labels`` and ``visual_labels`` (C, T) bool. ``source``: one of the media
    layouts above (``mp4``, ``frames``), ``cache`` or ``auto``, as :class:`~avadapt.data.base.ClipDataset` reads
    them; ``min_seconds``: passed to :func:`read_clip` for mp4 files; ``motion_features``: a folder of ``<id>.npy``
    (T, E) R(2+1)D features (:mod:`avadapt.tasks.avvp.motion`), handed to the head as its input ``motion_features``;
    a video without its file counts as missing media."""

    name = "llp"
    task = "avvp"
    num_segments = LLP_SEGMENTS
    # one RandomResizedCrop (area 0.5–1) and flip per training clip, the same for all T frames
    train_augmentation: ClassVar[dict[str, Any]] = {"train": True, "scale": (0.5, 1.0)}
    layouts: ClassVar[dict[str, tuple[str, ...]]] = {
        "mp4": ("LLP_dataset/video/{clip}.mp4",),
        "frames": ("LLP_dataset/frame/{clip}", "LLP_dataset/audio/{clip}.wav")}
    title = "LLP"

    @classmethod
    def class_names(cls, root: str | Path, **options: Any) -> list[str]:
        return list(LLP_CLASSES)

    @classmethod
    def prepare(cls, root: str | Path, out: str | Path, **settings: Any) -> Any:
        from avadapt.tasks.avvp.prepare import prepare_llp

        return prepare_llp(root, out, **settings)

    @classmethod
    def synthesize(cls, out: str | Path, clips: int, seed: int, num_classes: int | None = None) -> Any:
        from avadapt.tasks.avvp.synth import synthesize_llp

        return synthesize_llp(out, clips=clips, seed=seed, num_classes=num_classes or 6)

    def __init__(self, root: str | Path, split: str = "train", *, source: str = "auto",
                 min_seconds: float | None = None, motion_features: str | Path | None = None, **common: Any):
        super().__init__(root, split, **common)
        self.annotations = LLPAnnotations.load(root)
        self.min_seconds = min_seconds
        self.motion_features = Path(motion_features) if motion_features is not None else None
        self.dense = split in DENSE_SPLITS
        self.items = self.keep_with_media(source, self.annotations.rows(split), lambda row: row.video_id)

    def motion_file(self, video_id: str) -> Path:
        """``<motion_features>/<id>.npy``: the video's (T, E) R(2+1)D features (:mod:`avadapt.tasks.avvp.motion`)."""
        return self.motion_features / f"{video_id}.npy"

    def missing_media(self, clip: str) -> str | None:
        missing = super().missing_media(clip)
        if self.motion_features is None or self.motion_file(clip).is_file():
            return missing
        return "; ".join(filter(None, [missing, f"expected {self.motion_file(clip)}"]))

    def load_motion(self, video_id: str) -> torch.Tensor:
        """(T, E) float32 features of one video; a file of another shape is an error naming it."""
        path = self.motion_file(video_id)
        try:
            features = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DatasetError(f"{path}: cannot read R(2+1)D features: {err}") from err
        if features.ndim != 2 or features.shape[0] != self.num_segments:
            raise DatasetError(f"{path}: R(2+1)D features must be ({self.num_segments}, E), one row a segment; got "
                               f"{features.shape}")
        return torch.from_numpy(features.astype(np.float32))

    def decode(self, video_id: str) -> tuple[np.ndarray, torch.Tensor]:
        if self.source == "mp4":
            clip = read_clip(self.media_paths(video_id)[0], self.num_segments, 1.0,
                             sample_rate=self.fbank.sample_rate, min_seconds=self.min_seconds)
            frames, wave = clip.frames, clip.wave
        else:
            folder, wav = self.media_paths(video_id)
            frames = read_frame_folder(folder, self.num_segments)
            wave = np.zeros(self.num_segments * self.fbank.sample_rate, np.float32)
            audio = read_audio(wav, self.fbank.sample_rate)[: len(wave)]
            wave[: len(audio)] = audio
        return frames, segment_fbank(wave, self.fbank, self.num_segments)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, _, generator = seeded(key)
        row = self.items[index]
        video, audio = self.load_media(row.video_id, generator)
        item = {"video": video,  # (T, 3, H, W)
                "audio": audio,  # (T, 1, F, L)
                "labels": self.annotations.weak_target(row),  # (C,)
                "meta": {"filename": row.filename, "video_id": row.video_id}}
        if self.dense:
            item["audio_labels"], item["visual_labels"] = self.annotations.segment_labels(row.filename)  # (C, T)
        if self.motion_features is not None:
            item["inputs"] = {"motion_features": self.load_motion(row.video_id)}  # (T, E)
        return item
