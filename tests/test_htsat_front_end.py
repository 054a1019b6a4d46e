"""The ``htsat`` audio front ends: librosa-style log-mel at 32 kHz of each second tiled to 10 s (5 s on AVS), one
64 × 1001 (64 × 501) image per second, end to end."""

from __future__ import annotations

import json

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
from avadapt.data.cache import CacheConfigError, CacheSettings, check_cache_settings, load_cached_clip
from avadapt.data.datamodule import AVDataModule
from avadapt.data.fbank import log_mel, segment_fbank, slaney_mel_matrix
from avadapt.data.transforms import VideoTransform, VideoTransformConfig
from avadapt.models import paper_audio_front_end
from avadapt.tasks.ave.dataset import AVEDataset
from avadapt.tasks.ave.prepare import prepare_ave
from avadapt.tasks.ave.synth import synthesize_ave
from tests.test_htsat import bicubic_stretch, set_bn0

pytestmark = pytest.mark.usefixtures("one_thread")

HTSAT = audio_front_end("htsat").fbank
HTSAT_AVS = audio_front_end("htsat_avs").fbank


def librosa_log_mel(samples: np.ndarray) -> np.ndarray:
    """HTS-AT's torchlibrosa front end by librosa itself: (n,) samples at 32 kHz → (64, 1 + n // 320) dB."""
    librosa = pytest.importorskip("librosa")
    power = np.abs(librosa.stft(np.asarray(samples, np.float64), n_fft=1024, hop_length=320, win_length=1024,
                                window="hann", center=True, pad_mode="reflect")) ** 2
    filters = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000, dtype=np.float64)
    return librosa.power_to_db(filters @ power, ref=1.0, amin=1e-10, top_db=None)


def test_htsat_entry_holds_htsat_settings():
    front_end = audio_front_end("htsat")
    assert front_end.encoder == "htsat"
    fbank = front_end.fbank
    assert fbank.spectrogram == "log_mel" and fbank.sample_rate == 32000
    assert (fbank.fft_size, fbank.frame_samples, fbank.shift_samples) == (1024, 1024, 320)
    assert (fbank.num_mel_bins, fbank.low_freq, fbank.top_freq) == (64, 50.0, 14000.0)
    # one 1 s window per segment, tiled to HTS-AT's 10 s clip before the log-mel: 1001 frames
    assert (fbank.window_samples, fbank.tile_seconds, fbank.spectrogram_samples) == (32000, 10.0, 320000)
    assert fbank.target_frames == 1001
    assert front_end.embedding_options() == {"num_mel_bins": 64, "num_frames": 1001}
    assert create_htsat("tiny", **front_end.embedding_options()).config.num_frames == 1001
    # DG-SCT's AVS loaders tile to the 5 s clip instead: 501 frames
    avs = audio_front_end("htsat_avs")
    assert avs.encoder == "htsat" and avs.fbank == FbankConfig.from_dict(
        {**fbank.to_dict(), "tile_seconds": 5.0, "target_frames": 501})
    for family in ("vit", "swin"):
        for task, name in (("ave", "htsat"), ("avs", "htsat_avs"), ("avqa", "htsat")):
            assert paper_audio_front_end("dg_sct", family, task) == name
    # the Kaldi entries keep their recipe, and a record without the new fields still means it
    assert all(entry.fbank.spectrogram == "kaldi" and entry.encoder == "shared" and entry.fbank.tile_seconds is None
               for entry in AUDIO_FRONT_ENDS.values() if entry.encoder != "htsat")
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
    with pytest.raises(ValueError, match="tile_seconds"):
        FbankConfig(window_seconds=1.95, tile_seconds=1.0)


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


def test_segment_images_are_the_log_mel_of_each_second_tiled_to_the_clip():
    rng = np.random.default_rng(1)
    wave = (0.2 * rng.standard_normal(int(2.5 * 32000)) + 0.1).astype(np.float32)  # a DC offset stays in
    images = segment_fbank(wave, HTSAT, num_segments=3)
    assert images.shape == (3, 1, 64, 1001)
    # second 2 would run past the end of the 2.5 s wave: its window ends with the wave instead of padding
    for t, samples in enumerate([wave[:32000], wave[32000:64000], wave[-32000:]]):
        expected = librosa_log_mel(np.tile(samples, 10))  # the second repeated ten times: (64, 1001)
        np.testing.assert_allclose(images[t, 0].numpy(), expected, rtol=0, atol=5e-5)
    # not the second's own 101 frames stretched: a tiled second starts with the second's own frames, but each
    # repeat wraps round to the start where the second alone would be reflected at its end
    alone = librosa_log_mel(wave[:32000])  # (64, 101)
    np.testing.assert_allclose(images[0, 0, :, 2:99].numpy(), alone[:, 2:99], rtol=0, atol=5e-5)
    assert np.abs(images[0, 0, :, 100].numpy() - alone[:, 100]).max() > 1.0


@pytest.mark.parametrize("name,seconds,frames", [("htsat", 10, 1001), ("htsat_avs", 5, 501)])
def test_a_second_reaches_htsat_as_its_tiled_log_mel_stretched_bicubically_to_1024_frames(name, seconds, frames):
    """DG-SCT's audio path, computed here without avadapt: np.tile the second, librosa's log-mel, bn0 by hand,
    Keys' bicubic stretch to 1024 frames (align_corners), the fold of four 256-frame chunks."""
    rng = np.random.default_rng(2)
    t = np.arange(32000) / 32000
    second = (0.3 * np.sin(2 * np.pi * 660 * t) * np.exp(-3 * t) + 0.05 * rng.standard_normal(32000)).astype(
        np.float32)
    front_end = audio_front_end(name)
    images = segment_fbank(second, front_end.fbank, num_segments=1)  # (1, 1, 64, frames)
    tiled = librosa_log_mel(np.tile(second, seconds))
    assert images.shape == (1, 1, 64, frames) and tiled.shape == (64, frames)
    np.testing.assert_allclose(images[0, 0].numpy(), tiled, rtol=0, atol=5e-5)

    torch.manual_seed(0)
    encoder = create_htsat("tiny", **front_end.embedding_options()).double()
    set_bn0(encoder)
    bn0 = encoder.bn0
    scale = (bn0.weight / torch.sqrt(bn0.running_var + 1e-5)).detach().numpy()
    normed = (tiled - bn0.running_mean.numpy()[:, None]) * scale[:, None] + bn0.bias.detach().numpy()[:, None]
    stretched = bicubic_stretch(normed, 1024)  # (64, 1024)
    expected = np.concatenate([stretched[:, k * 256:(k + 1) * 256] for k in range(4)])  # (256, 256)
    with torch.no_grad():
        image = encoder.spectrogram_image(images.double())
    np.testing.assert_allclose(image[0, 0].numpy(), expected, rtol=0, atol=1e-3)


def test_a_cache_of_untiled_seconds_is_not_read_as_tiled(tmp_path):
    untiled = FbankConfig.from_dict({**HTSAT.to_dict(), "tile_seconds": None, "target_frames": 101})
    CacheSettings(image_size=32, fbank=untiled, dataset="ave").write(tmp_path)
    with pytest.raises(CacheConfigError, match=r"fbank.target_frames: cache 101, wanted 1001.*"
                                               r"fbank.tile_seconds: cache None, wanted 10.0"):
        check_cache_settings(tmp_path / "cache.json", {"fbank": HTSAT})
    # an old cache.json without the field reads as untiled, and is refused the same way
    record = CacheSettings(image_size=32, fbank=untiled, dataset="ave").to_json()
    del record["fbank"]["tile_seconds"]
    (tmp_path / "cache.json").write_text(json.dumps(record))
    assert CacheSettings.read(tmp_path).fbank == untiled
    with pytest.raises(CacheConfigError, match="tile_seconds"):
        check_cache_settings(tmp_path / "cache.json", {"fbank": HTSAT})


def test_prepared_clips_and_the_dataset_give_64_by_1001_images(tmp_path):
    root = synthesize_ave(tmp_path / "ave", clips=2, seed=5, num_classes=2).root
    out = tmp_path / "cache"
    summary = prepare_ave(root, out, workers=1, image_size=32, fbank=HTSAT, progress=False)
    assert summary.done == 2 and summary.failed == []
    clip = next(out.glob("*.safetensors"))
    _, audio = load_cached_clip(clip)
    assert audio.shape == (10, 1, 64, 1001)
    assert audio.min() >= -100.5 and audio.std() > 1  # dB values, not normalised away
    assert CacheSettings.read(out).fbank == HTSAT

    transform = VideoTransform(VideoTransformConfig(input_size=(32, 32)))
    from_cache = AVEDataset(root, "train", cache_dir=out, transform=transform, fbank=HTSAT)
    from_media = AVEDataset(root, "train", source="mp4", transform=transform, fbank=HTSAT)
    assert from_cache[0]["audio"].shape == from_media[0]["audio"].shape == (10, 1, 64, 1001)
    # the cache stores float16
    torch.testing.assert_close(from_cache[0]["audio"], from_media[0]["audio"], atol=0.07, rtol=1e-3)
    assert AVDataModule(str(root), preprocessing={"audio_front_end": "htsat"}).fbank == HTSAT


def test_a_smaller_front_end_feeds_a_smaller_encoder_built_the_same_way():
    """A CPU demo can shrink both sides together: 16 mel bins every 40 ms (251 frames of a second tiled to 10 s)
    into a 64 × 64 fold."""
    front_end = audio_front_end("htsat").with_fbank(num_mel_bins=16, frame_shift_ms=40.0, target_frames=251)
    images = segment_fbank(np.random.default_rng(0).standard_normal(64000).astype(np.float32), front_end.fbank, 2)
    assert images.shape == (2, 1, 16, 251)
    encoder = create_htsat("tiny", **front_end.embedding_options())
    assert (encoder.config.spec_size, encoder.config.stretched_frames) == (64, 256)
    with torch.no_grad():
        tokens = encoder.audio_tokens(images)
    assert tokens.shape == (2, 16 * 16, 16)
    assert [stage.grid for stage in encoder.stages] == [(16, 16), (8, 8), (4, 4), (2, 2)]
