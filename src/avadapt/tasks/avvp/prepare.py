"""``avadapt prepare avvp``: decode the mp4 of every LLP video id once into a cache (:mod:`avadapt.data.prepare`),
one ``<out>/<id>.safetensors`` per id of the weak-label files found; resumable, bad clips listed in
``bad_clips.tsv``."""

from __future__ import annotations

from pathlib import Path

from avadapt.data.cache import CacheSettings, clip_file, save_cached_clip
from avadapt.data.fbank import FbankConfig, segment_fbank
from avadapt.data.media import read_clip
from avadapt.data.prepare import PrepareJob, PrepareSummary, run_prepare
from avadapt.data.transforms import as_video_tensor
from avadapt.tasks.avvp.dataset import LLPAnnotations, LLPDataset


def prepare_clip(job: PrepareJob, settings: CacheSettings) -> None:
    """Decode one mp4 and write its cache file; raises :class:`~avadapt.errors.MediaError` for a bad clip."""
    (media,) = job.media
    clip = read_clip(media, settings.num_segments, settings.segment_seconds, sample_rate=settings.fbank.sample_rate,
                     min_seconds=settings.min_seconds)
    frames = settings.frame_transform().geometry(as_video_tensor(clip.frames))  # (T, 3, S, S) uint8
    fbank = segment_fbank(clip.wave, settings.fbank, settings.num_segments, settings.segment_seconds)
    save_cached_clip(job.target, frames, fbank, {"video_id": job.video_id, "source": media.name,
                                                 "video_seconds": round(clip.video_seconds, 3),
                                                 "audio_seconds": round(clip.audio_seconds, 3)})


def prepare_llp(root: str | Path, out: str | Path, workers: int = 1, image_size: int = 224,
                fbank: FbankConfig | None = None, progress: bool = True, *, media_root: str | Path | None = None,
                crop_pct: float = 1.0, interpolation: str = "bicubic", crop_mode: str = "center",
                min_seconds: float | None = None) -> PrepareSummary:
    """Decode ``<media_root or root>/LLP_dataset/video/<id>.mp4`` of every video id in ``<root>``'s weak-label
    files into ``out`` with :func:`~avadapt.data.prepare.run_prepare`."""
    root, out = Path(root), Path(out)
    media_root = Path(media_root) if media_root is not None else root
    annotations = LLPAnnotations.load(root)
    video_ids = sorted({row.video_id for rows in annotations.weak.values() for row in rows})
    jobs = [PrepareJob(v, clip_file(out, v), tuple(LLPDataset.layout_paths(media_root, "mp4", v))) for v in video_ids]
    settings = LLPDataset.cache_settings(image_size, fbank, crop_pct, interpolation, min_seconds, crop_mode)
    return run_prepare(out, settings, jobs, prepare_clip, workers=workers, progress=progress,
                       description="prepare LLP", command="prepare_llp")
