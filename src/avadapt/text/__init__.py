"""Audio-visual learning with text (DG-SCT's few- and zero-shot setting): frozen CLIP and CLAP encoders whose text
towers turn class names into classifiers, DG-SCT's adapters between the image and audio towers. Needs the
``text`` extra (``pip install 'avadapt[text]'``).

encoders  the frozen CLIP (image + text) and CLAP (audio + text) towers, read from their released files
model     DG-SCT between the towers, CLIP-Adapters, learnt prompts: per-segment class logits
losses    text matching, the audio–image contrastive pair, DG-SCT's dynamic loss weights
training  the Lightning system, adapter-only files
run       pretrain / zeroshot / fewshot / embed, the entries the commands call
classes   class-name files, the words a label becomes, the CLIP and CLAP prompt templates
shots     K training clips per class, seeded and recorded
evaluate  AVE segment / clip and multi-label clip scores from per-segment class logits
embed     t-SNE pictures of clip features, one panel per model
demo      ``avadapt demo --task zeroshot``
"""

from importlib import import_module
from typing import Any

# Exports, imported on first use: the command line reads this package's commands (avadapt.text.cli) before any
# model code may load (torch's huge-page switch, avadapt.kernels.heap, acts only before the first tensor).
_EXPORTS = {
    "CLAP_MODELS": "avadapt.text.clap_towers",
    "CLAPArchitecture": "avadapt.text.clap_towers",
    "CLAPTowers": "avadapt.text.clap_towers",
    "TINY_CLIP_CONFIG": "avadapt.text.clip_towers",
    "CLIPTowers": "avadapt.text.clip_towers",
    "TextEncodersConfig": "avadapt.text.encoders",
    "build_text_encoders": "avadapt.text.encoders",
    "write_tiny_text_checkpoints": "avadapt.text.encoders",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'avadapt.text' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
