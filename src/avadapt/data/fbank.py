"""Kaldi log-mel filterbanks cut into one "spectrogram image" per segment.

The audio branch of an image ViT reads a log-mel fbank as a one-channel image. Its settings are those
the pretrained audio-visual adapters were trained with; changing them changes the input distribution
the adapter weights expect, so they live in one JSON-round-tripping config (:class:`FbankConfig`,
defined with the named front ends in ``avadapt.audio_front_ends``) that a prepared cache records and checks.

Why the fbank is computed here and not by ``kaldi_native_fbank.OnlineFbank``: the reference
setting (128 mel bins over a 25 ms window, i.e. a 512-point FFT at 16 kHz) has mel bins so narrow
at the low end that no FFT bin falls inside them (bins 3, 5, 7 … below ~150 Hz). Kaldi's C++
``MelBanks`` — and so kaldi-native-fbank — refuses such a config ("You may have set num_mel_bins
too large"), while the torchaudio implementation the reference models were trained with keeps
those bins as all-zero rows that log to the floor. :func:`kaldi_fbank` implements the same Kaldi
recipe in vectorised numpy, keeping empty bins; the tests check it against kaldi-native-fbank on
configurations kaldi-native-fbank accepts.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from avadapt.audio_front_ends import FbankConfig

# Kaldi's log floor: mel energies below FLT_EPSILON are clamped before the log, so silence maps
# to log(1.19e-7) ≈ −15.9 instead of −inf.
_LOG_FLOOR = float(np.finfo(np.float32).eps)


@functools.lru_cache(maxsize=8)
def _window(cfg: FbankConfig) -> torch.Tensor:
    """Kaldi's analysis windows (feature-window.cc); 'hanning' is the symmetric Hann window."""
    n = cfg.frame_samples
    a = 2 * math.pi * torch.arange(n, dtype=torch.float64) / (n - 1)
    windows = {
        "hanning": 0.5 - 0.5 * torch.cos(a),
        "povey": (0.5 - 0.5 * torch.cos(a)) ** 0.85,
        "hamming": 0.54 - 0.46 * torch.cos(a),
        "blackman": 0.42 - 0.5 * torch.cos(a) + 0.08 * torch.cos(2 * a),
        "rectangular": torch.ones(n, dtype=torch.float64),
    }
    return windows[cfg.window_type].float()


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=8)
def mel_matrix(cfg: FbankConfig) -> torch.Tensor:
    """Kaldi's triangular mel filters, (num_mel_bins, fft_size // 2 + 1) float32.

    Bin edges are evenly spaced on the HTK mel scale between ``low_freq`` and Nyquist; a bin
    whose triangle holds no FFT bin keeps all-zero weights (as in torchaudio), see module docstring.
    """
    num_fft_bins = cfg.fft_size // 2
    low, high = _mel(cfg.low_freq), _mel(cfg.sample_rate / 2)
    delta = (high - low) / (cfg.num_mel_bins + 1)
    fft_mel = _mel(np.arange(num_fft_bins) * cfg.sample_rate / cfg.fft_size)  # (K,)
    left = low + np.arange(cfg.num_mel_bins)[:, None] * delta  # (F, 1)
    up = (fft_mel - left) / delta
    down = (left + 2 * delta - fft_mel) / delta
    weights = np.zeros((cfg.num_mel_bins, num_fft_bins + 1), np.float32)
    weights[:, :num_fft_bins] = np.clip(np.minimum(up, down), 0.0, None)  # Nyquist bin gets no weight
    return torch.from_numpy(weights)


def kaldi_fbank(waves: np.ndarray | torch.Tensor, cfg: FbankConfig) -> torch.Tensor:
    """Kaldi log-mel fbank of a batch of equal-length waveforms: (..., n) → (..., frames, num_mel_bins).

    The recipe of Kaldi's ``compute-fbank-feats`` with ``dither=0`` and ``snip_edges``: frames of
    ``frame_length_ms`` every ``frame_shift_ms``; per frame remove the mean, pre-emphasise
    (``x[i] −= 0.97 · x[i−1]``, the first sample against itself), window, zero-pad to the FFT size;
    power spectrum; mel filters; ``log(max(·, FLT_EPSILON))``. Not normalised. float32 like Kaldi,
    and in torch so that ``torch.set_num_threads`` (set to 1 in DataLoader workers) governs it.
    """
    waves = torch.as_tensor(waves, dtype=torch.float32)
    length, shift = cfg.frame_samples, cfg.shift_samples
    if waves.shape[-1] < length:
        return torch.zeros((*waves.shape[:-1], 0, cfg.num_mel_bins))
    frames = waves.unfold(-1, length, shift)  # (..., frames, length)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = (frames - cfg.preemphasis * previous) * _window(cfg)
    power = torch.fft.rfft(frames, n=cfg.fft_size, dim=-1).abs().square()  # (..., frames, fft/2+1)
    energies = power @ mel_matrix(cfg).T  # (..., frames, F)
    return energies.clamp_min(_LOG_FLOOR).log()


def segment_fbank(
    wave: np.ndarray | torch.Tensor, cfg: FbankConfig, num_segments: int, segment_seconds: float = 1.0
) -> torch.Tensor:
    """One normalised fbank image per segment: (T, 1, num_mel_bins, target_frames) float32.

    ``wave``: mono samples in [-1, 1] at ``cfg.sample_rate`` (as :func:`read_clip` returns).

    Steps, following the reference loaders: subtract the waveform's mean over the whole clip; cut
    window t = [t · segment_seconds, t · segment_seconds + window_seconds) (zeros past the end of
    the waveform); Kaldi fbank of each window on its own (98 frames for 1 s); normalise
    ``(x − mean) / (2 · std)``; then pad with zeros or cut to ``target_frames`` — zeros *after*
    normalisation, as the reference does, so padded columns are exactly 0; transpose so rows are mel
    bins and columns are time frames, the orientation of ``AVBatch.audio``.

    Window placement: the reference code puts its 1 s crops at ``linspace(0, len − 1.1 s, T)[t]``,
    which drifts up to 0.9 s away from second t on a 10 s clip. AVE labels say what happens in
    second [t, t + 1), so we align window t with segment t: the window hears exactly the second its
    label describes, and the frame taken at the segment's middle is seen with the sound around it.
    """
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    wave = torch.as_tensor(wave, dtype=torch.float64)
    if wave.ndim != 1:
        raise ValueError(f"wave must be mono with shape (n,), got {tuple(wave.shape)}")
    wave = wave - (wave.mean() if wave.numel() else 0.0)
    hop = round(segment_seconds * cfg.sample_rate)
    width = cfg.window_samples
    windows = torch.zeros(num_segments, width)  # (T, W)
    for t in range(num_segments):
        piece = wave[t * hop : t * hop + width]
        windows[t, : len(piece)] = piece
    fbank = kaldi_fbank(windows, cfg)[:, : cfg.target_frames]  # (T, frames ≤ L, F)
    padded = torch.zeros(num_segments, cfg.target_frames, cfg.num_mel_bins)  # (T, L, F)
    padded[:, : fbank.shape[1]] = (fbank - cfg.mean) / (2 * cfg.std)
    return padded.transpose(1, 2).unsqueeze(1).contiguous()  # (T, 1, F, L)
