"""Audio-visual learning with text (DG-SCT's few- and zero-shot setting): classes read from their names.

classes   class-name files, the words a label becomes, the CLIP and CLAP prompt templates
shots     K training clips per class, seeded and recorded
evaluate  AVE segment / clip and multi-label clip scores from per-segment class logits
embed     t-SNE pictures of clip features, one panel per model
"""
