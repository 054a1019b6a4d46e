"""Audio-visual data: decoding, fbank, frame transforms, datasets in their native layouts, caches.

media       PyAV decoding of a clip into T frames + a 16 kHz mono waveform; the mp4 writer
fbank       Kaldi log-mel fbank, one normalised (F, L) image per segment (FbankConfig)
transforms  frames → normalised tensors from a timm data config (VideoTransform)
base        ClipDataset: what every registered dataset offers the generic data module; collate_av
ave         AVE annotations, layouts (mp4 / extracted frames / cache) and AVEDataset
avs         AVSBench S4 / MS3 metadata (native csvs or AVSBench-semantic's), the native layouts (frames,
            binary masks, wav) and S4Dataset / MS3Dataset (``avs_s4``, ``avs_ms3``)
avqa        MUSIC-AVQA question jsons as released (tokenised, typed), the question and answer vocabularies,
            the layouts (mp4 of any length / extracted frames + wav / cache) and MusicAVQADataset
            (``music_avqa``)
cache       the prepared-clip cache format (cache.json + one safetensors file per video)
prepare     prepare_ave: decode every clip once into a cache, resumably, in parallel
prepare_avs prepare_avs: the same for AVSBench clips, with their masks
prepare_avqa prepare_avqa: the same for MUSIC-AVQA videos (one file per video id) and the question
            vocabulary
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
from avadapt.data.avqa import (
    QUESTION_TYPE_NAMES,
    QUESTION_TYPES,
    TYPE_GROUPS,
    AVQAQuestion,
    MusicAVQADataset,
    QuestionFileError,
    QuestionType,
    QuestionVocabulary,
    answer_vocabulary_from,
    read_answer_vocabulary,
    read_avqa_json,
    tokenize_question,
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
from avadapt.data.prepare_avqa import prepare_avqa
from avadapt.data.prepare_avs import prepare_avs
from avadapt.data.synth import synthesize_ave
from avadapt.data.transforms import VideoTransform, VideoTransformConfig
from avadapt.errors import MediaError

__all__ = [
    "QUESTION_TYPES",
    "QUESTION_TYPE_NAMES",
    "S4_CATEGORIES",
    "TYPE_GROUPS",
    "AVEAnnotations",
    "AVEDataset",
    "AVQAQuestion",
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
    "MusicAVQADataset",
    "PrepareSummary",
    "QuestionFileError",
    "QuestionType",
    "QuestionVocabulary",
    "S4Dataset",
    "VideoTransform",
    "VideoTransformConfig",
    "answer_vocabulary_from",
    "collate_av",
    "media_duration",
    "prepare_ave",
    "prepare_avqa",
    "prepare_avs",
    "read_answer_vocabulary",
    "read_audio",
    "read_avqa_json",
    "read_avs_metadata",
    "read_clip",
    "read_events",
    "read_ms3_metadata",
    "read_s4_metadata",
    "segment_fbank",
    "splits_from_avss_metadata",
    "synthesize_ave",
    "tokenize_question",
    "window_starts",
    "write_mp4",
]
