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
