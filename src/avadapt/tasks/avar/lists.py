"""The annotation files of audio-visual action recognition, read as label-indexed clip lists.

* **Kinetics-Sounds** has no canonical split file; the lists of OGM-GE (Peng et al., CVPR 2022,
  ``data/KineticSound/my_train.txt`` / ``my_test.txt``: 14,799 / 2,597 rows, 31 classes) are one common split.
  A row is ``clip_id,seconds,label``: the clip's media name, its length and its label index, e.g.
  ``--4-0ihtnBU_000058_000068,10,4``. The training list names clips ``{youtube_id}_{start:06d}_{end:06d}``,
  the test list ``{youtube_id}_{start}`` (``-3Mwkq-7TV4_2,10,23``); both are read, and a YouTube id may hold
  ``_`` itself. The class names are not part of those lists; a class-name file (one name a line, in index order)
  may give them, and then a label may be written as its name too.
* **VGGSound** (Chen et al., ICASSP 2020): the official ``vggsound.csv``, no header,
  ``YouTubeID,start_seconds,label,split`` with split ``train`` or ``test`` and 309 labels (quoted where they hold a
  comma). Clips are named ``{YouTubeID}_{start_seconds}`` as OGM-GE's loader names them; another naming (the
  zero-padded ``{ytid}_{start:06d}`` of some releases) is a format string away.

* **A folder of clips** (``avar_folder``, e.g. a pretraining corpus): ``labels.csv`` with rows ``clip,label`` or
  ``clip,label,split`` (split ``train``, ``val`` or ``test``; ``train`` when absent), an optional header row
  ``clip,label[,split]``; labels are class names, the classes taken in first-seen order unless a class-name file
  orders them.

A label field may list several labels separated by ``;`` (a multi-label list). Rows are keyed by clip name: a
clip listed twice, in one list or in two splits, is an error naming both places.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from avadapt.errors import AnnotationError, OptionError

KINETICS_SOUNDS_FIELDS = ("clip_id", "seconds", "label")
VGGSOUND_FIELDS = ("YouTubeID", "start_seconds", "label", "split")
VGGSOUND_SPLITS = ("train", "test")
FOLDER_FIELDS = ("clip", "label", "split")
FOLDER_SPLITS = ("train", "val", "test")
LABEL_SEPARATOR = ";"
# the two clip-name styles of the Kinetics-Sounds lists; anything else is a clip name without a start
_START_END = re.compile(r"^(?P<video>.+)_(?P<start>\d{6})_(?P<end>\d{6})$")
_START = re.compile(r"^(?P<video>.+)_(?P<start>\d+)$")
_INDEX = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class ClipRow:
    """One clip of a list: its media name, where it comes from, its labels and the row it was read from."""

    clip: str  # the clip's media name: ``<media_root>/<clip>.mp4``
    video_id: str  # the YouTube id the clip is cut from (the whole name when the name says nothing else)
    start: float | None  # seconds into that video, where the name or the row says
    labels: tuple[int, ...]  # class indices: one, or several in a multi-label list
    path: Path  # the file the row was read from
    line: int  # its 1-based line there

    @property
    def where(self) -> str:
        """``file:line`` of the row, as error messages name it."""
        return f"{self.path}:{self.line}"


def check_clip_name(clip: str, path: Path, line: int) -> None:
    """A clip name is a file name in the media folder: no folder separator, no leading dot."""
    if "/" in clip or "\\" in clip or clip.startswith("."):
        raise AnnotationError(path, line, f"clip name {clip!r} cannot name a file (a separator or a leading dot)")


def split_clip_name(clip: str) -> tuple[str, float | None]:
    """(YouTube id, start seconds) of a Kinetics-Sounds clip name in either style; (name, None) otherwise."""
    for pattern in (_START_END, _START):
        match = pattern.match(clip)
        if match:
            return match["video"], float(match["start"])
    return clip, None


def read_class_names(path: str | Path) -> list[str]:
    """The class names of a class-name file, one a line in label order (blank lines skipped); a name listed twice is
    an :class:`AnnotationError` naming both lines."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, None, "class-name file not found")
    names: dict[str, int] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        name = raw.strip()
        if not name:
            continue
        if name in names:
            raise AnnotationError(path, number, f"class {name!r} is listed twice (first on line {names[name]})")
        names[name] = number
    if not names:
        raise AnnotationError(path, None, "no class names")
    return list(names)


def parse_labels(text: str, classes: Sequence[str] | None, path: Path, line: int) -> tuple[int, ...]:
    """The label indices of one label field: indices, or class names where ``classes`` is given, separated by
    ``;``. An index outside ``0..len(classes) − 1``, a negative one, an unknown name or an empty entry is an
    :class:`AnnotationError` naming the row."""
    index = {name: k for k, name in enumerate(classes)} if classes is not None else {}
    labels: list[int] = []
    for part in (p.strip() for p in text.split(LABEL_SEPARATOR)):
        if not part:
            raise AnnotationError(path, line, f"empty label in {text!r}")
        if _INDEX.fullmatch(part):
            k = int(part)
            if k < 0 or (classes is not None and k >= len(classes)):
                known = f"{len(classes)} classes, 0..{len(classes) - 1}" if classes is not None else "indices ≥ 0"
                raise AnnotationError(path, line, f"label index {k} is out of range ({known})")
        elif part in index:
            k = index[part]
        elif classes is None:
            raise AnnotationError(path, line, f"label {part!r} is not an index, and no class-name file names the "
                                              "classes")
        else:
            raise AnnotationError(path, line, f"unknown label {part!r}: not one of the {len(classes)} class names")
        if k in labels:
            raise AnnotationError(path, line, f"label {part!r} is given twice")
        labels.append(k)
    return tuple(labels)


def _csv_rows(path: Path, kind: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank, non-``#`` row of a comma-separated file (quotes honoured, a UTF-8
    byte-order mark and Windows line endings tolerated)."""
    if not path.is_file():
        raise AnnotationError(path, None, f"{kind} not found")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    rows = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            fields = next(csv.reader([raw]))
        except csv.Error as error:
            raise AnnotationError(path, number, f"not a comma-separated row ({error}): {raw!r}") from None
        rows.append((number, [f.strip() for f in fields]))
    return rows


def _check_fields(path: Path, number: int, fields: list[str], names: tuple[str, ...]) -> None:
    """Exactly ``len(names)`` fields, none of them empty."""
    layout = ",".join(names)
    if len(fields) != len(names):
        raise AnnotationError(path, number, f"expected {len(names)} comma-separated fields ({layout}), found "
                                            f"{len(fields)}: {','.join(fields)!r}")
    empty = [name for name, value in zip(names, fields) if not value]
    if empty:
        raise AnnotationError(path, number, f"missing {', '.join(empty)} ({layout}): {','.join(fields)!r}")


def read_label_list(path: str | Path, classes: Sequence[str] | None = None) -> list[ClipRow]:
    """The rows of a Kinetics-Sounds style list, ``clip_id,seconds,label`` (no header). ``classes``: the class
    names, for range checks and labels written as names (None: labels are indices ≥ 0). A row with another number
    of fields, an empty field, a length that is not a positive number, a bad label or a clip listed twice is an
    :class:`AnnotationError` naming the row."""
    path = Path(path)
    rows: list[ClipRow] = []
    first_line: dict[str, int] = {}
    for number, fields in _csv_rows(path, "clip list"):
        _check_fields(path, number, fields, KINETICS_SOUNDS_FIELDS)
        clip, seconds_text, label_text = fields
        try:
            seconds = float(seconds_text)
        except ValueError:
            seconds = float("nan")
        if not seconds > 0:
            raise AnnotationError(path, number, f"seconds must be a positive number, got {seconds_text!r}")
        if clip in first_line:
            raise AnnotationError(path, number, f"clip {clip!r} is listed twice (first on line {first_line[clip]})")
        check_clip_name(clip, path, number)
        first_line[clip] = number
        video_id, start = split_clip_name(clip)
        rows.append(ClipRow(clip, video_id, start, parse_labels(label_text, classes, path, number), path, number))
    return rows


def read_vggsound_csv(path: str | Path, classes: Sequence[str] | None = None, clip_name: str = "{ytid}_{start}"
                      ) -> tuple[list[str], dict[str, list[ClipRow]]]:
    """VGGSound's ``vggsound.csv``: (class names, rows per split). ``classes``: the class names in label order
    (None: the csv's labels sorted, the order most VGGSound code uses). ``clip_name``: how a clip's media is named,
    a format string of ``ytid`` and ``start`` (an int: ``"{ytid}_{start:06d}"`` pads it). A row with another number
    of fields, an empty field, a start that is not a whole number of seconds ≥ 0, a split other than train or test,
    an unknown label or a clip listed twice is an :class:`AnnotationError` naming the row."""
    path = Path(path)
    parsed = []
    for number, fields in _csv_rows(path, "VGGSound csv"):
        _check_fields(path, number, fields, VGGSOUND_FIELDS)
        ytid, start_text, label, split = fields
        if not start_text.isdigit():
            raise AnnotationError(path, number, f"start_seconds must be a whole number ≥ 0, got {start_text!r}")
        if split not in VGGSOUND_SPLITS:
            raise AnnotationError(path, number, f"split must be one of {VGGSOUND_SPLITS}, got {split!r}")
        parsed.append((number, ytid, int(start_text), label, split))
    if not parsed:
        raise AnnotationError(path, None, "no rows")
    names = list(classes) if classes is not None else sorted({label for _, _, _, label, _ in parsed})
    index = {name: k for k, name in enumerate(names)}
    splits: dict[str, list[ClipRow]] = {split: [] for split in VGGSOUND_SPLITS}
    first_line: dict[str, int] = {}
    for number, ytid, start, label, split in parsed:
        if label not in index:
            raise AnnotationError(path, number, f"unknown label {label!r}: not one of the {len(names)} class names")
        try:
            clip = clip_name.format(ytid=ytid, start=start)
        except (KeyError, IndexError, ValueError) as error:
            raise AnnotationError(path, None, f"clip_name {clip_name!r} cannot name a clip: {error}") from None
        if clip in first_line:
            raise AnnotationError(path, number, f"clip {clip!r} is listed twice (first on line {first_line[clip]})")
        check_clip_name(clip, path, number)
        first_line[clip] = number
        splits[split].append(ClipRow(clip, ytid, float(start), (index[label],), path, number))
    return names, splits


def read_folder_labels(path: str | Path, classes: Sequence[str] | None = None
                       ) -> tuple[list[str], dict[str, list[ClipRow]]]:
    """A clip folder's ``labels.csv``: (class names, rows per split present). ``classes``: the class names in label
    order (None: the labels in the order the file first names them). A row with an empty label is an error: an
    unlabelled clip has nothing to be trained towards. So is a row with other than 2 or 3 fields, an empty clip
    name, an unknown split or label, or a clip listed twice; each an :class:`AnnotationError` naming the row."""
    path = Path(path)
    rows = _csv_rows(path, "clip label file")
    if rows and [field.lower() for field in rows[0][1]] in (list(FOLDER_FIELDS[:2]), list(FOLDER_FIELDS)):
        rows = rows[1:]  # header
    if not rows:
        raise AnnotationError(path, None, "no rows")
    parsed = []
    for number, fields in rows:
        if len(fields) not in (2, 3):
            raise AnnotationError(path, number, f"expected clip,label or clip,label,split, found {len(fields)} "
                                                f"fields: {','.join(fields)!r}")
        clip, label, split = (*fields, "train")[:3]
        if not clip:
            raise AnnotationError(path, number, f"empty clip name: {','.join(fields)!r}")
        if not label:
            raise AnnotationError(path, number, f"clip {clip!r} has no label; label every clip, or leave its row out")
        if split not in FOLDER_SPLITS:
            raise AnnotationError(path, number, f"split must be one of {FOLDER_SPLITS}, got {split!r}")
        check_clip_name(clip, path, number)
        parsed.append((number, clip, label, split))
    if classes is None:
        classes = list(dict.fromkeys(part.strip() for _, _, label, _ in parsed for part in label.split(LABEL_SEPARATOR)
                                     if part.strip()))
    splits: dict[str, list[ClipRow]] = {}
    first_line: dict[str, int] = {}
    for number, clip, label, split in parsed:
        if clip in first_line:
            raise AnnotationError(path, number, f"clip {clip!r} is listed twice (first on line {first_line[clip]})")
        first_line[clip] = number
        video_id, start = split_clip_name(clip)
        labels = parse_labels(label, classes, path, number)
        splits.setdefault(split, []).append(ClipRow(clip, video_id, start, labels, path, number))
    return list(classes), splits


def check_disjoint(splits: Mapping[str, Sequence[ClipRow]]) -> None:
    """A clip in two splits would be trained on and tested on: an :class:`AnnotationError` naming both rows."""
    seen: dict[str, ClipRow] = {}
    for rows in splits.values():
        for row in rows:
            if row.clip in seen:
                raise AnnotationError(row.path, row.line, f"clip {row.clip!r} is also listed at {seen[row.clip].where}")
        for row in rows:
            seen[row.clip] = row


def hold_out(rows: Sequence[ClipRow], fraction: float) -> tuple[list[ClipRow], list[ClipRow]]:
    """(rest, held out): ``fraction`` of each class's rows (by first label; at least one from two rows up), chosen
    by a hash of the clip name rather than the row order, so that the same list gives the same validation split on
    every machine, whatever order its rows come in. The lists keep their order."""
    if not 0 <= fraction < 1:
        raise OptionError(f"val_fraction, the share of the training rows held out for validation, must lie in [0, 1), "
                          f"got {fraction}")
    by_class: dict[int, list[ClipRow]] = {}
    for row in rows:
        by_class.setdefault(row.labels[0], []).append(row)
    chosen: set[str] = set()
    for members in by_class.values():
        count = round(fraction * len(members))
        if fraction > 0 and len(members) >= 2:
            count = max(count, 1)
        ranked = sorted(members, key=lambda row: hashlib.sha1(row.clip.encode()).hexdigest())
        chosen.update(row.clip for row in ranked[:count])
    return [r for r in rows if r.clip not in chosen], [r for r in rows if r.clip in chosen]
