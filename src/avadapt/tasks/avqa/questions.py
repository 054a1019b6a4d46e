"""MUSIC-AVQA's question files, question types, tokenisation and vocabularies.

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
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from avadapt.data.base import SPLITS
from avadapt.data.cache import write_text_atomic
from avadapt.errors import DatasetError, OptionError

QUESTION_LENGTH = 14  # words per encoded question; the longest released question has 14
JSON_KEYS = (
    "video_id", "question_id", "type", "question_content", "templ_values", "question_deleted", "anser",
)
DEFAULT_JSONS = {"train": "avqa-train.json", "val": "avqa-val.json", "test": "avqa-test.json"}
ANSWER_VOCABULARY_FILE = "ans_vocab.txt"  # DG-SCT's data/AVQA/ans_vocab.txt: one answer per line, index order
QUESTION_VOCABULARY_FILE = "question_vocab.json"  # written into a cache by prepare_avqa
PLACEHOLDERS = ("<Object>", "<LR>", "<FL>", "<TH>", "<LRer>", "<LL>", "<BA>")
QUESTION_MARKS = ("?", "\uff1f")  # ASCII and full-width (430 test questions end in the full-width one)
PAD, UNK = "<pad>", "<unk>"


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


class QuestionFileError(DatasetError):
    """A missing or malformed question json; the message starts with ``file: row N:`` (N = the 0-based index
    in the file's array), or ``file:`` when the whole file is at fault."""

    def __init__(self, path: str | Path, row: int | None, problem: str):
        self.path, self.row, self.problem = Path(path), row, problem
        where = f"{self.path}: row {row}" if row is not None else f"{self.path}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class AVQAQuestion:
    """One row of a question json: ``template`` is ``question_content`` as released, ``values`` the parsed
    ``templ_values``, ``tokens`` the filled question (:func:`tokenize_question`), ``row`` the index in the file."""

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

    Strip trailing whitespace, drop one final ``?`` or ``？`` and any spaces before it, split on single spaces,
    replace each placeholder by the next value: ``"…sound? "`` (591 test rows) and ``"…video？"`` (430) read as
    the plain ``?`` ending would. On every released row this equals the reference tokenizer (``rstrip().split('
    ')``, cut the last character, replace words containing ``<``), which would instead cut a letter off a
    question without a mark and keep an empty word for ``"… ?"``. ``ValueError`` for anything else odd.
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
        raise ValueError(f"unknown placeholder {unknown[0]!r} in {template!r} (known: {' '.join(PLACEHOLDERS)})")
    slots = [i for i, t in enumerate(tokens) if t in PLACEHOLDERS]
    if len(slots) != len(values):
        raise ValueError(
            f"{len(slots)} placeholder(s) in {template!r} but {len(values)} templ_values {list(values)!r}; "
            "they are filled one by one, in order, so the counts must be equal"
        )
    for slot, value in zip(slots, values):
        tokens[slot] = value
    return tokens


def _parse_list(value: Any, key: str) -> list[Any]:
    """A list given as JSON or Python literal text, or as a list; ``TypeError`` or ``ValueError`` naming ``key``
    otherwise."""
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string holding a JSON list, got {type(value).__name__} {value!r}")
    try:
        parsed = json.loads(value)
    except ValueError:
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise ValueError(f"{key} {value!r} is neither a JSON list nor a Python list literal") from None
    if not isinstance(parsed, list):
        raise TypeError(f"{key} {value!r} holds a {type(parsed).__name__}, not a list")
    return parsed


# (key, check of its value, what the check asks for) of the keys used as they are, not parsed
_FIELD_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("video_id", lambda v: isinstance(v, str) and v[:1] not in ("", ".") and not {"/", "\\"} & set(v),
     "must be a file name such as '00000086'"),
    ("question_id", lambda v: isinstance(v, int | str) and not isinstance(v, bool), "must be a number"),
    ("question_content", lambda v: isinstance(v, str), "must be a string"),
    ("anser", lambda v: isinstance(v, str) and v.strip() != "", "(the answer) must be a non-empty string"),
    ("question_deleted", lambda v: v in (0, 1), "must be 0 or 1"),  # True/False compare equal to 1/0
)


def _question(path: Path, row: int, record: Any) -> AVQAQuestion:
    try:
        if not isinstance(record, dict):
            raise TypeError(f"expected a question object, found {type(record).__name__}")
        missing = [key for key in JSON_KEYS if key not in record]
        if missing:
            hint = " (the answer key of the released files is spelled 'anser')" if "anser" in missing else ""
            raise ValueError(f"missing key(s) {', '.join(map(repr, missing))}{hint}")
        for key, valid, rule in _FIELD_RULES:
            if not valid(record[key]):
                raise ValueError(f"{key} {rule}, got {record[key]!r}")
        kind = _parse_list(record["type"], "type")
        values = _parse_list(record["templ_values"], "templ_values")
        if len(kind) != 2 or not all(isinstance(k, str) for k in kind):
            raise ValueError(f"type must hold two strings [modality, kind], got {kind!r}")
        if QuestionType(*kind) not in QUESTION_TYPES:
            known = ", ".join(f"{t.modality}-{t.kind}" for t in QUESTION_TYPES)
            raise ValueError(f"unknown question type {kind!r}; known: {known}")
        if not all(isinstance(v, str) and v for v in values):
            raise ValueError(f"templ_values must hold non-empty strings, got {values!r}")
        tokens = tokenize_question(record["question_content"], values)
    except (TypeError, ValueError) as err:
        raise QuestionFileError(path, row, str(err)) from None
    return AVQAQuestion(record["question_id"], record["video_id"], *kind, record["question_content"],
                        tuple(values), record["anser"].strip(), tuple(tokens), row, bool(record["question_deleted"]))


def read_avqa_json(path: str | Path) -> list[AVQAQuestion]:
    """Every question of a MUSIC-AVQA json, in file order; ``type`` and ``templ_values`` are read with
    ``json.loads``, falling back to ``ast.literal_eval`` as the reference does. Anything else out of the
    released format is a :class:`QuestionFileError` naming the file and the row."""
    path = Path(path)
    if not path.is_file():
        raise QuestionFileError(path, None, "MUSIC-AVQA question file not found")
    try:
        rows = json.loads(path.read_text(encoding="utf-8-sig"))
    except ValueError as err:  # not JSON, or not UTF-8 text
        raise QuestionFileError(path, None, f"not a JSON file: {err}") from None
    if not isinstance(rows, list):
        raise QuestionFileError(path, None, f"expected a JSON array of question objects, found {type(rows).__name__}")
    return [_question(path, row, record) for row, record in enumerate(rows)]


class QuestionVocabulary:
    """Question words → indices of the question embedding: ``<pad>`` = 0, ``<unk>`` = 1 (a word the training
    questions never had), then the training questions' words in order of first appearance, as the reference
    builds it (with ``<pad>`` only: an unseen word is a ``KeyError`` there). Saved as a JSON list."""

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tokens[:2] != [PAD, UNK]:
            raise ValueError(f"a question vocabulary starts with {PAD!r}, {UNK!r}; got {tokens[:2]!r}")
        if not all(isinstance(t, str) and t for t in tokens):
            raise ValueError("question vocabulary words must be non-empty strings")
        self._index: dict[str, int] = {}
        for i, token in enumerate(tokens):
            if token in self._index:
                raise ValueError(f"word {token!r} appears twice in the question vocabulary "
                                 f"(at {self._index[token]} and {i})")
            self._index[token] = i
        self.tokens: tuple[str, ...] = tuple(tokens)

    @classmethod
    def build(cls, questions: Iterable[AVQAQuestion]) -> QuestionVocabulary:
        """From training questions: their words in order of first appearance after ``<pad>``, ``<unk>``."""
        return cls(list(dict.fromkeys([PAD, UNK, *(t for question in questions for t in question.tokens)])))

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

    def __eq__(self, other: object) -> bool:
        return isinstance(other, QuestionVocabulary) and self.tokens == other.tokens

    def unknown_words(self, tokens: Iterable[str]) -> list[str]:
        """The words of ``tokens`` the vocabulary lacks (encoded as ``<unk>``), in order, without repeats."""
        return list(dict.fromkeys(t for t in tokens if t not in self._index))

    def encode(self, tokens: Sequence[str], max_len: int = QUESTION_LENGTH) -> list[int]:
        """``max_len`` indices: the words' (``<unk>``'s, 1, for unknown words), then ``<pad>`` (0). A question of
        more than ``max_len`` words raises ``ValueError`` rather than losing its end."""
        if len(tokens) > max_len:
            raise ValueError(f"the question has {len(tokens)} words, more than max_len {max_len}: "
                             f"{' '.join(tokens)!r}")
        return [self._index.get(t, 1) for t in tokens] + [0] * (max_len - len(tokens))


def read_answer_vocabulary(path: str | Path) -> list[str]:
    """The answers of ``ans_vocab.txt`` in index order, one per line (``more than ten`` is one answer); blank
    lines are skipped, a repeated answer is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: answer vocabulary not found")
    answers: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        answer = line.strip()
        if not answer:
            continue
        if answer in answers:
            raise DatasetError(f"{path}:{number}: answer {answer!r} is listed twice (first on line {answers[answer]})")
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
        raise OptionError(f"jsons names unknown split(s) {sorted(unknown)}; the splits are {', '.join(SPLITS)}")
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
