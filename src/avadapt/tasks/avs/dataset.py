"""AVSBench-object (Zhou et al. ECCV 2022): S4 (single sound source) and MS3 (multiple sources).

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

Masks are binarised with ``> 0`` (robust to 0/1, 0/255 and palette encodings). A mask file with more
than two distinct pixel values (palette indices for palette images, colours for RGB) is not a binary
mask and is refused rather than thresholded: anti-aliased or JPEG-damaged masks would otherwise
silently grow or shrink objects. Frames take the evaluation geometry of the given transform (resize
to cover, centre crop); masks take the same geometry with nearest-neighbour resizing after
binarising, so they stay aligned and binary.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image

from avadapt.data.base import SPLITS, ClipDataset, register_dataset, seeded
from avadapt.data.cache import clip_file, load_cached_tensors
from avadapt.data.fbank import FbankConfig, segment_fbank
from avadapt.data.media import read_audio
from avadapt.data.transforms import VideoTransform, VideoTransformConfig, as_video_tensor
from avadapt.errors import AnnotationError, MediaError

AVS_SEGMENTS = 5  # AVSBench clips are 5 s, one frame and one mask per second
AVS_SETTINGS = ("s4", "ms3")
# Shortest wav accepted: 90 % of the clip, as read_clip's default for AVE; shorter ones are usually broken.
MIN_AUDIO_SECONDS = 0.9 * AVS_SEGMENTS

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
    "ambulance_siren": "emergency-car", "baby_laughter": "baby", "cap_gun_shooting": "gun",
    "cat_meowing": "cat",
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
AVSS_COLUMNS = ("vid", "s_sec", "a_obj", "split", "label")


def check_setting(setting: str) -> None:
    if setting not in AVS_SETTINGS:
        raise ValueError(f"unknown AVSBench setting {setting!r}; choose from {list(AVS_SETTINGS)}")


# --- metadata ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AVSClip:
    """One metadata row.

    name: the clip's name (S4: an 11-character YouTube id; MS3: the id plus a ``_k`` suffix).
    category: the S4 category (one of :data:`S4_CATEGORIES`); ``""`` for MS3, whose native csv has none.
    start: trim start in seconds within the source video where the file says (S4 ``start``, AVSS ``s_sec``),
    else None; informational only. line: 1-based line in the file it was read from.
    """

    name: str
    split: str
    category: str
    start: float | None
    line: int


class _Table:
    """A comma-separated file with a header; every error names the file and the line.

    A UTF-8 byte-order mark and Windows line endings are tolerated; fields are stripped of spaces; blank lines
    are skipped; a row with more fields than the header is refused.
    """

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
        if index >= len(fields) or not fields[index]:
            name = self.header[index] if index < len(self.header) else f"column {index + 1}"
            raise AnnotationError(self.path, line, f"missing field {name!r} (column {index + 1}): "
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
    """Rows of AVSBench's ``s4_meta_data.csv``: column 0 = name, column 2 = category and the ``split``
    column, as the official loader reads them (``start``, column 1, is kept when the header names it so).

    Raises :class:`~avadapt.errors.AnnotationError` naming the file and line for a missing field, a split other
    than train/val/test, a category not in :data:`S4_CATEGORIES`, or a name listed twice.
    """
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
    """Rows of AVSBench's ``ms3_meta_data.csv``: column 0 = name and the ``split`` column (category ``""``).

    Raises :class:`~avadapt.errors.AnnotationError` naming the file and line for a missing field, a split other
    than train/val/test, or a name listed twice.
    """
    table = _Table(path)
    split_at = table.column("split")
    return table.unique([AVSClip(table.field(line, fields, 0), table.split(line, fields, split_at), "", None, line)
                         for line, fields in table.rows])


def splits_from_avss_metadata(path: str | Path, label: Literal["v1s", "v1m"]) -> list[AVSClip]:
    """The S4 (``label="v1s"``) or MS3 (``"v1m"``) rows rebuilt from AVSBench-semantic's ``metadata.csv``.

    name = ``vid``, start = ``s_sec``, split = ``split``; for S4 the category is the original S4 name of the
    renamed ``a_obj`` (:data:`AVSS_TO_S4`), for MS3 ``""``. Rows of other labels (``v2``) are skipped.
    Raises :class:`~avadapt.errors.AnnotationError` naming the file and line for a missing field, an ``a_obj``
    with no S4 category, a bad split or a name listed twice.
    """
    if label not in AVSS_LABELS.values():
        raise ValueError(f"label must be one of {sorted(AVSS_LABELS.values())}, got {label!r}")
    table = _Table(path)
    at = {name: table.column(name) for name in AVSS_COLUMNS}
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


def is_avss_metadata(path: str | Path) -> bool:
    """Whether a csv is AVSBench-semantic's ``metadata.csv`` (header with ``vid``, ``a_obj``, ``label``)."""
    return {"vid", "a_obj", "label"} <= set(_Table(path).lowered)


def read_avs_metadata(path: str | Path, setting: str) -> list[AVSClip]:
    """The clips of one setting from its native csv or AVSBench-semantic's ``metadata.csv`` (by header)."""
    check_setting(setting)
    if is_avss_metadata(path):
        return splits_from_avss_metadata(path, AVSS_LABELS[setting])
    return read_s4_metadata(path) if setting == "s4" else read_ms3_metadata(path)


def setting_folder(root: str | Path, setting: str) -> Path:
    """The folder that holds the setting's csv and data folder: ``root/Single-source`` (S4) or
    ``root/Multi-sources`` (MS3) when ``root`` is the official zip's ``avsbench_data/``, else ``root``."""
    check_setting(setting)
    root = Path(root)
    nested = root / ZIP_FOLDERS[setting]
    return nested if nested.is_dir() else root


def metadata_path(root: str | Path, setting: str, metadata: str | Path | None = None) -> Path:
    """The csv to read: ``metadata`` (relative to ``root``, or absolute) if given, else the native csv."""
    if metadata is not None:
        return Path(root) / metadata
    return setting_folder(root, setting) / METADATA_FILES[setting]


# --- media -------------------------------------------------------------------------------------------


def annotated_frames(setting: str, split: str) -> tuple[bool, ...]:
    """Which of the 5 frames have a ground-truth mask: S4 train only the first (the official loader's
    ``mask_num = 1 if split == 'train' else 5``); S4 val/test and every MS3 split all five."""
    check_setting(setting)
    if setting == "s4" and split == "train":
        return (True,) + (False,) * (AVS_SEGMENTS - 1)
    return (True,) * AVS_SEGMENTS


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
        annotated = annotated_frames(setting, split)
        return cls(tuple(frames), tuple(m if a else None for m, a in zip(masks, annotated, strict=True)), wav)

    @property
    def annotated(self) -> tuple[bool, ...]:
        return tuple(mask is not None for mask in self.masks)

    def paths(self) -> list[Path]:
        """Every file the clip needs: frames, the annotated frames' masks, the wav."""
        return [*self.frames, *(m for m in self.masks if m is not None), self.wav]


def _open_image(path: Path) -> Image.Image:
    """A fully decoded image; :class:`~avadapt.errors.MediaError` for a missing, empty or undecodable file."""
    if not path.is_file():
        raise MediaError(path, "file not found")
    if path.stat().st_size == 0:
        raise MediaError(path, "empty file (0 bytes)")
    try:
        image = Image.open(path)
    except OSError as err:  # PIL's UnidentifiedImageError is an OSError
        raise MediaError(path, f"cannot decode image: {err}") from err
    try:
        image.load()
    except OSError as err:  # truncated or corrupt pixel data
        image.close()
        raise MediaError(path, f"cannot decode image: {err}") from err
    return image


def read_frames(paths: Sequence[Path]) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames from image files of one size."""
    frames = []
    for path in paths:
        with _open_image(path) as image:
            frames.append(np.asarray(image.convert("RGB")))
    if len({f.shape for f in frames}) != 1:
        sizes = ", ".join(f"{p.name}: {f.shape[1]}×{f.shape[0]}" for p, f in zip(paths, frames, strict=True))
        raise MediaError(paths[0].parent, f"frames differ in size ({sizes})")
    return np.stack(frames)


def read_mask(path: Path) -> np.ndarray:
    """(H, W) uint8 in {0, 1}: ``pixel > 0`` of a binary mask image (any mode; alpha ignored).

    A file with more than two distinct values (palette indices of a palette image, colours of an RGB
    one) is not a binary mask: :class:`~avadapt.errors.MediaError`, naming it.
    """
    with _open_image(path) as image:
        values = np.asarray(image)
        if image.mode in ("LA", "PA", "RGBA"):
            values = values[..., :-1]  # drop alpha
    if values.ndim == 3 and values.shape[-1] == 1:
        values = values[..., 0]
    pixels = values.reshape(-1, values.shape[-1]) if values.ndim == 3 else values.reshape(-1, 1)
    levels = np.unique(pixels, axis=0)
    if len(levels) > 2:
        raise MediaError(path, f"not a binary mask: {len(levels)} distinct pixel values (at most 2 expected; "
                               "foreground is every value > 0)")
    foreground = values > 0 if values.ndim == 2 else (values > 0).any(axis=-1)
    return foreground.astype(np.uint8)


def read_masks(media: AVSMedia, size: tuple[int, int]) -> np.ndarray:
    """(T, H, W) uint8 in {0, 1}: each annotated frame's mask, zeros for the others; every mask must have the
    frames' ``size`` (H, W)."""
    masks = np.zeros((len(media.masks), *size), np.uint8)
    for t, path in enumerate(media.masks):
        if path is None:
            continue
        mask = read_mask(path)
        if mask.shape != size:
            raise MediaError(path, f"mask is {mask.shape[1]}×{mask.shape[0]} but its frame "
                                   f"{media.frames[t].name} is {size[1]}×{size[0]}")
        masks[t] = mask
    return masks


def read_wave(path: Path, sample_rate: int) -> np.ndarray:
    """The clip's 5 s of mono audio at ``sample_rate``, cut or zero-padded to exactly 5 s.

    A wav with less than :data:`MIN_AUDIO_SECONDS` is a :class:`~avadapt.errors.MediaError` (a broken
    file more likely than a real clip); a slightly short one is padded with silence.
    """
    audio = read_audio(path, sample_rate)
    if len(audio) < MIN_AUDIO_SECONDS * sample_rate:
        raise MediaError(path, f"too short: {len(audio) / sample_rate:.2f} s of audio, at least "
                               f"{MIN_AUDIO_SECONDS:.2f} s needed for {AVS_SEGMENTS} segments of 1 s")
    wave = np.zeros(AVS_SEGMENTS * sample_rate, np.float32)
    wave[: len(audio)] = audio[: len(wave)]
    return wave


def decode_clip(media: AVSMedia, cfg: VideoTransformConfig, fbank: FbankConfig) -> dict[str, torch.Tensor]:
    """Read one clip's files into the tensors its cache file holds: ``frames`` (T, 3, S, S) uint8 and ``masks``
    (T, S, S) uint8 in {0, 1} through the evaluation resize + centre crop of ``cfg`` (never its training crop:
    masks must follow the frames exactly; masks binarised first, then resized nearest), ``fbank``
    (T, 1, F, L), one image per second of the wav (:func:`segment_fbank`: windows of ``fbank.window_seconds``
    starting at each second, zeros past the end of the 5 s), and ``annotated`` (T,) uint8.

    Raises :class:`~avadapt.errors.MediaError` naming the file for a missing, empty or undecodable file,
    frames of different sizes, a mask of another size than its frame or one that is not binary, or a
    too short wav.
    """
    frame_geometry = VideoTransform(dataclasses.replace(cfg, train=False))
    mask_geometry = VideoTransform(dataclasses.replace(cfg, train=False, interpolation="nearest"))
    frames = read_frames(media.frames)  # (T, H, W, 3)
    masks = read_masks(media, frames.shape[1:3])  # (T, H, W)
    wave = read_wave(media.wav, fbank.sample_rate)
    return {
        "frames": frame_geometry.geometry(as_video_tensor(frames)),  # (T, 3, S, S)
        "fbank": segment_fbank(wave, fbank, AVS_SEGMENTS, 1.0),  # (T, 1, F, L)
        "masks": mask_geometry.geometry(torch.from_numpy(masks)[:, None])[:, 0],  # (T, S, S)
        "annotated": torch.tensor(media.annotated, dtype=torch.uint8),  # (T,)
    }


# --- the dataset -------------------------------------------------------------------------------------

class AVSDataset(ClipDataset):
    """AVSBench clips of one split, each read as 5 frames, 5 fbank images and 5 masks; use the registered
    subclasses :class:`S4Dataset` (``avs_s4``) and :class:`MS3Dataset` (``avs_ms3``).

    Item: ``{"video": (5, 3, H, W) float, "audio": (5, 1, F, L) float, "masks": (5, H, W) float32 in
    {0, 1}, "annotated": (5,) bool, "meta": {"video_id": str, "category": str, "split": str}}``, where
    (H, W) is the transform's input size; frames without a ground-truth mask (S4 train: frames 2–5) have
    ``annotated`` False and an all-zero mask. Batch items with :func:`~avadapt.data.base.collate_av`.

    source: ``"native"`` (the layout in the module docstring, under ``media_root``), ``"cache"``
    (``cache_dir`` from :func:`~avadapt.tasks.avs.prepare.prepare_avs`), or ``"auto"``: the cache if
    ``cache_dir`` is given, else native. The transform's evaluation geometry and normalisation are used; a
    clip's media is missing when a frame, an annotated frame's mask or the wav is. The other options are
    :class:`~avadapt.data.base.ClipDataset`'s.
    augment: training: one horizontal flip with probability 0.5 per clip, of frames and masks together,
    drawn from the item's generator (see :meth:`__getitem__`).
    metadata: the csv listing the clips (relative to ``root`` or absolute): the setting's native
    ``s4_meta_data.csv`` / ``ms3_meta_data.csv`` by default, or AVSBench-semantic's ``metadata.csv``.

    A clip whose files cannot be decoded raises :class:`~avadapt.errors.MediaError` naming the file when
    its item is loaded; :func:`~avadapt.tasks.avs.prepare.prepare_avs` finds all such clips up front and
    lists them in ``bad_clips.tsv``.
    """

    task = "avs"
    num_segments = AVS_SEGMENTS
    train_augmentation = None  # the dataset flips frames and masks itself
    layouts = ("native",)
    clip_noun = item_noun = "clip"
    setting: ClassVar[str]
    flip_probability: ClassVar[float] = 0.5

    @classmethod
    def prepare(cls, root: str | Path, out: str | Path, **settings: Any) -> Any:
        from avadapt.tasks.avs.prepare import prepare_avs

        return prepare_avs(root, out, setting=cls.setting, **settings)

    @classmethod
    def synthesize(cls, out: str | Path, clips: int, seed: int, num_classes: int | None = None) -> Any:
        from avadapt.tasks.avs.synth import synthesize_avs

        return synthesize_avs(out, clips=clips, seed=seed, setting=cls.setting, num_classes=num_classes)

    def __init__(self, root: str | Path, split: str = "train", *, source: str = "auto",
                 metadata: str | Path | None = None, **common: Any):
        if getattr(type(self), "setting", None) not in AVS_SETTINGS:
            raise TypeError(f"{type(self).__name__} names no AVSBench setting; use S4Dataset or MS3Dataset")
        super().__init__(root, split, **common)
        self.metadata = metadata_path(self.root, self.setting, metadata)
        clips = [c for c in read_avs_metadata(self.metadata, self.setting) if c.split == split]
        self._by_name = {clip.name: clip for clip in clips}
        self.clips = self.keep_with_media(source, clips, lambda clip: clip.name)

    def media(self, clip: AVSClip) -> AVSMedia:
        """The native files of one clip."""
        return AVSMedia.of(self.media_root, self.setting, clip)

    def cache_file(self, name: str) -> Path:
        """``<cache_dir>/<split>/<name>.safetensors``."""
        return clip_file(self.cache_dir / self.split, name)

    def media_paths(self, name: str) -> list[Path]:
        return self.media(self._by_name[name]).paths()

    def __len__(self) -> int:
        return len(self.clips)

    def load_clip(self, clip: AVSClip) -> dict[str, torch.Tensor]:
        """One clip's tensors as its cache file holds them (:func:`decode_clip`)."""
        if self.source == "native":
            return decode_clip(self.media(clip), self.transform.cfg, self.fbank)
        return load_cached_tensors(self.cache_file(clip.name))

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """One clip by index, or by ``(index, seed)``: its flip then comes from that seed alone
        (:func:`~avadapt.data.base.seeded`)."""
        index, _, generator = seeded(key)
        clip = self.clips[index]
        tensors = self.load_clip(clip)
        frames, masks = tensors["frames"], tensors["masks"]
        if self.augment and float(torch.rand((), generator=generator)) < self.flip_probability:
            frames, masks = frames.flip(-1), masks.flip(-1)  # (…, W): mirrored together
        return {
            "video": self.transform.normalize(frames),  # (T, 3, H, W)
            "audio": tensors["fbank"].float(),  # (T, 1, F, L)
            "masks": masks.float(),  # (T, H, W)
            "annotated": tensors["annotated"].bool(),  # (T,)
            "meta": {"video_id": clip.name, "category": clip.category, "split": clip.split},
        }


@register_dataset
class S4Dataset(AVSDataset):
    """AVSBench S4: one sounding object per clip, 23 categories; S4 train annotates only the first frame."""

    name = "avs_s4"
    setting = "s4"
    title = "AVSBench S4"


@register_dataset
class MS3Dataset(AVSDataset):
    """AVSBench MS3: several sounding objects per clip; all 5 frames annotated in every split."""

    name = "avs_ms3"
    setting = "ms3"
    title = "AVSBench MS3"
