"""The one prepare runner: decode every clip of a dataset once into a cache (:mod:`avadapt.data.cache`), in
parallel; each task lists its clips as :class:`PrepareJob` and gives the function that decodes one.

A clip counts as done when its final file exists, and files get their final name only once complete, so
rerunning after a crash or a kill skips finished clips, retries the failed ones, and ends with the cache an
uninterrupted run would have written.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
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
from avadapt.errors import MediaError


@dataclass(frozen=True)
class BadClip:
    video_id: str
    path: Path
    reason: str


@dataclass(frozen=True)
class PrepareJob:
    """One clip to decode."""

    video_id: str  # what ``bad_clips.tsv`` calls it
    target: Path  # its cache file
    media: tuple[Path, ...]  # every file it reads (the first absent one is reported instead of decoding)
    spec: Any = None  # anything more the decode function needs (picklable)


Decode = Callable[[PrepareJob, CacheSettings], None]


@dataclass
class PrepareSummary:
    """What one prepare run did."""

    out: Path
    total: int  # clips the annotations list
    done: int  # clips decoded and written by this run
    skipped_existing: int  # clips already in the cache from an earlier run
    failed: list[BadClip]
    seconds: float
    command: str  # which prepare function ran, for the printed line

    @property
    def clips_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        listed = f" (listed in {self.out / BAD_CLIPS})" if self.failed else ""
        return (
            f"{self.command}: {self.done} clips written, {self.skipped_existing} already cached, "
            f"{len(self.failed)} failed{listed} in {self.seconds:.1f} s "
            f"({self.clips_per_second:.2f} clips/s) -> {self.out}"
        )


def run_prepare(out: str | Path, settings: CacheSettings, jobs: Sequence[PrepareJob], decode: Decode, *,
                workers: int = 1, progress: bool = True, description: str, command: str) -> PrepareSummary:
    """Decode every job not yet cached into ``out`` (:func:`open_cache`); returns (and prints) the summary.

    A job whose target exists is skipped; one whose media is absent, or whose ``decode`` raises
    :class:`~avadapt.errors.MediaError` (or an FFmpeg error), is listed in ``bad_clips.tsv``; any other
    exception is a bug or a full disk and stops the run (finished clips stay cached).

    decode: a module-level function, so that spawned workers find it; a script calling this with
    ``workers > 1`` needs an ``if __name__ == "__main__":`` guard. Run one prepare per cache folder at a time.
    """
    started = time.perf_counter()
    out = Path(out)
    open_cache(out, settings)
    failed: list[BadClip] = []
    todo = []
    skipped = 0
    for job in jobs:
        absent = [path for path in job.media if not path.exists()]
        if job.target.exists():
            skipped += 1
        elif absent:
            more = f" (and {len(absent) - 1} more of its files)" if len(absent) > 1 else ""
            failed.append(BadClip(job.video_id, absent[0], f"file not found{more}"))
        else:
            todo.append((decode, job, settings))
    done = 0
    with tqdm(total=len(todo), unit="clip", desc=description, disable=not progress) as bar:
        for bad in _decode_all(todo, workers):
            if bad is None:
                done += 1
            else:
                failed.append(bad)
            bar.update(1)
    write_bad_clips(out, failed)
    summary = PrepareSummary(out, len(jobs), done, skipped, failed, time.perf_counter() - started, command)
    print(summary)
    return summary


def _decode_one(task: tuple[Decode, PrepareJob, CacheSettings]) -> BadClip | None:
    """Process-pool entry: None when the clip was written, else the file at fault and why."""
    decode, job, settings = task
    try:
        decode(job, settings)
    except MediaError as err:
        return BadClip(job.video_id, err.path, err.problem)
    except av.error.FFmpegError as err:  # an FFmpeg failure the reader did not anticipate: still the clip's
        return BadClip(job.video_id, job.media[0], f"FFmpeg error: {err}")
    return None


def _decode_all(jobs: list, workers: int) -> Iterator[BadClip | None]:
    """:func:`_decode_one` of every job as it finishes, in this process or in ``workers`` spawned processes (a
    forked child of a parent that already ran OpenMP threads can deadlock); a worker that dies makes
    ``ProcessPoolExecutor`` raise ``BrokenProcessPool``, where ``multiprocessing.Pool`` would wait forever."""
    if workers <= 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small per-clip tensors: threads cost more than they save
        try:
            yield from map(_decode_one, jobs)
        finally:
            torch.set_num_threads(threads)
        return
    # one clip per process at a time; intra-op threads would only oversubscribe the cores
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = [pool.submit(_decode_one, job) for job in jobs]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:  # on an error or interrupt, drop the clips not started yet
                future.cancel()


def open_cache(out: Path, settings: CacheSettings) -> None:
    """Create ``out`` with these settings, or check that the cache already there has exactly them (else
    a :class:`~avadapt.data.cache.CacheConfigError` names the differences); then delete stray temporaries."""
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
    lines = ["video_id\tpath\treason"] + [f"{b.video_id}\t{b.path}\t{' '.join(b.reason.split())}" for b in failed]
    write_text_atomic(out / BAD_CLIPS, "\n".join(lines) + "\n")
