"""``avadapt prepare avs``: decode every AVSBench clip (S4 or MS3) once into a cache (:mod:`avadapt.data.prepare`).

One ``<out>/<split>/<name>.safetensors`` per clip (its media and annotated frames depend on its split) holding
:func:`~avadapt.tasks.avs.dataset.decode_clip`'s tensors; ``cache.json`` records the dataset (``avs_s4`` or
``avs_ms3``), so one setting's cache is never read as the other's.
"""

from __future__ import annotations

from pathlib import Path

from avadapt.data.cache import CacheSettings, clip_file, save_cached_clip
from avadapt.data.fbank import FbankConfig
from avadapt.data.prepare import PrepareJob, PrepareSummary, run_prepare
from avadapt.tasks.avs.dataset import MIN_AUDIO_SECONDS, MS3Dataset, S4Dataset, decode_clip
from avadapt.tasks.avs.metadata import AVSMedia, metadata_path, read_avs_metadata


def prepare_avs_clip(job: PrepareJob, settings: CacheSettings) -> None:
    """Decode one clip's frames, masks and wav and write its cache file; :class:`MediaError` if bad."""
    tensors = decode_clip(job.spec, settings.frame_transform().cfg, settings.fbank)
    info = {"video_id": job.video_id, "source": job.spec.wav.name}
    save_cached_clip(job.target, tensors.pop("frames"), tensors.pop("fbank"), info, tensors)


def prepare_avs(root: str | Path, out: str | Path, setting: str = "s4", workers: int = 1,
                image_size: int = 224, fbank: FbankConfig | None = None, progress: bool = True, *,
                media_root: str | Path | None = None, crop_pct: float = 1.0, interpolation: str = "bicubic",
                crop_mode: str = "center", metadata: str | Path | None = None) -> PrepareSummary:
    """Decode every clip the setting's (``"s4"`` or ``"ms3"``) metadata lists, all splits, into ``out`` with
    :func:`~avadapt.data.prepare.run_prepare`; root, media_root, metadata: as
    :class:`~avadapt.tasks.avs.dataset.AVSDataset` reads them."""
    root, out = Path(root), Path(out)
    media_root = Path(media_root) if media_root is not None else root
    clips = read_avs_metadata(metadata_path(root, setting, metadata), setting)
    media = {clip: AVSMedia.of(media_root, setting, clip) for clip in clips}
    jobs = [PrepareJob(c.name, clip_file(out / c.split, c.name), tuple(m.paths()), m) for c, m in media.items()]
    dataset = S4Dataset if setting == "s4" else MS3Dataset
    settings = dataset.cache_settings(image_size, fbank, crop_pct, interpolation, MIN_AUDIO_SECONDS, crop_mode)
    return run_prepare(out, settings, jobs, prepare_avs_clip, workers=workers, progress=progress,
                       description=f"prepare AVSBench {setting.upper()}", command="prepare_avs")
