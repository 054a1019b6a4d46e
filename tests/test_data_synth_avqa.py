"""The synthetic MUSIC-AVQA: the released json format, real templates, decodable media, answers that the
picture and the sound confirm, determinism.

Answers are re-derived from the decoded mp4 alone, without the generator's truth: an instrument is on
screen where its colour covers 50 or more pixels (its third of the frame from their centroid), and it
sounds in a second where its chord root holds 1 % or more of that second's spectral energy (measured:
3.6 % or more when sounding, 0.3 % or less when not).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from avadapt.data.media import read_clip
from avadapt.data.synthetic import ClassLook
from avadapt.tasks.avqa.synth import INSTRUMENTS, synthesize_avqa
from tests.media_helpers import SHARED_DATA

REAL = SHARED_DATA / "music_avqa"
CLIPS = 20
PER_CLIP = 4
SIZE = 64
SECONDS = 10
RATE = 16000
KEYS = ["video_id", "question_id", "type", "question_content", "templ_values", "question_deleted", "anser"]
SPLITS = {"train": "avqa-train.json", "val": "avqa-val.json", "test": "avqa-test.json"}
PLACEHOLDER = re.compile(r"<(Object|LR|FL|TH|LRer|LL|BA)>")
NUMBERS = ("zero", "one", "two", "three")
SIDES = ("left", "middle", "right")
LOOKS = {name: ClassLook.of(k, object_size=SIZE * 5 // 16) for k, name in enumerate(INSTRUMENTS)}


def needs_real():
    if not (REAL / "avqa-val.json").is_file():
        pytest.skip(f"shared MUSIC-AVQA annotations not found at {REAL}")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("avqa")
    return root, synthesize_avqa(root, clips=CLIPS, seed=11, questions_per_clip=PER_CLIP)


def load(root: Path) -> dict[str, list[dict]]:
    return {split: json.loads((root / name).read_text()) for split, name in SPLITS.items()}


def all_rows(root: Path) -> list[dict]:
    return sorted((row for rows in load(root).values() for row in rows), key=lambda row: row["question_id"])


# ---- what the decoded clip shows and plays, measured independently of the generator ----


@dataclass
class Measured:
    slots: dict[str, int]  # instrument on screen -> 0 left, 1 middle, 2 right
    heard: dict[str, list[int]]  # instrument heard -> the seconds it sounds in
    power: dict[str, float]  # instrument heard -> mean power of its chord root over those seconds
    outdoor: bool  # the top rows are sky (bluish), not wall (reddish)


def measure(path: Path) -> Measured:
    clip = read_clip(path)
    assert clip.frames.shape == (SECONDS, SIZE, SIZE, 3) and clip.wave.shape == (SECONDS * RATE,)
    assert clip.audio_seconds > SECONDS - 0.1 and np.abs(clip.wave).max() > 0.05
    frames = clip.frames.astype(np.int32)
    slots = {}
    for name, look in LOOKS.items():
        found = np.abs(frames - look.colour.astype(np.int32)).sum(axis=-1) < 90  # (T, H, W)
        if found[0].sum() >= 50:
            centres = np.array([np.argwhere(found[t]).mean(axis=0) for t in range(SECONDS)])  # (T, 2)
            # the shape stands still: nothing in the picture follows the music
            assert np.abs(centres - centres[0]).max() < 1.0, (path, name, centres)
            slots[name] = int(centres[0, 1] * 3 // SIZE)
        else:
            assert found.sum(axis=(1, 2)).max() < 10, name
    heard, power = {}, {}
    for name, look in LOOKS.items():
        shares, powers = [], []
        for t in range(SECONDS):
            window = clip.wave[round((t + 0.1) * RATE) : round((t + 0.9) * RATE)]  # away from fades
            spectrum = np.abs(np.fft.rfft(window)) ** 2
            band = np.abs(np.fft.rfftfreq(window.size, 1 / RATE) - look.pitch_hz) <= 5
            shares.append(spectrum[band].sum() / spectrum.sum())
            powers.append(spectrum[band].sum())
        seconds = [t for t in range(SECONDS) if shares[t] > 0.01]
        if seconds:
            heard[name] = seconds
            power[name] = float(np.mean([powers[t] for t in seconds]))
    top = frames[:, :4].mean(axis=(0, 1, 2))  # (3,): the instruments stand lower down
    return Measured(slots, heard, power, outdoor=bool(top[2] > top[0]))


def expected_answer(row: dict, m: Measured) -> str:
    """The answer the measured clip gives to the row's question."""
    question, values = row["question_content"], json.loads(row["templ_values"])
    seen, heard = m.slots, m.heard
    left_to_right = sorted(seen, key=seen.get)
    coming_in = sorted(heard, key=lambda name: heard[name][0])
    yes = {True: "yes", False: "no"}
    if question == "How many types of musical instruments appeared in the entire video?":
        return NUMBERS[len(seen)]
    if question == "Is there a <Object> in the entire video?":
        return yes[values[0] in seen]
    if question == "What kind of instrument is the <LRer> instrument? ":
        return left_to_right[0 if values[0] == "leftest" else -1]
    if question == "What kind of musical instrument is it?":
        (only,) = seen
        return only
    if question == "What is the instrument on the <LR> of <Object>?":
        side, name = values
        (neighbour,) = [o for o in seen if (seen[o] < seen[name] if side == "left" else seen[o] > seen[name])]
        return neighbour
    if question in (
        "How many musical instruments were heard throughout the video?",
        "How many instruments are sounding in the video?",
        "How many types of musical instruments sound in the video?",
    ):
        return NUMBERS[len(heard)]
    if question == "Is there a <Object> sound?":
        return yes[values[0] in heard]
    if question == "How many sounding <Object> in the video\uff1f":
        return NUMBERS[values[0] in heard]
    if question == "How many instruments in the video did not sound from beginning to end?":
        return NUMBERS[len(set(seen) - set(heard))]
    if question == "Is the <Object> in the video always playing?":
        return yes[heard.get(values[0]) == list(range(SECONDS))]
    if question == "Where is the <LL> instrument?":
        return SIDES[seen[max(heard, key=m.power.get)]]
    if question == "Where is the <FL> sounding instrument?":
        return SIDES[seen[coming_in[0 if values[0] == "first" else -1]]]
    if question == "What is the <TH> instrument that comes in?":
        return coming_in[("first", "second", "third").index(values[0])]
    if question == "Is the <Object> on the <LR> louder than the <Object> on the <LR>?":
        a, side_a, b, side_b = values
        assert (SIDES[seen[a]], SIDES[seen[b]]) == (side_a, side_b), row  # the names stand where it says
        return yes[m.power.get(a, 0.0) > m.power.get(b, 0.0)]
    if question == "Is the instrument on the <LR> louder than the instrument on the <LR>?":
        a, b = ({SIDES[side]: name for name, side in seen.items()}[v] for v in values)
        return yes[m.power.get(a, 0.0) > m.power.get(b, 0.0)]
    if question == "Is the <Object> louder than the <Object>?":
        return yes[m.power.get(values[0], 0.0) > m.power.get(values[1], 0.0)]
    if question == "Is the <Object> playing longer than the <Object>?":
        return yes[len(heard.get(values[0], [])) > len(heard.get(values[1], []))]
    if question == "Are there <Object> and <Object> sound? ":
        return yes[values[0] in heard and values[1] in heard]
    if question == "Are there <Object> and <Object> instruments in the video?":
        return yes[values[0] in seen and values[1] in seen]
    if question == "How many <Object> are in the entire video?":
        return NUMBERS[values[0] in seen]
    if question == "Is the <FL> sound coming from the <LR> instrument?":
        return yes[SIDES[seen[coming_in[0 if values[0] == "first" else -1]]] == values[1]]
    if question == "Which is the musical instrument that sounds at the same time as the <Object>?":
        (partner,) = [o for o in heard if o != values[0] and set(heard[o]) & set(heard[values[0]])]
        return partner
    if question == "Which instrument makes sounds <BA> the <Object>?":
        rank = coming_in.index(values[1])
        (other,) = coming_in[rank + 1 :] if values[0] == "after" else coming_in[:rank]
        return other
    if question == "Where is the performance?":
        return "outdoor" if m.outdoor else "indoor"
    raise AssertionError(f"no independent check for {question!r}")


@pytest.fixture(scope="module")
def measured(synth):
    root, _ = synth
    video_ids = sorted({row["video_id"] for row in all_rows(root)})
    return {video_id: measure(root / f"{video_id}.mp4") for video_id in video_ids}


# ---- tests ----


def test_released_json_format(synth):
    root, summary = synth
    seen_ids = set()
    for split, name in SPLITS.items():
        text = (root / name).read_text()
        rows = json.loads(text)
        assert text == json.dumps(rows, indent=2)  # the released files' exact formatting
        assert isinstance(rows, list) and len(rows) == summary.questions[split] > 0
        ids = [row["question_id"] for row in rows]
        assert ids == sorted(ids)
        for row in rows:
            assert list(row) == KEYS, row
            assert re.fullmatch(r"vv\d{8}", row["video_id"]), row
            assert isinstance(row["question_id"], int) and row["question_id"] not in seen_ids
            seen_ids.add(row["question_id"])
            assert isinstance(row["type"], str) and isinstance(row["templ_values"], str)
            kind, values = json.loads(row["type"]), json.loads(row["templ_values"])
            assert ast.literal_eval(row["type"]) == kind  # how the reference code reads it
            assert isinstance(kind, list) and len(kind) == 2 and isinstance(values, list)
            assert all(isinstance(v, str) for v in values)
            assert len(PLACEHOLDER.findall(row["question_content"])) == len(values), row
            assert row["question_deleted"] == 0
            tokens = row["question_content"].rstrip().split(" ")
            assert len(tokens) <= 14  # the reference pads questions to 14 tokens
    assert len(seen_ids) == CLIPS * PER_CLIP == sum(summary.questions.values())
    assert f"{CLIPS} clips" in str(summary) and f"{CLIPS * PER_CLIP} questions" in str(summary)


def test_answer_vocabulary_is_the_released_one(synth):
    needs_real()
    root, _ = synth
    assert (root / "ans_vocab.txt").read_bytes() == (REAL / "ans_vocab.txt").read_bytes()
    vocabulary = (REAL / "ans_vocab.txt").read_text().splitlines()
    assert len(vocabulary) == 42
    assert all(row["anser"] in vocabulary for row in all_rows(root))
    assert set(INSTRUMENTS) <= set(vocabulary)


def test_templates_and_types_are_the_real_ones(synth):
    """Each question is a real template with its real type; each non-instrument fill value (left,
    loudest, first, after, ...) is one the real data uses in that position of that template."""
    needs_real()
    root, summary = synth
    real = json.loads((REAL / "avqa-val.json").read_text())
    real_types: dict[str, set[str]] = {}
    real_words: dict[tuple[str, int], set[str]] = {}
    for row in real:
        real_types.setdefault(row["question_content"], set()).add(row["type"])
        for i, value in enumerate(json.loads(row["templ_values"])):
            real_words.setdefault((row["question_content"], i), set()).add(value)
    rows = all_rows(root)
    for row in rows:
        assert real_types.get(row["question_content"]) == {row["type"]}, row
        for i, value in enumerate(json.loads(row["templ_values"])):
            assert value in INSTRUMENTS or value in real_words[(row["question_content"], i)], (row, value)
    types = {}
    for row in rows:
        key = " ".join(json.loads(row["type"]))
        types[key] = types.get(key, 0) + 1
    assert len(types) == 9 and types == summary.types  # all 9 question types of the benchmark
    assert len({row["question_content"] for row in rows}) >= 15


def test_splits_are_by_video_and_every_video_is_written(synth):
    root, summary = synth
    split_of: dict[str, str] = {}
    per_video: dict[str, int] = {}
    for split, rows in load(root).items():
        for row in rows:
            assert split_of.setdefault(row["video_id"], split) == split, row  # one split per video
            per_video[row["video_id"]] = per_video.get(row["video_id"], 0) + 1
    assert len(split_of) == CLIPS and set(per_video.values()) == {PER_CLIP}
    assert {p.name for p in root.glob("*.mp4")} == {f"{v}.mp4" for v in split_of}
    counts = {split: list(split_of.values()).count(split) for split in SPLITS}
    assert counts == summary.splits and min(counts.values()) >= 1


def test_answers_agree_with_the_picture_and_the_sound(synth, measured):
    """Every answer (location, counting, presence, loudness, duration, order, venue), re-derived from the
    decoded mp4."""
    root, _ = synth
    asked = set()
    for row in all_rows(root):
        m = measured[row["video_id"]]
        assert row["anser"] == expected_answer(row, m), (row, m)
        asked.add(row["question_content"])
    location = {
        "What kind of instrument is the <LRer> instrument? ",
        "What is the instrument on the <LR> of <Object>?",
        "Where is the <LL> instrument?",
        "Where is the <FL> sounding instrument?",
        "Is the <Object> on the <LR> louder than the <Object> on the <LR>?",
    }
    audio_counting = {
        "How many musical instruments were heard throughout the video?",
        "Is there a <Object> sound?",
    }
    assert location & asked and audio_counting & asked, asked


def test_sounding_is_not_the_same_as_visible(measured):
    """Every heard instrument is on screen, and some clips show instruments that never sound, so the
    picture cannot tell which instruments play."""
    silent_somewhere = 0
    for m in measured.values():
        assert m.slots and m.heard and set(m.heard) <= set(m.slots)
        silent_somewhere += bool(set(m.slots) - set(m.heard))
    assert silent_somewhere >= 3
    sides = {side for m in measured.values() for side in m.slots.values()}
    assert sides == {0, 1, 2}


def test_yes_no_answers_are_balanced(synth):
    root, _ = synth
    answers = [row["anser"] for row in all_rows(root) if row["anser"] in ("yes", "no")]
    assert len(answers) >= 10
    assert 0.35 <= answers.count("yes") / len(answers) <= 0.65


def test_same_seed_same_bytes_other_seed_other_files(tmp_path):
    first = synthesize_avqa(tmp_path / "first", clips=3, seed=5).root
    again = synthesize_avqa(tmp_path / "again", clips=3, seed=5).root
    other = synthesize_avqa(tmp_path / "other", clips=3, seed=6).root
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert len(files) == 4 + 3
    assert all((first / f).read_bytes() == (again / f).read_bytes() for f in files)
    assert (first / "avqa-train.json").read_bytes() != (other / "avqa-train.json").read_bytes()
    other_videos = {p.name for p in other.glob("*.mp4")}
    assert other_videos != {p.name for p in first.glob("*.mp4")}


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="multiple of 16"):
        synthesize_avqa(tmp_path, clips=2, size=50)
    with pytest.raises(ValueError, match="seconds"):
        synthesize_avqa(tmp_path, clips=2, seconds=4)
    with pytest.raises(ValueError, match="questions_per_clip"):
        synthesize_avqa(tmp_path, clips=2, questions_per_clip=0)
