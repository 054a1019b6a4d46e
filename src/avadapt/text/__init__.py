"""Audio-visual learning with text (DG-SCT's few-/zero-shot setting): frozen CLIP and CLAP encoders whose text
towers turn class names into classifiers. Needs the ``text`` extra (``pip install 'avadapt[text]'``)."""

from avadapt.text.clap_towers import CLAP_MODELS, CLAPArchitecture, CLAPTowers
from avadapt.text.clip_towers import TINY_CLIP_CONFIG, CLIPTowers
from avadapt.text.encoders import TextEncodersConfig, build_text_encoders, write_tiny_text_checkpoints

__all__ = [
    "CLAP_MODELS",
    "TINY_CLIP_CONFIG",
    "CLAPArchitecture",
    "CLAPTowers",
    "CLIPTowers",
    "TextEncodersConfig",
    "build_text_encoders",
    "write_tiny_text_checkpoints",
]
