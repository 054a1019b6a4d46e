"""Decode every AVE clip once into a compact cache (see :mod:`avadapt.data.cache` for the format).

Resumable by construction: a clip counts as done when its final file exists, and files only get
their final name by ``os.replace`` once completely written. Rerunning after a crash or a kill
skips finished clips, retries the ones that failed, and ends with the same cache an uninterrupted
run would have written. Clips that cannot be decoded are listed in ``bad_clips.tsv`` and skipped,
never silently.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import torch
from tqdm.auto import tqdm

from avadapt.audio_front_ends import DEFAULT_AUDIO_FRONT_END, audio_front_end
from avadapt.data.ave import AVEAnnotations
from avadapt.data.cache import (
    BAD_CLIPS,
    CACHE_JSON,
    CacheSettings,
    check_cache_settings,
    clip_file,
    remove_stale_temporaries,
    save_cached_clip,
    write_text_atomic,
)
from avadapt.data.fbank import FbankConfig, segment_fbank
from avadapt.data.media import read_clip
from avadapt.data.transforms import as_video_tensor
from avadapt.errors import MediaError


@dataclass(frozen=True)
class BadClip:
    video_id: str
    path: Path
    reason: str


@dataclass
class PrepareSummary:
    """What one :func:`prepare_ave` (or ``prepare_avs``) run did."""

    out: Path
    total: int  # distinct video ids in the annotations
    done: int  # clips decoded and written by this run
    skipped_existing: int  # clips already in the cache from an earlier run
    failed: list[BadClip]
    seconds: float
    command: str = "prepare_ave"  # which prepare function ran, for the printed line

    @property
    def clips_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        bad = (
            f", {len(self.failed)} failed (listed in {self.out / BAD_CLIPS})" if self.failed else ", 0 failed"
        )
        return (
            f"{self.command}: {self.done} clips written, {self.skipped_existing} already cached{bad} "
            f"in {self.seconds:.1f} s ({self.clips_per_second:.2f} clips/s) -> {self.out}"
        )


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


def _init_worker() -> None:
    # one clip per process at a time; intra-op threads would only oversubscribe the cores
    torch.set_num_threads(1)


def run_jobs(jobs: list, workers: int, work: Callable[[Any], Any] | None = None) -> Iterator[Any]:
    """Results of ``work`` (default :func:`_work`) over ``jobs`` as they finish, in this process or in
    ``workers`` processes; ``work`` must be a module-level function, so that spawned processes find it.

    A process pool is spawned (not forked: a parent that already ran OpenMP threads can deadlock
    forked children). ``ProcessPoolExecutor`` rather than ``multiprocessing.Pool`` because a worker
    that dies makes it raise ``BrokenProcessPool`` instead of waiting forever.
    """
    work = work or _work
    if workers <= 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small per-clip tensors: threads cost more than they save
        try:
            yield from map(work, jobs)
        finally:
            torch.set_num_threads(threads)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        futures = [pool.submit(work, job) for job in jobs]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:  # on an error or interrupt, drop the clips not started yet
                future.cancel()


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
        for video_id, reason in run_jobs(jobs, workers):
            if reason is None:
                done += 1
            else:
                failed.append(BadClip(video_id, media_of[video_id], reason))
            bar.update(1)

    write_bad_clips(out, failed)
    summary = PrepareSummary(out, len(video_ids), done, skipped, failed, time.perf_counter() - start_time)
    print(summary)
    return summary


def decode_jobs(jobs: list, workers: int, work: Callable[[Any], tuple[Any, BadClip | None]], failed: list[BadClip],
                *, unit: str, description: str, progress: bool) -> int:
    """Run ``work`` over ``jobs`` (in ``workers`` processes) with a progress bar; each job returns
    ``(key, BadClip or None)``. Failures are appended to ``failed``; returns how many clips were written."""
    done = 0
    with tqdm(total=len(jobs), unit=unit, desc=description, disable=not progress) as bar:
        for _, bad in run_jobs(jobs, workers, work=work):
            if bad is None:
                done += 1
            else:
                failed.append(bad)
            bar.update(1)
    return done


def summarise(out: Path, total: int, done: int, skipped: int, failed: list[BadClip], started: float,
              command: str) -> PrepareSummary:
    """Write ``bad_clips.tsv``, print the run's one-line summary and return it."""
    write_bad_clips(out, failed)
    summary = PrepareSummary(out, total, done, skipped, failed, time.perf_counter() - started, command=command)
    print(summary)
    return summary


def open_cache(out: Path, settings: CacheSettings) -> None:
    """Create ``out`` with these settings, or check that the cache already there has exactly them (else
    a :class:`~avadapt.data.cache.CacheConfigError` names the differences); then delete a killed run's
    temporaries."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / CACHE_JSON).exists():
        check_cache_settings(out / CACHE_JSON, {f: getattr(settings, f) for f in CacheSettings.field_names()})
    else:
        settings.write(out)
    remove_stale_temporaries(out)


def write_bad_clips(out: Path, failed: list[BadClip]) -> None:
    """``<out>/bad_clips.tsv``: a header and one ``video_id, path, reason`` line per failed clip, sorted by id
    (written even when none failed, so the file always describes the latest run)."""
    failed.sort(key=lambda bad: bad.video_id)
    lines = ["video_id\tpath\treason"] + [f"{b.video_id}\t{b.path}\t{_one_line(b.reason)}" for b in failed]
    write_text_atomic(out / BAD_CLIPS, "\n".join(lines) + "\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())
