"""Log-mel spectrograms cut into one "spectrogram image" per segment (:func:`segment_fbank`) with an audio
front end's settings (:class:`FbankConfig`): Kaldi fbanks (:func:`kaldi_fbank`) or the STFT log-mel of PANNs
and HTS-AT (:func:`log_mel`, checked against librosa).

Why not ``kaldi_native_fbank``: the reference setting (128 mel bins over a 512-point FFT at 16 kHz) has low
mel bins so narrow that no FFT bin falls inside them. Kaldi's C++ ``MelBanks`` refuses such a config, while
torchaudio, which the reference models were trained with, keeps them as all-zero rows that log to the floor.
:func:`kaldi_fbank` is the same Kaldi recipe keeping empty bins; the tests check it against kaldi-native-fbank
on configs that one accepts.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from avadapt.audio_front_ends import SPREAD_END_MARGIN_SECONDS, FbankConfig

# Kaldi's log floor: mel energies below FLT_EPSILON are clamped before the log, so silence maps
# to log(1.19e-7) ≈ −15.9 instead of −inf.
_LOG_FLOOR = float(np.finfo(np.float32).eps)
# librosa's power_to_db floor (``amin``, reference 1, no ``top_db``): silence maps to −100 dB.
_POWER_FLOOR = 1e-10
_SLANEY_LOG_STEP = math.log(6.4) / 27.0  # Slaney mel scale above 1 kHz: 27 mel per factor 6.4


@functools.lru_cache(maxsize=8)
def _window(cfg: FbankConfig) -> torch.Tensor:
    """Kaldi's analysis windows (feature-window.cc); 'hanning' is the symmetric Hann window."""
    n = cfg.frame_samples
    a = 2 * math.pi * torch.arange(n, dtype=torch.float64) / (n - 1)
    if cfg.window_type == "hann":  # periodic: the symmetric window of n + 1 points without its last one
        return (0.5 - 0.5 * torch.cos(2 * math.pi * torch.arange(n, dtype=torch.float64) / n)).float()
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
    """Kaldi's triangular mel filters, (num_mel_bins, fft_size // 2 + 1) float32: edges evenly spaced on the
    HTK mel scale from ``low_freq`` to ``top_freq``; a bin holding no FFT bin stays zero (as torchaudio)."""
    num_fft_bins = cfg.fft_size // 2
    low, high = _mel(cfg.low_freq), _mel(cfg.top_freq)
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

    Kaldi's ``compute-fbank-feats`` with ``dither=0`` and ``snip_edges``: per frame remove the mean,
    pre-emphasise (``x[i] −= 0.97 · x[i−1]``, the first sample against itself), window, zero-pad to the FFT
    size; power spectrum; mel filters; ``log(max(·, FLT_EPSILON))``. Not normalised. float32 like Kaldi, in
    torch so that ``torch.set_num_threads`` (1 in DataLoader workers) governs it.
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


def _slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, ``htk=False``): 3 mel per 200 Hz below 1 kHz, log above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3.0 / 200.0
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) / _SLANEY_LOG_STEP, linear)


def _slaney_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_slaney_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp(_SLANEY_LOG_STEP * (mel - 15.0)), mel * 200.0 / 3.0)


@functools.lru_cache(maxsize=8)
def slaney_mel_matrix(cfg: FbankConfig) -> torch.Tensor:
    """librosa's mel filters (``filters.mel`` defaults: Slaney scale, Slaney norm), (num_mel_bins, fft/2+1) float32.

    Filter i rises from edge i to edge i + 1 and falls to edge i + 2 (edges evenly spaced on the Slaney scale
    from ``low_freq`` to ``top_freq``), scaled by ``2 / (edge[i+2] − edge[i])`` Hz so all have the same area.
    """
    edges = _slaney_hz(np.linspace(_slaney_mel(cfg.low_freq), _slaney_mel(cfg.top_freq), cfg.num_mel_bins + 2))
    fft_hz = np.linspace(0.0, cfg.sample_rate / 2, cfg.fft_size // 2 + 1)  # (K,)
    widths = np.diff(edges)  # (F + 1,)
    offsets = edges[:, None] - fft_hz[None, :]  # (F + 2, K)
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))  # (F, K)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def log_mel(waves: np.ndarray | torch.Tensor, cfg: FbankConfig) -> torch.Tensor:
    """librosa-style log-mel of a batch of equal-length waveforms: (..., n) → (..., 1 + n // hop, num_mel_bins).

    What ``librosa.stft(center=True, pad_mode="reflect")`` → ``|·|²`` → ``librosa.filters.mel`` →
    ``power_to_db(ref=1, amin=1e-10, top_db=None)`` computes (torchlibrosa's ``Spectrogram`` +
    ``LogmelFilterBank`` in PANNs and HTS-AT), in float64, returned as float32.
    """
    waves = torch.as_tensor(waves).to(torch.float64)
    n_fft, hop = cfg.fft_size, cfg.shift_samples
    half = n_fft // 2
    if waves.shape[-1] <= half:
        raise ValueError(f"reflect padding by {half} samples needs more than {half} samples, got {waves.shape[-1]}")
    left = waves[..., 1 : half + 1].flip(-1)  # reflection without repeating the edge sample
    right = waves[..., -half - 1 : -1].flip(-1)
    padded = torch.cat([left, waves, right], dim=-1)  # (..., n + n_fft)
    frames = padded.unfold(-1, n_fft, hop) * _window(cfg).to(torch.float64)  # (..., 1 + n // hop, n_fft)
    power = torch.fft.rfft(frames, dim=-1).abs().square()  # (..., frames, n_fft/2+1)
    mel = power @ slaney_mel_matrix(cfg).to(torch.float64).T  # (..., frames, F)
    return (10.0 * torch.log10(mel.clamp_min(_POWER_FLOOR))).float()


def spectrogram(waves: np.ndarray | torch.Tensor, cfg: FbankConfig) -> torch.Tensor:
    """The front end's spectrogram of equal-length waveforms, (..., n) → (..., frames, num_mel_bins), not
    normalised: :func:`kaldi_fbank` or :func:`log_mel` as ``cfg.spectrogram`` says."""
    return log_mel(waves, cfg) if cfg.spectrogram == "log_mel" else kaldi_fbank(waves, cfg)


def audio_window_starts(num_samples: int, cfg: FbankConfig, num_segments: int, segment_seconds: float = 1.0
                        ) -> list[int]:
    """First samples of the T windows of ``cfg.window_samples`` in a clip of ``num_samples``, as
    ``cfg.window_placement`` says (:class:`~avadapt.audio_front_ends.FbankConfig`).

    ``"segment"``: ``t · segment_seconds``, moved back to ``num_samples − window`` where the window would run past
    the clip's end. ``"spread"``: ``np.linspace(0, n − sr · (window_seconds + 0.1), T, dtype=int)`` written as the
    reference loaders write it (float arithmetic and truncation included); a clip too short for that margin
    spreads them over what fits. Only a clip shorter than one window has a window padded past its end.
    """
    width = cfg.window_samples
    last = max(num_samples - width, 0)  # the latest start whose window ends inside the clip
    if cfg.window_placement == "segment":
        hop = round(segment_seconds * cfg.sample_rate)
        return [min(t * hop, last) for t in range(num_segments)]
    end = num_samples - cfg.sample_rate * (cfg.window_seconds + SPREAD_END_MARGIN_SECONDS)
    return [int(start) for start in np.linspace(0, end if end >= 0 else last, num_segments, dtype=int)]


def segment_fbank(
    wave: np.ndarray | torch.Tensor, cfg: FbankConfig, num_segments: int, segment_seconds: float = 1.0
) -> torch.Tensor:
    """One normalised fbank image per segment of ``wave`` (mono, in [-1, 1], at ``cfg.sample_rate``):
    (T, 1, num_mel_bins, target_frames) float32.

    As the reference loaders: subtract the clip's mean (Kaldi fbanks only, not HTS-AT's); :func:`spectrogram`
    of each window of ``window_seconds`` on its own, the windows placed by :func:`audio_window_starts` (a
    front end's ``window_placement``: with its segment, or spread over the clip as the references' AVS and AVQA
    loaders), each repeated end to end to ``tile_seconds`` first where the front end says so (DG-SCT's HTS-AT
    input); normalise ``(x − mean) / (2 · std)``; pad with zeros *after* normalisation, or cut, to
    ``target_frames``.
    """
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    wave = torch.as_tensor(wave, dtype=torch.float64)
    if wave.ndim != 1:
        raise ValueError(f"wave must be mono with shape (n,), got {tuple(wave.shape)}")
    if cfg.spectrogram == "kaldi":
        wave = wave - (wave.mean() if wave.numel() else 0.0)
    width = cfg.window_samples
    windows = torch.zeros(num_segments, width)  # (T, W)
    for t, start in enumerate(audio_window_starts(len(wave), cfg, num_segments, segment_seconds)):
        piece = wave[start : start + width]
        windows[t, : len(piece)] = piece  # zeros past the end only for a clip shorter than one window
    if cfg.spectrogram_samples != width:  # each window repeated end to end, cut to the tiled length
        windows = windows.repeat(1, -(-cfg.spectrogram_samples // width))[:, : cfg.spectrogram_samples]  # (T, W')
    fbank = spectrogram(windows, cfg)[:, : cfg.target_frames]  # (T, frames ≤ L, F)
    padded = torch.zeros(num_segments, cfg.target_frames, cfg.num_mel_bins)  # (T, L, F)
    padded[:, : fbank.shape[1]] = (fbank - cfg.mean) / (2 * cfg.std)
    return padded.transpose(1, 2).unsqueeze(1).contiguous()  # (T, 1, F, L)
