"""Decode every MUSIC-AVQA video once into a cache (:mod:`avadapt.data.prepare`): one file per video id of all
splits (``<out>/<video_id>.safetensors``, the 10 moments of :mod:`avadapt.tasks.avqa.dataset`), and
``question_vocab.json``, the question vocabulary of the train json, so that a cache can be read without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path

from avadapt.data.cache import CacheSettings, clip_file, save_cached_clip
from avadapt.data.fbank import FbankConfig
from avadapt.data.prepare import PrepareJob, PrepareSummary, run_prepare
from avadapt.data.transforms import as_video_tensor
from avadapt.errors import DatasetError
from avadapt.tasks.avqa.dataset import MusicAVQADataset, read_moments
from avadapt.tasks.avqa.questions import (
    QUESTION_VOCABULARY_FILE,
    AVQAQuestion,
    QuestionVocabulary,
    question_files,
    read_avqa_json,
)


def prepare_avqa_clip(job: PrepareJob, settings: CacheSettings) -> None:
    """Read one video's 10 moments (``job.spec``: its layout) and write its cache file; :class:`MediaError` for a
    bad video."""
    frames, fbank, seconds = read_moments(job.spec, job.media, settings.fbank, settings.num_segments)
    frames = settings.frame_transform().geometry(as_video_tensor(frames))  # (T, 3, S, S) uint8
    info = {"video_id": job.video_id, "source": job.spec, "seconds": round(seconds, 3)}
    save_cached_clip(job.target, frames, fbank, info)


def prepare_avqa(root: str | Path, out: str | Path, workers: int = 1, image_size: int = 224,
                 fbank: FbankConfig | None = None, progress: bool = True, *,
                 media_root: str | Path | None = None, crop_pct: float = 1.0, interpolation: str = "bicubic",
                 crop_mode: str = "center", jsons: Mapping[str, str | Path] | None = None,
                 source: str = "auto") -> PrepareSummary:
    """Decode the video of every question of the split jsons in ``root`` into ``out`` with
    :func:`~avadapt.data.prepare.run_prepare`, then write ``question_vocab.json`` from the train json, if any.
    media_root, jsons, source (``"mp4"``, ``"frames"`` or ``"auto"``): as
    :class:`~avadapt.tasks.avqa.dataset.MusicAVQADataset` reads them."""
    root, out = Path(root), Path(out)
    media_root = Path(media_root) if media_root is not None else root
    if source not in ("auto", *MusicAVQADataset.layouts):
        raise ValueError(f"source must be auto, mp4 or frames, got {source!r}")
    layout = MusicAVQADataset.find_layout(media_root) if source == "auto" else source
    files = {split: path for split, path in question_files(root, jsons).items() if path.is_file()}
    if not files:
        names = ", ".join(path.name for path in question_files(root, jsons).values())
        raise DatasetError(f"{root}: no MUSIC-AVQA question file ({names})")
    questions = {split: read_avqa_json(path) for split, path in files.items()}
    video_ids = sorted({q.video_id for split_questions in questions.values() for q in split_questions})
    paths = {v: tuple(MusicAVQADataset.layout_paths(media_root, layout, v)) for v in video_ids}
    jobs = [PrepareJob(v, clip_file(out, v), paths[v], layout) for v in video_ids]
    settings = MusicAVQADataset.cache_settings(image_size, fbank, crop_pct, interpolation, crop_mode=crop_mode)
    summary = run_prepare(out, settings, jobs, prepare_avqa_clip, workers=workers, progress=progress,
                          description="prepare MUSIC-AVQA", command="prepare_avqa")
    _write_question_vocabulary(out, questions.get("train"), files.get("train"))
    return summary


def _write_question_vocabulary(out: Path, train: list[AVQAQuestion] | None, train_file: Path | None) -> None:
    """``<out>/question_vocab.json`` from the training questions, unless it already holds exactly that."""
    path = out / QUESTION_VOCABULARY_FILE
    if train is None:
        print(f"prepare_avqa: no training questions, so no {QUESTION_VOCABULARY_FILE} in {out}")
        return
    vocabulary = QuestionVocabulary.build(train)
    with contextlib.suppress(DatasetError):  # absent or damaged: written below
        if QuestionVocabulary.load(path) == vocabulary:
            return
    vocabulary.save(path)
    print(f"prepare_avqa: {len(vocabulary)} question words of {train_file.name} -> {path}")
