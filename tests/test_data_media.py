"""Decoding clips with PyAV: segment frames, resampled mono audio, and every bad input named."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from avadapt.data.fbank import FbankConfig, segment_fbank
from avadapt.data.media import (
    MediaError,
    probe,
    read_clip,
    read_windows,
    write_mp4,
)
from avadapt.prediction import window_starts
from tests.media_helpers import SHARED_DATA, frame_index, make_clip, tone


def test_one_frame_per_segment_at_its_middle_and_aligned_audio(tmp_path):
    wave = np.zeros(160000, np.float32)
    wave[3 * 16000 : 4 * 16000] = tone(1.0, 16000)  # sound only in second 3
    path = make_clip(tmp_path / "clip.mp4", fps=4, wave=wave)

    clip = read_clip(path)

    assert clip.frames.shape == (10, 32, 32, 3) and clip.frames.dtype == np.uint8
    # 4 fps: segment t covers frames 4t..4t+3; the frame on screen at t + 0.5 s is 4t + 2
    assert [frame_index(f) for f in clip.frames] == [4 * t + 2 for t in range(10)]
    assert clip.wave.shape == (160000,) and clip.wave.dtype == np.float32
    loud = np.flatnonzero(np.abs(clip.wave) > 0.05) / 16000
    assert 2.99 < loud.min() < 3.01 and 3.99 < loud.max() < 4.01
    assert clip.video_seconds == pytest.approx(10.0) and clip.audio_seconds == pytest.approx(10.0)


def test_variable_frame_rate_picks_the_frame_on_screen(tmp_path):
    times = np.sort(np.random.default_rng(0).uniform(0.05, 10, 39))
    times = np.concatenate([[0.0], times])
    path = make_clip(tmp_path / "vfr.mp4", frame_times=times)

    clip = read_clip(path)

    expected = [int(np.searchsorted(np.round(times, 3), t + 0.5, side="right")) - 1 for t in range(10)]
    assert [frame_index(f) for f in clip.frames] == expected


@pytest.mark.parametrize("codec", ["png", "libx264"])
def test_grayscale_video_becomes_rgb(tmp_path, codec):
    frames = (np.arange(40)[:, None, None] * 6 * np.ones((1, 32, 32))).astype(np.uint8)  # (N, H, W)
    path = write_mp4(tmp_path / "gray.mp4", frames, 4, tone(10, 16000), 16000, video_codec=codec,
                     pix_fmt="gray")  # fmt: skip

    clip = read_clip(path)

    assert clip.frames.shape == (10, 32, 32, 3)
    assert np.array_equal(clip.frames[..., 0], clip.frames[..., 1])
    assert np.array_equal(clip.frames[..., 0], clip.frames[..., 2])
    if codec == "png":  # lossless and decoded as gray: exact values
        assert [int(f[0, 0, 0]) for f in clip.frames] == [6 * (4 * t + 2) for t in range(10)]


def test_stereo_44k_is_resampled_to_16k_and_averaged(tmp_path):
    left = tone(10, 44100, freq=440, amp=0.4)
    path = make_clip(tmp_path / "stereo.mp4", sample_rate=44100, wave=np.stack([left, left]))
    opposite = make_clip(tmp_path / "opposite.mp4", sample_rate=44100, wave=np.stack([left, -left]))
    assert probe(path).sample_rate == 44100 and probe(path).channels == 2

    clip = read_clip(path)

    assert clip.wave.shape == (160000,)
    # the channel mean keeps the level (FFmpeg's own mono matrix would give 0.4·√2)
    assert np.abs(clip.wave[16000:-16000]).max() == pytest.approx(0.4, abs=0.02)
    # and 440 Hz is still 440 Hz at the new rate
    spectrum = np.abs(np.fft.rfft(clip.wave[16000:32000]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)
    assert np.abs(read_clip(opposite).wave).max() < 0.02


def test_longer_clip_reads_the_first_window_and_can_slide(tmp_path):
    path = make_clip(tmp_path / "long.mp4", seconds=13.0, fps=2)  # frame 2t + 1 at t + 0.5 s

    assert probe(path).duration == pytest.approx(13.0, abs=0.1)
    assert [frame_index(f) for f in read_clip(path).frames] == [2 * t + 1 for t in range(10)]
    assert window_starts(round(probe(path).duration), 10) == [0, 3]
    later = read_clip(path, start=3.0)
    assert [frame_index(f) for f in later.frames] == [2 * (t + 3) + 1 for t in range(10)]
    assert later.audio_seconds == pytest.approx(10.0)


def test_window_starts():
    assert window_starts(25, 10) == [0, 10, 15]
    assert window_starts(4, 10) == [0]


def test_three_second_clip_is_too_short_by_default(tmp_path):
    path = make_clip(tmp_path / "short.mp4", seconds=3.0)

    with pytest.raises(MediaError, match="too short: 3.00 s") as info:
        read_clip(path)
    assert str(path) in str(info.value)


def test_short_clip_is_padded_when_allowed(tmp_path):
    path = make_clip(tmp_path / "short.mp4", seconds=3.0)

    clip = read_clip(path, min_seconds=2.0)

    indices = [frame_index(f) for f in clip.frames]
    assert indices[:3] == [2, 6, 10] and indices[3:] == [11] * 7  # the last frame (index 11) stays
    assert np.abs(clip.wave[: 3 * 16000 - 200]).max() > 0.2
    assert not clip.wave[round(3.1 * 16000) :].any()  # silence after the end (and AAC's 48 ms tail)
    assert clip.video_seconds == pytest.approx(3.0) and clip.audio_seconds == pytest.approx(3.0, abs=0.01)


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="file not found") as info:
        read_clip(tmp_path / "nope.mp4")
    assert "nope.mp4" in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")

    with pytest.raises(MediaError, match=r"empty.mp4: empty file \(0 bytes\)"):
        read_clip(path)


def test_truncated_mp4_without_index(tmp_path):
    path = make_clip(tmp_path / "full.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # the index (moov) is at the end

    with pytest.raises(MediaError, match="cannot be opened") as info:
        read_clip(cut)
    assert str(cut) in str(info.value)


def test_truncated_mp4_with_index_first(tmp_path):
    path = make_clip(tmp_path / "full.mp4", faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])  # opens, data ends early

    with pytest.raises(MediaError, match="truncated or corrupt") as info:
        read_clip(cut, min_seconds=0)
    assert str(cut) in str(info.value)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())

    with pytest.raises(MediaError, match="garbage.mp4: cannot be opened"):
        read_clip(path)


def test_no_audio_stream(tmp_path):
    path = make_clip(tmp_path / "mute.mp4", audio=False)

    with pytest.raises(MediaError, match="mute.mp4: no audio stream"):
        read_clip(path)


def test_no_video_stream(tmp_path):
    path = make_clip(tmp_path / "sound.mp4", video=False)

    with pytest.raises(MediaError, match="sound.mp4: no video stream"):
        read_clip(path)


def test_silent_audio_gives_finite_fbank(tmp_path):
    path = make_clip(tmp_path / "silent.mp4", silent=True)

    clip = read_clip(path)
    fbank = segment_fbank(clip.wave, FbankConfig(), 10)

    assert not np.abs(clip.wave).max() > 1e-4
    assert torch.isfinite(fbank).all()
    # Kaldi's floor: log(FLT_EPSILON) ≈ −15.94, normalised with (x + 4.1426) / 6.4002
    assert fbank.min() == pytest.approx((np.log(np.finfo(np.float32).eps) + 4.1426) / 6.4002, abs=0.05)


def test_writer_uses_h264_and_aac(tmp_path):
    import av

    assert "libx264" in av.codecs_available  # PyAV's wheels ship x264
    path = make_clip(tmp_path / "clip.mp4", seconds=2.0)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"


def test_real_llp_clip():
    path = SHARED_DATA / "llp" / "BjCEufrlXm4.mp4"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")

    clip = read_clip(path)
    fbank = segment_fbank(clip.wave, FbankConfig(), len(clip.frames))

    assert clip.frames.shape == (10, 240, 320, 3)  # 320×240, 29.9 fps, stereo 44.1 kHz AAC
    assert clip.wave.shape == (160000,) and np.isfinite(clip.wave).all()
    assert fbank.shape == (10, 1, 128, 102) and torch.isfinite(fbank).all()
    assert clip.video_seconds == pytest.approx(10.0) and clip.audio_seconds == pytest.approx(10.0)
    assert fbank[:, :, :, :98].std() > 0.1  # real sound, not padding


def test_windows_of_one_pass_are_the_windows_read_one_by_one(tmp_path):
    path = make_clip(tmp_path / "long.mp4", seconds=20.0, fps=2)  # frame i shows from i/2 s, brightness 6·i
    starts = [0.0, 5.0, 7.5, 14.0]  # overlapping, the last one running 1 s past the end (padded)
    clips = list(read_windows(path, starts, num_segments=7, segment_seconds=1.0))
    assert len(clips) == len(starts)
    for start, clip in zip(starts, clips):
        # segment t's middle, start + t + 0.5 s, shows frame floor(2 · middle), the last one (39) past the end
        expected = [min(int(2 * (start + t + 0.5)), 39) for t in range(7)]
        assert [frame_index(frame) for frame in clip.frames] == expected, start
        alone = read_clip(path, 7, 1.0, start=start, min_seconds=0)
        np.testing.assert_array_equal(clip.wave, alone.wave)
        assert (clip.video_seconds, clip.audio_seconds) == pytest.approx((alone.video_seconds, alone.audio_seconds))
    assert clips[-1].video_seconds == pytest.approx(6.0)  # 14 s to the end at 20 s


def _peak_bytes_of_a_pass(path, starts) -> tuple[int, int]:
    """Peak of Python-side allocations (numpy arrays included) while reading every window, and windows read."""
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_windows(path, starts, num_segments=10, segment_seconds=1.0))
        return tracemalloc.get_traced_memory()[1], count
    finally:
        tracemalloc.stop()


def test_a_pass_over_windows_holds_one_window_whatever_the_length(tmp_path):
    short = make_clip(tmp_path / "short.mp4", seconds=20.0, fps=2, size=64)
    long = make_clip(tmp_path / "long.mp4", seconds=160.0, fps=2, size=64)
    peak_short, windows_short = _peak_bytes_of_a_pass(short, [0.0, 10.0])
    peak_long, windows_long = _peak_bytes_of_a_pass(long, [10.0 * k for k in range(16)])
    assert (windows_short, windows_long) == (2, 16)
    whole_wave = 160 * 16000 * 4  # bytes of the long file's decoded audio as float32
    one_window = 10 * 16000 * 4 + 10 * 64 * 64 * 3  # a window's audio and frames
    assert peak_long < whole_wave / 2  # far below the whole file's audio alone
    assert peak_long < peak_short + one_window  # 8× the length, the same peak within one window's data


def test_a_truncation_is_raised_when_the_pass_reaches_it(tmp_path):
    path = make_clip(tmp_path / "full.mp4", seconds=20.0, faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])  # opens, data ends about 12 s in
    windows = read_windows(cut, [0.0, 10.0], num_segments=5, segment_seconds=2.0)
    assert next(windows).frames.shape[0] == 5  # the first window is whole
    with pytest.raises(MediaError, match="truncated or corrupt") as info:
        next(windows)
    assert str(cut) in str(info.value)


def test_window_starts_must_not_decrease(tmp_path):
    with pytest.raises(ValueError, match="must not decrease"):
        next(read_windows(tmp_path / "any.mp4", [5.0, 0.0]))
