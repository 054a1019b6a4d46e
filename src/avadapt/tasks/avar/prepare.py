"""Decode every clip of an action-recognition dataset once into a cache (:mod:`avadapt.data.prepare`): one file per
clip of all splits (``<out>/<clip>.safetensors``, its T segments as :mod:`avadapt.tasks.avar.dataset` reads
them). Resumable; a clip that is missing, unreadable or shorter than one segment is listed in ``bad_clips.tsv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avadapt.data.cache import CacheSettings, clip_file, save_cached_clip
from avadapt.data.fbank import FbankConfig
from avadapt.data.prepare import PrepareJob, PrepareSummary, run_prepare
from avadapt.data.transforms import as_video_tensor
from avadapt.tasks.avar.dataset import RecognitionDataset, read_segments


def prepare_avar_clip(job: PrepareJob, settings: CacheSettings) -> None:
    """Read one clip's T segments and write its cache file; :class:`MediaError` for a bad clip."""
    frames, fbank, seconds = read_segments(job.media[0], settings.fbank, settings.num_segments)
    frames = settings.frame_transform().geometry(as_video_tensor(frames))  # (T, 3, S, S) uint8
    save_cached_clip(job.target, frames, fbank, {"clip": job.video_id, "seconds": round(seconds, 3)})


def prepare_avar(dataset: type[RecognitionDataset], root: str | Path, out: str | Path, workers: int = 1,
                 image_size: int = 224, fbank: FbankConfig | None = None, progress: bool = True, *,
                 media_root: str | Path | None = None, crop_pct: float = 1.0, interpolation: str = "bicubic",
                 crop_mode: str = "center", **list_options: Any) -> PrepareSummary:
    """Decode ``<media_root or root>/<clip>.mp4`` of every clip of ``dataset``'s lists in ``root`` (read with
    ``list_options``, as the dataset takes them) into ``out`` with :func:`~avadapt.data.prepare.run_prepare`."""
    root, out = Path(root), Path(out)
    media_root = Path(media_root) if media_root is not None else root
    clips = dataset.load_lists(root, **list_options).clips()
    jobs = [PrepareJob(c, clip_file(out, c), tuple(dataset.layout_paths(media_root, "mp4", c))) for c in clips]
    settings = dataset.cache_settings(image_size, fbank, crop_pct, interpolation, crop_mode=crop_mode)
    return run_prepare(out, settings, jobs, prepare_avar_clip, workers=workers, progress=progress,
                       description=f"prepare {dataset.title}", command="prepare_avar")
