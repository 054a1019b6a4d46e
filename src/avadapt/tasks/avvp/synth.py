"""A small synthetic LLP: real mp4 files in the released layout (``LLP_dataset/video/<id>.mp4``, the five
tab-separated annotation files), so tests, the demo and smoke training go through the code real LLP goes through.

Each 10 s clip holds one to three events of distinct classes, each only heard, only seen, or both (a third each):
a heard event plays its class's sound (a class-specific chord, amplitude-modulated at a class-specific rate) over
its seconds, a seen one shows its class's picture (a coloured shape on a circular path, one place on the path per
event) over its seconds. Training clips carry only their weak labels (every class of the clip, however it
occurs); val and test clips also carry the dense audio and visual rows. The same ``seed`` gives the same files.
"""

from __future__ import annotations

import json
import time
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
    sounds_by_second,
    youtube_id,
)
from avadapt.tasks.avvp.dataset import (
    DENSE_COLUMNS,
    DENSE_FILES,
    DENSE_SPLITS,
    LLP_CLASSES,
    LLP_SEGMENTS,
    WEAK_COLUMNS,
    WEAK_FILES,
)

FPS = 8  # LLP's frame folders are extracted at 8 fps
SAMPLE_RATE = 16000
KINDS = ("audio", "visual", "both")  # how an event occurs, drawn uniformly
WHOLE_CLIP = 0.4  # chance that an event lasts the whole clip, as most LLP events do; else 2–8 s


def _render_video(rng: np.random.Generator, visible: list[list[tuple[int, float]]], looks: list[ClassLook],
                  size: int) -> np.ndarray:
    """(seconds·FPS, size, size, 3) uint8: smooth moving noise, plus each visible class's shape at its own phase
    of a circular path, for the seconds ``visible`` lists it ((class, phase) pairs per second)."""
    frames = np.clip(blocky_noise(rng, len(visible) * FPS, size, std=18.0)
                     + rng.uniform(70, 130, size=3).astype(np.float32), 0, 255)
    for i in range(len(frames)):
        for k, phase in visible[i // FPS]:
            look = looks[k]
            middle = (size - look.mask.shape[0]) / 2  # box corner of a centred shape
            angle = 2 * np.pi * (look.orbit_hz * i / FPS + phase)
            radius = middle - 2
            look.paint(frames[i], round(middle + radius * np.sin(angle)), round(middle + radius * np.cos(angle)))
    return frames.astype(np.uint8)


def _run(rng: np.random.Generator) -> tuple[int, int]:
    """An event's seconds [onset, offset)."""
    if rng.random() < WHOLE_CLIP:
        return 0, LLP_SEGMENTS
    length = int(rng.integers(2, 9))
    onset = int(rng.integers(0, LLP_SEGMENTS - length + 1))
    return onset, onset + length


def synthesize_llp(out: str | Path, clips: int = 100, seed: int = 0, num_classes: int = 6, *, size: int = 64,
                   split_fractions: tuple[float, float] = (0.15, 0.15), max_events: int = 3) -> SynthSummary:
    """Write ``clips`` synthetic 10 s clips under ``out``: ``LLP_dataset/video/<id>.mp4``, the weak-label files
    ``AVVP_train.csv``, ``AVVP_val_pd.csv``, ``AVVP_test_pd.csv``, the dense files ``AVVP_eval_audio.csv`` and
    ``AVVP_eval_visual.csv`` (val and test clips) and ``synth_truth.json`` (per filename, the classes heard and
    seen in every second). Events are of the first ``num_classes`` LLP classes; ``split_fractions``: the (val,
    test) share of the clips (≥ 1 each from three clips up).
    """
    if not 1 <= num_classes <= len(LLP_CLASSES):
        raise ValueError(f"num_classes must lie in 1..{len(LLP_CLASSES)}, got {num_classes}")
    if max_events < 1:
        raise ValueError(f"max_events must be at least 1, got {max_events}")
    check_clips_and_size(clips, size, multiple=16)
    started = time.perf_counter()
    out = Path(out)
    videos = out / "LLP_dataset" / "video"
    videos.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    looks = [ClassLook.of(k, object_size=size // 4) for k in range(num_classes)]
    ids = distinct_ids(clips, lambda: youtube_id(rng))
    splits = assign_splits(rng, clips, split_fractions, at_least_one_from=3)

    weak: dict[str, list[str]] = {split: [] for split in WEAK_FILES}
    dense: dict[str, list[tuple[str, str]]] = {modality: [] for modality in DENSE_FILES}  # (split, row)
    truth = {}
    for video_id, split in zip(ids, splits):
        start = 10 * int(rng.integers(0, 30))
        filename = f"{video_id}_{start}_{start + LLP_SEGMENTS}"
        classes = sorted(rng.choice(num_classes, size=int(rng.integers(1, min(max_events, num_classes) + 1)),
                                    replace=False).tolist())
        heard: list[list[int]] = [[] for _ in range(LLP_SEGMENTS)]
        seen: list[list[tuple[int, float]]] = [[] for _ in range(LLP_SEGMENTS)]
        phase = float(rng.random())
        for place, k in enumerate(classes):
            kind = KINDS[int(rng.integers(len(KINDS)))]
            onset, offset = _run(rng)
            for modality, seconds in (("audio", heard), ("visual", seen)):
                if kind not in (modality, "both"):
                    continue
                for t in range(onset, offset):
                    seconds[t].append(k if modality == "audio" else (k, phase + place / len(classes)))
                dense[modality].append((split, f"{filename}\t{onset}\t{offset}\t{LLP_CLASSES[k]}"))
        frames = _render_video(rng, seen, looks, size)
        wave = sounds_by_second(rng, [[looks[k] for k in ks] for ks in heard], SAMPLE_RATE)
        write_mp4(videos / f"{video_id}.mp4", frames, FPS, wave, SAMPLE_RATE)
        weak[split].append(f"{filename}\t{','.join(LLP_CLASSES[k] for k in classes)}")
        truth[filename] = {"audio": [[LLP_CLASSES[k] for k in ks] for ks in heard],
                           "visual": [[LLP_CLASSES[k] for k, _ in ks] for ks in seen]}

    for split, name in WEAK_FILES.items():
        (out / name).write_text("\n".join(["\t".join(WEAK_COLUMNS), *weak[split]]) + "\n")
    for modality, name in DENSE_FILES.items():
        rows = [row for split, row in dense[modality] if split in DENSE_SPLITS]
        (out / name).write_text("\n".join(["\t".join(DENSE_COLUMNS), *rows]) + "\n")
    (out / "synth_truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return SynthSummary(generator="synthesize_llp", root=out, rows=clips,
                        splits={split: len(rows) for split, rows in weak.items()},
                        categories=list(LLP_CLASSES[:num_classes]), clip_seconds=LLP_SEGMENTS,
                        seconds=time.perf_counter() - started)
