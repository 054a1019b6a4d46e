"""MUSIC-AVQA (Li et al. CVPR 2022, "Learning to Answer Questions in Dynamic Audio-Visual Scenarios") in its
released format.

Questions (``<root>/avqa-{train,val,test}.json``, as released in GeWu-Lab/MUSIC-AVQA ``data/json/``): one JSON
array of objects with these seven keys::

    {"video_id": "00000086", "question_id": 28,
     "type": "[\\"Audio-Visual\\", \\"Existential\\"]",   a *string* holding a JSON list: [modality, kind]
     "question_content": "Is the <Object> in the video always playing?",
     "templ_values": "[\\"violin\\"]",                     a *string* holding a JSON list: the fills
     "question_deleted": 0,
     "anser": "no"}                                       the answer key is spelled "anser"

Question ids are not unique (9,130 distinct ids over the 9,185 test rows): a question is keyed by its *row*
(its index in the file's array). ``question_deleted`` is kept on the question but filters nothing (it is 0 in
every released row, and the reference code reads every row).

Media, one of (under ``media_root``, default ``root``):

* raw videos: ``<media_root>/<video_id>.mp4`` of any length, i.e. ``media_root`` is the folder the official
  video archives unpack to (``MUSIC-AVQA-videos-Real``; merge ``-Synthetic`` into it for the ``vv…`` ids);
* pre-extracted, as the LAVISH / DG-SCT loaders read it: ``<media_root>/video_frames/<video_id>/`` holding
  ``0001.jpg…`` (LAVISH) or ``00000001.jpg…`` (DG-SCT) and ``<media_root>/raw_audio/<video_id>.wav``;
* a cache written by :func:`avadapt.tasks.avqa.prepare.prepare_avqa`, one file per video id (many questions
  share a video).

Ten moments per video. A video of D seconds is cut into 10 equal parts of D/10 s; moment t is one frame and
one audio window of the front end's ``window_seconds`` (1.95 s for the AVQA front ends, 1 s for ``vit``):

* audio window t starts at the start of part t, t·D/10 (zeros past the end of the wave), for every layout; D
  is the video's declared duration (mp4) or the wav's length (frames layout). The reference loader instead
  puts its windows at ``linspace(0, D − 2.05 s, 10)``, so that the last one ends near the end of the file;
  starting each window at its part's start keeps window t with the part its frame is taken from.
* mp4: the frame on screen at the centre of part t, (t + ½)·D/10 (:func:`avadapt.data.media.read_clip` with
  segments of D/10 s). Frames layout: frame ``linspace(1, n, 10, dtype=int)[t]`` (1-based, truncated) of its n
  numbered files, as the reference loader picks them.

Left and right: 2,327 of the 9,185 test questions say left, right, leftest or rightest (in the question or the
answer), so a horizontal flip would change their answers; training frames get a RandomResizedCrop and never a
flip (``train_augmentation``).
"""

from __future__ import annotations

import ast
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch

from avadapt.data.base import SPLITS, ClipDataset, register_dataset, seeded
from avadapt.data.cache import write_text_atomic
from avadapt.data.fbank import FbankConfig, segment_fbank
from avadapt.data.media import probe, read_audio, read_clip, read_frame_folder
from avadapt.errors import DatasetError, MediaError, OptionError

AVQA_SEGMENTS = 10  # moments per video, as LAVISH / DG-SCT / STG-CMA sample them
QUESTION_LENGTH = 14  # words per encoded question; the longest released question has 14
DATASET_NAME = "music_avqa"
JSON_KEYS = (
    "video_id", "question_id", "type", "question_content", "templ_values", "question_deleted", "anser",
)
DEFAULT_JSONS = {"train": "avqa-train.json", "val": "avqa-val.json", "test": "avqa-test.json"}
ANSWER_VOCABULARY_FILE = "ans_vocab.txt"  # DG-SCT's data/AVQA/ans_vocab.txt: one answer per line, index order
QUESTION_VOCABULARY_FILE = "question_vocab.json"  # written into a cache by prepare_avqa
PLACEHOLDERS = ("<Object>", "<LR>", "<FL>", "<TH>", "<LRer>", "<LL>", "<BA>")
QUESTION_MARKS = ("?", "\uff1f")  # ASCII and full-width (430 test questions end in the full-width one)
PAD, UNK = "<pad>", "<unk>"


# --- question types ---------------------------------------------------------------------------------


class QuestionType(NamedTuple):
    """One of the 9 question types: ``type`` of a json row, ``[modality, kind]``; equal to the plain pair."""

    modality: str  # "Audio", "Visual" or "Audio-Visual", spelled as in the json
    kind: str  # "Counting", "Comparative", "Location", "Existential" or "Temporal"

    @property
    def group(self) -> str:
        """The reported group: ``audio``, ``visual`` or ``audio_visual``."""
        return self.modality.lower().replace("-", "_")

    @property
    def name(self) -> str:
        """Short name, e.g. ``audio_visual_temporal``."""
        return f"{self.group}_{self.kind.lower()}"


# In the order of the paper's result tables (and of the reference per-type accuracy lists).
QUESTION_TYPES: tuple[QuestionType, ...] = (
    QuestionType("Audio", "Counting"),
    QuestionType("Audio", "Comparative"),
    QuestionType("Visual", "Counting"),
    QuestionType("Visual", "Location"),
    QuestionType("Audio-Visual", "Existential"),
    QuestionType("Audio-Visual", "Counting"),
    QuestionType("Audio-Visual", "Location"),
    QuestionType("Audio-Visual", "Comparative"),
    QuestionType("Audio-Visual", "Temporal"),
)
QUESTION_TYPE_NAMES: tuple[str, ...] = tuple(t.name for t in QUESTION_TYPES)
# Reported rows pool the questions of their types (counts, not a mean of per-type accuracies); Overall: all 9.
TYPE_GROUPS: dict[str, tuple[str, ...]] = {
    group: tuple(t.name for t in QUESTION_TYPES if t.group == group)
    for group in ("audio", "visual", "audio_visual")
}


# --- the question files -----------------------------------------------------------------------------


class QuestionFileError(DatasetError):
    """A missing or malformed question json; the message starts with ``file: row N:`` (N = the 0-based index
    in the file's array), or ``file:`` when the whole file is at fault."""

    def __init__(self, path: str | Path, row: int | None, problem: str):
        self.path, self.row, self.problem = Path(path), row, problem
        where = f"{self.path}: row {row}" if row is not None else f"{self.path}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class AVQAQuestion:
    """One row of a question json.

    template: ``question_content`` as released; values: the parsed ``templ_values``; tokens: the filled,
    tokenised question (:func:`tokenize_question`); row: 0-based index in the file; deleted:
    ``question_deleted``.
    """

    question_id: int | str
    video_id: str
    modality: str
    kind: str
    template: str
    values: tuple[str, ...]
    answer: str
    tokens: tuple[str, ...]
    row: int
    deleted: bool = False

    @property
    def type(self) -> QuestionType:
        return QuestionType(self.modality, self.kind)

    @property
    def type_index(self) -> int:
        """Index into :data:`QUESTION_TYPES`."""
        return QUESTION_TYPES.index(self.type)

    @property
    def text(self) -> str:
        """The filled question, words joined by single spaces, with one ``?``."""
        return " ".join(self.tokens) + "?"


def tokenize_question(template: str, values: Sequence[str] = ()) -> list[str]:
    """The words of a question with its placeholders filled: what the question embedding reads.

    The rule: strip trailing whitespace; drop one final question mark, ASCII ``?`` or full-width ``？``, and
    any spaces before it; split on single spaces; replace each placeholder token (:data:`PLACEHOLDERS`) by the
    next value, in order. So ``"…sound?"``, ``"…sound? "`` (591 test rows) and ``"…video？"`` (430 test rows)
    give the same words as the plain ``?`` ending would, and a question without a mark keeps its last word.

    On every row of the released files this equals the reference tokenizer (``rstrip().split(' ')``, then cut
    the last character of the last word, then replace words containing ``<``): after ``rstrip`` each of them
    ends in one of the two marks, attached to the last word. The reference would cut a letter off a question
    without a mark and keep an empty word for ``"… ?"``; neither occurs in the released files.

    Raises ``ValueError`` for an empty question, two spaces in a row (an empty word), a ``<…>`` token that is
    not a known placeholder, or a number of values different from the number of placeholders (in every
    released row they are equal, so either way the file is not in the released format).
    """
    text = template.rstrip()
    if text.endswith(QUESTION_MARKS):
        text = text[:-1].rstrip()
    if not text:
        raise ValueError(f"empty question {template!r}")
    tokens = text.split(" ")
    if "" in tokens:
        raise ValueError(f"two spaces in a row in {template!r}")
    unknown = [t for t in tokens if ("<" in t or ">" in t) and t not in PLACEHOLDERS]
    if unknown:
        known = " ".join(PLACEHOLDERS)
        raise ValueError(f"unknown placeholder {unknown[0]!r} in {template!r} (known: {known})")
    slots = [i for i, t in enumerate(tokens) if t in PLACEHOLDERS]
    if len(slots) != len(values):
        raise ValueError(
            f"{len(slots)} placeholder(s) in {template!r} but {len(values)} templ_values {list(values)!r}; "
            "they are filled one by one, in order, so the counts must be equal"
        )
    for slot, value in zip(slots, values):
        tokens[slot] = value
    return tokens


def _parse_list(value: Any, key: str) -> tuple[Any, str | None]:
    """(the list, None) for a list given as JSON text (the released format), as Python literal text, or as a
    list already; (None, the problem) otherwise."""
    if isinstance(value, list):
        return value, None
    if not isinstance(value, str):
        return None, f"{key} must be a string holding a JSON list, got {type(value).__name__} {value!r}"
    try:
        parsed = json.loads(value)
    except ValueError:
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None, f"{key} {value!r} is neither a JSON list nor a Python list literal"
    if not isinstance(parsed, list):
        return None, f"{key} {value!r} holds a {type(parsed).__name__}, not a list"
    return parsed, None


def _question(path: Path, row: int, record: Any) -> AVQAQuestion:
    def fail(problem: str) -> QuestionFileError:
        return QuestionFileError(path, row, problem)

    if not isinstance(record, dict):
        raise fail(f"expected a question object, found {type(record).__name__}")
    missing = [key for key in JSON_KEYS if key not in record]
    if missing:
        hint = " (the answer key of the released files is spelled 'anser')" if "anser" in missing else ""
        raise fail(f"missing key(s) {', '.join(map(repr, missing))}{hint}")
    video_id = record["video_id"]
    if not isinstance(video_id, str) or not video_id or video_id[0] == "." or {"/", "\\"} & set(video_id):
        raise fail(f"video_id must be a file name such as '00000086', got {video_id!r}")
    question_id = record["question_id"]
    if isinstance(question_id, bool) or not isinstance(question_id, int | str):
        raise fail(f"question_id must be a number, got {question_id!r}")
    template, answer = record["question_content"], record["anser"]
    if not isinstance(template, str):
        raise fail(f"question_content must be a string, got {template!r}")
    if not isinstance(answer, str) or not answer.strip():
        raise fail(f"anser (the answer) must be a non-empty string, got {answer!r}")
    deleted = record["question_deleted"]
    if deleted not in (0, 1):  # True/False compare equal to 1/0
        raise fail(f"question_deleted must be 0 or 1, got {deleted!r}")
    kind, problem = _parse_list(record["type"], "type")
    if problem is None:
        values, problem = _parse_list(record["templ_values"], "templ_values")
    if problem is not None:
        raise fail(problem)
    if len(kind) != 2 or not all(isinstance(k, str) for k in kind):
        raise fail(f"type must hold two strings [modality, kind], got {kind!r}")
    if QuestionType(*kind) not in QUESTION_TYPES:
        known = ", ".join(f"{t.modality}-{t.kind}" for t in QUESTION_TYPES)
        raise fail(f"unknown question type {kind!r}; known: {known}")
    if not all(isinstance(v, str) and v for v in values):
        raise fail(f"templ_values must hold non-empty strings, got {values!r}")
    try:
        tokens = tokenize_question(template, values)
    except ValueError as err:
        raise fail(str(err)) from None
    return AVQAQuestion(question_id, video_id, kind[0], kind[1], template, tuple(values), answer.strip(),
                        tuple(tokens), row, bool(deleted))


def read_avqa_json(path: str | Path) -> list[AVQAQuestion]:
    """Every question of a MUSIC-AVQA json, in file order (``row`` = index in the array).

    Raises :class:`QuestionFileError` naming the file (and the row) for a missing or non-JSON file, a file
    that is not an array of objects, a row missing one of the seven keys, a ``type`` or ``templ_values`` that
    is not a list (``json.loads``, falling back to ``ast.literal_eval`` as the reference code reads them), a
    ``type`` that is not one of :data:`QUESTION_TYPES`, or a question that :func:`tokenize_question` refuses
    (among them more placeholders than values, or more values than placeholders).
    """
    path = Path(path)
    if not path.is_file():
        raise QuestionFileError(path, None, "MUSIC-AVQA question file not found")
    try:
        rows = json.loads(path.read_text(encoding="utf-8-sig"))
    except ValueError as err:  # not JSON, or not UTF-8 text
        raise QuestionFileError(path, None, f"not a JSON file: {err}") from None
    if not isinstance(rows, list):
        found = type(rows).__name__
        raise QuestionFileError(path, None, f"expected a JSON array of question objects, found {found}")
    return [_question(path, row, record) for row, record in enumerate(rows)]


# --- vocabularies -----------------------------------------------------------------------------------


class QuestionVocabulary:
    """Question words → indices of the question embedding.

    ``<pad>`` = 0 (what short questions are padded with), ``<unk>`` = 1 (a word the training questions never
    had), then the training questions' words in order of first appearance, as the reference builds its
    vocabulary from ``avqa-train.json`` (with ``<pad>`` only: a word it never saw is a ``KeyError`` there).
    Saved as a JSON list of the words in index order.
    """

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tokens[:2] != [PAD, UNK]:
            raise ValueError(f"a question vocabulary starts with {PAD!r}, {UNK!r}; got {tokens[:2]!r}")
        if not all(isinstance(t, str) and t for t in tokens):
            raise ValueError("question vocabulary words must be non-empty strings")
        index: dict[str, int] = {}
        for i, token in enumerate(tokens):
            if token in index:
                raise ValueError(f"word {token!r} appears twice in the question vocabulary "
                                 f"(at {index[token]} and {i})")
            index[token] = i
        self.tokens: tuple[str, ...] = tuple(tokens)
        self._index = index

    @classmethod
    def build(cls, questions: Iterable[AVQAQuestion]) -> QuestionVocabulary:
        """From training questions: their words in order of first appearance after ``<pad>``, ``<unk>``."""
        words = dict.fromkeys([PAD, UNK])
        for question in questions:
            words.update(dict.fromkeys(question.tokens))
        return cls(list(words))

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> QuestionVocabulary:
        return cls(tokens)

    def to_list(self) -> list[str]:
        return list(self.tokens)

    def save(self, path: str | Path) -> None:
        write_text_atomic(Path(path), json.dumps(self.to_list(), ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> QuestionVocabulary:
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"{path}: question vocabulary not found")
        try:
            tokens = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(tokens, list):
                return cls(tokens)
            problem = f"expected a JSON list of words, found {type(tokens).__name__}"
        except ValueError as err:
            problem = str(err)
        raise DatasetError(f"{path}: not a question vocabulary: {problem}")

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, QuestionVocabulary) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"QuestionVocabulary({len(self)} words)"

    def index(self, token: str) -> int:
        """The word's index, ``<unk>``'s (1) for a word not in the vocabulary."""
        return self._index.get(token, 1)

    def unknown_words(self, tokens: Iterable[str]) -> list[str]:
        """The words of ``tokens`` the vocabulary lacks (encoded as ``<unk>``), in order, without repeats."""
        return list(dict.fromkeys(t for t in tokens if t not in self._index))

    def encode(self, tokens: Sequence[str], max_len: int = QUESTION_LENGTH) -> list[int]:
        """``max_len`` indices: the words' (unknown words → 1, see :meth:`unknown_words`), then ``<pad>`` (0).

        A question of more than ``max_len`` words raises ``ValueError`` rather than losing its end.
        """
        if len(tokens) > max_len:
            question = " ".join(tokens)
            raise ValueError(f"the question has {len(tokens)} words, more than max_len {max_len}: "
                             f"{question!r}")
        return [self.index(t) for t in tokens] + [0] * (max_len - len(tokens))


def read_answer_vocabulary(path: str | Path) -> list[str]:
    """The answers of ``ans_vocab.txt`` in index order: one per line (``more than ten`` is one answer with
    spaces), surrounding whitespace and blank lines ignored. A repeated answer is a :class:`DatasetError`
    naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: answer vocabulary not found")
    answers: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        answer = line.strip()
        if not answer:
            continue
        if answer in answers:
            first = answers[answer]
            raise DatasetError(f"{path}:{number}: answer {answer!r} is listed twice (first on line {first})")
        answers[answer] = number
    if not answers:
        raise DatasetError(f"{path}: the answer vocabulary is empty")
    return list(answers)


def answer_vocabulary_from(questions: Iterable[AVQAQuestion]) -> list[str]:
    """The answers in order of first appearance: the reference's answer indices when given the train json."""
    return list(dict.fromkeys(q.answer for q in questions))


def question_files(root: str | Path, jsons: Mapping[str, str | Path] | None = None) -> dict[str, Path]:
    """Each split's question json: ``<root>/avqa-<split>.json`` unless ``jsons`` names another file (relative
    to ``root`` or absolute), e.g. ``{"test": "avqa-test-update.json"}`` for the cleaned re-release."""
    unknown = set(jsons or {}) - set(SPLITS)
    if unknown:
        splits = ", ".join(SPLITS)
        raise OptionError(f"jsons names unknown split(s) {sorted(unknown)}; the splits are {splits}")
    root = Path(root)
    return {split: root / (jsons or {}).get(split, DEFAULT_JSONS[split]) for split in SPLITS}


def load_answer_vocabulary(root: str | Path, answers: str | Path | None = None,
                           jsons: Mapping[str, str | Path] | None = None, *,
                           train: Sequence[AVQAQuestion] | None = None) -> list[str]:
    """The answer classes in index order: ``answers`` (an ``ans_vocab.txt``, relative to ``root`` or
    absolute); else ``<root>/ans_vocab.txt`` if present; else first appearance in the train json (``train``:
    its questions, when already read)."""
    root = Path(root)
    if answers is not None:
        return read_answer_vocabulary(root / answers)
    if (root / ANSWER_VOCABULARY_FILE).is_file():
        return read_answer_vocabulary(root / ANSWER_VOCABULARY_FILE)
    if train is not None:
        return answer_vocabulary_from(train)
    path = question_files(root, jsons)["train"]
    if not path.is_file():
        raise DatasetError(
            f"{root}: no {ANSWER_VOCABULARY_FILE} and no training questions ({path.name}) to take the answer "
            "classes from; give answers=<ans_vocab.txt>, or the train json (jsons={'train': ...})"
        )
    return answer_vocabulary_from(read_avqa_json(path))


def load_question_vocabulary(root: str | Path, jsons: Mapping[str, str | Path] | None = None,
                             cache_dir: str | Path | None = None, *,
                             train: Sequence[AVQAQuestion] | None = None) -> QuestionVocabulary:
    """The question vocabulary of the training questions: built from the train json (``train``: its
    questions, when already read); without one, the ``question_vocab.json`` that
    :func:`~avadapt.tasks.avqa.prepare.prepare_avqa` wrote into ``cache_dir``."""
    if train is not None:
        return QuestionVocabulary.build(train)
    train_path = question_files(root, jsons)["train"]
    if train_path.is_file():
        return QuestionVocabulary.build(read_avqa_json(train_path))
    if cache_dir is not None and (Path(cache_dir) / QUESTION_VOCABULARY_FILE).is_file():
        return QuestionVocabulary.load(Path(cache_dir) / QUESTION_VOCABULARY_FILE)
    raise DatasetError(
        f"{train_path}: not found, and the question vocabulary is built from the training questions; give "
        "question_vocab= (the model's word list), the train json (jsons={'train': ...}), or a cache_dir "
        f"holding the {QUESTION_VOCABULARY_FILE} that avadapt prepare wrote"
    )


# --- media ------------------------------------------------------------------------------------------

Layout = Literal["mp4", "frames"]


def numbered_frames(folder: str | Path) -> list[Path]:
    """The numbered frame files of one video's folder, in number order.

    Names are all 4-digit (``0001.jpg``, LAVISH) or all 8-digit (``00000001.jpg``, DG-SCT); another name, or
    a mix of the two widths, is a :class:`MediaError` (frames would be picked in the wrong order).
    """
    folder = Path(folder)
    images = (".jpg", ".jpeg", ".png")
    files = [p for p in folder.iterdir() if p.suffix.lower() in images] if folder.is_dir() else []
    if not files:
        raise MediaError(folder, "no extracted frames (expected 0001.jpg… or 00000001.jpg…)")
    odd = [p.name for p in files if not p.stem.isdigit() or len(p.stem) not in (4, 8)]
    if odd:
        found = sorted(odd)[:3]
        raise MediaError(folder, f"frame files must be named 0001.jpg… or 00000001.jpg…, found {found}")
    widths = {len(p.stem) for p in files}
    if len(widths) > 1:
        raise MediaError(folder, "frame names mix 4-digit and 8-digit numbers")
    return sorted(files, key=lambda p: int(p.stem))


@dataclass(frozen=True)
class AVQAMedia:
    """The native files of one video in one layout, and how its 10 moments are read from them."""

    video_id: str
    layout: Layout
    paths: tuple[Path, ...]  # mp4: (video,); frames: (frame folder, wav)

    @classmethod
    def of(cls, media_root: str | Path, layout: Layout, video_id: str) -> AVQAMedia:
        media_root = Path(media_root)
        if layout == "mp4":
            return cls(video_id, layout, (media_root / f"{video_id}.mp4",))
        frames, wav = media_root / "video_frames" / video_id, media_root / "raw_audio" / f"{video_id}.wav"
        return cls(video_id, layout, (frames, wav))

    def read(self, fbank: FbankConfig, num_segments: int = AVQA_SEGMENTS) -> tuple[np.ndarray, torch.Tensor, float]:
        """(frames (T, H, W, 3) uint8, fbank images (T, 1, F, L), the video's seconds) of the T moments
        (module docstring); :class:`MediaError` naming the file for anything unreadable."""
        if self.layout == "mp4":
            path = self.paths[0]
            seconds = probe(path).duration
            if seconds <= 0:
                raise MediaError(path, "the file declares no duration, so its 10 parts cannot be placed")
            part = seconds / num_segments
            clip = read_clip(path, num_segments, part, sample_rate=fbank.sample_rate)
            return clip.frames, segment_fbank(clip.wave, fbank, num_segments, part), seconds
        folder, wav = self.paths
        numbered_frames(folder)  # names checked, so that read_frame_folder's sorted order is the number order
        frames = read_frame_folder(folder, num_segments)  # (T, H, W, 3), picks linspace(1, n, T, dtype=int)
        wave = read_audio(wav, fbank.sample_rate)
        seconds = len(wave) / fbank.sample_rate
        return frames, segment_fbank(wave, fbank, num_segments, seconds / num_segments), seconds


def find_layout(media_root: str | Path) -> Layout:
    """``frames`` when ``<media_root>/video_frames/`` exists, else ``mp4``."""
    return "frames" if (Path(media_root) / "video_frames").is_dir() else "mp4"


# --- the dataset ------------------------------------------------------------------------------------

@register_dataset
class MusicAVQADataset(ClipDataset):
    """The questions of one MUSIC-AVQA split, each with its video's 10 moments.

    Item: ``{"video": (10, 3, H, W) float, "audio": (10, 1, F, L) float, "answer": () long,
    "question_type": () long, "inputs": {"question": (14,) long, "video_index": () long}, "meta": {"row",
    "question_id", "video_id", "question", "answer", "type"}}``; ``video_index`` numbers the split's videos. ``answer`` indexes the answer vocabulary (:meth:`class_names`); a
    val/test answer outside it is -1 (counted wrong; a warning says how many when the split is built), a train
    one an error. ``question_type`` indexes :data:`QUESTION_TYPES`; ``question`` holds the word indices
    (:class:`QuestionVocabulary`), padded with 0. meta: ``question`` is the filled question text, ``type`` the
    type's short name.

    root: holds ``avqa-train.json``, ``avqa-val.json``, ``avqa-test.json`` (other names: ``jsons``, e.g.
    ``{"test": "avqa-test-update.json"}``) and optionally ``ans_vocab.txt``.
    source: ``"mp4"`` (``<media_root>/<id>.mp4``), ``"frames"`` (``video_frames/`` + ``raw_audio/``),
    ``"cache"`` (``cache_dir`` from :func:`~avadapt.tasks.avqa.prepare.prepare_avqa`), or ``"auto"``: the cache
    if ``cache_dir`` is given, else frames if ``<media_root>/video_frames/`` exists, else mp4. The other
    options are :class:`~avadapt.data.base.ClipDataset`'s; a training transform must not flip (left/right
    questions), and the augmentation lives in it (``train_augmentation``: a RandomResizedCrop per clip).
    question_vocab: the model's question words in index order (``<pad>``, ``<unk>``, …); None: built from the
        train json (or read from ``cache_dir``'s ``question_vocab.json`` when there is no train json).
    answers: an ``ans_vocab.txt`` (relative to ``root`` or absolute); None: ``<root>/ans_vocab.txt`` if
        present, else first appearance in the train json.
    question_length: words per encoded question; a longer question is an error naming its row.
    """

    name = DATASET_NAME
    task = "avqa"
    num_segments = AVQA_SEGMENTS
    segment_seconds = 1.0  # nominal: a moment is one frame and one audio window (module docstring)
    # one RandomResizedCrop (area 0.5–1) per training clip, the same for all 10 frames; never a flip, which
    # would swap the answers of left/right questions
    train_augmentation: ClassVar[dict[str, Any]] = {"train": True, "scale": (0.5, 1.0), "hflip": 0.0}
    layouts = ("mp4", "frames")
    title = "MUSIC-AVQA"
    item_noun = "question"

    @classmethod
    def class_names(cls, root: str | Path, answers: str | Path | None = None,
                    jsons: Mapping[str, str | Path] | None = None, **options: Any) -> list[str]:
        """The answer classes in index order (:func:`load_answer_vocabulary`)."""
        return load_answer_vocabulary(root, answers, jsons)

    @classmethod
    def question_vocabulary(cls, root: str | Path, jsons: Mapping[str, str | Path] | None = None,
                            cache_dir: str | Path | None = None, **options: Any) -> list[str]:
        """The question words in index order, as a model's question embedding needs them
        (:func:`load_question_vocabulary`)."""
        return load_question_vocabulary(root, jsons, cache_dir).to_list()

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
        if question_vocab is not None:
            self.vocabulary = QuestionVocabulary(question_vocab)
        else:
            self.vocabulary = load_question_vocabulary(self.root, jsons, self.cache_dir, train=train)
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
        encoded, answers, unknown_rows, unknown_words, outside = [], [], 0, {}, {}
        for q in questions:
            try:
                encoded.append(self.vocabulary.encode(q.tokens, self.question_length))
            except ValueError as err:
                raise QuestionFileError(self.path, q.row, str(err)) from None
            words = self.vocabulary.unknown_words(q.tokens)
            if words:
                unknown_rows += 1
                unknown_words.update(dict.fromkeys(words))
            if q.answer not in answer_index:
                if self.split == "train":
                    raise QuestionFileError(self.path, q.row, f"answer {q.answer!r} is not in the answer "
                                            f"vocabulary ({len(self.answers)} answers: {self.answers[:5]}…)")
                outside.setdefault(q.answer, q.row)
            answers.append(answer_index.get(q.answer, -1))
        if unknown_rows:
            listed = ", ".join(list(unknown_words)[:10])
            warnings.warn(f"{self.path}: {unknown_rows} question(s) hold words outside the question "
                          f"vocabulary, encoded as {UNK}: {listed}", stacklevel=3)
        if outside:
            rows = sum(1 for a in answers if a < 0)
            examples = ", ".join(map(repr, list(outside)[:5]))
            warnings.warn(f"{self.path}: {rows} of {len(questions)} question(s) have an answer outside the "
                          f"answer vocabulary ({examples}); their answer is -1 and counts as wrong",
                          stacklevel=3)
        empty = torch.zeros(0, self.question_length, dtype=torch.long)
        return (torch.tensor(encoded, dtype=torch.long) if encoded else empty,
                torch.tensor(answers, dtype=torch.long))

    def find_layout(self) -> str:
        return find_layout(self.media_root)

    def media_paths(self, video_id: str) -> list[Path]:
        return list(AVQAMedia.of(self.media_root, self.source, video_id).paths)

    def decode(self, video_id: str) -> tuple[np.ndarray, torch.Tensor]:
        frames, audio, _ = AVQAMedia.of(self.media_root, self.source, video_id).read(self.fbank, self.num_segments)
        return frames, audio

    def __len__(self) -> int:
        return len(self.questions)

    def item_clips(self) -> list[int]:
        """The video of each question (its ``video_index``): a video's questions share one backbone pass."""
        return [self.video_index[q.video_id] for q in self.questions]

    def _media(self, video_id: str, seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`load_media` with the clip's crop drawn from ``seed``, remembered for the next call: a video's
        questions come one after another with one seed (``items_per_clip``), so the clip is read once for them.
        Without a seed a training crop is random and nothing is remembered."""
        key = (video_id, seed)
        if self._last_media is not None and self._last_media[0] == key:
            return self._last_media[1]
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        media = self.load_media(video_id, generator)
        self._last_media = (key, media) if seed is not None or not self.transform.cfg.train else None
        return media

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """One question by index, or by ``(index, seed)`` (:func:`~avadapt.data.base.seeded`)."""
        index, seed, _ = seeded(key)
        question = self.questions[index]
        video, audio = self._media(question.video_id, seed)
        return {
            "video": video,  # (T, 3, H, W)
            "audio": audio,  # (T, 1, F, L)
            "answer": self.answer_indices[index].clone(),  # () long, -1 outside the answer vocabulary
            "question_type": torch.tensor(question.type_index),  # () long
            # a copy, not a view: a view would carry the whole (N, 14) tensor to the loader's main process
            # the question's tokens, and which video it shows (for negatives drawn from other videos)
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
