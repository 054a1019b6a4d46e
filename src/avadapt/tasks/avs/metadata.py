"""AVSBench-object (Zhou et al. ECCV 2022): S4 (single sound source) and MS3 (multiple sources), its settings,
categories, metadata files and where a clip's files lie.

Each clip is 5 s, seen as 5 frames (one per second) with a binary mask of the sounding object(s) per
frame, and heard as a 16 kHz wav. The native layouts, as the official scripts read them
(``avs_scripts/avs_s4/dataloader.py``, ``avs_ms3/dataloader.py``)::

    s4_meta_data.csv                                          header name,start,category,split
    s4_data/visual_frames/{split}/{category}/{name}/{name}_{1..5}.png
    s4_data/gt_masks/{split}/{category}/{name}/{name}_{k}.png  train: k = 1 only; val, test: k = 1..5
    s4_data/audio_wav/{split}/{category}/{name}.wav
    ms3_meta_data.csv                                         column 0 = name, and a ``split`` column
    ms3_data/visual_frames/{name}/{name}.mp4_{1..5}.png       no split folder, ".mp4_" infix
    ms3_data/gt_masks/{split}/{name}/{name}_{1..5}.png        all 5 annotated in every split
    ms3_data/audio_wav/{split}/{name}.wav

``root`` is either the folder that holds these directly, or the official zip's ``avsbench_data/``
folder, which holds them under ``Single-source/`` (S4) and ``Multi-sources/`` (MS3); ``media_root``
(default: ``root``) is read the same way. The original metadata csvs are behind the dataset's download
form; AVSBench-semantic's ``metadata.csv`` (header ``vid,uid,s_min,s_sec,a_obj,split,label``; label
``v1s`` = S4, ``v1m`` = MS3) lists the same clips and splits, so either may be given as ``metadata``
(they are told apart by the header).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from avadapt.data.base import SPLITS
from avadapt.errors import AnnotationError

AVS_SEGMENTS = 5  # AVSBench clips are 5 s, one frame and one mask per second
AVS_SETTINGS = ("s4", "ms3")

# The 23 S4 categories in the order of AVSBench's preprocess_s4.py.
S4_CATEGORIES = (
    "baby_laughter", "female_singing", "male_speech", "dog_barking", "cat_meowing", "lions_roaring",
    "horse_clip-clop", "coyote_howling", "mynah_bird_singing", "playing_acoustic_guitar", "playing_tabla",
    "playing_violin", "playing_piano", "playing_ukulele", "playing_glockenspiel", "helicopter", "race_car",
    "driving_buses", "ambulance_siren", "typing_on_computer_keyboard", "chainsawing_trees",
    "cap_gun_shooting", "lawn_mowing",
)  # fmt: skip

# S4 category → its renamed class in AVSBench-semantic's metadata.csv (a_obj of the v1s rows); checked
# 1:1 on all 740 S4 test videos against ACL-SSL's S4 test list.
S4_TO_AVSS = {
    "ambulance_siren": "emergency-car", "baby_laughter": "baby", "cap_gun_shooting": "gun", "cat_meowing": "cat",
    "chainsawing_trees": "saw", "coyote_howling": "wolf", "dog_barking": "dog", "driving_buses": "bus",
    "female_singing": "woman", "helicopter": "helicopter", "horse_clip-clop": "horse", "lawn_mowing": "mower",
    "lions_roaring": "lion", "male_speech": "man", "mynah_bird_singing": "bird",
    "playing_acoustic_guitar": "guitar", "playing_glockenspiel": "marimba", "playing_piano": "piano",
    "playing_tabla": "tabla", "playing_ukulele": "ukulele", "playing_violin": "violin", "race_car": "car",
    "typing_on_computer_keyboard": "keyboard",
}  # fmt: skip
# The inverse, plus the real file's one misspelt a_obj ("h orse", train video zVfLHhs9uv8).
AVSS_TO_S4 = {**{avss: s4 for s4, avss in S4_TO_AVSS.items()}, "h orse": "horse_clip-clop"}
AVSS_LABELS = {"s4": "v1s", "ms3": "v1m"}

METADATA_FILES = {"s4": "s4_meta_data.csv", "ms3": "ms3_meta_data.csv"}
ZIP_FOLDERS = {"s4": "Single-source", "ms3": "Multi-sources"}  # inside the official zip's avsbench_data/
DATA_FOLDERS = {"s4": "s4_data", "ms3": "ms3_data"}


def check_setting(setting: str) -> None:
    if setting not in AVS_SETTINGS:
        raise ValueError(f"unknown AVSBench setting {setting!r}; choose from {list(AVS_SETTINGS)}")


@dataclass(frozen=True)
class AVSClip:
    """One metadata row: ``name`` (S4: an 11-character YouTube id; MS3: the id plus a ``_k`` suffix), ``split``,
    ``category`` (one of :data:`S4_CATEGORIES`; ``""`` for MS3, whose native csv has none), ``start`` (the trim
    start in seconds within the source video where the file says so, else None; informational only) and ``line``
    (1-based, in the file it was read from)."""

    name: str
    split: str
    category: str
    start: float | None
    line: int


class _Table:
    """A comma-separated file with a header; every error is an :class:`~avadapt.errors.AnnotationError` naming
    the file and the line. A UTF-8 byte-order mark, Windows line endings, spaces around fields and blank lines
    are tolerated; a row with more fields than the header is refused."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise AnnotationError(self.path, None, "AVSBench metadata file not found")
        with self.path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            lines = [(reader.line_num, [f.strip() for f in fields]) for fields in reader]
        lines = [(line, fields) for line, fields in lines if any(fields)]
        if not lines:
            raise AnnotationError(self.path, None, "empty file: no header line")
        (_, self.header), self.rows = lines[0], lines[1:]
        self.lowered = [h.lower() for h in self.header]
        for line, fields in self.rows:
            if len(fields) > len(self.header):
                raise AnnotationError(self.path, line, f"{len(fields)} fields, but the header has "
                                                       f"{len(self.header)}: {','.join(fields)!r}")

    def column(self, name: str) -> int:
        """Index of the column called ``name`` in the header (line 1)."""
        if name not in self.lowered:
            raise AnnotationError(self.path, 1, f"the header has no {name!r} column: {','.join(self.header)}")
        return self.lowered.index(name)

    def field(self, line: int, fields: list[str], index: int) -> str:
        """Field ``index`` of a data row; a row that stops before it, or leaves it empty, is an error."""
        if index >= len(fields) or not fields[index]:  # index: a column of the header
            raise AnnotationError(self.path, line, f"missing field {self.header[index]!r} (column {index + 1}): "
                                                   f"{','.join(fields)!r}")
        return fields[index]

    def split(self, line: int, fields: list[str], index: int) -> str:
        value = self.field(line, fields, index)
        if value not in SPLITS:
            raise AnnotationError(self.path, line, f"split {value!r} is not one of {', '.join(SPLITS)}")
        return value

    def seconds(self, line: int, name: str, value: str) -> float | None:
        try:
            return float(value) if value else None
        except ValueError:
            raise AnnotationError(self.path, line, f"{name} must be a number of seconds, got {value!r}") from None

    def unique(self, clips: list[AVSClip]) -> list[AVSClip]:
        """Refuse a name listed twice: a clip's media, masks and cache entry are found by its name."""
        first: dict[str, int] = {}
        for clip in clips:
            if clip.name in first:
                raise AnnotationError(self.path, clip.line,
                                      f"clip {clip.name!r} is already listed on line {first[clip.name]}")
            first[clip.name] = clip.line
        return clips


def read_s4_metadata(path: str | Path) -> list[AVSClip]:
    """Rows of AVSBench's ``s4_meta_data.csv`` as the official loader reads them: column 0 = name, column 2 =
    category (one of :data:`S4_CATEGORIES`) and the ``split`` column; ``start`` (column 1) is kept when the
    header names it so."""
    table = _Table(path)
    if len(table.header) < 3:
        raise AnnotationError(table.path, 1, f"expected at least 3 columns (name,start,category,split), got "
                                             f"{','.join(table.header)!r}")
    split_at = table.column("split")
    start_at = table.lowered.index("start") if "start" in table.lowered else len(table.header)
    clips = []
    for line, fields in table.rows:
        name, category = table.field(line, fields, 0), table.field(line, fields, 2)
        if category not in S4_CATEGORIES:
            raise AnnotationError(table.path, line, f"unknown S4 category {category!r} (not one of the "
                                                    f"{len(S4_CATEGORIES)} AVSBench S4 categories)")
        split = table.split(line, fields, split_at)
        start = table.seconds(line, "start", fields[start_at] if start_at < len(fields) else "")
        clips.append(AVSClip(name, split, category, start, line))
    return table.unique(clips)


def read_ms3_metadata(path: str | Path) -> list[AVSClip]:
    """Rows of AVSBench's ``ms3_meta_data.csv``: column 0 = name and the ``split`` column (category ``""``)."""
    table = _Table(path)
    split_at = table.column("split")
    return table.unique([AVSClip(table.field(line, fields, 0), table.split(line, fields, split_at), "", None, line)
                         for line, fields in table.rows])


def splits_from_avss_metadata(path: str | Path, label: Literal["v1s", "v1m"]) -> list[AVSClip]:
    """The S4 (``label="v1s"``) or MS3 (``"v1m"``) rows rebuilt from AVSBench-semantic's ``metadata.csv``: name =
    ``vid``, start = ``s_sec``, split = ``split``; for S4 the category is the original S4 name of the renamed
    ``a_obj`` (:data:`AVSS_TO_S4`), for MS3 ``""``. Rows of other labels (``v2``) are skipped."""
    if label not in AVSS_LABELS.values():
        raise ValueError(f"label must be one of {sorted(AVSS_LABELS.values())}, got {label!r}")
    table = _Table(path)
    at = {name: table.column(name) for name in ("vid", "s_sec", "a_obj", "split", "label")}
    clips = []
    for line, fields in table.rows:
        if table.field(line, fields, at["label"]) != label:
            continue
        name = table.field(line, fields, at["vid"])
        start = table.seconds(line, "s_sec", table.field(line, fields, at["s_sec"]))
        split = table.split(line, fields, at["split"])
        category = ""
        if label == "v1s":
            obj = table.field(line, fields, at["a_obj"])
            if obj not in AVSS_TO_S4:
                raise AnnotationError(table.path, line, f"a_obj {obj!r} of a v1s row has no S4 category "
                                                        f"(known: {', '.join(sorted(AVSS_TO_S4))})")
            category = AVSS_TO_S4[obj]
        clips.append(AVSClip(name, split, category, start, line))
    return table.unique(clips)


def read_avs_metadata(path: str | Path, setting: str) -> list[AVSClip]:
    """The clips of one setting from its native csv or from AVSBench-semantic's ``metadata.csv``, told apart by
    the header (``vid``, ``a_obj`` and ``label`` columns)."""
    check_setting(setting)
    if {"vid", "a_obj", "label"} <= set(_Table(path).lowered):
        return splits_from_avss_metadata(path, AVSS_LABELS[setting])
    return read_s4_metadata(path) if setting == "s4" else read_ms3_metadata(path)


def setting_folder(root: str | Path, setting: str) -> Path:
    """The folder that holds the setting's csv and data folder: ``root/Single-source`` (S4) or
    ``root/Multi-sources`` (MS3) when ``root`` is the official zip's ``avsbench_data/``, else ``root``."""
    check_setting(setting)
    nested = Path(root) / ZIP_FOLDERS[setting]
    return nested if nested.is_dir() else Path(root)


def metadata_path(root: str | Path, setting: str, metadata: str | Path | None = None) -> Path:
    """The csv to read: ``metadata`` (relative to ``root``, or absolute) if given, else the native csv."""
    if metadata is not None:
        return Path(root) / metadata
    return setting_folder(root, setting) / METADATA_FILES[setting]


@dataclass(frozen=True)
class AVSMedia:
    """The files of one clip: 5 frames, a mask per frame (None where the frame is not annotated), the wav."""

    frames: tuple[Path, ...]
    masks: tuple[Path | None, ...]
    wav: Path

    @classmethod
    def of(cls, media_root: str | Path, setting: str, clip: AVSClip) -> AVSMedia:
        """Where the native layout keeps ``clip``'s files under ``media_root``."""
        data = setting_folder(media_root, setting) / DATA_FOLDERS[setting]
        name, split = clip.name, clip.split
        steps = range(1, AVS_SEGMENTS + 1)
        if setting == "s4":
            folder = Path(split) / clip.category
            frames = [data / "visual_frames" / folder / name / f"{name}_{k}.png" for k in steps]
            masks = [data / "gt_masks" / folder / name / f"{name}_{k}.png" for k in steps]
            wav = data / "audio_wav" / folder / f"{name}.wav"
        else:
            frames = [data / "visual_frames" / name / f"{name}.mp4_{k}.png" for k in steps]
            masks = [data / "gt_masks" / split / name / f"{name}_{k}.png" for k in steps]
            wav = data / "audio_wav" / split / f"{name}.wav"
        # S4 train annotates frame 1 only (the official loader's ``mask_num = 1 if split == 'train' else 5``)
        annotated = 1 if setting == "s4" and split == "train" else AVS_SEGMENTS
        return cls(tuple(frames), tuple(m if k <= annotated else None for k, m in zip(steps, masks, strict=True)), wav)

    def paths(self) -> list[Path]:
        """Every file the clip needs: frames, the annotated frames' masks, the wav."""
        return [*self.frames, *(m for m in self.masks if m is not None), self.wav]
