"""Decode every AVSBench clip (S4 or MS3) once into a cache, as :func:`~avadapt.tasks.ave.prepare.prepare_ave`
does for AVE.

The same guarantees: resumable (a clip is done when its final file exists; files get their final name
only once complete), parallel in spawned processes, and every clip that cannot be read listed in
``bad_clips.tsv`` with the file at fault and the reason. Cache entries (:mod:`avadapt.data.cache`):
``<out>/<split>/<name>.safetensors`` holding frames uint8 (5, 3, S, S), fbank float16 (5, 1, F, L),
masks uint8 (5, S, S) and annotated uint8 (5,); ``cache.json`` records the dataset (``avs_s4`` or
``avs_ms3``), so one setting's cache is never read as the other's.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from avadapt.audio_front_ends import DEFAULT_AUDIO_FRONT_END, audio_front_end
from avadapt.data.base import SPLITS
from avadapt.data.cache import CacheSettings, clip_file, remove_stale_temporaries, save_cached_clip
from avadapt.data.fbank import FbankConfig
from avadapt.data.prepare import BadClip, PrepareSummary, decode_jobs, open_cache, summarise
from avadapt.errors import MediaError
from avadapt.tasks.avs.dataset import (
    AVS_SEGMENTS,
    MIN_AUDIO_SECONDS,
    AVSMedia,
    check_setting,
    decode_clip,
    metadata_path,
    read_avs_metadata,
)


def prepare_avs_clip(name: str, media: AVSMedia, target: Path, settings: CacheSettings) -> None:
    """Decode one clip's frames, masks and wav and write its cache file; :class:`MediaError` if bad."""
    clip = decode_clip(media, settings.frame_transform().cfg, settings.fbank)
    info = {"video_id": name, "source": media.wav.name}
    extra = {"masks": clip.masks, "annotated": clip.annotated.to(torch.uint8)}
    save_cached_clip(target, clip.frames, clip.audio, info, extra)


def _work_avs(job: tuple[str, AVSMedia, Path, CacheSettings]) -> tuple[str, BadClip | None]:
    """Process-pool entry: (name, None) on success, (name, the file at fault and why) for a bad clip.

    Only media failures make a clip bad; any other exception is a bug or a full disk and stops the run.
    """
    name, media, target, settings = job
    try:
        prepare_avs_clip(name, media, target, settings)
    except MediaError as err:
        return name, BadClip(name, err.path, err.problem)
    return name, None


def prepare_avs(
    root: str | Path,
    out: str | Path,
    setting: str = "s4",
    workers: int = 1,
    image_size: int = 224,
    fbank: FbankConfig | None = None,
    progress: bool = True,
    *,
    media_root: str | Path | None = None,
    crop_pct: float = 1.0,
    interpolation: str = "bicubic",
    metadata: str | Path | None = None,
) -> PrepareSummary:
    """Decode every clip the setting's metadata lists (all splits) into ``out``.

    root: the folder holding ``s4_meta_data.csv`` / ``ms3_meta_data.csv`` and the data folders, or the
    official ``avsbench_data/`` with ``Single-source/`` and ``Multi-sources/`` (see
    :mod:`avadapt.tasks.avs.dataset`); media is read from ``media_root`` (default ``root``) the same way.
    metadata: another csv listing the clips (relative to ``root`` or absolute), e.g. AVSBench-semantic's
    ``metadata.csv``.
    setting: ``"s4"`` or ``"ms3"``.
    out: cache folder; created if needed. If it already holds a ``cache.json`` with other settings
    (another setting, image size or fbank), a :class:`~avadapt.data.cache.CacheConfigError` says which.
    workers: processes decoding in parallel (1 = in this process); spawned, so a script calling this
    with ``workers > 1`` needs an ``if __name__ == "__main__":`` guard. Run one prepare per cache folder
    at a time.

    Returns a :class:`~avadapt.data.prepare.PrepareSummary` (also printed); failed clips are listed in
    ``bad_clips.tsv`` as name, the file at fault, reason.
    """
    check_setting(setting)
    start_time = time.perf_counter()
    root, out = Path(root), Path(out)
    media_root = Path(media_root) if media_root is not None else root
    clips = read_avs_metadata(metadata_path(root, setting, metadata), setting)
    settings = CacheSettings(
        image_size=image_size,
        crop_pct=crop_pct,
        interpolation=interpolation,
        num_segments=AVS_SEGMENTS,
        segment_seconds=1.0,
        min_seconds=MIN_AUDIO_SECONDS,
        fbank=fbank or audio_front_end(DEFAULT_AUDIO_FRONT_END).fbank,
        dataset=f"avs_{setting}",
    )
    open_cache(out, settings)
    for split in SPLITS:
        if (out / split).is_dir():
            remove_stale_temporaries(out / split)

    failed: list[BadClip] = []
    jobs = []
    skipped = 0
    for clip in clips:
        target, media = clip_file(out / clip.split, clip.name), AVSMedia.of(media_root, setting, clip)
        absent = [p for p in media.paths() if not p.is_file()]
        if target.exists():
            skipped += 1
        elif absent:
            more = f" (and {len(absent) - 1} more of its files)" if len(absent) > 1 else ""
            failed.append(BadClip(clip.name, absent[0], f"file not found{more}"))
        else:
            jobs.append((clip.name, media, target, settings))

    done = decode_jobs(jobs, workers, _work_avs, failed, unit="clip",
                       description=f"prepare AVSBench {setting.upper()}", progress=progress)
    return summarise(out, len(clips), done, skipped, failed, start_time, "prepare_avs")
