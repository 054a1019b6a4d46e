"""``avadapt prepare ave``: decode the mp4 of every AVE video id once into a cache, resumably, in parallel."""

from __future__ import annotations

import time
from pathlib import Path

import av
from tqdm.auto import tqdm

from avadapt.audio_front_ends import DEFAULT_AUDIO_FRONT_END, audio_front_end
from avadapt.data.cache import CacheSettings, clip_file, save_cached_clip
from avadapt.data.fbank import FbankConfig, segment_fbank
from avadapt.data.media import read_clip
from avadapt.data.prepare import BadClip, PrepareSummary, open_cache, run_jobs, write_bad_clips
from avadapt.data.transforms import as_video_tensor
from avadapt.errors import MediaError
from avadapt.tasks.ave.dataset import AVEAnnotations


def prepare_clip(media: Path, target: Path, settings: CacheSettings) -> None:
    """Decode one mp4 and write its cache file; raises :class:`MediaError` for a bad clip."""
    clip = read_clip(
        media, settings.num_segments, settings.segment_seconds,
        sample_rate=settings.fbank.sample_rate, min_seconds=settings.min_seconds,
    )  # fmt: skip
    frames = settings.frame_transform().geometry(as_video_tensor(clip.frames))  # (T, 3, S, S) uint8
    fbank = segment_fbank(clip.wave, settings.fbank, settings.num_segments, settings.segment_seconds)
    info = {
        "video_id": target.stem,
        "source": media.name,
        "video_seconds": round(clip.video_seconds, 3),
        "audio_seconds": round(clip.audio_seconds, 3),
    }
    save_cached_clip(target, frames, fbank, info)


def _work(job: tuple[str, Path, Path, CacheSettings]) -> tuple[str, str | None]:
    """Process-pool entry: (video_id, None) on success, (video_id, reason) for a bad clip.

    Only media failures make a clip "bad"; any other exception is a bug or a full disk and stops
    the run (finished clips stay cached).
    """
    video_id, media, target, settings = job
    try:
        prepare_clip(media, target, settings)
    except MediaError as err:
        return video_id, err.problem
    except av.error.FFmpegError as err:  # an FFmpeg failure read_clip did not anticipate: still the clip's
        return video_id, f"FFmpeg error: {err}"
    return video_id, None


def prepare_ave(
    root: str | Path,
    out: str | Path,
    workers: int = 1,
    image_size: int = 224,
    fbank: FbankConfig | None = None,
    progress: bool = True,
    *,
    media_root: str | Path | None = None,
    crop_pct: float = 1.0,
    interpolation: str = "bicubic",
    min_seconds: float | None = None,
    annotations: str = "Annotations.txt",
) -> PrepareSummary:
    """Decode the mp4 of every video id in ``<root>/Annotations.txt`` into ``out``.

    root: AVE annotation folder; media is read from ``<media_root or root>/AVE/<id>.mp4``.
    out: cache folder; created if needed. If it already holds a ``cache.json`` with other settings,
    a :class:`~avadapt.data.cache.CacheConfigError` says which, rather than mixing two settings.
    workers: processes decoding in parallel (1 = in this process). They are spawned, so a script
    calling this with ``workers > 1`` needs an ``if __name__ == "__main__":`` guard. Run one
    prepare per cache folder at a time: a run starts by deleting temporary files it finds there.

    Returns a :class:`PrepareSummary` (also printed): clips written, already cached, failed (and
    written to ``bad_clips.tsv`` as video_id, path, reason), and the throughput in clips/s.
    """
    start_time = time.perf_counter()
    root, out = Path(root), Path(out)
    media_root = Path(media_root) if media_root is not None else root
    table = AVEAnnotations.load(root, annotations)
    video_ids = sorted({event.video_id for event in table.events})
    settings = CacheSettings(
        image_size=image_size,
        crop_pct=crop_pct,
        interpolation=interpolation,
        num_segments=table.num_segments,
        min_seconds=min_seconds,
        fbank=fbank or audio_front_end(DEFAULT_AUDIO_FRONT_END).fbank,
    )

    open_cache(out, settings)

    failed: list[BadClip] = []
    jobs = []
    skipped = 0
    for video_id in video_ids:
        target, media = clip_file(out, video_id), media_root / "AVE" / f"{video_id}.mp4"
        if target.exists():
            skipped += 1
        elif not media.is_file():
            failed.append(BadClip(video_id, media, "file not found"))
        else:
            jobs.append((video_id, media, target, settings))

    media_of = {job[0]: job[1] for job in jobs}
    done = 0
    with tqdm(total=len(jobs), unit="clip", desc="prepare AVE", disable=not progress) as bar:
        for video_id, reason in run_jobs(jobs, workers, work=_work):
            if reason is None:
                done += 1
            else:
                failed.append(BadClip(video_id, media_of[video_id], reason))
            bar.update(1)

    write_bad_clips(out, failed)
    summary = PrepareSummary(out, len(video_ids), done, skipped, failed, time.perf_counter() - start_time)
    print(summary)
    return summary
