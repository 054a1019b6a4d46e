"""The ``htsat`` audio front end: librosa-style log-mel at 32 kHz, one 64 × 101 image per second, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avadapt.audio_front_ends import (
    AUDIO_FRONT_ENDS,
    FbankConfig,
    audio_front_end,
    recorded_audio_front_end,
)
from avadapt.backbones import create_htsat
from avadapt.data.cache import CacheSettings, load_cached_clip
from avadapt.data.datamodule import AVDataModule
from avadapt.data.fbank import log_mel, segment_fbank, slaney_mel_matrix
from avadapt.data.transforms import VideoTransform, VideoTransformConfig
from avadapt.models import paper_audio_front_end
from avadapt.tasks.ave.dataset import AVEDataset
from avadapt.tasks.ave.prepare import prepare_ave
from avadapt.tasks.ave.synth import synthesize_ave

pytestmark = pytest.mark.usefixtures("one_thread")

HTSAT = audio_front_end("htsat").fbank


def test_htsat_entry_holds_htsat_settings():
    front_end = audio_front_end("htsat")
    assert front_end.encoder == "htsat"
    fbank = front_end.fbank
    assert fbank.spectrogram == "log_mel" and fbank.sample_rate == 32000
    assert (fbank.fft_size, fbank.frame_samples, fbank.shift_samples) == (1024, 1024, 320)
    assert (fbank.num_mel_bins, fbank.low_freq, fbank.top_freq) == (64, 50.0, 14000.0)
    assert (fbank.window_samples, fbank.target_frames) == (32000, 101)
    assert front_end.embedding_options() == {"num_mel_bins": 64, "num_frames": 101}
    assert create_htsat("tiny", **front_end.embedding_options()).config.num_frames == 101
    for family in ("vit", "swin"):
        for task in ("ave", "avs", "avqa"):
            assert paper_audio_front_end("dg_sct", family, task) == "htsat"
    # the Kaldi entries keep their recipe, and a record without the new fields still means it
    assert all(entry.fbank.spectrogram == "kaldi" and entry.encoder == "shared"
               for name, entry in AUDIO_FRONT_ENDS.items() if name != "htsat")
    old_record = {k: v for k, v in FbankConfig().to_dict().items() if k not in ("spectrogram", "high_freq")}
    assert CacheSettings.from_dict({"fbank": old_record, "dataset": "ave"}).fbank == FbankConfig()
    assert recorded_audio_front_end({"audio_front_end": "htsat"}).fbank == HTSAT


def test_log_mel_settings_are_checked():
    with pytest.raises(ValueError, match="pre-emphasis"):
        HTSAT.__class__.from_dict({**HTSAT.to_dict(), "preemphasis": 0.97})
    with pytest.raises(ValueError, match="power of two"):
        HTSAT.__class__.from_dict({**HTSAT.to_dict(), "frame_length_ms": 25.0})
    with pytest.raises(ValueError, match="spectrogram"):
        FbankConfig(spectrogram="mfcc")
    with pytest.raises(ValueError, match="high_freq"):
        FbankConfig(high_freq=9000.0)  # above Nyquist at 16 kHz


def test_hann_is_the_periodic_window():
    from avadapt.data.fbank import _window

    n = np.arange(1024)
    np.testing.assert_allclose(_window(HTSAT).numpy(), 0.5 - 0.5 * np.cos(2 * np.pi * n / 1024), atol=1e-7)


def test_mel_filters_match_librosa():
    librosa = pytest.importorskip("librosa")
    expected = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000)
    ours = slaney_mel_matrix(HTSAT).numpy()
    assert ours.shape == expected.shape == (64, 513)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-7)  # filters peak near 0.018


def test_slaney_scale_by_hand():
    # an 8-bin bank over 0–1000 Hz lies on the linear part of the scale (3 mel per 200 Hz): edges every 1000/9 Hz,
    # so every triangle is 2000/9 Hz wide and, area-normalised, peaks at 1 / (1000/9) · (FFT bin on the peak)
    cfg = FbankConfig(spectrogram="log_mel", sample_rate=2000, num_mel_bins=8, frame_length_ms=512.0,
                      frame_shift_ms=256.0, window_type="hann", preemphasis=0.0, low_freq=0.0,
                      target_frames=4, window_seconds=1.0)
    weights = slaney_mel_matrix(cfg).numpy().astype(np.float64)  # 1024-point FFT: bins every 1000/512 Hz
    fft_hz = np.arange(513) * 2000 / 1024
    width = 1000 / 9
    for i in range(8):
        rise = np.clip((fft_hz - i * width) / width, 0, None)
        fall = np.clip(((i + 2) * width - fft_hz) / width, 0, None)
        np.testing.assert_allclose(weights[i], np.minimum(rise, fall) * 2 / (2 * width), atol=1e-8)


def test_log_mel_matches_librosa():
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 32000
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t) + 0.05 * rng.standard_normal(32000)
    wave[20000:24000] = 0.0  # a silent stretch reaches the −100 dB floor
    wave = wave.astype(np.float32)
    power = np.abs(librosa.stft(wave.astype(np.float64), n_fft=1024, hop_length=320, win_length=1024,
                                window="hann", center=True, pad_mode="reflect")) ** 2
    filters = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000, dtype=np.float64)
    expected = librosa.power_to_db(filters @ power, ref=1.0, amin=1e-10, top_db=None)  # (64, 101)
    ours = log_mel(torch.from_numpy(wave), HTSAT).numpy().T
    assert ours.shape == expected.shape == (64, 101)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=5e-5)
    assert expected.min() < -90  # the floor was exercised


def test_segment_images_are_the_log_mel_of_each_second():
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(1)
    wave = (0.2 * rng.standard_normal(int(2.5 * 32000)) + 0.1).astype(np.float32)  # a DC offset stays in
    images = segment_fbank(wave, HTSAT, num_segments=3)
    assert images.shape == (3, 1, 64, 101)
    filters = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000, dtype=np.float64)
    # second 2 would run past the end of the 2.5 s wave: its window ends with the wave instead of padding
    for t, samples in enumerate([wave[:32000], wave[32000:64000], wave[-32000:]]):
        power = np.abs(librosa.stft(np.asarray(samples, np.float64), n_fft=1024, hop_length=320,
                                    window="hann", center=True, pad_mode="reflect")) ** 2
        expected = librosa.power_to_db(filters @ power, ref=1.0, amin=1e-10, top_db=None)
        np.testing.assert_allclose(images[t, 0].numpy(), expected, rtol=0, atol=5e-5)


def test_prepared_clips_and_the_dataset_give_64_by_101_images(tmp_path):
    root = synthesize_ave(tmp_path / "ave", clips=2, seed=5, num_classes=2).root
    out = tmp_path / "cache"
    summary = prepare_ave(root, out, workers=1, image_size=32, fbank=HTSAT, progress=False)
    assert summary.done == 2 and summary.failed == []
    clip = next(out.glob("*.safetensors"))
    _, audio = load_cached_clip(clip)
    assert audio.shape == (10, 1, 64, 101)
    assert audio.min() >= -100.5 and audio.std() > 1  # dB values, not normalised away
    assert CacheSettings.read(out).fbank == HTSAT

    transform = VideoTransform(VideoTransformConfig(input_size=(32, 32)))
    from_cache = AVEDataset(root, "train", cache_dir=out, transform=transform, fbank=HTSAT)
    from_media = AVEDataset(root, "train", source="mp4", transform=transform, fbank=HTSAT)
    assert from_cache[0]["audio"].shape == from_media[0]["audio"].shape == (10, 1, 64, 101)
    # the cache stores float16
    torch.testing.assert_close(from_cache[0]["audio"], from_media[0]["audio"], atol=0.07, rtol=1e-3)
    assert AVDataModule(str(root), preprocessing={"audio_front_end": "htsat"}).fbank == HTSAT


def test_a_smaller_front_end_feeds_a_smaller_encoder_built_the_same_way():
    """A CPU demo can shrink both sides together: 16 mel bins every 40 ms (26 frames of 1 s) into a 64 × 64 fold."""
    front_end = audio_front_end("htsat").with_fbank(num_mel_bins=16, frame_shift_ms=40.0, target_frames=26)
    images = segment_fbank(np.random.default_rng(0).standard_normal(64000).astype(np.float32), front_end.fbank, 2)
    assert images.shape == (2, 1, 16, 26)
    encoder = create_htsat("tiny", **front_end.embedding_options())
    assert (encoder.config.spec_size, encoder.config.stretched_frames) == (64, 256)
    with torch.no_grad():
        tokens = encoder.audio_tokens(images)
    assert tokens.shape == (2, 16 * 16, 16)
    assert [stage.grid for stage in encoder.stages] == [(16, 16), (8, 8), (4, 4), (2, 2)]
