"""Audio-visual data: decoding, fbank, frame transforms, datasets in their native layouts, caches.

media       PyAV decoding of a clip into T frames + a 16 kHz mono waveform; the mp4 writer
fbank       Kaldi log-mel fbank, one normalised (F, L) image per segment (FbankConfig)
transforms  frames → normalised tensors from a timm data config (VideoTransform)
base        ClipDataset: what every registered dataset offers the generic data module; collate_av
ave         AVE annotations, layouts (mp4 / extracted frames / cache) and AVEDataset
cache       the prepared-clip cache format (cache.json + one safetensors file per video)
prepare     prepare_ave: decode every clip once into a cache, resumably, in parallel
synth       synthesize_ave: a small AVE-layout dataset of real mp4 files that needs both modalities
synth_avs   synthesize_avs: a small AVSBench S4 / MS3 dataset (PNG frames and masks, wav) that needs the sound
"""

from avadapt.data.ave import (
    AnnotationError,
    AVEAnnotations,
    AVEDataset,
    MissingMediaError,
    read_events,
)
from avadapt.data.base import ClipDataset, collate_av
from avadapt.data.cache import CacheConfigError, CacheSettings
from avadapt.data.fbank import FbankConfig, segment_fbank
from avadapt.data.media import media_duration, read_audio, read_clip, window_starts, write_mp4
from avadapt.data.prepare import PrepareSummary, prepare_ave
from avadapt.data.synth import synthesize_ave
from avadapt.data.transforms import VideoTransform, VideoTransformConfig
from avadapt.errors import MediaError

__all__ = [
    "AVEAnnotations",
    "AVEDataset",
    "AnnotationError",
    "CacheConfigError",
    "CacheSettings",
    "ClipDataset",
    "FbankConfig",
    "MediaError",
    "MissingMediaError",
    "PrepareSummary",
    "VideoTransform",
    "VideoTransformConfig",
    "collate_av",
    "media_duration",
    "prepare_ave",
    "read_audio",
    "read_clip",
    "read_events",
    "segment_fbank",
    "synthesize_ave",
    "window_starts",
    "write_mp4",
]
