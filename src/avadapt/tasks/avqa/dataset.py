"""MUSIC-AVQA (Li et al. CVPR 2022, "Learning to Answer Questions in Dynamic Audio-Visual Scenarios"): the
questions of its released files (:mod:`avadapt.tasks.avqa.questions`), each with its video's 10 moments.

Media (``source``), under ``media_root`` (default ``root``):

* ``mp4``: ``<video_id>.mp4`` of any length, i.e. the folder the official video archives unpack to
  (``MUSIC-AVQA-videos-Real``; merge ``-Synthetic`` into it for the ``vv…`` ids);
* ``frames``, as the LAVISH / DG-SCT loaders read it: ``video_frames/<video_id>/`` holding ``0001.jpg…``
  (LAVISH) or ``00000001.jpg…`` (DG-SCT), and ``raw_audio/<video_id>.wav``;
* ``cache``: written by :func:`avadapt.tasks.avqa.prepare.prepare_avqa`, one file per video id.

Ten moments per video: a video of D seconds (declared by the mp4, or the wav's length) is cut into 10 parts of
D/10 s; moment t is one frame and one audio window of the front end's ``window_seconds``, placed as the front end
says (``FbankConfig.window_placement``): the LAVISH and STG-CMA AVQA front ends spread them as their loaders do,
starting at ``linspace(0, D − (window + 0.1 s), 10)``; the others start window t with its part, at t·D/10. The
frame: mp4, the one on screen at (t + ½)·D/10; frames layout, file ``linspace(1, n, 10, dtype=int)[t]``
(1-based) of n, as the reference picks it.

Left and right: 2,327 of the 9,185 test questions say left, right, leftest or rightest (in the question or the
answer), so a horizontal flip would change their answers; training frames, when augmented (``augment``), get a
RandomResizedCrop and never a flip (``train_augmentation``). The reference loaders do not augment AVQA frames.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from avadapt.data.base import ClipDataset, register_dataset, seeded
from avadapt.data.fbank import FbankConfig, segment_fbank
from avadapt.data.media import probe, read_audio, read_clip, read_frame_folder
from avadapt.errors import MediaError, OptionError
from avadapt.tasks.avqa.questions import (
    QUESTION_LENGTH,
    UNK,
    AVQAQuestion,
    QuestionFileError,
    QuestionVocabulary,
    load_answer_vocabulary,
    load_question_vocabulary,
    question_files,
    read_avqa_json,
)

AVQA_SEGMENTS = 10  # moments per video, as LAVISH / DG-SCT / STG-CMA sample them


def numbered_frames(folder: str | Path) -> list[Path]:
    """The frame files of one video's folder in number order, all named with 4 digits (``0001.jpg``, LAVISH) or
    all with 8 (``00000001.jpg``, DG-SCT); anything else would be picked in the wrong order: a :class:`MediaError`."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")] if folder.is_dir() else []
    odd = [p.name for p in files if not p.stem.isdigit() or len(p.stem) not in (4, 8)]
    if odd:
        raise MediaError(folder, f"frame files must be named 0001.jpg… or 00000001.jpg…, found {sorted(odd)[:3]}")
    if len({len(p.stem) for p in files}) > 1:
        raise MediaError(folder, "frame names mix 4-digit and 8-digit numbers")
    return sorted(files, key=lambda p: int(p.stem))


def read_moments(layout: str, paths: Sequence[Path], fbank: FbankConfig, num_segments: int = AVQA_SEGMENTS
                 ) -> tuple[np.ndarray, torch.Tensor, float]:
    """(frames (T, H, W, 3) uint8, fbank images (T, 1, F, L), the video's seconds) of one video's T moments, read
    from its files in ``layout`` (mp4 or frames); :class:`MediaError` naming the file for anything unreadable."""
    if layout == "mp4":
        (path,) = paths
        seconds = probe(path).duration
        if seconds <= 0:
            raise MediaError(path, "the file declares no duration, so its 10 parts cannot be placed")
        part = seconds / num_segments
        clip = read_clip(path, num_segments, part, sample_rate=fbank.sample_rate)
        return clip.frames, segment_fbank(clip.wave, fbank, num_segments, part), seconds
    folder, wav = paths
    numbered_frames(folder)  # names checked, so that read_frame_folder's sorted order is the number order
    frames = read_frame_folder(folder, num_segments)  # (T, H, W, 3), picks linspace(1, n, T, dtype=int)
    wave = read_audio(wav, fbank.sample_rate)
    seconds = len(wave) / fbank.sample_rate
    return frames, segment_fbank(wave, fbank, num_segments, seconds / num_segments), seconds


@register_dataset
class MusicAVQADataset(ClipDataset):
    """The questions of one MUSIC-AVQA split, each with its video's 10 moments. ``answer`` indexes the answer
    vocabulary (:meth:`class_names`); a val/test answer outside it is -1 (counted wrong, with a warning), a train
    one an error. ``inputs``: ``question``, the word indices padded with 0; ``video_index``, the split's videos
    numbered.

    root: holds ``avqa-{train,val,test}.json`` (``jsons``: other names, e.g. ``{"test": "avqa-test-update.json"}``)
    and optionally ``ans_vocab.txt``. A training transform must not flip.
    question_vocab: the model's question words in index order; None: built from the train json (without one,
        read from ``cache_dir``'s ``question_vocab.json``).
    answers: an ``ans_vocab.txt`` (relative to ``root`` or absolute); None: ``<root>/ans_vocab.txt`` if
        present, else first appearance in the train json.
    question_length: words per encoded question; a longer question is an error naming its row.
    """

    name = "music_avqa"
    task = "avqa"
    num_segments = AVQA_SEGMENTS
    # one RandomResizedCrop (area 0.5–1) per training clip, the same for all 10 frames; never a flip
    train_augmentation: ClassVar[dict[str, Any]] = {"train": True, "scale": (0.5, 1.0), "hflip": 0.0}
    layouts: ClassVar[dict[str, tuple[str, ...]]] = {
        "frames": ("video_frames/{clip}", "raw_audio/{clip}.wav"), "mp4": ("{clip}.mp4",)}
    title = "MUSIC-AVQA"
    item_noun = "question"

    @classmethod
    def class_names(cls, root: str | Path, answers: str | Path | None = None,
                    jsons: Mapping[str, str | Path] | None = None, **options: Any) -> list[str]:
        """The answer classes in index order (:func:`load_answer_vocabulary`)."""
        return load_answer_vocabulary(root, answers, jsons)

    @classmethod
    def prepare(cls, root: str | Path, out: str | Path, **settings: Any) -> Any:
        from avadapt.tasks.avqa.prepare import prepare_avqa

        return prepare_avqa(root, out, **settings)

    @classmethod
    def synthesize(cls, out: str | Path, clips: int, seed: int, num_classes: int | None = None) -> Any:
        if num_classes is not None:
            raise OptionError("MUSIC-AVQA's answers are its own 42; a number of classes cannot be chosen")
        from avadapt.tasks.avqa.synth import synthesize_avqa

        return synthesize_avqa(out, clips=clips, seed=seed)

    def __init__(self, root: str | Path, split: str = "train", *, source: str = "auto",
                 question_vocab: Sequence[str] | None = None, answers: str | Path | None = None,
                 jsons: Mapping[str, str | Path] | None = None, question_length: int = QUESTION_LENGTH,
                 **common: Any):
        super().__init__(root, split, **common)
        if self.transform.cfg.train and self.transform.cfg.hflip > 0:
            raise OptionError(
                f"the training transform flips frames (hflip={self.transform.cfg.hflip}); a flip swaps left "
                "and right, so MUSIC-AVQA's left/right answers would be wrong: use hflip=0"
            )
        self.question_length = question_length
        self.path = question_files(self.root, jsons)[split]
        questions = read_avqa_json(self.path)
        train = questions if split == "train" else None  # read once
        self.answers = load_answer_vocabulary(self.root, answers, jsons, train=train)
        self.vocabulary = (QuestionVocabulary(question_vocab) if question_vocab is not None
                           else load_question_vocabulary(self.root, jsons, self.cache_dir, train=train))
        encoded, answer_indices = self._encode(questions)
        keep = self.keep_with_media(source, list(range(len(questions))), lambda i: questions[i].video_id)
        self.questions = [questions[i] for i in keep]
        self.encoded = encoded[keep]  # (N, question_length)
        self.video_index = {video_id: k for k, video_id in enumerate(dict.fromkeys(q.video_id for q in self.questions))}
        self.answer_indices = answer_indices[keep]  # (N,)
        self._last_media: tuple[tuple[str, int | None], tuple[torch.Tensor, torch.Tensor]] | None = None

    def _encode(self, questions: list[AVQAQuestion]) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, question_length) word indices and (N,) answer indices (-1 outside the answer vocabulary)."""
        answer_index = {a: i for i, a in enumerate(self.answers)}
        encoded = []
        for q in questions:
            try:
                encoded.append(self.vocabulary.encode(q.tokens, self.question_length))
            except ValueError as err:
                raise QuestionFileError(self.path, q.row, str(err)) from None
            if self.split == "train" and q.answer not in answer_index:
                raise QuestionFileError(self.path, q.row, f"answer {q.answer!r} is not in the answer "
                                        f"vocabulary ({len(self.answers)} answers: {self.answers[:5]}…)")
        unknown = [self.vocabulary.unknown_words(q.tokens) for q in questions]
        if any(unknown):
            listed = ", ".join(list(dict.fromkeys(word for words in unknown for word in words))[:10])
            warnings.warn(f"{self.path}: {sum(map(bool, unknown))} question(s) hold words outside the question "
                          f"vocabulary, encoded as {UNK}: {listed}", stacklevel=3)
        answers = [answer_index.get(q.answer, -1) for q in questions]
        if -1 in answers:
            outside = dict.fromkeys(q.answer for q, a in zip(questions, answers) if a < 0)
            examples = ", ".join(map(repr, list(outside)[:5]))
            warnings.warn(f"{self.path}: {answers.count(-1)} of {len(questions)} question(s) have an answer outside "
                          f"the answer vocabulary ({examples}); their answer is -1 and counts as wrong",
                          stacklevel=3)
        encoded_tensor = torch.tensor(encoded, dtype=torch.long).reshape(-1, self.question_length)  # (N, L)
        return encoded_tensor, torch.tensor(answers, dtype=torch.long)

    def decode(self, video_id: str) -> tuple[np.ndarray, torch.Tensor]:
        return read_moments(self.source, self.media_paths(video_id), self.fbank, self.num_segments)[:2]

    def __len__(self) -> int:
        return len(self.questions)

    def item_clips(self) -> list[int]:
        return [self.video_index[q.video_id] for q in self.questions]

    def _media(self, video_id: str, seed: int | None, generator: torch.Generator | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`load_media`, remembered for the next call with the same seed: a video's questions come one
        after another with one seed (``items_per_clip``). A training crop without a seed is never remembered."""
        key = (video_id, seed)
        if self._last_media is not None and self._last_media[0] == key:
            return self._last_media[1]
        media = self.load_media(video_id, generator)
        self._last_media = (key, media) if seed is not None or not self.transform.cfg.train else None
        return media

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed, generator = seeded(key)
        question = self.questions[index]
        video, audio = self._media(question.video_id, seed, generator)
        return {
            "video": video,  # (T, 3, H, W)
            "audio": audio,  # (T, 1, F, L)
            "answer": self.answer_indices[index].clone(),  # () long, -1 outside the answer vocabulary
            "question_type": torch.tensor(question.type_index),  # () long
            # copies, not views: a view would carry the whole (N, 14) tensor to the loader's main process
            "inputs": {"question": self.encoded[index].clone(),  # (question_length,) long
                       "video_index": torch.tensor(self.video_index[question.video_id])},  # () long
            "meta": {
                "row": question.row,
                "question_id": question.question_id,
                "video_id": question.video_id,
                "question": question.text,
                "answer": question.answer,
                "type": question.type.name,
            },
        }
