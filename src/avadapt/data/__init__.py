"""Audio-visual data: decoding, fbank, frame transforms, datasets in their native layouts, caches.

media       PyAV decoding of a clip into T frames + a 16 kHz mono waveform; the mp4 writer
fbank       Kaldi log-mel fbank, one normalised (F, L) image per segment (FbankConfig)
transforms  frames → normalised tensors from a timm data config (VideoTransform)
base        ClipDataset: what every registered dataset offers the generic data module; collate_av
ave         AVE annotations, layouts (mp4 / extracted frames / cache) and AVEDataset
avs         AVSBench S4 / MS3 metadata (native csvs or AVSBench-semantic's), the native layouts (frames,
            binary masks, wav) and S4Dataset / MS3Dataset (``avs_s4``, ``avs_ms3``)
cache       the prepared-clip cache format (cache.json + one safetensors file per video)
prepare     prepare_ave: decode every clip once into a cache, resumably, in parallel
prepare_avs prepare_avs: the same for AVSBench clips, with their masks
synth       synthesize_ave: a small AVE-layout dataset of real mp4 files that needs both modalities
synth_avs   synthesize_avs: a small AVSBench S4 / MS3 dataset (PNG frames and masks, wav) that needs the sound
synth_avqa  synthesize_avqa: a small MUSIC-AVQA (released json files, mp4 performances), all 9 question types
"""

from avadapt.data.ave import (
    AnnotationError,
    AVEAnnotations,
    AVEDataset,
    MissingMediaError,
    read_events,
)
from avadapt.data.avs import (
    S4_CATEGORIES,
    AVSClip,
    AVSDataset,
    MS3Dataset,
    S4Dataset,
    read_avs_metadata,
    read_ms3_metadata,
    read_s4_metadata,
    splits_from_avss_metadata,
)
from avadapt.data.base import ClipDataset, collate_av
from avadapt.data.cache import CacheConfigError, CacheSettings
from avadapt.data.fbank import FbankConfig, segment_fbank
from avadapt.data.media import media_duration, read_audio, read_clip, window_starts, write_mp4
from avadapt.data.prepare import PrepareSummary, prepare_ave
from avadapt.data.prepare_avs import prepare_avs
from avadapt.data.synth import synthesize_ave
from avadapt.data.transforms import VideoTransform, VideoTransformConfig
from avadapt.errors import MediaError

__all__ = [
    "S4_CATEGORIES",
    "AVEAnnotations",
    "AVEDataset",
    "AVSClip",
    "AVSDataset",
    "AnnotationError",
    "CacheConfigError",
    "CacheSettings",
    "ClipDataset",
    "FbankConfig",
    "MS3Dataset",
    "MediaError",
    "MissingMediaError",
    "PrepareSummary",
    "S4Dataset",
    "VideoTransform",
    "VideoTransformConfig",
    "collate_av",
    "media_duration",
    "prepare_ave",
    "prepare_avs",
    "read_audio",
    "read_avs_metadata",
    "read_clip",
    "read_events",
    "read_ms3_metadata",
    "read_s4_metadata",
    "segment_fbank",
    "splits_from_avss_metadata",
    "synthesize_ave",
    "window_starts",
    "write_mp4",
]
