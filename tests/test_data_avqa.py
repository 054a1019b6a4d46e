"""MUSIC-AVQA: the real question files and their quirks, tokenisation, vocabularies, malformed input, the
frames and mp4 layouts (10 moments of a video of any length), and prepare → cache → dataset."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avadapt._registry import DATASETS
from avadapt.audio_front_ends import audio_front_end
from avadapt.data.base import collate_av
from avadapt.data.cache import BAD_CLIPS, CACHE_JSON, CacheConfigError, CacheSettings
from avadapt.data.datamodule import AVDataModule
from avadapt.data.fbank import segment_fbank
from avadapt.data.transforms import VideoTransform, VideoTransformConfig
from avadapt.errors import DatasetError, MediaError, MissingMediaError, OptionError
from avadapt.tasks.avqa.dataset import MusicAVQADataset, numbered_frames
from avadapt.tasks.avqa.prepare import prepare_avqa
from avadapt.tasks.avqa.questions import (
    QUESTION_TYPE_NAMES,
    QUESTION_TYPES,
    TYPE_GROUPS,
    QuestionFileError,
    QuestionVocabulary,
    answer_vocabulary_from,
    load_question_vocabulary,
    read_answer_vocabulary,
    read_avqa_json,
    tokenize_question,
)
from tests.media_helpers import (
    INDEX_STEP,
    SHARED_DATA,
    cached_clip_info,
    index_frames,
    make_clip,
    tone,
    write_wav,
)

AVQA = SHARED_DATA / "music_avqa"
ANSWERS = AVQA / "ans_vocab.txt"
SIZE = 32
SMALL = VideoTransform(VideoTransformConfig(input_size=(SIZE, SIZE), crop_pct=1.0))
RATE = 16000
# The LAVISH AVQA front end (1.95 s windows, 10 ms shift) with fewer mel bins; 200 frames hold a whole window.
SMALL_VIDEO = {"input_size": (3, SIZE, SIZE), "crop_pct": 1.0}  # the timm data config the model would give
FBANK = audio_front_end("lavish_swin_avqa", {"num_mel_bins": 32, "target_frames": 200}).fbank

# Test counts of the 9 types, in QUESTION_TYPES order (shared/reference/datasets.md §3).
TEST_TYPE_COUNTS = [1022, 601, 1199, 1228, 995, 1274, 927, 1115, 824]

# The tiny test split has words and an answer the tiny train split lacks; the tests about that catch them.
pytestmark = pytest.mark.filterwarnings("ignore:.*outside the (question|answer) vocabulary:UserWarning")


def needs_shared():
    if not (AVQA / "avqa-test.json").is_file():
        pytest.skip(f"shared MUSIC-AVQA files not found at {AVQA}")


def reference_tokens(record: dict) -> list[str]:
    """The reference loader's tokenizer, as its code reads (MUSIC-AVQA / LAVISH dataloader_avst.py)."""
    question = record["question_content"].rstrip().split(" ")
    question[-1] = question[-1][:-1]
    values = json.loads(record["templ_values"])
    p = 0
    for pos in range(len(question)):
        if "<" in question[pos]:
            question[pos] = values[p]
            p += 1
    return question


# --- the real question files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_test():
    needs_shared()
    return read_avqa_json(AVQA / "avqa-test.json"), json.loads((AVQA / "avqa-test.json").read_text())


@pytest.fixture(scope="module")
def real_val():
    needs_shared()
    return read_avqa_json(AVQA / "avqa-val.json"), json.loads((AVQA / "avqa-val.json").read_text())


def test_real_row_and_video_counts(real_val, real_test):
    (val, _), (test, _) = real_val, real_test
    assert len(val) == 4595 and len({q.video_id for q in val}) == 3815
    assert len(test) == 9185 and len({q.video_id for q in test}) == 6399
    assert [q.row for q in test] == list(range(9185))
    assert len(read_avqa_json(AVQA / "avqa-test-update.json")) == 9129
    first = test[0]  # {"video_id": "00000093", "question_id": 12, "type": "[\"Audio\", \"Counting\"]", …}
    assert (first.video_id, first.question_id, first.modality, first.kind, first.answer, first.values) == (
        "00000093", 12, "Audio", "Counting", "one", ())
    assert len({q.question_id for q in test}) == 9130  # ids repeat: questions are keyed by row
    assert not any(q.deleted for q in test)


def test_real_type_histogram(real_test):
    test, records = real_test
    counts = Counter(q.type_index for q in test)
    assert [counts[i] for i in range(9)] == TEST_TYPE_COUNTS
    # the modality and kind strings of the json, read without the loader
    raw = Counter(tuple(json.loads(r["type"])) for r in records)
    assert [raw[t] for t in QUESTION_TYPES] == TEST_TYPE_COUNTS and set(raw) == set(QUESTION_TYPES)


def test_type_names_and_groups():
    assert QUESTION_TYPE_NAMES == (
        "audio_counting", "audio_comparative", "visual_counting", "visual_location",
        "audio_visual_existential", "audio_visual_counting", "audio_visual_location",
        "audio_visual_comparative", "audio_visual_temporal")
    assert TYPE_GROUPS == {
        "audio": ("audio_counting", "audio_comparative"),
        "visual": ("visual_counting", "visual_location"),
        "audio_visual": QUESTION_TYPE_NAMES[4:],
    }
    assert QUESTION_TYPES[6] == ("Audio-Visual", "Location")  # a plain pair compares equal


def test_real_answers_are_in_the_answer_vocabulary(real_val, real_test):
    answers = read_answer_vocabulary(ANSWERS)
    lines = ANSWERS.read_text().split("\n")
    assert lines[:2] == ["two", "cello"] and lines[-1] == "" and len(lines) == 43  # one a line, final newline
    assert len(answers) == 42 and answers[20] == "more than ten" and answers[33] == "ten"
    for questions, _ in (real_val, real_test):
        used = {q.answer for q in questions}
        assert len(used) == 41 and used <= set(answers) and "ten" not in used
    test, records = real_test
    more = sum(r["anser"] == "more than ten" for r in records)
    assert sum(q.answer == "more than ten" for q in test) == more == 10


def test_real_questions_tokenise_as_the_reference(real_val, real_test):
    for questions, records in (real_val, real_test):
        for question, record in zip(questions, records):
            assert list(question.tokens) == reference_tokens(record), question.row
            assert len(question.tokens) <= 14
            assert not any(set(t) & set("<>?？") or not t for t in question.tokens), question.row
    test, _ = real_test
    assert max(len(q.tokens) for q in test) == 14
    assert len({q.template for q in test}) == 33


def test_real_question_endings(real_test):
    test, records = real_test
    endings = Counter(r["question_content"][-1] for r in records)
    assert (endings[" "], endings["？"], endings["?"]) == (591, 430, 8164)
    # the three templates that do not end in a plain "?", and their words by hand
    by_hand = {
        "Are there <Object> and <Object> sound? ": lambda v: ["Are", "there", v[0], "and", v[1], "sound"],
        "What kind of instrument is the <LRer> instrument? ":
            lambda v: ["What", "kind", "of", "instrument", "is", "the", v[0], "instrument"],
        "How many sounding <Object> in the video？": lambda v: ["How", "many", "sounding", v[0], "in", "the",
                                                               "video"],
    }
    odd = [q for q, r in zip(test, records) if not r["question_content"].endswith("?")]
    assert len(odd) == 591 + 430 and {q.template for q in odd} == set(by_hand)
    for question in odd:
        assert list(question.tokens) == by_hand[question.template](question.values), question.row


@pytest.mark.parametrize("ending", ["?", "? ", "？", "？  ", "", " ?"])
def test_the_endings_give_the_words_of_a_plain_question_mark(ending):
    words = ["Are", "there", "violin", "and", "acoustic_guitar", "sound"]
    template = "Are there <Object> and <Object> sound" + ending
    assert tokenize_question(template, ["violin", "acoustic_guitar"]) == words


def test_placeholders_are_filled_in_order():
    template = "Is the <Object> on the <LR> louder than the <Object> on the <LR>?"
    assert tokenize_question(template, ["cello", "left", "piano", "right"]) == [
        "Is", "the", "cello", "on", "the", "left", "louder", "than", "the", "piano", "on", "the", "right"]
    assert tokenize_question("Which instrument makes sounds <BA> the <Object>?", ["after", "tuba"])[-3:] == [
        "after", "the", "tuba"]


# --- vocabularies -----------------------------------------------------------------------------------


def record(video_id: str, question_id: int, modality: str, kind: str, template: str, values: list[str],
           answer: str) -> dict:
    """One row in the released format: type and templ_values as JSON text inside strings."""
    return {"video_id": video_id, "question_id": question_id, "type": json.dumps([modality, kind]),
            "question_content": template, "templ_values": json.dumps(values), "question_deleted": 0,
            "anser": answer}


def write_json(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))
    return path


PLAYING = "Is the <Object> in the video always playing?"
SOUNDING = "How many instruments are sounding in the video?"


def test_question_vocabulary_build_encode_and_unknown_words(tmp_path):
    rows = [record("00000001", 0, "Audio-Visual", "Existential", PLAYING, ["violin"], "yes"),
            record("00000002", 1, "Audio", "Counting", SOUNDING, [], "two")]
    vocabulary = QuestionVocabulary.build(read_avqa_json(write_json(tmp_path / "avqa-train.json", rows)))
    assert vocabulary.to_list() == ["<pad>", "<unk>", "Is", "the", "violin", "in", "video", "always",
                                    "playing", "How", "many", "instruments", "are", "sounding"]
    assert vocabulary.encode(["Is", "the", "violin", "playing"]) == [2, 3, 4, 8] + [0] * 10
    assert vocabulary.encode(["Is", "the", "cello", "playing"], max_len=5) == [2, 3, 1, 8, 0]
    assert vocabulary.unknown_words(["Is", "the", "cello", "cello", "erhu"]) == ["cello", "erhu"]
    with pytest.raises(ValueError, match="has 15 words, more than max_len 14"):
        vocabulary.encode(["Is"] * 15)

    vocabulary.save(tmp_path / "vocab.json")
    assert json.loads((tmp_path / "vocab.json").read_text()) == vocabulary.to_list()
    assert QuestionVocabulary.load(tmp_path / "vocab.json") == vocabulary
    assert QuestionVocabulary(vocabulary.to_list()) == vocabulary and len(vocabulary) == 14
    with pytest.raises(ValueError, match="starts with '<pad>', '<unk>'"):
        QuestionVocabulary(["<pad>", "Is"])
    with pytest.raises(ValueError, match="'Is' appears twice"):
        QuestionVocabulary(["<pad>", "<unk>", "Is", "Is"])
    (tmp_path / "bad.json").write_text('{"tokens": []}')
    with pytest.raises(DatasetError, match=r"bad.json: not a question vocabulary: expected a JSON list"):
        QuestionVocabulary.load(tmp_path / "bad.json")


def test_answer_vocabularies(tmp_path):
    rows = [record("00000001", i, "Audio", "Counting", SOUNDING, [], answer)
            for i, answer in enumerate(["two", "one", "two", "more than ten"])]
    questions = read_avqa_json(write_json(tmp_path / "a.json", rows))
    assert answer_vocabulary_from(questions) == ["two", "one", "more than ten"]
    (tmp_path / "ans.txt").write_text("two\r\none\n\nmore than ten\n")
    assert read_answer_vocabulary(tmp_path / "ans.txt") == ["two", "one", "more than ten"]
    (tmp_path / "ans.txt").write_text("two\none\ntwo\n")
    with pytest.raises(DatasetError, match=r"ans.txt:3: answer 'two' is listed twice \(first on line 1\)"):
        read_answer_vocabulary(tmp_path / "ans.txt")


# --- malformed question files -----------------------------------------------------------------------

GOOD = record("00000001", 7, "Audio-Visual", "Existential", PLAYING, ["ukulele"], "yes")


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"anser": None}, "missing key(s) 'anser' (the answer key of the released files is spelled 'anser')"),
        ({"type": None}, "missing key(s) 'type'"),
        ({"type": '["Audio-Visual", "Existential"'}, "is neither a JSON list nor a Python list literal"),
        ({"type": '"Audio-Visual"'}, "type '\"Audio-Visual\"' holds a str, not a list"),
        ({"type": '["Audio-Visual"]'}, "type must hold two strings [modality, kind], got ['Audio-Visual']"),
        ({"type": '["Audio-Visual", "Existential", "x"]'}, "type must hold two strings"),
        ({"type": '["Audio Visual", "Existential"]'}, "unknown question type ['Audio Visual', 'Existential"),
        ({"type": 3}, "type must be a string holding a JSON list, got int 3"),
        ({"templ_values": "ukulele"}, "templ_values 'ukulele' is neither a JSON list"),
        ({"templ_values": '{"a": 1}'}, "templ_values '{\"a\": 1}' holds a dict, not a list"),
        ({"templ_values": "[]"}, f"1 placeholder(s) in {PLAYING!r} but 0 templ_values"),
        ({"templ_values": '["ukulele", "piano"]'},
         f"1 placeholder(s) in {PLAYING!r} but 2 templ_values ['ukulele', 'piano']"),
        ({"question_content": "Is the <Instrument> playing?"}, "unknown placeholder '<Instrument>'"),
        ({"question_content": "Is the <Object>  playing?"}, "two spaces in a row"),
        ({"question_content": " ? "}, "empty question"),
        ({"video_id": "../x"}, "video_id must be a file name such as '00000086', got '../x'"),
        ({"anser": ""}, "anser (the answer) must be a non-empty string"),
        ({"question_deleted": 2}, "question_deleted must be 0 or 1, got 2"),
    ],
)
def test_bad_row_names_file_and_row(tmp_path, change, problem):
    bad = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    path = write_json(tmp_path / "avqa-val.json", [GOOD, bad])
    with pytest.raises(QuestionFileError, match=re.escape(problem)) as info:
        read_avqa_json(path)
    assert str(info.value).startswith(f"{path}: row 1: ") and info.value.row == 1


def test_python_literal_lists_are_read_too(tmp_path):
    row = {**GOOD, "type": "['Audio', 'Counting']", "templ_values": "['cello']"}
    (question,) = read_avqa_json(write_json(tmp_path / "q.json", [row]))
    assert question.type == ("Audio", "Counting") and question.values == ("cello",)


@pytest.mark.parametrize(
    "text, problem",
    [("", "not a JSON file"), ('{"video_id": "1"}', "expected a JSON array of question objects, found dict"),
     ("[1]", "row 0: expected a question object, found int")],
)
def test_bad_question_file(tmp_path, text, problem):
    path = tmp_path / "q.json"
    path.write_text(text)
    with pytest.raises(QuestionFileError, match=re.escape(f"{path}: {problem}")):
        read_avqa_json(path)
    with pytest.raises(QuestionFileError, match="question file not found"):
        read_avqa_json(tmp_path / "absent.json")


# --- tiny native layouts ----------------------------------------------------------------------------

VIDEOS = ("00000001", "vv00000002")
TRAIN = [
    record("00000001", 1, "Audio-Visual", "Existential", PLAYING, ["cello"], "yes"),
    record("vv00000002", 2, "Visual", "Location", "Where is the <FL> sounding instrument?", ["first"],
           "left"),
    record("00000001", 3, "Audio", "Counting", "How many sounding <Object> in the video？", ["cello"], "two"),
]
TEST = [
    record("vv00000002", 9, "Audio-Visual", "Temporal", "Which instrument makes sounds <BA> the <Object>?",
           ["after", "erhu"], "no"),
    record("00000001", 8, "Audio-Visual", "Counting", "Are there <Object> and <Object> sound? ",
           ["cello", "violin"], "yes"),
]
FRAME_COUNTS = {"00000001": 23, "vv00000002": 10}  # 4-digit names for the first, 8-digit for the second
WAV_SECONDS = {"00000001": 12.3, "vv00000002": 7.0}
MP4_SECONDS = {"00000001": 25.0, "vv00000002": 6.0}


def questions_root(root: Path) -> Path:
    write_json(root / "avqa-train.json", TRAIN)
    write_json(root / "avqa-val.json", TRAIN[:1])
    write_json(root / "avqa-test.json", TEST)
    return root


def clip_wave(video_id: str, seconds: float) -> np.ndarray:
    return tone(seconds, RATE, freq=300.0 + 200 * VIDEOS.index(video_id))


def make_frames_layout(root: Path) -> Path:
    """Questions + ``video_frames/<id>/NNNN.jpg`` (frame i of brightness 6·(i − 1)) + ``raw_audio/<id>.wav``.
    """
    questions_root(root)
    for video_id, count in FRAME_COUNTS.items():
        folder = root / "video_frames" / video_id
        folder.mkdir(parents=True)
        width = 4 if video_id.isdigit() else 8
        for i, frame in enumerate(index_frames(count, SIZE), start=1):
            Image.fromarray(frame).save(folder / f"{i:0{width}d}.jpg", quality=95)
        write_wav(root / "raw_audio" / f"{video_id}.wav", clip_wave(video_id, WAV_SECONDS[video_id]), RATE)
    return root


def burst_wave(seconds: float, bursts: list[tuple[float, float]]) -> np.ndarray:
    """Silence with a 1 kHz tone in each (start, end) interval."""
    wave = np.zeros(round(seconds * RATE), np.float32)
    for start, end in bursts:
        lo, hi = round(start * RATE), round(end * RATE)
        wave[lo:hi] = tone((hi - lo) / RATE, RATE, freq=1000.0, amp=0.5)
    return wave


# 25 s video: parts of 2.5 s; placed with its part, audio window t = [2.5 t, 2.5 t + 1.95). A burst 1.6–1.9 s
# into part t is heard by window t only (a 1 s window would miss it); a burst 2.05–2.4 s into a part falls between
# two windows.
HEARD, BETWEEN = (0, 3, 4, 8), (1, 5, 6)
BURSTS = [(2.5 * t + 1.6, 2.5 * t + 1.9) for t in HEARD] + [(2.5 * t + 2.05, 2.5 * t + 2.4) for t in BETWEEN]


def make_mp4_layout(root: Path) -> Path:
    """Questions + ``<id>.mp4``: 1 fps index-coded frames (frame i on screen during [i, i + 1) s)."""
    questions_root(root)
    make_clip(root / "00000001.mp4", MP4_SECONDS["00000001"], fps=1, wave=burst_wave(25.0, BURSTS), size=SIZE)
    make_clip(root / "vv00000002.mp4", MP4_SECONDS["vv00000002"], fps=1, size=SIZE)
    return root


@pytest.fixture(scope="module")
def frames_root(tmp_path_factory) -> Path:
    return make_frames_layout(tmp_path_factory.mktemp("avqa_frames"))


@pytest.fixture(scope="module")
def mp4_root(tmp_path_factory) -> Path:
    return make_mp4_layout(tmp_path_factory.mktemp("avqa_mp4"))


def shown_indices(video: torch.Tensor) -> list[int]:
    """Index of the index-coded frame in each of (T, 3, H, W) normalised frames (SMALL: mean = std = 0.5)."""
    pixels = (video * 0.5 + 0.5) * 255
    return [round(float(frame.mean()) / INDEX_STEP) for frame in pixels]


def test_frames_layout_items(frames_root):
    dataset = MusicAVQADataset(frames_root, "test", transform=SMALL, fbank=FBANK)
    assert dataset.source == "frames" and len(dataset) == 2
    # answers: first appearance in the train json (no ans_vocab.txt here): yes, left, two
    assert dataset.answers == ["yes", "left", "two"] == MusicAVQADataset.class_names(frames_root)
    item = dataset[1]
    assert item["video"].shape == (10, 3, SIZE, SIZE) and item["video"].dtype == torch.float32
    assert item["audio"].shape == (10, 1, 32, 200) and item["audio"].dtype == torch.float32
    assert item["answer"].shape == () and item["answer"].dtype == torch.long
    assert int(item["answer"]) == 0  # yes
    assert item["question_type"].dtype == torch.long and int(item["question_type"]) == 5  # AV-Counting
    # the train json's words: <pad> <unk> Is the cello in video always playing Where first sounding instrument
    # How many; of "Are there cello and violin sound" only "cello" (4) is among them
    assert item["inputs"]["question"].tolist() == [1, 1, 4, 1, 1, 1] + [0] * 8
    assert item["meta"] == {"row": 1, "question_id": 8, "video_id": "00000001",
                            "question": "Are there cello and violin sound?", "answer": "yes",
                            "type": "audio_visual_counting"}

    # 23 frames: the reference picks linspace(1, 23, 10, dtype=int), 1-based
    picks = [1, 3, 5, 8, 10, 13, 15, 18, 20, 23]
    assert shown_indices(item["video"]) == [p - 1 for p in picks]
    folder = frames_root / "video_frames" / "00000001"
    pixels = np.stack([np.asarray(Image.open(folder / f"{p:04d}.jpg").convert("RGB")) for p in picks])
    assert torch.equal(item["video"], SMALL(pixels))
    # audio: window t of 1.95 s starts at t · 1.23 s (12.3 s cut into 10 parts)
    written = (np.clip(clip_wave("00000001", 12.3), -1, 1) * 32767).astype(np.int16) / 32768.0
    torch.testing.assert_close(item["audio"], segment_fbank(written, FBANK, 10, 1.23), atol=1e-4, rtol=0)

    other = dataset[0]  # 8-digit names, 10 frames: every one, in order
    assert shown_indices(other["video"]) == list(range(10))
    assert int(other["answer"]) == -1  # "no" is not among the train answers


def test_unknown_test_answers_and_words_are_reported(frames_root):
    with pytest.warns(UserWarning) as caught:
        MusicAVQADataset(frames_root, "test", transform=SMALL)
    messages = [str(w.message) for w in caught]
    assert any(re.search(r"avqa-test.json: 1 of 2 question\(s\) have an answer outside the answer vocabulary "
                         r"\('no'\); their answer is -1", m) for m in messages)
    assert any("2 question(s) hold words outside the question vocabulary, encoded as <unk>: Which, makes" in m
               for m in messages)


def _spread_windows_hearing_a_burst(seconds: float, window: float) -> list[int]:
    """The windows the reference loaders place at linspace(0, D − (window + 0.1 s), 10) that overlap a burst."""
    starts = np.linspace(0, seconds - (window + 0.1), 10)
    return [t for t, start in enumerate(starts) if any(lo < start + window and hi > start for lo, hi in BURSTS)]


@pytest.mark.parametrize("placement", ["segment", "spread"])
def test_mp4_layout_places_ten_moments_over_a_25_s_video(mp4_root, placement):
    fbank = dataclasses.replace(FBANK, window_placement=placement)  # FBANK's own, LAVISH's AVQA loader: spread
    dataset = MusicAVQADataset(mp4_root, "train", transform=SMALL, fbank=fbank)
    assert dataset.source == "mp4" and len(dataset) == 3
    item = dataset[0]
    assert item["video"].shape == (10, 3, SIZE, SIZE) and item["audio"].shape == (10, 1, 32, 200)
    # frame at the centre of part t, 2.5 t + 1.25 s; at 1 fps that is frame floor(2.5 t + 1.25)
    assert shown_indices(item["video"]) == [1, 3, 6, 8, 11, 13, 16, 18, 21, 23]
    # audio: only the windows that hold a burst hear anything
    loudness = item["audio"].amax(dim=(1, 2, 3))  # (T,)
    heard = [t for t in range(10) if loudness[t] > loudness.min() + 1.0]
    expected = list(HEARD) if placement == "segment" else _spread_windows_hearing_a_burst(25.0, 1.95)
    assert heard == expected, loudness
    # a 6 s video: parts of 0.6 s, centres 0.3 + 0.6 t → frames floor(0.3 + 0.6 t)
    assert shown_indices(dataset[1]["video"]) == [0, 0, 1, 2, 2, 3, 3, 4, 5, 5]


def test_training_crops_come_from_the_seed_and_never_flip(tmp_path):
    root = questions_root(tmp_path / "noise")
    noise = np.random.default_rng(0).integers(0, 256, (10, SIZE, 2 * SIZE, 3), dtype=np.uint8)
    for video_id in VIDEOS:
        (root / "video_frames" / video_id).mkdir(parents=True)
        for i, frame in enumerate(noise, start=1):
            Image.fromarray(frame).save(root / "video_frames" / video_id / f"{i:04d}.png")
        write_wav(root / "raw_audio" / f"{video_id}.wav", clip_wave(video_id, 2.0), RATE)
    augmentation = MusicAVQADataset.train_augmentation
    config = VideoTransformConfig(input_size=(SIZE, SIZE), crop_pct=1.0, **augmentation)
    assert config.hflip == 0.0 and config.train and config.scale == (0.5, 1.0)
    dataset = MusicAVQADataset(root, "train", transform=VideoTransform(config), augment=True)
    crops = set()
    for seed in range(6):
        item = dataset[(0, seed)]
        # the crop drawn from the seed alone, applied by hand to the 10 frames
        by_hand = VideoTransform(config)(noise, torch.Generator().manual_seed(seed))
        assert torch.equal(item["video"], by_hand), seed
        crops.add(item["video"].sum().item())
    assert len(crops) > 1  # seeds draw different crops
    flipping = VideoTransform(VideoTransformConfig(input_size=(SIZE, SIZE), train=True))
    with pytest.raises(OptionError, match="a flip swaps left and right"):
        MusicAVQADataset(root, "train", transform=flipping)


def test_registered_and_batched(frames_root):
    assert DATASETS.get("music_avqa") is MusicAVQADataset
    assert MusicAVQADataset.task == "avqa"
    assert (MusicAVQADataset.num_segments, MusicAVQADataset.segment_seconds) == (10, 1.0)
    dataset = MusicAVQADataset(frames_root, "train", transform=SMALL)
    batch = collate_av([dataset[0], dataset[1]])
    assert batch.video.shape == (2, 10, 3, SIZE, SIZE) and batch.inputs["question"].shape == (2, 14)
    assert batch.targets["answer"].tolist() == [0, 1] and batch.targets["question_type"].tolist() == [4, 3]
    assert set(batch.targets) == {"answer", "question_type"}
    assert batch.meta["type"] == ["audio_visual_existential", "visual_location"]
    assert load_question_vocabulary(frames_root).to_list() == dataset.vocabulary.to_list()


def test_a_videos_questions_come_together_with_one_crop(frames_root):
    dataset = MusicAVQADataset(frames_root, "train", transform=SMALL)
    assert dataset.item_clips() == [0, 1, 0]  # rows 0 and 2 ask about 00000001
    module = AVDataModule(str(frames_root), dataset="music_avqa", batch_size=3, num_workers=0,
                          items_per_clip=2, preprocessing={"video": SMALL_VIDEO, "dataset": "music_avqa"})
    module.setup("fit")
    loader = module.train_dataloader()
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        (batch,) = list(loader)
        clips = batch.inputs["video_index"].tolist()
        assert clips in ([0, 0, 1], [1, 0, 0])  # the video's two questions next to each other
        first = clips.index(0)
        assert torch.equal(batch.video[first], batch.video[first + 1])  # with one crop
    val = [batch.inputs["video_index"].tolist() for batch in module.val_dataloader()]
    assert val == [[0]]


def test_vocabularies_given_or_missing(frames_root, tmp_path):
    needs_shared()
    words = ["<pad>", "<unk>", "Are", "there"]
    dataset = MusicAVQADataset(frames_root, "test", transform=SMALL, question_vocab=words, answers=ANSWERS)
    assert dataset.encoded[1].tolist()[:3] == [2, 3, 1]
    assert dataset.answer_indices.tolist() == [4, 7]  # no, yes in ans_vocab.txt

    root = questions_root(tmp_path / "no_train")
    (root / "avqa-train.json").unlink()
    with pytest.raises(DatasetError, match="give question_vocab="):
        MusicAVQADataset(root, "test", answers=ANSWERS)
    with pytest.raises(DatasetError, match="no ans_vocab.txt and no training questions"):
        MusicAVQADataset(root, "test", question_vocab=words)
    with pytest.raises(OptionError, match="unknown split"):
        MusicAVQADataset(root, "test", jsons={"holdout": "x.json"})


def test_real_files_through_the_dataset(tmp_path):
    """The real test json without media: every question encodes; the answers come from ans_vocab.txt."""
    needs_shared()
    words = QuestionVocabulary.build(read_avqa_json(AVQA / "avqa-test.json")).to_list()
    with pytest.warns(UserWarning, match="6399 video id"):
        dataset = MusicAVQADataset(AVQA, "test", question_vocab=words, media_root=tmp_path, on_missing="skip")
    assert len(dataset) == 0 and dataset.answers == read_answer_vocabulary(ANSWERS)


def test_train_answer_outside_the_vocabulary_and_long_questions(tmp_path):
    root = questions_root(tmp_path / "q")
    (root / "ans_vocab.txt").write_text("yes\nno\nleft\n")
    with pytest.raises(QuestionFileError, match=r"avqa-train.json: row 2: answer 'two' is not in the answer"):
        MusicAVQADataset(root, "train")
    long = record("00000001", 5, "Audio", "Counting", " ".join(["How"] * 15) + "?", [], "yes")
    write_json(root / "avqa-val.json", [TRAIN[0], long])
    with pytest.raises(QuestionFileError, match=r"avqa-val.json: row 1: the question has 15 words, more th"):
        MusicAVQADataset(root, "val", media_root=tmp_path)
    with pytest.warns(UserWarning, match="have no media"):
        dataset = MusicAVQADataset(root, "val", question_length=15, on_missing="skip", media_root=tmp_path)
    assert len(dataset) == 0


def test_missing_media_is_listed(tmp_path):
    root = make_frames_layout(tmp_path / "partial")
    (root / "raw_audio" / "vv00000002.wav").unlink()
    expected = (r"1 video id\(s\) of MUSIC-AVQA split 'test' have no media \(frames "
                r"layout\):\n  vv00000002: expected .*raw_audio/vv00000002.wav")
    with pytest.raises(MissingMediaError, match=expected):
        MusicAVQADataset(root, "test", transform=SMALL)
    with pytest.warns(UserWarning, match="their questions are skipped"):
        dataset = MusicAVQADataset(root, "test", transform=SMALL, on_missing="skip")
    assert [q.row for q in dataset.questions] == [1] and dataset[0]["meta"]["row"] == 1


def test_frame_names(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("0002.jpg", "0010.jpg", "0001.jpg"):
        (folder / name).touch()
    assert [p.name for p in numbered_frames(folder)] == ["0001.jpg", "0002.jpg", "0010.jpg"]
    (folder / "00000003.jpg").touch()
    with pytest.raises(MediaError, match="mix 4-digit and 8-digit"):
        numbered_frames(folder)
    (folder / "cover.jpg").touch()
    with pytest.raises(MediaError, match=r"must be named 0001.jpg… or 00000001.jpg…, found \['cover.jpg'\]"):
        numbered_frames(folder)


def test_synthesize_calls_the_avqa_generator(monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("avadapt.tasks.avqa.synth")
    fake.synthesize_avqa = lambda out, **kwargs: calls.append((out, kwargs)) or "summary"
    monkeypatch.setitem(sys.modules, "avadapt.tasks.avqa.synth", fake)
    assert MusicAVQADataset.synthesize(tmp_path, clips=3, seed=5) == "summary"
    assert calls == [(tmp_path, {"clips": 3, "seed": 5})]
    with pytest.raises(OptionError, match="its own 42"):
        MusicAVQADataset.synthesize(tmp_path, clips=3, seed=5, num_classes=4)


# --- prepare → cache → dataset ----------------------------------------------------------------------


def add_bad_videos(root: Path) -> dict[str, str]:
    """Test questions on three more videos (no file, garbage bytes, no audio stream); the reasons expected."""
    bad = {"00000091": "file not found", "00000092": "cannot be opened as a media file",
           "00000093": "no audio stream"}
    rows = [record(v, 90 + i, "Audio", "Counting", SOUNDING, [], "two") for i, v in enumerate(bad)]
    write_json(root / "avqa-test.json", TEST + rows)
    (root / "00000092.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    make_clip(root / "00000093.mp4", 3.0, fps=2, audio=False, size=SIZE)
    return bad


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = make_mp4_layout(tmp_path_factory.mktemp("avqa_bad"))
    bad = add_bad_videos(root)
    out = tmp_path_factory.mktemp("cache") / "avqa"
    summary = prepare_avqa(root, out, image_size=SIZE, fbank=FBANK, progress=False)
    return root, out, summary, bad


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_prepare_reports_bad_videos(prepared):
    root, out, summary, bad = prepared
    assert (summary.total, summary.done, summary.skipped_existing) == (5, 2, 0)
    assert str(summary).startswith("prepare_avqa: 2 clips written, 0 already cached, 3 failed")
    report = (out / BAD_CLIPS).read_text().splitlines()
    assert report[0] == "video_id\tpath\treason"
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in report[1:]}
    assert set(rows) == set(bad)
    for video_id, reason in bad.items():
        assert rows[video_id][0] == str(root / f"{video_id}.mp4") and rows[video_id][1].startswith(reason)


def test_cache_format_and_question_vocabulary(prepared):
    root, out, *_ = prepared
    settings = CacheSettings.read(out)
    assert (settings.dataset, settings.num_segments, settings.image_size, settings.fbank) == (
        "music_avqa", 10, SIZE, FBANK)
    assert sorted(p.name for p in out.glob("*.safetensors")) == [f"{v}.safetensors" for v in VIDEOS]
    info = cached_clip_info(out / "00000001.safetensors")
    assert info == {"video_id": "00000001", "source": "mp4", "seconds": 25.0}
    words = json.loads((out / "question_vocab.json").read_text())
    assert words == QuestionVocabulary.build(read_avqa_json(root / "avqa-train.json")).to_list()


@pytest.mark.parametrize("split", ["train", "val"])
def test_cache_reads_like_the_native_layout(prepared, split):
    root, out, *_ = prepared
    cached = MusicAVQADataset(root, split, cache_dir=out, transform=SMALL, fbank=FBANK)
    native = MusicAVQADataset(root, split, transform=SMALL, fbank=FBANK)
    assert cached.source == "cache" and native.source == "mp4" and len(cached) == len(native) > 0
    for index in range(len(cached)):
        a, b = cached[index], native[index]
        assert torch.equal(a["video"], b["video"]) and a["meta"] == b["meta"]
        assert torch.equal(a["inputs"]["question"], b["inputs"]["question"]) and a["answer"] == b["answer"]
        # fbank stored as float16: within its rounding (relative 2^-11) of the float32 values
        assert ((a["audio"] - b["audio"]).abs() <= b["audio"].abs() * 2**-11 + 1e-5).all()


def test_cache_serves_the_question_vocabulary_without_a_train_json(prepared, tmp_path):
    needs_shared()
    root, out, *_ = prepared
    copy = tmp_path / "q"
    copy.mkdir()
    (copy / "avqa-val.json").write_text((root / "avqa-val.json").read_text())
    dataset = MusicAVQADataset(copy, "val", cache_dir=out, transform=SMALL, fbank=FBANK, answers=ANSWERS)
    assert dataset.vocabulary.to_list() == json.loads((out / "question_vocab.json").read_text())


def test_second_prepare_writes_nothing_new(prepared):
    root, out, *_ = prepared
    before = {k: v for k, v in snapshot(out).items() if k != BAD_CLIPS}
    again = prepare_avqa(root, out, image_size=SIZE, fbank=FBANK, progress=False)
    assert (again.done, again.skipped_existing, len(again.failed)) == (0, 2, 3)  # the bad ones are retried
    assert {k: v for k, v in snapshot(out).items() if k != BAD_CLIPS} == before


def test_cache_of_other_settings_is_refused(prepared):
    root, out, *_ = prepared
    with pytest.raises(CacheConfigError, match="image_size: cache 32, wanted 224"):
        MusicAVQADataset(root, "train", cache_dir=out, fbank=FBANK)
    with pytest.raises(CacheConfigError, match="fbank.num_mel_bins: cache 32, wanted 128"):
        prepare_avqa(root, out, image_size=SIZE, progress=False)


@pytest.mark.parametrize("other", ["ave", "avs_s4"])
def test_a_cache_of_another_dataset_is_not_read_as_music_avqa(prepared, tmp_path, other):
    root, out, *_ = prepared
    copy = tmp_path / "other"
    copy.mkdir()
    (copy / CACHE_JSON).write_text(json.dumps({**CacheSettings.read(out).to_json(), "dataset": other}))
    wrong = (rf"{copy / CACHE_JSON}: the cache was prepared with other settings — dataset: cache '{other}', "
             "wanted 'music_avqa'")
    with pytest.raises(CacheConfigError, match=wrong):
        MusicAVQADataset(root, "train", cache_dir=copy, transform=SMALL, fbank=FBANK)
    with pytest.raises(CacheConfigError, match=wrong):
        prepare_avqa(root, copy, image_size=SIZE, fbank=FBANK, progress=False)


@pytest.mark.slow  # spawns worker processes; the AVE prepare test covers them in the default suite
def test_frames_layout_prepares_in_worker_processes(frames_root, tmp_path):
    cache = tmp_path / "cache"
    summary = MusicAVQADataset.prepare(frames_root, cache, workers=2, image_size=SIZE, fbank=FBANK,
                                       media_root=None, crop_pct=1.0, progress=False)
    assert (summary.done, summary.failed) == (2, [])
    assert cached_clip_info(cache / "00000001.safetensors")["source"] == "frames"
    cached = MusicAVQADataset(frames_root, "train", cache_dir=cache, transform=SMALL, fbank=FBANK)
    native = MusicAVQADataset(frames_root, "train", transform=SMALL, fbank=FBANK)
    for index in range(len(native)):
        a, b = cached[index], native[index]
        assert torch.equal(a["video"], b["video"])
        assert ((a["audio"] - b["audio"]).abs() <= b["audio"].abs() * 2**-11 + 1e-5).all()
