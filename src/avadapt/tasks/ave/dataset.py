"""AVE (Audio-Visual Event localisation, Tian et al. ECCV 2018) in its native layouts.

Annotations (``<root>/``): ``Annotations.txt``, one event ``Category&VideoID&Quality&StartTime&EndTime`` per row
(with a header line in the official zip, without in AVE-ECCV18's copy), and ``trainSet.txt``, ``valSet.txt``,
``testSet.txt``: the same rows without header, partitioning Annotations.txt as a multiset. Media: ``mp4``
(``<media_root>/AVE/<VideoID>.mp4``), ``frames`` as the reference PETL code reads them
(``<media_root>/video_frames/<VideoID>/NNNN.jpg``, any frame count, and ``raw_audio/<VideoID>.wav``), or a cache
written by :func:`~avadapt.tasks.ave.prepare.prepare_ave`.

Fields are split on ``&`` only: category names contain commas ("Baby cry, infant cry"). Samples are keyed by
*row*, never by video id: 45 ids carry two or three different events and 18 ids sit in two splits. Labels: 28
categories in order of first appearance in Annotations.txt (the order of the reference ``categories.txt``), then
background (28); second t of a row is its category when ``start ≤ t < end``, else background.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from avadapt.data.base import ClipDataset, register_dataset, seeded
from avadapt.data.fbank import segment_fbank
from avadapt.data.media import read_audio, read_clip, read_frame_folder
from avadapt.errors import AnnotationError

AVE_FIELDS = ("Category", "VideoID", "Quality", "StartTime", "EndTime")
AVE_HEADER = "&".join(AVE_FIELDS)
AVE_SEGMENTS = 10  # AVE clips are 10 s, labelled per second
SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}


@dataclass(frozen=True)
class AVEEvent:
    """One annotation row."""

    row: int  # 0-based among the data rows of Annotations.txt: the index the reference ``*_order.h5`` files use
    category: str
    video_id: str
    quality: str
    start: int
    end: int
    line: int  # 1-based line number in the file it was read from

    @property
    def key(self) -> tuple[str, str, str, int, int]:
        return (self.category, self.video_id, self.quality, self.start, self.end)


def read_events(path: str | Path) -> list[AVEEvent]:
    """Parse an AVE annotation or split file (a header on the first line only; blank lines, a UTF-8 byte-order
    mark and Windows line endings tolerated); a malformed row raises :class:`AnnotationError` naming its line.
    Start == end is valid: an event of zero length, all background (one real row has it)."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, None, "AVE annotation file not found")
    events: list[AVEEvent] = []
    text = path.read_text(encoding="utf-8-sig")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split("&")]
        if number == 1 and [f.lower() for f in fields] == [f.lower() for f in AVE_FIELDS]:
            continue  # header
        if len(fields) != len(AVE_FIELDS):
            raise AnnotationError(path, number, f"expected {len(AVE_FIELDS)} '&'-separated fields ({AVE_HEADER}), "
                                                f"found {len(fields)}: {line!r}")
        category, video_id, quality, start_text, end_text = fields
        if not category or not video_id:
            raise AnnotationError(path, number, f"empty category or video id: {line!r}")
        try:
            start, end = int(start_text), int(end_text)
        except ValueError:
            raise AnnotationError(path, number, f"start and end must be whole seconds, got {start_text!r} and "
                                                f"{end_text!r}") from None
        if not (0 <= start <= AVE_SEGMENTS and 0 <= end <= AVE_SEGMENTS):
            raise AnnotationError(path, number, f"times {start}..{end} lie outside 0..{AVE_SEGMENTS} s")
        if start > end:
            raise AnnotationError(path, number, f"start {start} is after end {end}")
        events.append(AVEEvent(len(events), category, video_id, quality, start, end, number))
    return events


@dataclass
class AVEAnnotations:
    """All rows of Annotations.txt, the category list, and each split as row indices."""

    root: Path
    events: list[AVEEvent]
    categories: list[str]
    splits: dict[str, list[int]]

    @classmethod
    def load(cls, root: str | Path, annotations: str = "Annotations.txt") -> AVEAnnotations:
        """Read ``<root>/<annotations>`` and whichever split files exist. Each split line, in the order train,
        val, test, takes the first unused annotation row with the same five fields: a row listed twice is an
        error, and identical rows (if a copy had them) stay separate samples."""
        root = Path(root)
        path = root / annotations
        events = read_events(path)
        if not events:
            raise AnnotationError(path, None, "no annotation rows")
        categories = list(dict.fromkeys(e.category for e in events))  # first-appearance order
        categories = cls._categories_from_file(root / "categories.txt", categories)

        unused: dict[tuple, deque[int]] = defaultdict(deque)
        for event in events:
            unused[event.key].append(event.row)
        splits: dict[str, list[int]] = {}
        known = set(categories)
        for split, name in SPLIT_FILES.items():
            split_path = root / name
            if not split_path.exists():
                continue
            rows = []
            for event in read_events(split_path):
                if event.category not in known:
                    raise AnnotationError(split_path, event.line,
                                          f"unknown category {event.category!r} (not in {path.name})")
                if not unused.get(event.key):
                    problem = "is listed more often in the split files than" if event.key in unused else "is not in"
                    raise AnnotationError(split_path, event.line,
                                          f"row {'&'.join(map(str, event.key))!r} {problem} {path.name}")
                rows.append(unused[event.key].popleft())
            splits[split] = rows
        return cls(root, events, categories, splits)

    @staticmethod
    def _categories_from_file(path: Path, categories: list[str]) -> list[str]:
        """The label list: ``categories.txt`` when present (it may list classes no row uses, as a small or
        synthetic subset does), else the annotations' first-appearance order. Both orders must agree."""
        if not path.exists():
            return categories
        listed = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        unknown = [c for c in categories if c not in listed]
        if unknown:
            raise AnnotationError(path, None, f"the annotations use categories this file does not list: {unknown[:3]}")
        used = set(categories)
        if [c for c in listed if c in used] != categories:
            raise AnnotationError(path, None, "category order differs from first appearance in the annotations; "
                                              f"labels would not match: file has {listed[:3]}…, annotations give "
                                              f"{categories[:3]}…")
        return listed

    @property
    def background(self) -> int:
        """Label index of background seconds (28 for AVE)."""
        return len(self.categories)

    @property
    def num_classes(self) -> int:
        """Categories plus background (29 for AVE)."""
        return len(self.categories) + 1

    def rows(self, split: str) -> list[int]:
        if split not in self.splits:
            raise AnnotationError(self.root / SPLIT_FILES.get(split, split), None, "split file not found")
        return self.splits[split]

    def labels(self, row: int) -> torch.Tensor:
        """(T,) long: the row's category for seconds start ≤ t < end, background elsewhere."""
        event = self.events[row]
        t = torch.arange(AVE_SEGMENTS)
        inside = (t >= event.start) & (t < event.end)
        return torch.where(inside, self.categories.index(event.category), self.background).long()


@register_dataset
class AVEDataset(ClipDataset):
    """AVE rows of one split, each read as T frames, T fbank images and T per-second ``labels``; ``source``: one of
    the media layouts above (``mp4``, ``frames``), ``cache`` or ``auto``, as :class:`~avadapt.data.base.ClipDataset`
    reads them; ``min_seconds``: passed to :func:`read_clip` for mp4 files."""

    name = "ave"
    task = "ave"
    num_segments = AVE_SEGMENTS
    # one RandomResizedCrop (area 0.5–1) and flip per training clip, the same for all T frames
    train_augmentation: ClassVar[dict[str, Any]] = {"train": True, "scale": (0.5, 1.0)}
    layouts: ClassVar[dict[str, tuple[str, ...]]] = {
        "mp4": ("AVE/{clip}.mp4",), "frames": ("video_frames/{clip}", "raw_audio/{clip}.wav")}
    title = "AVE"

    @classmethod
    def class_names(cls, root: str | Path, annotations: str = "Annotations.txt", **options: Any) -> list[str]:
        """The AVE categories in label order, then ``background``."""
        return [*AVEAnnotations.load(root, annotations).categories, "background"]

    @classmethod
    def prepare(cls, root: str | Path, out: str | Path, **settings: Any) -> Any:
        from avadapt.tasks.ave.prepare import prepare_ave

        return prepare_ave(root, out, **settings)

    @classmethod
    def synthesize(cls, out: str | Path, clips: int, seed: int, num_classes: int | None = None) -> Any:
        from avadapt.tasks.ave.synth import synthesize_ave

        return synthesize_ave(out, clips=clips, seed=seed, num_classes=num_classes or 4)

    def __init__(self, root: str | Path, split: str = "train", *, source: str = "auto",
                 annotations: str = "Annotations.txt", min_seconds: float | None = None, **common: Any):
        super().__init__(root, split, **common)
        self.annotations = AVEAnnotations.load(root, annotations)
        self.min_seconds = min_seconds
        rows = self.annotations.rows(split)
        self.rows = self.keep_with_media(source, rows, lambda row: self.annotations.events[row].video_id)

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
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, _, generator = seeded(key)
        row = self.rows[index]
        event = self.annotations.events[row]
        video, audio = self.load_media(event.video_id, generator)
        return {
            "video": video,  # (T, 3, H, W)
            "audio": audio,  # (T, 1, F, L)
            "labels": self.annotations.labels(row),  # (T,)
            "meta": {"row": row, "video_id": event.video_id, "category": event.category},
        }
