"""The synthetic AVE: native layout, determinism, and events that need both modalities."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avadapt.data.media import read_clip
from avadapt.data.synthetic import ClassLook, distinct_ids, fade, sounds_by_second
from avadapt.tasks.ave.dataset import AVEAnnotations
from avadapt.tasks.ave.synth import AVE_CATEGORIES, NONE, synthesize_ave

CLIPS = 8


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    summary = synthesize_ave(root, clips=CLIPS, seed=7, num_classes=4)
    return root, summary


def test_native_layout_and_splits(synth):
    root, summary = synth
    table = AVEAnnotations.load(root)  # also checks categories.txt against first appearance

    assert table.categories == list(AVE_CATEGORIES[:4]) == summary.categories
    assert len(table.events) == CLIPS == summary.rows
    assert sorted(r for rows in table.splits.values() for r in rows) == list(range(CLIPS))
    assert {s: len(r) for s, r in table.splits.items()} == summary.splits
    assert all((root / "AVE" / f"{e.video_id}.mp4").is_file() for e in table.events)
    assert len({e.video_id for e in table.events}) == CLIPS
    assert str(summary).startswith(f"synthesize_ave: {CLIPS} clips of 10 s (train ")
    assert str(summary).endswith(f", 4 categories, in {summary.seconds:.1f} s -> {root}")


def test_same_seed_same_dataset_other_seed_another(synth, tmp_path):
    root, _ = synth
    again = synthesize_ave(tmp_path / "again", clips=CLIPS, seed=7, num_classes=4).root
    other = synthesize_ave(tmp_path / "other", clips=CLIPS, seed=8, num_classes=4).root

    for name in (
        "Annotations.txt",
        "trainSet.txt",
        "valSet.txt",
        "testSet.txt",
        "categories.txt",
        "synth_truth.json",
    ):
        assert (root / name).read_bytes() == (again / name).read_bytes(), name
    assert (root / "Annotations.txt").read_text() != (other / "Annotations.txt").read_text()
    for event in AVEAnnotations.load(root).events:
        first, second = (r / "AVE" / f"{event.video_id}.mp4" for r in (root, again))
        assert first.read_bytes() == second.read_bytes(), event.video_id  # encoder is deterministic too
    first, second = (read_clip(r / "AVE" / f"{event.video_id}.mp4") for r in (root, again))
    assert np.array_equal(first.frames, second.frames) and np.array_equal(first.wave, second.wave)


def test_events_are_where_both_modalities_agree(synth):
    root, _ = synth
    truth = json.loads((root / "synth_truth.json").read_text())
    table = AVEAnnotations.load(root)
    some_distractor = False
    for event in table.events:
        k = table.categories.index(event.category)
        seen, heard = truth[event.video_id]["visual"], truth[event.video_id]["audio"]
        both = [t for t in range(10) if seen[t] == heard[t] == k]
        assert both == list(range(event.start, event.end))
        assert all(seen[t] == NONE or heard[t] == NONE for t in range(10) if t not in both)
        some_distractor |= any(seen[t] != heard[t] for t in range(10))
    assert some_distractor


def test_decoded_content_matches_the_truth(synth):
    """Each second shows the class colour only where ``visual`` says, and sounds its pitch only
    where ``audio`` says — so the distractors really are one-modality."""
    root, _ = synth
    truth = json.loads((root / "synth_truth.json").read_text())
    looks = [ClassLook.of(k, object_size=20) for k in range(4)]
    for video_id in sorted(truth)[:4]:
        clip = read_clip(root / "AVE" / f"{video_id}.mp4")
        for t in range(10):
            frame = clip.frames[t].astype(np.float32)  # (H, W, 3)
            second = clip.wave[t * 16000 : (t + 1) * 16000]
            spectrum = np.abs(np.fft.rfft(second)) ** 2
            for k, look in enumerate(looks):
                coloured = (np.abs(frame - look.colour).sum(axis=-1) < 90).sum()
                assert (coloured > 100) == (truth[video_id]["visual"][t] == k), (video_id, t, k)
                pitch = round(look.pitch_hz)
                band = spectrum[pitch - 5 : pitch + 6].sum() / spectrum.sum()
                assert (band > 0.05) == (truth[video_id]["audio"][t] == k), (video_id, t, k, band)


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_classes"):
        synthesize_ave(tmp_path, clips=2, num_classes=29)
    with pytest.raises(ValueError, match="multiple of 16"):
        synthesize_ave(tmp_path, clips=2, size=50)


def test_shared_pieces_paint_fade_mix_and_draw_ids():
    look = ClassLook.of(2, object_size=6)
    stack = np.zeros((3, 16, 16, 3), np.uint8)
    look.paint(stack, 4, 7)  # every frame of a stack at once
    frame = np.zeros((16, 16, 3), np.float32)
    look.paint(frame, 4, 7)  # one frame
    expected = np.zeros((16, 16), bool)
    expected[4:10, 7:13] = look.mask
    for image in (*stack, frame):
        assert np.array_equal((image == look.colour).all(axis=-1), expected)
        assert not image[~expected].any()

    gain = fade(1000, 16000)  # 10 ms = 160 samples at 16 kHz
    assert gain[0] == gain[-1] == 0 and gain[80] == 0.5 and gain[160] == 1 and (gain[160:840] == 1).all()

    rng, again = np.random.default_rng(0), np.random.default_rng(0)
    wave = sounds_by_second(rng, [[], [look], [look, look]], 100)
    t = np.arange(300) / 100
    noise = again.normal(0.0, 0.01, size=300)
    assert np.allclose(wave[:100], noise[:100])
    assert np.allclose(wave[100:200], noise[100:200] + look.sound(t[100:200]) * fade(100, 100))
    assert np.allclose(wave[200:], noise[200:] + 2 * look.sound(t[200:]) * fade(100, 100))

    draws = iter("abacbd")
    assert distinct_ids(4, lambda: next(draws)) == ["a", "b", "c", "d"]
