"""The one prepare runner: decode every clip of a dataset once into a compact cache (format:
:mod:`avadapt.data.cache`), resumably and in parallel; each task gives the decode job of its own layout.

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

import torch
from tqdm.auto import tqdm

from avadapt.data.cache import (
    BAD_CLIPS,
    CACHE_JSON,
    CacheSettings,
    check_cache_settings,
    remove_stale_temporaries,
    write_text_atomic,
)


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


def _init_worker() -> None:
    # one clip per process at a time; intra-op threads would only oversubscribe the cores
    torch.set_num_threads(1)


def run_jobs(jobs: list, workers: int, work: Callable[[Any], Any]) -> Iterator[Any]:
    """Results of ``work`` over ``jobs`` as they finish, in this process or in
    ``workers`` processes; ``work`` must be a module-level function, so that spawned processes find it.

    A process pool is spawned (not forked: a parent that already ran OpenMP threads can deadlock
    forked children). ``ProcessPoolExecutor`` rather than ``multiprocessing.Pool`` because a worker
    that dies makes it raise ``BrokenProcessPool`` instead of waiting forever.
    """
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
