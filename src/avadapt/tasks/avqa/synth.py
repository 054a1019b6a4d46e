"""A small synthetic MUSIC-AVQA: real mp4 files and question files in the released json format, so that tests,
the demo and smoke training run the code real MUSIC-AVQA goes through, with nothing downloaded.

Each clip is a "performance" of one to three instruments (real MUSIC-AVQA names), each with its own shape,
colour and sound, in the left, middle or right third of the frame, before an indoor or outdoor background. At
least one sounds, during one interval of whole seconds, at one of three levels 6 dB apart; no two start in the
same second. Which visible instruments sound, when and how loud is drawn independently of where they stand, so
audio questions need the sound (silent instruments are on screen too), visual questions the picture, and
audio-visual questions both.

Questions use 26 of the 33 real templates, word for word and with the real ``type`` labels, covering all 9
types, each asked only where its answer is unique; six others need truth this generator does not have (rhythm,
voice-over, off-screen sounds, two instruments of one kind), and "What is the <LR> instrument of the <FL>
sounding instrument?" has no single reading. Where a template is open to reading: *louder* compares the RMS
levels while sounding (silent = 0); *longer* the sounding durations; *first / last / second / third* and
*before / after* order instruments by the second they start sounding; *always playing* means sounding from the
first to the last second; "on the left of X" is asked only where exactly one instrument stands on that side.

One ``numpy`` generator seeded by ``seed``, fixed json formatting and a single-threaded mp4 encoder make the same
seed give byte-identical files.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path

import numpy as np

from avadapt.data.media import write_mp4
from avadapt.data.synthetic import (
    ClassLook,
    SynthSummary,
    assign_splits,
    blocky_noise,
    check_clips_and_size,
    distinct_ids,
    fade,
    split_counts,
)
from avadapt.tasks.avqa.questions import ANSWER_VOCABULARY_FILE, DEFAULT_JSONS, QUESTION_TYPES

# Instruments of the synthetic clips: real MUSIC-AVQA answers, one per colour of the synthetic palette.
INSTRUMENTS = ("cello", "violin", "piano", "flute", "acoustic_guitar", "accordion", "clarinet")

# The 42 answers in the reference code's index order (first appearance in avqa-train.json; DG-SCT's
# data/AVQA/ans_vocab.txt).
ANSWERS = (
    "two", "cello", "congas", "zero", "no", "pipa", "six", "yes", "one", "four", "three", "seven", "five",
    "ukulele", "right", "piano", "left", "accordion", "clarinet", "guzheng", "more than ten", "nine",
    "indoor", "saxophone", "drum", "violin", "middle", "outdoor", "bagpipe", "bassoon", "acoustic_guitar",
    "banjo", "electric_bass", "ten", "eight", "flute", "simultaneously", "trumpet", "erhu", "xylophone",
    "tuba", "suona",
)  # fmt: skip

SLOTS = ("left", "middle", "right")
_NUMBERS = ("zero", "one", "two", "three")
_ORDINALS = ("first", "second", "third")
_LEVELS = (0.03, 0.06, 0.12)  # RMS while sounding, 6 dB apart: "louder" is never a close call
_NOISE_RMS = 0.005
FPS = 4
SAMPLE_RATE = 16000
# Background colours (RGB), each ≥ 180 from every instrument colour (summed over channels), so the
# ±6 per-clip shift and the noise never make the background look like an instrument.
_INDOOR = ((118, 96, 82), (84, 66, 54))  # wall, floor
_OUTDOOR = ((140, 160, 190), (120, 135, 95))  # sky, grass


@dataclass(kw_only=True)
class SynthAVQASummary(SynthSummary):
    """What :func:`synthesize_avqa` wrote: the clips, and ``questions`` per split and per question type."""

    questions: dict[str, int]
    types: dict[str, int]  # "Audio-Visual Counting" -> questions

    def details(self) -> str:
        total = sum(self.questions.values())
        return f", {total} questions ({split_counts(self.questions)}) of {len(self.types)} types"


@dataclass(frozen=True)
class _Performer:
    """One visible instrument; ``level`` 0 means it never sounds (then start = end = 0)."""

    instrument: int  # index into INSTRUMENTS
    slot: int  # index into SLOTS
    level: float
    start: int  # sounding during the seconds [start, end)
    end: int

    @property
    def name(self) -> str:
        return INSTRUMENTS[self.instrument]

    @property
    def where(self) -> str:
        return SLOTS[self.slot]

    @property
    def sounding(self) -> bool:
        return self.level > 0


@dataclass(frozen=True)
class _Scene:
    """The ground truth of one clip."""

    visible: list[_Performer]  # left to right
    decoy: int  # an instrument that is not in the clip: the "no" of presence questions
    outdoor: bool
    seconds: int

    @property
    def sounding(self) -> list[_Performer]:
        """The sounding instruments in the order they come in (starts are distinct)."""
        return sorted((p for p in self.visible if p.sounding), key=lambda p: p.start)

    @property
    def pool(self) -> list[int]:
        """Instruments a presence question may name: those on screen and the decoy."""
        return [p.instrument for p in self.visible] + [self.decoy]

    def shows(self, instrument: int) -> bool:
        return any(p.instrument == instrument for p in self.visible)

    def sounds(self, instrument: int) -> bool:
        return any(p.instrument == instrument and p.sounding for p in self.visible)


def _draw_scene(rng: np.random.Generator, seconds: int) -> _Scene:
    """1–3 visible instruments in distinct slots; 1..all of them sound, each over ≥ 2 s, starting in
    distinct seconds; in half the clips the first one plays from the first to the last second."""
    count = int(rng.choice([1, 2, 3], p=[0.2, 0.4, 0.4]))
    instruments = [int(k) for k in rng.choice(len(INSTRUMENTS), size=count + 1, replace=False)]
    slots = sorted(int(s) for s in rng.choice(len(SLOTS), size=count, replace=False))
    heard = int(rng.integers(1, count + 1))
    sounding = [int(j) for j in rng.permutation(count)[:heard]]  # visible indices, in order of coming in
    levels = rng.permutation(_LEVELS)[:heard]
    starts = sorted(int(s) for s in rng.choice(seconds - 2, size=heard, replace=False))
    throughout = rng.random() < 0.5
    if throughout:
        starts[0] = 0
    timing = {}
    for rank, j in enumerate(sounding):
        end = seconds if throughout and rank == 0 else int(rng.integers(starts[rank] + 2, seconds + 1))
        timing[j] = (float(levels[rank]), starts[rank], end)
    visible = [_Performer(instruments[j], slots[j], *timing.get(j, (0.0, 0, 0))) for j in range(count)]
    return _Scene(visible, instruments[-1], outdoor=bool(rng.random() < 0.5), seconds=seconds)


# ---- templates: each lists (templ_values, answer) for every question it can ask about a scene ----

Words = tuple[str, ...]  # a template's templ_values
Candidates = list[tuple[Words, str]]
Asks = Callable[[_Scene], Candidates]


def _yes(condition: bool) -> str:
    return "yes" if condition else "no"


def _number(present: bool) -> str:
    return _NUMBERS[int(present)]


def _each_instrument(fact: Callable[[_Scene, int], bool], answer: Callable[[bool], str] = _yes) -> Asks:
    """One question per instrument a presence question may name (those on screen and the decoy)."""
    return lambda scene: [((INSTRUMENTS[k],), answer(fact(scene, k))) for k in scene.pool]


def _each_pair(fact: Callable[[_Scene, int], bool]) -> Asks:
    """One question per ordered pair of those instruments: yes when both have ``fact``."""
    return lambda scene: [((INSTRUMENTS[a], INSTRUMENTS[b]), _yes(fact(scene, a) and fact(scene, b)))
                          for a, b in permutations(scene.pool, 2)]  # fmt: skip


def _compare(key: Callable[[_Performer], float], words: Callable[[_Performer, _Performer], Words]) -> Asks:
    """Is p's ``key`` greater than q's, for every ordered pair of visible instruments where the two differ;
    ``words`` fills the template's placeholders."""
    return lambda scene: [(words(p, q), _yes(key(p) > key(q)))
                          for p, q in permutations(scene.visible, 2) if key(p) != key(q)]  # fmt: skip


def _count(how_many: Callable[[_Scene], int]) -> Asks:
    return lambda scene: [((), _NUMBERS[how_many(scene)])]


def _beside(scene: _Scene) -> Candidates:
    found = []
    for p in scene.visible:
        for side in ("left", "right"):
            there = [q for q in scene.visible if (q.slot < p.slot if side == "left" else q.slot > p.slot)]
            if len(there) == 1:
                found.append(((side, p.name), there[0].name))
    return found


def _first_last(scene: _Scene) -> list[tuple[str, _Performer]]:
    """("first", the first to come in) and, from two sounding instruments up, ("last", the last)."""
    order = scene.sounding
    return [("first", order[0])] + ([("last", order[-1])] if len(order) > 1 else [])


def _same_time(scene: _Scene) -> Candidates:
    found = []
    for p in scene.sounding:
        overlapping = [q for q in scene.sounding if q is not p and max(p.start, q.start) < min(p.end, q.end)]
        if len(overlapping) == 1:
            found.append(((p.name,), overlapping[0].name))
    return found


def _before_after(scene: _Scene) -> Candidates:
    """After the last but one and before the second: the only ones with one answer, as at most three sound."""
    order = scene.sounding
    if len(order) < 2:
        return []
    return [(("after", order[-2].name), order[-1].name), (("before", order[1].name), order[0].name)]


@dataclass(frozen=True)
class _Template:
    content: str  # the released ``question_content``, character for character
    type: tuple[str, str]
    candidates: Asks


_HEARD = _count(lambda scene: len(scene.sounding))
TEMPLATES = (
    _Template("Is there a <Object> sound?", QUESTION_TYPES[0], _each_instrument(_Scene.sounds)),
    _Template("Are there <Object> and <Object> sound? ", QUESTION_TYPES[0], _each_pair(_Scene.sounds)),
    _Template("How many musical instruments were heard throughout the video?", QUESTION_TYPES[0], _HEARD),
    _Template("Is the <Object> louder than the <Object>?", QUESTION_TYPES[1],
              _compare(lambda p: p.level, lambda p, q: (p.name, q.name))),
    _Template("Is the <Object> playing longer than the <Object>?", QUESTION_TYPES[1],
              _compare(lambda p: p.end - p.start, lambda p, q: (p.name, q.name))),
    _Template("Is there a <Object> in the entire video?", QUESTION_TYPES[2], _each_instrument(_Scene.shows)),
    _Template("Are there <Object> and <Object> instruments in the video?", QUESTION_TYPES[2],
              _each_pair(_Scene.shows)),
    _Template("How many types of musical instruments appeared in the entire video?", QUESTION_TYPES[2],
              _count(lambda scene: len(scene.visible))),
    _Template("How many <Object> are in the entire video?", QUESTION_TYPES[2],
              _each_instrument(_Scene.shows, _number)),
    _Template("What kind of musical instrument is it?", QUESTION_TYPES[3],
              lambda scene: [((), scene.visible[0].name)] if len(scene.visible) == 1 else []),
    _Template("What kind of instrument is the <LRer> instrument? ", QUESTION_TYPES[3],
              lambda scene: [(("leftest",), scene.visible[0].name), (("rightest",), scene.visible[-1].name)]
              if len(scene.visible) > 1 else []),
    _Template("What is the instrument on the <LR> of <Object>?", QUESTION_TYPES[3], _beside),
    _Template("Where is the performance?", QUESTION_TYPES[3],
              lambda scene: [((), "outdoor" if scene.outdoor else "indoor")]),
    _Template("Is the <Object> in the video always playing?", QUESTION_TYPES[4],
              lambda scene: [((p.name,), _yes(p.sounding and p.start == 0 and p.end == scene.seconds))
                             for p in scene.visible]),
    _Template("How many instruments are sounding in the video?", QUESTION_TYPES[5], _HEARD),
    _Template("How many types of musical instruments sound in the video?", QUESTION_TYPES[5], _HEARD),
    _Template("How many instruments in the video did not sound from beginning to end?", QUESTION_TYPES[5],
              _count(lambda scene: len(scene.visible) - len(scene.sounding))),
    _Template("How many sounding <Object> in the video\uff1f", QUESTION_TYPES[5],
              _each_instrument(_Scene.sounds, _number)),
    _Template("Where is the <LL> instrument?", QUESTION_TYPES[6],
              lambda scene: [(("loudest",), max(scene.sounding, key=lambda p: p.level).where)]),
    _Template("Is the <FL> sound coming from the <LR> instrument?", QUESTION_TYPES[6],
              lambda scene: [((word, q.where), _yes(q is p)) for word, p in _first_last(scene)
                             for q in scene.visible]),
    _Template("Which is the musical instrument that sounds at the same time as the <Object>?",
              QUESTION_TYPES[6], _same_time),
    _Template("Is the instrument on the <LR> louder than the instrument on the <LR>?", QUESTION_TYPES[7],
              _compare(lambda p: p.level, lambda p, q: (p.where, q.where))),
    _Template("Is the <Object> on the <LR> louder than the <Object> on the <LR>?", QUESTION_TYPES[7],
              _compare(lambda p: p.level, lambda p, q: (p.name, p.where, q.name, q.where))),
    _Template("Where is the <FL> sounding instrument?", QUESTION_TYPES[8],
              lambda scene: [((word,), p.where) for word, p in _first_last(scene)]),
    _Template("What is the <TH> instrument that comes in?", QUESTION_TYPES[8],
              lambda scene: [((_ORDINALS[rank],), p.name) for rank, p in enumerate(scene.sounding)]),
    _Template("Which instrument makes sounds <BA> the <Object>?", QUESTION_TYPES[8], _before_after),
)  # fmt: skip


def _ask(
    rng: np.random.Generator, scene: _Scene, count: int, first_type: int, tally: dict[str, Counter[str]]
) -> list[tuple[_Template, tuple[str, ...], str]]:
    """Up to ``count`` distinct questions about one scene: type ``first_type + j`` (mod 9) for the j-th, or the
    next type the scene can answer; then a template of that type, its rarest answer so far (``tally``, updated
    here) among those the scene allows, so that yes/no and left/middle/right come out nearly balanced, and a
    wording."""
    asked: list[tuple[_Template, tuple[str, ...], str]] = []
    for j in range(count):
        options: dict[_Template, Candidates] = {}
        for step in range(len(QUESTION_TYPES)):
            kind = QUESTION_TYPES[(first_type + j + step) % len(QUESTION_TYPES)]
            for template in (t for t in TEMPLATES if t.type == kind):
                fresh = [c for c in template.candidates(scene) if (template, *c) not in asked]
                if fresh:
                    options[template] = fresh
            if options:
                break
        if not options:
            break
        template = list(options)[rng.integers(len(options))]
        given = tally.setdefault(template.content, Counter())
        answers = sorted({answer for _, answer in options[template]})
        rarest = [a for a in answers if given[a] == min(given[b] for b in answers)]
        answer = rarest[rng.integers(len(rarest))]
        given[answer] += 1
        wordings = [values for values, a in options[template] if a == answer]
        asked.append((template, wordings[rng.integers(len(wordings))], answer))
    return asked


def _render_video(rng: np.random.Generator, scene: _Scene, looks: list[ClassLook], size: int) -> np.ndarray:
    """(seconds·FPS, size, size, 3) uint8: the background with blocky noise changing every frame, and
    each instrument's shape standing still in its third of the frame."""
    n = scene.seconds * FPS
    upper, lower = _OUTDOOR if scene.outdoor else _INDOOR
    horizon = size // 2 if scene.outdoor else size * 2 // 3
    base = np.empty((size, size, 3), dtype=np.float32)
    base[:horizon], base[horizon:] = upper, lower
    base += rng.uniform(-6, 6, size=3).astype(np.float32)
    noise = blocky_noise(rng, n, size, std=5.0)
    frames = np.clip(base + noise, 0, 255).astype(np.uint8)  # (n, size, size, 3)
    for p in scene.visible:
        look = looks[p.instrument]
        s = look.mask.shape[0]
        jitter = size // 16
        top = (size - s) // 2 + int(rng.integers(-jitter, jitter + 1))
        look.paint(frames, top, left=int(np.clip(round(size * (2 * p.slot + 1) / 6 - s / 2), 0, size - s)))
    return frames


def _render_audio(rng: np.random.Generator, scene: _Scene, looks: list[ClassLook]) -> np.ndarray:
    """(seconds·SAMPLE_RATE,) float64: low noise plus each sounding instrument's sound, scaled to its
    level (RMS) and gated to its interval with 10 ms fades."""
    t = np.arange(scene.seconds * SAMPLE_RATE) / SAMPLE_RATE
    wave = rng.normal(0.0, _NOISE_RMS, size=t.size)
    for p in scene.sounding:
        sound = looks[p.instrument].sound(t)
        sound *= p.level / np.sqrt(np.mean(sound**2))
        span = slice(p.start * SAMPLE_RATE, p.end * SAMPLE_RATE)
        wave[span] += sound[span] * fade((p.end - p.start) * SAMPLE_RATE, SAMPLE_RATE)
    return wave


def synthesize_avqa(
    out: str | Path,
    clips: int = 100,
    seed: int = 0,
    *,
    size: int = 64,
    seconds: int = 10,
    questions_per_clip: int = 4,
    split_fractions: tuple[float, float] = (0.15, 0.15),
) -> SynthAVQASummary:
    """Write ``clips`` synthetic performances with MUSIC-AVQA's released files under ``out``.

    ``avqa-{train,val,test}.json`` as released (2-space indent, ASCII-escaped, no final newline, the 7 keys;
    ``video_id`` is ``vv`` + 8 digits as the real set's synthetic videos, ``question_id`` is unique over all
    splits); ``ans_vocab.txt`` (the 42 answers in the reference order); ``<video_id>.mp4`` beside them, where
    the mp4 layout looks by default (``size``², 4 fps, mono audio at 16 kHz). ``split_fractions``: the
    (val, test) shares of the videos, at least one each from 10 videos up; a video's questions are in its split.
    ``questions_per_clip``: distinct questions per video (fewer where a clip runs out of them).
    """
    check_clips_and_size(clips, size, multiple=16)
    if seconds < 5 or questions_per_clip < 1:
        raise ValueError(f"need seconds >= 5 and questions_per_clip >= 1, got {seconds}, {questions_per_clip}")
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    looks = [ClassLook.of(k, object_size=size * 5 // 16) for k in range(len(INSTRUMENTS))]

    video_ids = distinct_ids(clips, lambda: f"vv{int(rng.integers(10**8)):08d}")
    split_of = assign_splits(rng, clips, split_fractions)

    rows: dict[str, list[dict]] = {split: [] for split in DEFAULT_JSONS}
    types: Counter[tuple[str, str]] = Counter()
    question_id = 0
    tally: dict[str, Counter[str]] = {}
    for video_id, split in zip(video_ids, split_of):
        scene = _draw_scene(rng, seconds)
        for template, values, answer in _ask(rng, scene, questions_per_clip, question_id, tally):
            rows[split].append({"video_id": video_id, "question_id": question_id,
                                "type": json.dumps(list(template.type)), "question_content": template.content,
                                "templ_values": json.dumps(list(values)), "question_deleted": 0,
                                "anser": answer})
            types[template.type] += 1
            question_id += 1
        frames = _render_video(rng, scene, looks, size)
        wave = _render_audio(rng, scene, looks)
        write_mp4(out / f"{video_id}.mp4", frames, FPS, wave, SAMPLE_RATE)

    for split, name in DEFAULT_JSONS.items():
        (out / name).write_text(json.dumps(rows[split], indent=2))
    (out / ANSWER_VOCABULARY_FILE).write_text("".join(f"{answer}\n" for answer in ANSWERS))
    return SynthAVQASummary(
        generator="synthesize_avqa", root=out, rows=clips, categories=list(INSTRUMENTS), clip_seconds=seconds,
        splits={split: split_of.count(split) for split in DEFAULT_JSONS},
        questions={split: len(rows[split]) for split in DEFAULT_JSONS},
        types={" ".join(kind): types[kind] for kind in QUESTION_TYPES if types[kind]},
        seconds=time.perf_counter() - started,
    )
