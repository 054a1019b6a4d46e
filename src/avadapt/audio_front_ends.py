"""Audio front ends: how a waveform becomes the spectrogram "image" a frozen image backbone reads.

A front end is the fbank image (the kind of spectrogram — Kaldi fbank or STFT log-mel —, its settings, the
per-segment windows and where they lie, the size ``num_mel_bins`` × ``target_frames`` and the normalisation statistics:
:class:`FbankConfig`) together with how the model embeds it: through the shared image backbone (the RGB patch
kernel collapsed to one channel by ``sum`` or ``mean``, the position grid fitted by ``crop`` or ``interpolate``)
or through an audio encoder of its own (``encoder="htsat"``: HTS-AT's bn0, time stretch and fold,
``avadapt.backbones.htsat``). An adapter trained on one front end expects the same one at inference, so each
front end the methods were trained with is one named entry here, with its source. The data pipeline (``avadapt.data``) and
the model (``avadapt.models.create_model``) both read the entry by name, so the numbers exist in this file only;
the training module hands its name to both, and an adapter directory records it with the fbank values.

This module sits below both sides (it imports neither the data package nor the backbones): the model side
turns :meth:`AudioFrontEnd.embedding_options` into ``avadapt.backbones.AudioEmbeddingConfig``, the data side
computes :class:`FbankConfig` with ``avadapt.data.fbank``.

Which entry a model uses unless told otherwise is declared where the choice was made: by a method with an
audio encoder of its own (``AVMethod.paper_audio_front_end``), else by the task for a method and backbone
family (``Task.paper_audio_front_ends``), else :data:`FAMILY_AUDIO_FRONT_ENDS`.

Sources: the audio loaders of the LAVISH, STG-CMA and DG-SCT reference repositories; HTS-AT's AudioSet config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from avadapt._config import JSONConfig

# Kaldi's windows ("hanning" is Kaldi's symmetric Hann), plus "hann": the periodic Hann of librosa / scipy's
# ``get_window("hann", n)`` that STFT log-mel front ends use.
_WINDOW_TYPES = ("hanning", "povey", "hamming", "rectangular", "blackman", "hann")
SPECTROGRAM_KINDS = ("kaldi", "log_mel")
WINDOW_PLACEMENTS = ("segment", "spread")
# The reference loaders' "spread" placement ends the last window this long before the clip's end:
# ``np.linspace(0, len − sr · (window + 0.1), T)`` (LAVISH, DG-SCT and STG-CMA ``_wav2fbank``).
SPREAD_END_MARGIN_SECONDS = 0.1


@dataclass(frozen=True)
class FbankConfig(JSONConfig):
    """Fbank settings of an audio front end, and the per-segment windows: their length and where they lie.

    Defaults are the "vit" front end: the reference ViT setting introduced by AST (Gong et al., Interspeech 2021:
    ``torchaudio.compliance.kaldi.fbank(htk_compat=True, use_energy=False, window_type="hanning",
    num_mel_bins=128, dither=0.0, frame_shift=10)``) and kept by LAVISH (Lin et al., CVPR 2023) and
    STG-CMA for AVE: 128 mel bins, 25 ms Hanning windows every 10 ms, a 1 s crop padded/cut to 102
    frames (``int(1024 · 1 s / 10 s)``), normalised as ``(x − mean) / (2 · std)`` with LAVISH's
    dataset statistics mean −4.1426, std 3.2001. The other Kaldi options are Kaldi's defaults, which
    the reference also used: pre-emphasis 0.97, per-frame DC removal, mel bins from 20 Hz to
    Nyquist, power spectrum, FFT size rounded up to a power of two, only whole frames
    (``snip_edges``).

    ``htk_compat`` only moves the energy coefficient and ``use_energy`` is off, so together they
    change nothing; both are kept so the config reads like the reference call, and validation
    rejects ``use_energy=True`` rather than silently ignoring it.

    ``spectrogram`` picks the recipe (``avadapt.data.fbank.spectrogram``): ``"kaldi"`` (the above) or
    ``"log_mel"``, the librosa-style log-mel of PANNs and HTS-AT (torchlibrosa's ``Spectrogram`` +
    ``LogmelFilterBank``): an STFT of ``frame_length_ms`` windows (the FFT size: a power of two) every
    ``frame_shift_ms``, centred with reflect padding, no DC removal or pre-emphasis, power spectrum, Slaney mel
    filters with Slaney area normalisation between ``low_freq`` and ``high_freq``, ``10 · log10(max(·, 1e-10))``.
    ``high_freq`` None is Nyquist.

    ``tile_seconds``: repeat each per-segment window end to end to this length before the spectrogram, as
    DG-SCT's loaders feed HTS-AT (each 1 s window tiled to HTS-AT's 10 s clip, to 5 s on AVSBench's 5 s clips):
    the spectrogram then covers the tiled length (1001 log-mel frames for 10 s at a 10 ms hop); None: the window
    as it is.
    ``window_placement`` says where the T windows of ``window_seconds`` lie in a clip of n samples
    (``avadapt.data.fbank.window_starts``): ``"segment"``, window t starts with segment t (at
    t · segment_seconds, moved back to end with the clip where it would run past it); ``"spread"``, the reference
    loaders' ``np.linspace(0, n − sr · (window_seconds + 0.1), T, dtype=int)``, the first window at the clip's
    start and the last ending 0.1 s before its end, whatever the segment length. Neither pads a window past the
    end of a clip at least ``window_seconds + 0.1`` s long.
    """

    spectrogram: Literal["kaldi", "log_mel"] = "kaldi"

    sample_rate: int = 16000
    num_mel_bins: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window_type: str = "hanning"
    dither: float = 0.0
    htk_compat: bool = True
    use_energy: bool = False
    preemphasis: float = 0.97
    low_freq: float = 20.0
    high_freq: float | None = None
    target_frames: int = 102
    window_seconds: float = 1.0
    tile_seconds: float | None = None
    window_placement: Literal["segment", "spread"] = "segment"
    mean: float = -4.1426
    std: float = 3.2001

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.num_mel_bins <= 0 or self.target_frames <= 0:
            raise ValueError(f"sample_rate, num_mel_bins and target_frames must be positive: {self}")
        if self.frame_shift_ms <= 0 or self.frame_length_ms <= 0 or self.window_seconds <= 0:
            raise ValueError(f"frame_shift_ms, frame_length_ms and window_seconds must be positive: {self}")
        if self.window_seconds * 1000 < self.frame_length_ms:
            raise ValueError(f"window_seconds ({self.window_seconds}) is shorter than one fbank frame")
        if self.tile_seconds is not None and self.tile_seconds < self.window_seconds:
            raise ValueError(f"tile_seconds ({self.tile_seconds}) must be at least window_seconds "
                             f"({self.window_seconds}): tiling repeats the window, it never cuts it")
        if self.spectrogram not in SPECTROGRAM_KINDS:
            raise ValueError(f"spectrogram {self.spectrogram!r} is not one of {SPECTROGRAM_KINDS}")
        if self.window_placement not in WINDOW_PLACEMENTS:
            raise ValueError(f"window_placement {self.window_placement!r} is not one of {WINDOW_PLACEMENTS}")
        if not 0 <= self.low_freq < self.top_freq <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= low_freq < high_freq <= Nyquist, got {self.low_freq}, {self.high_freq}")
        if self.spectrogram == "log_mel":
            if self.preemphasis != 0.0:
                raise ValueError("a log_mel spectrogram has no pre-emphasis; set preemphasis=0")
            if self.frame_samples != self.fft_size:
                raise ValueError(f"a log_mel spectrogram's window is its FFT size: frame_length_ms must give a "
                                 f"power of two samples, got {self.frame_samples}")
        if self.std <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        if self.window_type not in _WINDOW_TYPES:
            raise ValueError(f"window_type {self.window_type!r} is not one of {_WINDOW_TYPES}")
        if self.dither != 0.0:
            raise ValueError("dither must be 0: features are cached and must be reproducible")
        if self.use_energy:
            raise ValueError("use_energy=True is not supported; the reference ViT setting has no energy term")

    @property
    def top_freq(self) -> float:
        """Upper edge of the mel filters in Hz: ``high_freq``, or Nyquist when it is None."""
        return self.sample_rate / 2 if self.high_freq is None else self.high_freq

    @property
    def window_samples(self) -> int:
        """Samples in one per-segment audio window (16,000 for 1 s at 16 kHz)."""
        return round(self.window_seconds * self.sample_rate)

    @property
    def spectrogram_samples(self) -> int:
        """Samples the spectrogram of one segment reads: the window, or the window tiled to ``tile_seconds``."""
        return self.window_samples if self.tile_seconds is None else round(self.tile_seconds * self.sample_rate)

    @property
    def frame_samples(self) -> int:
        return int(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def shift_samples(self) -> int:
        return int(self.sample_rate * self.frame_shift_ms / 1000)

    @property
    def fft_size(self) -> int:
        return 1 << (self.frame_samples - 1).bit_length()  # next power of two (Kaldi's default)


@dataclass(frozen=True)
class AudioFrontEnd:
    """One named front end: the fbank image and how the model embeds it (spectrogram size = the fbank's).

    encoder: ``"shared"``, the image backbone's own patch embedding (``kernel_reduction``, ``pos_embed``); or
    ``"htsat"``, HTS-AT's audio encoder (``avadapt.backbones.create_htsat``), whose one-channel patch embedding
    needs no kernel collapse and whose Swin has no position grid to fit.
    """

    name: str
    fbank: FbankConfig
    kernel_reduction: Literal["sum", "mean"]
    pos_embed: Literal["crop", "interpolate"] = "crop"
    source: str = ""
    encoder: Literal["shared", "htsat"] = "shared"

    def with_fbank(self, **changes: Any) -> AudioFrontEnd:
        """The same front end with some fbank fields changed, e.g. a smaller spectrogram for a tiny model."""
        if not changes:
            return self
        return replace(self, fbank=FbankConfig.from_dict({**self.fbank.to_dict(), **changes}))

    def embedding_options(self) -> dict[str, Any]:
        """Keyword arguments of ``avadapt.backbones.AudioEmbeddingConfig`` for this front end; for an ``htsat``
        front end, the ``avadapt.backbones.HTSATConfig`` fields it fixes (``create_htsat(**options)``)."""
        if self.encoder == "htsat":
            return {"num_mel_bins": self.fbank.num_mel_bins, "num_frames": self.fbank.target_frames}
        return {"num_mel_bins": self.fbank.num_mel_bins, "num_frames": self.fbank.target_frames,
                "kernel_reduction": self.kernel_reduction, "pos_embed": self.pos_embed}


# STG-CMA on Swin/224: 224 mel × 224 frames at a 4.4 ms shift, patch kernel averaged over RGB. AVE keeps the
# ViT setting's statistics (the official script does); AVS/AVQA cut a 1.95 s window to its first 224 frames.
# The AVS and AVQA loaders of STG-CMA and LAVISH spread their windows over the clip (``"spread"``); for AVE the
# windows stay with the labelled seconds (``"segment"``, FbankConfig's default; the reference loaders spread
# those too, up to 0.9 s away from their second on a 10 s clip).
_STG_CMA_SWIN = {"num_mel_bins": 224, "frame_shift_ms": 4.4, "target_frames": 224}
# LAVISH on Swin-V2-L/192: the spectrogram tiled to three channels through the unchanged RGB patch embedding,
# which is the one-channel convolution with the RGB kernel summed.
_LAVISH_SWIN = {"num_mel_bins": 192, "target_frames": 192}

# HTS-AT (Chen et al., ICASSP 2022) as DG-SCT uses it: 32 kHz, STFT 1024 / hop 320 (Hann, centred, reflect
# padding), 64 Slaney mel bins over 50–14000 Hz, power_to_db(ref=1, amin=1e-10, top_db=None). One 1 s window per
# segment, tiled to a 10 s clip (AVE, AVQA; 5 s on AVSBench) as DG-SCT's loaders do (haoyi-duan/DG-SCT: each
# task's dataloader repeats the segment's 32000 samples to 320000, AVS to 160000), so 1001 (501) frames, which
# HTS-AT then stretches to 1024 (``avadapt.backbones.htsat``). No dataset statistics: the encoder's bn0
# normalises each mel bin, so the fbank normalisation is the identity, (x − 0) / (2 · 0.5).
_HTSAT = FbankConfig(spectrogram="log_mel", sample_rate=32000, num_mel_bins=64, frame_length_ms=32.0,
                     frame_shift_ms=10.0, window_type="hann", preemphasis=0.0, low_freq=50.0, high_freq=14000.0,
                     target_frames=1001, window_seconds=1.0, tile_seconds=10.0, mean=0.0, std=0.5)

# CLAP's HTS-AT (LAION-AI/CLAP, model_configs/HTSAT-tiny.json, audio_cfg): the same recipe at 48 kHz, STFT window
# 1024 / hop 480, 64 Slaney mel bins over 50–14000 Hz. DG-SCT's few-/zero-shot loaders tile each 1 s segment to
# 10 s for it as for HTS-AT (haoyi-duan/DG-SCT, few-shot/ and zero-shot/ dataloaders), so 1001 frames. The
# window is 1024 samples exactly: 1000 · 1024 / 48000 ms.
_CLAP = replace(_HTSAT, sample_rate=48000, frame_length_ms=1000 * 1024 / 48000, frame_shift_ms=10.0)

AUDIO_FRONT_ENDS: dict[str, AudioFrontEnd] = {front_end.name: front_end for front_end in (
    AudioFrontEnd("vit", FbankConfig(), "sum", "crop",
                  "CLIP/ViT loaders of STG-CMA and LAVISH (AVE): FbankConfig's defaults, AST's setting; STG-CMA's "
                  "CLIP code sums the patch kernel over RGB"),
    AudioFrontEnd("stg_cma_swin_ave", FbankConfig(**_STG_CMA_SWIN), "mean", "crop", "STG-CMA Swin AVE loader"),
    AudioFrontEnd("stg_cma_swin_avs", FbankConfig(**_STG_CMA_SWIN, window_seconds=1.95, window_placement="spread",
                                                  mean=-5.6696, std=3.9484),
                  "mean", "crop", "STG-CMA Swin AVS loader"),
    AudioFrontEnd("stg_cma_swin_avqa", FbankConfig(**_STG_CMA_SWIN, window_seconds=1.95, window_placement="spread",
                                                   mean=-5.2144, std=3.8699),
                  "mean", "crop", "STG-CMA Swin AVQA loader"),
    AudioFrontEnd("lavish_swin_ave", FbankConfig(**_LAVISH_SWIN, frame_shift_ms=5.2, mean=-4.9848, std=3.7080),
                  "sum", "crop", "LAVISH AVE loader"),
    AudioFrontEnd("lavish_swin_avs", FbankConfig(**_LAVISH_SWIN, window_placement="spread", mean=-5.2105,
                                                 std=3.5918), "sum", "crop",
                  "LAVISH AVS loader (1 s windows at the ViT setting's 10 ms shift, ~98 frames zero-padded to 192)"),
    AudioFrontEnd("lavish_swin_avqa", FbankConfig(**_LAVISH_SWIN, window_seconds=1.95, window_placement="spread",
                                                  mean=-5.3853, std=3.5929),
                  "sum", "crop", "LAVISH AVQA loader (1.95 s windows, 10 ms shift)"),
    # The HTS-AT patch kernel has one input channel already: summing over it changes nothing.
    AudioFrontEnd("htsat", _HTSAT, "sum", "crop",
                  "HTS-AT's torchlibrosa front end (its AudioSet config), DG-SCT's audio input: each second tiled "
                  "to 10 s (DG-SCT's AVE and AVQA loaders)", encoder="htsat"),
    AudioFrontEnd("htsat_avs", replace(_HTSAT, target_frames=501, tile_seconds=5.0), "sum", "crop",
                  "the same, each second tiled to 5 s (DG-SCT's AVS loaders)", encoder="htsat"),
    AudioFrontEnd("clap", _CLAP, "sum", "crop",
                  "CLAP's HTS-AT front end (LAION-AI/CLAP, model_configs/HTSAT-tiny.json audio_cfg), each second "
                  "tiled to 10 s as DG-SCT feeds it (haoyi-duan/DG-SCT, few-shot and zero-shot loaders); read by "
                  "avadapt.text's CLAP audio tower", encoder="htsat"),
)}

# What a record without a front-end name means (adapter directories and caches that predate the names, a data
# module built without ``preprocessing``): FbankConfig's defaults, i.e. the "vit" entry.
DEFAULT_AUDIO_FRONT_END = "vit"

# The front end of a backbone family where neither the method nor the task names one
# (``avadapt.models.paper_audio_front_end``). ViT: the ViT loaders' setting. Swin: STG-CMA's Swin/224 setting
# with one 1 s window per segment, the segment length of every built-in dataset, and the AST statistics rather
# than one dataset's (the other Swin entries carry their dataset's statistics, those of AVS and AVQA also
# 1.95 s windows).
FAMILY_AUDIO_FRONT_ENDS: dict[str, str] = {"vit": DEFAULT_AUDIO_FRONT_END, "swin": "stg_cma_swin_ave"}


def audio_front_end(name: str, fbank: Mapping[str, Any] | None = None) -> AudioFrontEnd:
    """The front end called ``name``, with the fields in ``fbank`` (if any) replacing its own fbank values."""
    try:
        entry = AUDIO_FRONT_ENDS[name]
    except KeyError:
        raise KeyError(f"unknown audio front end {name!r}; known: {', '.join(sorted(AUDIO_FRONT_ENDS))}") from None
    return entry.with_fbank(**(fbank or {}))


def recorded_audio_front_end(preprocessing: Mapping[str, Any] | None) -> AudioFrontEnd:
    """The front end a preprocessing record names (``audio_front_end``, default ``"vit"``) with its ``fbank``
    values: how a data module or a prediction makes the spectrograms a model was trained on."""
    preprocessing = preprocessing or {}
    return audio_front_end(preprocessing.get("audio_front_end") or DEFAULT_AUDIO_FRONT_END,
                           preprocessing.get("fbank"))
