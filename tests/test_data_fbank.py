"""Kaldi fbank per segment: equal to kaldi-native-fbank, reference settings, layout and alignment."""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np
import pytest
import torch

from avadapt.audio_front_ends import audio_front_end
from avadapt.data.fbank import FbankConfig, audio_window_starts, kaldi_fbank, mel_matrix, segment_fbank
from tests.media_helpers import tone

LOG_FLOOR = float(np.log(np.finfo(np.float32).eps))


def knf_fbank(wave: np.ndarray, cfg: FbankConfig) -> np.ndarray:
    frame_opts = knf.FrameExtractionOptions(
        samp_freq=float(cfg.sample_rate),
        frame_shift_ms=cfg.frame_shift_ms,
        frame_length_ms=cfg.frame_length_ms,
        dither=cfg.dither,
        window_type=cfg.window_type,
        preemph_coeff=cfg.preemphasis,
    )
    mel_opts = knf.MelBanksOptions(num_bins=cfg.num_mel_bins, low_freq=cfg.low_freq)
    computer = knf.OnlineFbank(
        knf.FbankOptions(frame_opts=frame_opts, mel_opts=mel_opts, htk_compat=cfg.htk_compat)
    )
    computer.accept_waveform(float(cfg.sample_rate), wave)
    computer.input_finished()
    return np.stack([computer.get_frame(i) for i in range(computer.num_frames_ready)])


@pytest.mark.parametrize(
    "options",
    [
        {"num_mel_bins": 80},
        {"num_mel_bins": 128, "frame_length_ms": 50.0},
        {"num_mel_bins": 64, "window_type": "povey"},
        {"num_mel_bins": 40, "window_type": "hamming", "frame_shift_ms": 5.2, "frame_length_ms": 20.0},
    ],
)
def test_equals_kaldi_native_fbank_where_it_accepts_the_config(options):
    cfg = FbankConfig(**options)
    wave = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)

    ours = kaldi_fbank(wave, cfg).numpy()
    reference = knf_fbank(wave, cfg)

    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-3)


def test_reference_setting_has_empty_mel_bins_that_kaldi_native_fbank_refuses():
    cfg = FbankConfig()  # 128 bins on a 512-point FFT
    empty = (mel_matrix(cfg).sum(dim=1) == 0).nonzero().flatten().tolist()
    assert empty and max(empty) < 20  # a few narrow bins below ~150 Hz
    with pytest.raises(ValueError, match="num_mel_bins too large"):
        knf_fbank(np.zeros(16000, np.float32), cfg)
    # like torchaudio, those rows sit at Kaldi's log floor whatever the sound
    fbank = kaldi_fbank(tone(1.0, 16000, freq=80.0), cfg)
    torch.testing.assert_close(fbank[:, empty], torch.full_like(fbank[:, empty], LOG_FLOOR))


def test_reference_defaults():
    cfg = FbankConfig()
    assert (cfg.sample_rate, cfg.num_mel_bins, cfg.frame_length_ms, cfg.frame_shift_ms) == (
        16000,
        128,
        25.0,
        10.0,
    )
    assert (cfg.window_type, cfg.dither, cfg.htk_compat, cfg.use_energy) == ("hanning", 0.0, True, False)
    assert (cfg.target_frames, cfg.window_seconds, cfg.mean, cfg.std) == (102, 1.0, -4.1426, 3.2001)
    assert cfg.tile_seconds is None and cfg.spectrogram_samples == 16000  # the window as it is
    assert FbankConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "options, problem",
    [
        ({"window_type": "kaiser"}, "window_type"),
        ({"std": 0.0}, "std"),
        ({"dither": 1.0}, "dither"),
        ({"use_energy": True}, "use_energy"),
        ({"window_seconds": 0.01}, "shorter than one fbank frame"),
        ({"window_seconds": 2.0, "tile_seconds": 1.5}, "tile_seconds"),
    ],
)
def test_invalid_config_is_named(options, problem):
    with pytest.raises(ValueError, match=problem):
        FbankConfig(**options)
    with pytest.raises(TypeError, match="no option"):
        FbankConfig.from_dict({"num_mel_bin": 64})


def test_shape_orientation_and_segment_alignment():
    cfg = FbankConfig()
    wave = np.zeros(10 * 16000, np.float32)
    wave[3 * 16000 : 4 * 16000] = tone(1.0, 16000, freq=1000.0)  # second 3 only

    fbank = segment_fbank(wave, cfg, num_segments=10)

    assert fbank.shape == (10, 1, 128, 102) and fbank.dtype == torch.float32
    peak = fbank[:, 0, :, :98].amax(dim=(1, 2))  # ignore the 4 padded columns
    assert peak.argmax() == 3
    assert peak[3] > peak[2] + 2 and peak[3] > peak[4] + 2
    # rows are mel bins: the 1 kHz tone lights one row band, the same in every column (time)
    loudest_rows = fbank[3, 0, :, :98].argmax(dim=0)
    mel_1k = 1127 * np.log(1 + 1000 / 700)
    mel_edges = np.linspace(1127 * np.log(1 + 20 / 700), 1127 * np.log(1 + 8000 / 700), 130)
    expected_row = int(np.argmin(np.abs(mel_edges[1:-1] - mel_1k)))
    assert torch.all((loudest_rows - expected_row).abs() <= 1)


@pytest.mark.parametrize(("options", "frames"), [
    ({}, 98),  # the ViT setting: 1 s at a 10 ms shift gives 98 Kaldi frames of 102
    ({"num_mel_bins": 224, "frame_shift_ms": 4.4, "target_frames": 224}, 223),  # Swin/224: 70-sample shift
])
def test_padded_frames_are_exactly_zero_as_the_reference_pads_after_normalising(options, frames):
    cfg = FbankConfig(**options)
    fbank = segment_fbank(tone(1.0, 16000), cfg, num_segments=1)
    assert torch.count_nonzero(fbank[0, 0, :, frames:]) == 0
    assert torch.count_nonzero(fbank[0, 0, :, frames - 1]) > 0  # the last real frame is not padding


def test_padding_and_normalisation_follow_the_reference():
    cfg = FbankConfig()
    fbank = segment_fbank(tone(1.0, 16000), cfg, num_segments=1)
    # 1 s gives 98 Kaldi frames; columns 98–101 are zeros added after normalisation
    padded = fbank[0, 0, :, 98:]
    torch.testing.assert_close(padded, torch.zeros_like(padded), rtol=0, atol=0)
    raw = kaldi_fbank(tone(1.0, 16000) - tone(1.0, 16000).mean(), cfg)  # (98, 128)
    np.testing.assert_allclose(
        fbank[0, 0, :, :98].numpy(), ((raw - cfg.mean) / (2 * cfg.std)).T.numpy(), atol=1e-5
    )


def test_short_wave_is_zero_padded_and_silence_is_finite():
    cfg = FbankConfig()
    fbank = segment_fbank(np.zeros(2 * 16000, np.float32), cfg, num_segments=10)
    assert torch.isfinite(fbank).all()
    assert float(fbank[:, :, :, :98].max()) == pytest.approx((LOG_FLOOR - cfg.mean) / (2 * cfg.std))


def test_rejects_multichannel_wave():
    with pytest.raises(ValueError, match="mono"):
        segment_fbank(np.zeros((2, 16000), np.float32), FbankConfig(), 1)


def test_a_tiled_window_is_the_fbank_of_the_window_repeated_end_to_end():
    """tile_seconds: each segment's window repeated to the tiled length before the spectrogram (checked against
    kaldi-native-fbank of np.tile), then normalised and cut or padded as any other."""
    cfg = FbankConfig(num_mel_bins=40, tile_seconds=2.5, target_frames=260)  # 2.5 s: 248 Kaldi frames
    rng = np.random.default_rng(3)
    wave = (rng.standard_normal(int(1.5 * 16000)) * 0.1).astype(np.float32)
    images = segment_fbank(wave, cfg, num_segments=2)
    assert images.shape == (2, 1, 40, 260)
    centred = wave - wave.mean()
    # the second window would run past the end of the wave: it ends with the wave instead, then is tiled
    for t, window in enumerate([centred[:16000], centred[-16000:]]):
        tiled = np.tile(window, 3)[: int(2.5 * 16000)]
        expected = (knf_fbank(tiled, cfg) - cfg.mean) / (2 * cfg.std)  # (248, 40)
        assert expected.shape == (248, 40)
        np.testing.assert_allclose(images[t, 0, :, :248].numpy(), expected.T, atol=2e-3)
        assert torch.count_nonzero(images[t, 0, :, 248:]) == 0


def reference_spread_starts(num_samples: int, sample_rate: int, window_seconds: float, windows: int) -> list[int]:
    """Where the LAVISH / DG-SCT / STG-CMA AVS and AVQA loaders start their windows (``_wav2fbank``)."""
    return np.linspace(0, num_samples - sample_rate * (window_seconds + 0.1), num=windows, dtype=int).tolist()


@pytest.mark.parametrize(("front_end", "seconds", "windows"), [
    ("stg_cma_swin_avs", 5.0, 5),  # AVSBench: 5 s clips, 1.95 s windows
    ("lavish_swin_avs", 5.0, 5),  # 1 s windows
    ("stg_cma_swin_avqa", 61.37, 10),  # MUSIC-AVQA: a whole video of any length
    ("lavish_swin_avqa", 17.0, 10),
])
def test_spread_windows_start_where_the_reference_loaders_start_them(front_end, seconds, windows):
    cfg = audio_front_end(front_end).fbank
    samples = round(seconds * cfg.sample_rate)
    starts = audio_window_starts(samples, cfg, windows, seconds / windows)
    assert starts == reference_spread_starts(samples, cfg.sample_rate, cfg.window_seconds, windows)
    assert starts[-1] + cfg.window_samples <= samples  # the last window ends inside the clip


def test_avs_windows_hear_the_reference_seconds_and_never_run_past_the_clip():
    cfg = audio_front_end("stg_cma_swin_avs").fbank  # 1.95 s windows, spread, 224 frames at a 4.4 ms shift
    wave = (np.random.default_rng(3).standard_normal(5 * 16000) * 0.1).astype(np.float32)
    fbank = segment_fbank(wave, cfg, num_segments=5, segment_seconds=1.0)  # (5, 1, 224, 224)

    centred = wave - wave.mean()  # the reference subtracts the clip's mean before cutting
    for t, start in enumerate(reference_spread_starts(len(wave), 16000, 1.95, 5)):
        raw = kaldi_fbank(centred[start:start + round(1.95 * 16000)], cfg)[:224]  # (224, 224), no padding
        expected = ((raw - cfg.mean) / (2 * cfg.std)).T
        np.testing.assert_allclose(fbank[t, 0].numpy(), expected.numpy(), atol=2e-4)


def test_segment_windows_longer_than_a_segment_end_with_the_clip_instead_of_padding():
    cfg = FbankConfig(window_seconds=1.95, target_frames=200)  # 1.95 s windows over 1 s segments
    assert audio_window_starts(5 * 16000, cfg, 5, 1.0) == [0, 16000, 32000, 48000, 80000 - 31200]
    wave = (np.random.default_rng(4).standard_normal(5 * 16000) * 0.1).astype(np.float32)
    fbank = segment_fbank(wave, cfg, num_segments=5)
    raw = kaldi_fbank(wave[-31200:] - wave.mean(), cfg)  # the clip's last 1.95 s: 193 frames, all real
    np.testing.assert_allclose(fbank[4, 0, :, :193].numpy(), ((raw - cfg.mean) / (2 * cfg.std)).T.numpy(), atol=2e-4)


def test_window_placement_is_checked():
    with pytest.raises(ValueError, match="window_placement 'middle'"):
        FbankConfig(window_placement="middle")
