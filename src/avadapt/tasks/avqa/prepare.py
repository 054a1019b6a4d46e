"""Decode every MUSIC-AVQA video once into a cache, as :func:`~avadapt.tasks.ave.prepare.prepare_ave` does for
AVE.

The same guarantees: resumable (a video is done when its final file exists; files get their final name only
once complete), parallel in spawned processes, and every video that cannot be read listed in ``bad_clips.tsv``
with the file at fault and the reason. One cache file per video id of all splits' question files
(``<out>/<video_id>.safetensors``: frames uint8 (10, 3, S, S), fbank float16 (10, 1, F, L), the 10 moments of
:mod:`avadapt.tasks.avqa.dataset`); ``cache.json`` records the dataset (``music_avqa``). Beside them,
``question_vocab.json``: the question vocabulary of the train json, so that a cache can be read without it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from avadapt.audio_front_ends import DEFAULT_AUDIO_FRONT_END, audio_front_end
from avadapt.data.cache import CacheSettings, clip_file, save_cached_clip
from avadapt.data.fbank import FbankConfig
from avadapt.data.prepare import BadClip, PrepareSummary, decode_jobs, open_cache, summarise
from avadapt.data.transforms import as_video_tensor
from avadapt.errors import DatasetError, MediaError
from avadapt.tasks.avqa.dataset import (
    QUESTION_VOCABULARY_FILE,
    AVQAMedia,
    AVQAQuestion,
    QuestionVocabulary,
    cache_settings,
    find_layout,
    question_files,
    read_avqa_json,
)


def prepare_avqa_clip(media: AVQAMedia, target: Path, settings: CacheSettings) -> None:
    """Read one video's 10 moments and write its cache file; :class:`MediaError` for a bad video."""
    frames, fbank, seconds = media.read(settings.fbank, settings.num_segments)
    frames = settings.frame_transform().geometry(as_video_tensor(frames))  # (T, 3, S, S) uint8
    info = {"video_id": media.video_id, "source": media.layout, "seconds": round(seconds, 3)}
    save_cached_clip(target, frames, fbank, info)


def _work_avqa(job: tuple[AVQAMedia, Path, CacheSettings]) -> tuple[str, BadClip | None]:
    """Process-pool entry: (video_id, None) on success, (video_id, the file at fault and why) for a bad video.

    Only media failures make a video bad; any other exception is a bug or a full disk and stops the run.
    """
    media, target, settings = job
    try:
        prepare_avqa_clip(media, target, settings)
    except MediaError as err:
        return media.video_id, BadClip(media.video_id, err.path, err.problem)
    return media.video_id, None


def prepare_avqa(
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
    jsons: Mapping[str, str | Path] | None = None,
    source: str = "auto",
) -> PrepareSummary:
    """Decode the video of every question in the split jsons found in ``root`` into ``out``.

    root: holds ``avqa-{train,val,test}.json`` (other names: ``jsons``, as for
    :class:`~avadapt.tasks.avqa.dataset.MusicAVQADataset`); every video id of every split present is prepared.
    media_root: where the media lives (default ``root``): ``<id>.mp4`` files, or ``video_frames/<id>/`` with
    ``raw_audio/<id>.wav``. source: ``"mp4"``, ``"frames"`` or ``"auto"`` (frames when ``video_frames/``
    exists).
    out: cache folder; created if needed. If it already holds a ``cache.json`` with other settings, a
    :class:`~avadapt.data.cache.CacheConfigError` says which. ``question_vocab.json`` is written there from
    the train json (rewritten only when it would change); without a train json none is written, and a printed
    line says so.
    workers: processes decoding in parallel (1 = in this process); spawned, so a script calling this with
    ``workers > 1`` needs an ``if __name__ == "__main__":`` guard. Run one prepare per cache folder at a time.

    Returns a :class:`~avadapt.data.prepare.PrepareSummary` (also printed); failed videos (no media file or
    frames, undecodable, no audio stream) are listed in ``bad_clips.tsv`` as video id, the file at fault,
    reason.
    """
    start_time = time.perf_counter()
    root, out = Path(root), Path(out)
    media_root = Path(media_root) if media_root is not None else root
    if source not in ("auto", "mp4", "frames"):
        raise ValueError(f"source must be auto, mp4 or frames, got {source!r}")
    layout = find_layout(media_root) if source == "auto" else source
    files = {split: path for split, path in question_files(root, jsons).items() if path.is_file()}
    if not files:
        names = ", ".join(path.name for path in question_files(root, jsons).values())
        raise DatasetError(f"{root}: no MUSIC-AVQA question file ({names})")
    questions = {split: read_avqa_json(path) for split, path in files.items()}
    video_ids = sorted({q.video_id for split_questions in questions.values() for q in split_questions})
    settings = cache_settings(image_size, fbank or audio_front_end(DEFAULT_AUDIO_FRONT_END).fbank, crop_pct,
                              interpolation)
    open_cache(out, settings)
    _write_question_vocabulary(out, questions.get("train"), files.get("train"))

    failed: list[BadClip] = []
    jobs = []
    skipped = 0
    for video_id in video_ids:
        target, media = clip_file(out, video_id), AVQAMedia.of(media_root, layout, video_id)
        absent = media.missing()
        if target.exists():
            skipped += 1
        elif absent:
            more = f" (and {len(absent) - 1} more of its files)" if len(absent) > 1 else ""
            failed.append(BadClip(video_id, absent[0], f"file not found{more}"))
        else:
            jobs.append((media, target, settings))

    done = decode_jobs(jobs, workers, _work_avqa, failed, unit="video", description="prepare MUSIC-AVQA",
                       progress=progress)
    return summarise(out, len(video_ids), done, skipped, failed, start_time, "prepare_avqa")


def _write_question_vocabulary(out: Path, train: list[AVQAQuestion] | None, train_file: Path | None) -> None:
    """``<out>/question_vocab.json`` from the training questions, unless it already holds exactly that."""
    path = out / QUESTION_VOCABULARY_FILE
    if train is None:
        print(f"prepare_avqa: no training questions, so no {QUESTION_VOCABULARY_FILE} in {out}")
        return
    vocabulary = QuestionVocabulary.build(train)
    if path.is_file():
        try:
            if QuestionVocabulary.load(path) == vocabulary:
                return
        except DatasetError:
            pass  # a damaged file: replaced below
    vocabulary.save(path)
    print(f"prepare_avqa: {len(vocabulary)} question words of {train_file.name} -> {path}")
