"""Audio-visual action recognition datasets: Kinetics-Sounds (``avar_kinetics_sounds``), VGGSound
(``avar_vggsound``) and any folder of clips with a label file (``avar_folder``), their lists read by
:mod:`avadapt.tasks.avar.lists`, one video file per clip.

Media (``source``), under ``media_root`` (default ``root``): ``mp4``, one file ``<clip>.mp4`` per clip (the folder a
download of the dataset's clips fills), or ``cache``, written by :func:`avadapt.tasks.avar.prepare.prepare_avar`.

Segments: a clip of D seconds, whatever D, is read as T = 10 equal parts of D/T s; segment t is the frame on
screen at the middle of its part and an audio window of the front end's ``window_seconds`` from the part's start
(zeros past the end). A file shorter than one such window, or declaring no duration, is a :class:`MediaError`
naming it (``avadapt prepare`` lists it in ``bad_clips.tsv`` and goes on).

Splits: Kinetics-Sounds and VGGSound ship train and test only; a clip folder's rows name their split (train by
default), and it may have no test rows. Model selection needs a validation split, so unless a validation list is
given, ``val_fraction`` (10 %) of each class's training rows, chosen by a hash of the clip name
(:func:`~avadapt.tasks.avar.lists.hold_out`), is set aside as ``val`` and left out of ``train``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from avadapt.data.base import SPLITS, ClipDataset, register_dataset, seeded
from avadapt.data.fbank import FbankConfig, segment_fbank
from avadapt.data.media import probe, read_clip
from avadapt.errors import AnnotationError, MediaError
from avadapt.tasks.avar.lists import (
    ClipRow,
    check_disjoint,
    hold_out,
    read_class_names,
    read_folder_labels,
    read_label_list,
    read_vggsound_csv,
)

AVAR_SEGMENTS = 10
VAL_FRACTION = 0.1
FOLDER_LABELS = "labels.csv"  # the label file of a clip folder (``avar_folder``)
CLASS_FILE = "classes.txt"  # the class-name file a Kinetics-Sounds root may hold (one name a line, index order)
KINETICS_SOUNDS_LISTS = {"train": "my_train.txt", "test": "my_test.txt"}  # OGM-GE's names


def read_segments(path: str | Path, fbank: FbankConfig, num_segments: int = AVAR_SEGMENTS
                  ) -> tuple[np.ndarray, torch.Tensor, float]:
    """(frames (T, H, W, 3) uint8, fbank images (T, 1, F, L), the clip's seconds) of one video file read as T
    equal segments (module docstring); :class:`MediaError` naming the file for one that cannot be read, declares no
    duration or is shorter than one segment's audio window."""
    seconds = probe(path).duration
    if seconds <= 0:
        raise MediaError(path, f"the file declares no duration, so its {num_segments} segments cannot be placed")
    if seconds < fbank.window_seconds:
        raise MediaError(path, f"the clip is {seconds:.2f} s long, shorter than one segment ({fbank.window_seconds:g} "
                               "s of audio)")
    part = seconds / num_segments
    clip = read_clip(path, num_segments, part, sample_rate=fbank.sample_rate)
    return clip.frames, segment_fbank(clip.wave, fbank, num_segments, part), seconds


@dataclass
class RecognitionLists:
    """A dataset's class names (label order) and its rows per split (``train``, ``val``, ``test``)."""

    classes: list[str]
    splits: dict[str, list[ClipRow]]

    def rows(self, split: str) -> list[ClipRow]:
        return self.splits[split]

    def clips(self) -> list[str]:
        """Every clip of every split, once, in list order."""
        return list(dict.fromkeys(row.clip for rows in self.splits.values() for row in rows))


def with_validation(classes: list[str], splits: dict[str, list[ClipRow]], val_fraction: float) -> RecognitionLists:
    """The lists with a ``val`` split: the given one, else ``val_fraction`` of ``train`` set aside; no clip may sit in
    two splits."""
    if "val" not in splits:
        splits["train"], splits["val"] = hold_out(splits["train"], val_fraction)
    check_disjoint(splits)
    return RecognitionLists(classes, {split: splits[split] for split in SPLITS})


class RecognitionDataset(ClipDataset):
    """The clips of one split with their labels: ``labels`` () long, the class index (a row with several labels
    needs ``multi_label``), or with ``multi_label`` (C,) float, the multi-hot target. A subclass reads its dataset's
    lists (:meth:`load_lists`) and hands them over as ``annotations``."""

    task = "avar"
    num_segments = AVAR_SEGMENTS
    # one RandomResizedCrop (area 0.5–1) and flip per training clip, the same for all T frames
    train_augmentation: ClassVar[dict[str, Any]] = {"train": True, "scale": (0.5, 1.0)}
    layouts: ClassVar[dict[str, tuple[str, ...]]] = {"mp4": ("{clip}.mp4",)}
    clip_noun = "clip"

    @classmethod
    def load_lists(cls, root: str | Path, **options: Any) -> RecognitionLists:
        raise NotImplementedError

    @classmethod
    def class_names(cls, root: str | Path, multi_label: bool = False, **options: Any) -> list[str]:
        """The class names in label order."""
        return cls.load_lists(root, **options).classes

    @classmethod
    def prepare(cls, root: str | Path, out: str | Path, **settings: Any) -> Any:
        from avadapt.tasks.avar.prepare import prepare_avar

        return prepare_avar(cls, root, out, **settings)

    def __init__(self, root: str | Path, split: str = "train", *, source: str = "auto", multi_label: bool = False,
                 annotations: RecognitionLists, **common: Any):
        super().__init__(root, split, **common)
        self.classes = annotations.classes
        self.multi_label = multi_label
        rows = annotations.rows(split)
        if not multi_label:
            several = next((row for row in rows if len(row.labels) > 1), None)
            if several is not None:
                raise AnnotationError(several.path, several.line, f"clip {several.clip!r} has {len(several.labels)} "
                                      "labels; a single-label head reads one (set task_options.multi_label: true)")
        self.rows = self.keep_with_media(source, rows, lambda row: row.clip)

    def decode(self, clip: str) -> tuple[np.ndarray, torch.Tensor]:
        return read_segments(self.media_paths(clip)[0], self.fbank, self.num_segments)[:2]

    def target(self, row: ClipRow) -> torch.Tensor:
        """() long class index, or (C,) float multi-hot with ``multi_label``."""
        if not self.multi_label:
            return torch.tensor(row.labels[0])
        target = torch.zeros(len(self.classes))
        target[list(row.labels)] = 1.0
        return target

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, _, generator = seeded(key)
        row = self.rows[index]
        video, audio = self.load_media(row.clip, generator)
        return {
            "video": video,  # (T, 3, H, W)
            "audio": audio,  # (T, 1, F, L)
            "labels": self.target(row),
            "meta": {"clip": row.clip, "video_id": row.video_id, "row": row.where,
                     "label": " / ".join(self.classes[k] for k in row.labels)},
        }


@register_dataset
class KineticsSoundsDataset(RecognitionDataset):
    """Kinetics-Sounds from label-indexed lists (:func:`~avadapt.tasks.avar.lists.read_label_list`).

    root: holds the lists, by default OGM-GE's ``my_train.txt`` and ``my_test.txt``; ``lists`` names others per
    split (``{"train": …, "val": …, "test": …}``, relative to ``root`` or absolute; a ``val`` list replaces the
    held-out share). classes: a class-name file (default ``<root>/classes.txt`` when present); without one the
    classes are the training list's indices 0..max, named ``class k``, and a label outside them is an error.
    """

    name = "avar_kinetics_sounds"
    title = "Kinetics-Sounds"

    @classmethod
    def load_lists(cls, root: str | Path, lists: Mapping[str, str | Path] | None = None,
                   classes: str | Path | None = None, val_fraction: float = VAL_FRACTION) -> RecognitionLists:
        root = Path(root)
        files = {**KINETICS_SOUNDS_LISTS, **(lists or {})}
        unknown = sorted(set(files) - set(SPLITS))
        if unknown:
            raise AnnotationError(root, None, f"lists name unknown splits {unknown}; splits: {list(SPLITS)}")
        class_file = root / (classes if classes is not None else CLASS_FILE)
        names = read_class_names(class_file) if classes is not None or class_file.is_file() else None
        train = read_label_list(root / files["train"], names)
        if not train:
            raise AnnotationError(root / files["train"], None, "the training list has no rows")
        if names is None:
            names = [f"class {k}" for k in range(1 + max(k for row in train for k in row.labels))]
        splits = {"train": train, **{split: read_label_list(root / files[split], names)
                                     for split in ("val", "test") if split in files}}
        if "test" not in splits:
            raise AnnotationError(root, None, "no test list (lists.test)")
        return with_validation(names, splits, val_fraction)

    def __init__(self, root: str | Path, split: str = "train", *, source: str = "auto",
                 lists: Mapping[str, str | Path] | None = None, classes: str | Path | None = None,
                 val_fraction: float = VAL_FRACTION, multi_label: bool = False, **common: Any):
        super().__init__(root, split, source=source, multi_label=multi_label,
                         annotations=self.load_lists(root, lists, classes, val_fraction), **common)

    @classmethod
    def synthesize(cls, out: str | Path, clips: int, seed: int, num_classes: int | None = None) -> Any:
        from avadapt.tasks.avar.synth import synthesize_avar

        return synthesize_avar(out, clips=clips, seed=seed, num_classes=num_classes or 16)


@register_dataset
class VGGSoundDataset(RecognitionDataset):
    """VGGSound from its official csv (:func:`~avadapt.tasks.avar.lists.read_vggsound_csv`).

    root: holds ``vggsound.csv`` (``csv``: another name, relative to ``root`` or absolute). classes: a class-name
    file giving the label order (default: the csv's labels sorted). clip_name: how a clip's video file is named
    (default ``{ytid}_{start}``, OGM-GE's; ``{ytid}_{start:06d}`` for zero-padded names).
    """

    name = "avar_vggsound"
    title = "VGGSound"

    @classmethod
    def load_lists(cls, root: str | Path, csv: str | Path = "vggsound.csv", classes: str | Path | None = None,
                   clip_name: str = "{ytid}_{start}", val_fraction: float = VAL_FRACTION) -> RecognitionLists:
        root = Path(root)
        names = read_class_names(root / classes) if classes is not None else None
        names, splits = read_vggsound_csv(root / csv, names, clip_name)
        return with_validation(names, splits, val_fraction)

    def __init__(self, root: str | Path, split: str = "train", *, source: str = "auto",
                 csv: str | Path = "vggsound.csv", classes: str | Path | None = None, clip_name: str = "{ytid}_{start}",
                 val_fraction: float = VAL_FRACTION, multi_label: bool = False, **common: Any):
        super().__init__(root, split, source=source, multi_label=multi_label,
                         annotations=self.load_lists(root, csv, classes, clip_name, val_fraction), **common)


@register_dataset
class ClipFolderDataset(RecognitionDataset):
    """Any folder of clips with a label file (:func:`~avadapt.tasks.avar.lists.read_folder_labels`), e.g. a corpus
    to pretrain on: ``<root>/labels.csv`` rows ``clip,label[,split]`` and ``<media_root>/<clip>.mp4``.

    labels: another label file, relative to ``root`` or absolute. classes: a class-name file giving the label order
    (default: the labels in the order the label file first names them). A clip file that no row names is not an
    error, since a folder may hold clips not meant for training: building the training split reports them once, in
    one warning, and they are left out.
    """

    name = "avar_folder"
    title = "clip folder"

    @classmethod
    def load_lists(cls, root: str | Path, labels: str | Path = FOLDER_LABELS, classes: str | Path | None = None,
                   val_fraction: float = VAL_FRACTION) -> RecognitionLists:
        root = Path(root)
        names = read_class_names(root / classes) if classes is not None else None
        names, splits = read_folder_labels(root / labels, names)
        if not splits.get("train"):
            raise AnnotationError(root / labels, None, "no training rows")
        return with_validation(names, {"test": [], **splits}, val_fraction)

    def __init__(self, root: str | Path, split: str = "train", *, source: str = "auto",
                 labels: str | Path = FOLDER_LABELS, classes: str | Path | None = None,
                 val_fraction: float = VAL_FRACTION, multi_label: bool = False, **common: Any):
        lists = self.load_lists(root, labels, classes, val_fraction)
        super().__init__(root, split, source=source, multi_label=multi_label, annotations=lists, **common)
        if split == "train" and self.source == "mp4":
            listed = set(lists.clips())
            unlisted = sorted(p.stem for p in self.media_root.glob("*.mp4") if p.stem not in listed)
            if unlisted:
                more = f" … and {len(unlisted) - 5} more" if len(unlisted) > 5 else ""
                warnings.warn(f"{self.media_root}: {len(unlisted)} clip(s) have no row in {Path(root) / labels} and "
                              f"are left out: {', '.join(unlisted[:5])}{more}", stacklevel=2)
