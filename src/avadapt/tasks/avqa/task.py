"""Audio-visual question answering (MUSIC-AVQA): one of 42 answers to a question about a 10-segment clip.

The head is AVST, the spatio-temporal grounding network of MUSIC-AVQA (Li et al., CVPR 2022,
``net_grd_avst/net_avst.py``), as the adapter methods put it on their backbones (LAVISH at width 512, DG-SCT and
STG-CMA at the backbone's 1536) over the per-segment audio vector and the last video map of any method.

Per clip, with width w:

* question: ``Embedding(vocab, w)`` → tanh → 1-layer LSTM(w) over all ``max_question_tokens`` positions
  (padding included, as the reference runs it) → [h; c] → tanh → Linear(2w → w): the question vector q.
* audio per segment: Linear(D → w) (``fc_a1``; none when D = w) → ReLU → Linear(w → w) (``fc_a2``).
* visual map per segment: Linear(D → w) (LAVISH's projection; none when D = w) → (N, w).
* audio-guided spatial grounding: softmax over the N positions of cos(audio, position), pooling the
  L2-normalised positions; [average-pooled map; pooled positions] → tanh → Linear(2w → w) (``fc_gl``).
* audio-visual matching (auxiliary): MLP [audio; grounded visual] → 512 → 256 → 128 → 2 (``fc1``–``fc4``), on
  each segment of the clip (match) and on the same audio grounded in another clip's map (no match).
* question-guided temporal attention: per modality, MultiheadAttention(w, heads) with q as the query over the
  T segments, then a residual FFN (w → w → w) and LayerNorm.
* answer: [a_att + mean_T audio; v_att + mean_T grounded] → tanh → Linear(2w → w) → ⊙ q → tanh →
  Linear(w → num_answers).

Loss: CE(answer) + match_weight · CE(match). Linear layers keep PyTorch's default initialisation, as the
reference does; the grounding part can start from a grounding-pretraining checkpoint.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from avadapt._config import JSONConfig, positive_int
from avadapt.checkpoint_files import read_state_dict
from avadapt.errors import CheckpointError, OptionError
from avadapt.tasks.avqa.metrics import AVQAAccuracy
from avadapt.tasks.avqa.predict import NEEDS_A_QUESTION, AVQAPrediction
from avadapt.tasks.avqa.questions import QuestionVocabulary, load_question_vocabulary
from avadapt.tasks.base import TaskHead, register_task
from avadapt.types import AVFeatures, FeatureSpec

REFERENCE_QUESTION_VOCAB_SIZE = 93  # AVST's ``QstEncoder(93, …)``, built from MUSIC-AVQA's train questions
MATCH_HIDDEN = (512, 256, 128)  # AVST's audio-visual match MLP (``fc1``–``fc3``), whatever the head's width


def read_question_vocab(path: str | Path) -> list[str]:
    """The question tokens kept in ``path``: a JSON list (``question_vocab.json``), or built from the training
    questions of a MUSIC-AVQA folder (``avqa-train.json``)."""
    path = Path(path)
    if path.is_dir():
        return load_question_vocabulary(path).to_list()
    if not path.is_file():
        raise OptionError(f"{path}: no question vocabulary here (a question_vocab.json, or a folder with "
                          "avqa-train.json)")
    return QuestionVocabulary.load(path).to_list()


@dataclass
class AVQAConfig(JSONConfig):
    """The AVST head (MUSIC-AVQA) as the adapter methods configure it.

    width: the head's width w. 512 is LAVISH's variant (the backbone's features are projected to it); None uses
        the backbone's feature width, as DG-SCT's and STG-CMA's 1536-d heads on Swin-L.
    question_vocab: the question tokens, index = token id (0: padding, 1: unknown), one embedding row each.
        Given as a path: a ``question_vocab.json`` (``avadapt prepare avqa`` writes one) or a MUSIC-AVQA folder
        whose ``avqa-train.json`` it is built from; the config then holds (and an adapter saves) the tokens.
    num_answers: answer classes (42 in MUSIC-AVQA).
    max_question_tokens: question length L after padding (14 in MUSIC-AVQA); the LSTM runs over the padding too.
    match_weight: weight of the audio-visual match loss (0.5 in all references).
    heads: heads of the two question-guided attentions (4).
    dropout: dropout of those attentions and of their feed-forward residuals (0.1).
    """

    width: int | None = None
    question_vocab: tuple[str, ...] = ()
    num_answers: int = 42
    max_question_tokens: int = 14
    match_weight: float = 0.5
    heads: int = 4
    dropout: float = 0.1

    def __post_init__(self):
        if isinstance(self.question_vocab, str | Path):
            self.question_vocab = read_question_vocab(self.question_vocab)
        self.question_vocab = tuple(self.question_vocab)
        if len(self.question_vocab) <= 2:
            raise OptionError(f"AVQA needs question_vocab, the question tokens (index = token id, padding first): "
                              f"more than 2 entries, got {len(self.question_vocab)}")
        if not all(isinstance(t, str) and t for t in self.question_vocab):
            raise OptionError("question_vocab entries must be non-empty strings")
        if len(set(self.question_vocab)) != len(self.question_vocab):
            repeated = sorted({t for t in self.question_vocab if self.question_vocab.count(t) > 1})
            raise OptionError(f"question_vocab lists tokens more than once: {repeated[:10]}")
        number = (lambda value: isinstance(value, int | float) and not isinstance(value, bool)
                  and math.isfinite(value))
        for name, valid, wanted in (
            ("width", self.width is None or positive_int(self.width), "a positive integer or None"),
            ("heads", positive_int(self.heads), "a positive integer"),
            ("num_answers", positive_int(self.num_answers) and self.num_answers >= 2, "an integer ≥ 2"),
            ("max_question_tokens", positive_int(self.max_question_tokens), "a positive integer"),
            ("match_weight", number(self.match_weight) and self.match_weight >= 0, "a finite number ≥ 0"),
            ("dropout", number(self.dropout) and 0 <= self.dropout < 1, "in [0, 1)"),
        ):
            if not valid:
                raise OptionError(f"{name} must be {wanted}, got {getattr(self, name)!r}")
        if self.width is not None and self.width % self.heads:
            raise OptionError(f"width {self.width} must be a multiple of heads {self.heads}")


@dataclass
class AVQAOutputs:
    """What the AVST head returns for a batch of B clips of T segments with N map positions each.

    logits: (B, num_answers) answer logits.
    match_logits: (2·M·T, 2) match / no-match logits of every segment of the M clips that got a negative partner,
        the M·T matching pairs first, then the M·T mismatched ones; None when no clip has a partner (batch of 1).
    match_targets: (2·M·T,) long, 1 for the matching pairs and 0 for the others; None with match_logits.
    grounding: (B, T, N) the audio-guided spatial attention over the map positions (row-major grid).
    temporal_audio, temporal_visual: (B, T) the question-guided attention over the segments (mean over heads).
    """

    logits: torch.Tensor
    match_logits: torch.Tensor | None
    match_targets: torch.Tensor | None
    grounding: torch.Tensor
    temporal_audio: torch.Tensor
    temporal_visual: torch.Tensor


class QuestionEncoder(nn.Module):
    """AVST's ``QstEncoder`` with one layer: Embedding → tanh → LSTM → [h; c] → tanh → Linear. The LSTM runs
    over the padding too and is read after the last position, as the reference runs it (no packing)."""

    def __init__(self, vocab_size: int, width: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, width)
        self.lstm = nn.LSTM(width, width, num_layers=1, batch_first=True)
        self.projection = nn.Linear(2 * width, width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids → (B, width)."""
        words = torch.tanh(self.embedding(tokens))  # (B, L, w)
        _, (hidden, cell) = self.lstm(words)  # (1, B, w) each
        state = torch.cat((hidden[-1], cell[-1]), dim=-1)  # (B, 2w)
        return self.projection(torch.tanh(state))


class QuestionGuidedAttention(nn.Module):
    """The question attends over the T segments of one modality; a residual FFN and LayerNorm follow
    (AVST's ``attn_a`` / ``attn_v`` with ``linear11``/``linear12``/``norm1`` and their audio twins)."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.feed_forward = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout),
                                          nn.Linear(width, width))
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(width)

    def forward(self, question: torch.Tensor, segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, w) question, (B, T, w) segments → (B, w) attended features and (B, T) attention weights."""
        attended, weights = self.attention(question.unsqueeze(1), segments, segments)  # (B, 1, w), (B, 1, T)
        attended = attended.squeeze(1)
        return self.norm(attended + self.dropout(self.feed_forward(attended))), weights.squeeze(1)


def negative_partners(batch: int, video_index: torch.Tensor | None = None, device: torch.device | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(anchors, partners): each clip i paired with the first clip after it, going round the batch (i + 1,
    i + 2, … mod B), of another video (``video_index`` (B,); None: every clip is its own video, so the partner
    is the next clip). A clip whose video fills the batch has no partner and is left out of the match loss."""
    order = torch.arange(batch, device=device)
    if video_index is None:
        video_index = order
    video_index = video_index.to(device).reshape(-1)
    if video_index.shape[0] != batch:
        raise ValueError(f"video_index must hold one entry per clip ({batch}), got {video_index.shape[0]}")
    if batch < 2:
        return order[:0], order[:0]
    candidates = (order.unsqueeze(1) + torch.arange(1, batch, device=device)) % batch  # (B, B-1), in round order
    other_video = video_index[candidates] != video_index.unsqueeze(1)  # (B, B-1)
    has_partner = other_video.any(1)
    first = other_video.int().argmax(1)  # index of the first True (0 where none: filtered by has_partner)
    partners = candidates[order, first]
    return order[has_partner], partners[has_partner]


class AVSTHead(TaskHead):
    """AVST on the adapted backbone's features (module docstring): ``forward(features, question=(B, L) ids,
    video_index=None)`` reads ``features.audio`` (B, T, D) and the last of ``features.video_maps`` (B, T, N, D_map).

    Negatives of the match loss: the reference runs the frames of a random other video (possibly the same one)
    through the frozen backbone without adapters. Here a clip's audio is grounded in another clip's map of the
    same batch, as adapted, never one of its own video (:func:`negative_partners`); a batch of one has no negative.
    """

    config_class = AVQAConfig

    def __init__(self, spec: FeatureSpec, config: AVQAConfig):
        super().__init__(spec, config)
        if not {"video", "audio"} <= set(spec.modalities):
            raise OptionError(f"AVQA grounds the audio in the video frames: the method must run both branches, "
                              f"got {spec.modalities}")
        if not spec.map_dims:
            raise ValueError("the method hands no video maps; AVQA's grounding needs the final one")
        width = config.width or spec.dim
        if width % config.heads:
            raise OptionError(f"the head width {width} must be a multiple of heads {config.heads}; set width")
        self.width = width
        self.question_encoder = QuestionEncoder(len(config.question_vocab), width)
        self.audio_projection = nn.Linear(spec.audio_dim, width) if spec.audio_dim != width else nn.Identity()
        self.audio_linear = nn.Linear(width, width)
        map_dim = spec.map_dims[-1]
        self.visual_projection = nn.Linear(map_dim, width) if map_dim != width else nn.Identity()
        self.grounding_fusion = nn.Linear(2 * width, width)
        hidden = (2 * width, *MATCH_HIDDEN)
        layers: list[nn.Module] = []
        for d_in, d_out in itertools.pairwise(hidden):
            layers += [nn.Linear(d_in, d_out), nn.ReLU()]
        self.match_classifier = nn.Sequential(*layers, nn.Linear(hidden[-1], 2))
        self.temporal_audio = QuestionGuidedAttention(width, config.heads, config.dropout)
        self.temporal_visual = QuestionGuidedAttention(width, config.heads, config.dropout)
        self.fusion = nn.Linear(2 * width, width)
        self.answer_classifier = nn.Linear(width, config.num_answers)

    @property
    def grounding_grid(self) -> tuple[int, int]:
        """(h, w) of the map the grounding attends over: the input size over the last map's stride."""
        height, width = self.spec.image_size
        stride = self.spec.map_strides[-1]
        return height // stride, width // stride

    def ground(self, audio: torch.Tensor, visual_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio-guided spatial grounding: audio (M, T, w), visual_map (M, T, N, w) → grounded (M, T, w) and
        p (M, T, N); p = softmax_N(cos(a, v_n)), grounded = fc_gl(tanh([mean_N v; Σ_n p_n · v_n / ‖v_n‖]))."""
        pooled = visual_map.mean(2)  # (M, T, w)
        positions = F.normalize(visual_map, dim=-1)  # (M, T, N, w)
        query = F.normalize(audio, dim=-1)  # (M, T, w)
        weights = torch.einsum("mtnd,mtd->mtn", positions, query).softmax(-1)  # (M, T, N)
        attended = torch.einsum("mtn,mtnd->mtd", weights, positions)  # (M, T, w)
        return self.grounding_fusion(torch.tanh(torch.cat((pooled, attended), dim=-1))), weights

    def load_pretrained(self, path: str | Path) -> list[str]:
        """The grounding-pretraining checkpoint (:func:`load_grounding_checkpoint`), without ``fc_a1`` when the
        checkpoint's audio width differs."""
        try:
            return load_grounding_checkpoint(self, path)
        except CheckpointError:
            return load_grounding_checkpoint(self, path, [m for m in GROUNDING_MODULES if m != "fc_a1"])

    def data_options(self) -> dict[str, Any]:
        """The dataset encodes questions with this head's vocabulary."""
        return {"question_vocab": list(self.config.question_vocab)}

    def forward(self, features: AVFeatures, question: torch.Tensor | None = None,
                video_index: torch.Tensor | None = None, **inputs: torch.Tensor) -> AVQAOutputs:
        if question is None:
            raise OptionError(NEEDS_A_QUESTION)
        if features.audio is None or not features.video_maps:
            raise ValueError("AVQA needs the per-segment audio features and the video maps")
        batch = features.audio.shape[0]
        if question.dim() != 2 or question.shape != (batch, self.config.max_question_tokens):
            raise ValueError(f"question must be (B={batch}, L={self.config.max_question_tokens}) token ids padded "
                             f"with 0, got {tuple(question.shape)}")
        if question.numel() and (int(question.min()) < 0 or int(question.max()) >= len(self.config.question_vocab)):
            raise ValueError(f"question token ids must lie in 0..{len(self.config.question_vocab) - 1} (the "
                             f"question_vocab), got {int(question.min())}..{int(question.max())}")
        question_vector = self.question_encoder(question)  # (B, w)
        audio = self.audio_linear(F.relu(self.audio_projection(features.audio)))  # (B, T, w)
        visual_map = self.visual_projection(features.video_maps[-1])  # (B, T, N, w)
        grounded, grounding = self.ground(audio, visual_map)  # (B, T, w), (B, T, N)

        anchors, partners = negative_partners(batch, video_index, device=audio.device)
        match_logits = match_targets = None
        if anchors.numel():
            mismatched, _ = self.ground(audio[anchors], visual_map[partners])  # (M, T, w)
            pairs = torch.cat((torch.cat((audio[anchors], grounded[anchors]), dim=-1),
                               torch.cat((audio[anchors], mismatched), dim=-1))).flatten(0, 1)  # (2·M·T, 2w)
            match_logits = self.match_classifier(pairs)  # (2·M·T, 2)
            half = pairs.shape[0] // 2
            match_targets = torch.cat((torch.ones(half, dtype=torch.long, device=pairs.device),
                                       torch.zeros(half, dtype=torch.long, device=pairs.device)))

        audio_attended, temporal_audio = self.temporal_audio(question_vector, audio)  # (B, w), (B, T)
        visual_attended, temporal_visual = self.temporal_visual(question_vector, grounded)
        fused = torch.cat((audio_attended + audio.mean(1), visual_attended + grounded.mean(1)), dim=-1)  # (B, 2w)
        fused = self.fusion(torch.tanh(fused))  # (B, w)
        logits = self.answer_classifier(torch.tanh(fused * question_vector))  # (B, num_answers)
        return AVQAOutputs(logits, match_logits, match_targets, grounding, temporal_audio, temporal_visual)

    def loss(self, outputs: AVQAOutputs, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """CE(answer logits, answer) over the questions whose answer is in the vocabulary (−1 ignored), plus
        ``match_weight`` × CE(match logits, match targets); the match term is 0 without negatives."""
        logits, answers = outputs.logits.float(), targets["answer"].long()
        known = answers >= 0
        loss = F.cross_entropy(logits[known], answers[known]) if known.any() else logits.sum() * 0.0
        if outputs.match_logits is not None and self.config.match_weight > 0:
            loss = loss + self.config.match_weight * F.cross_entropy(outputs.match_logits.float(),
                                                                     outputs.match_targets)
        return loss

    def metrics(self) -> MetricCollection:
        """:class:`~avadapt.tasks.avqa.metrics.AVQAAccuracy`: ``accuracy``, ``audio``, ``visual``,
        ``audio_visual`` and ``type/<question type>``, logged as ``val/accuracy``, ``val/type/av_temporal``, …"""
        return MetricCollection({"avqa": AVQAAccuracy()}, compute_groups=False)

    def update_metrics(self, metrics: MetricCollection, outputs: AVQAOutputs, targets: dict[str, torch.Tensor]) -> None:
        metrics.update(outputs.logits.detach(), targets["answer"], targets["question_type"])


# The reference's grounding-pretraining modules (``main_grounding_gen_best.pt``, ``lavish_grounding_gen_best.pt``)
# → the AVSTHead modules they initialise.
GROUNDING_MODULES: dict[str, str] = {
    "fc_a1": "audio_projection",
    "fc_a2": "audio_linear",
    "fc_gl": "grounding_fusion",
    "fc1": "match_classifier.0",
    "fc2": "match_classifier.2",
    "fc3": "match_classifier.4",
    "fc4": "match_classifier.6",
}

_HEAD_PREFIX = "avqatask_"  # STG-CMA's head prefix (the reader removes DataParallel's "module.")


def load_grounding_checkpoint(head: AVSTHead, path: str | Path,
                              modules: Sequence[str] = tuple(GROUNDING_MODULES)) -> list[str]:
    """Initialise the head's grounding part from a grounding-pretraining checkpoint with the reference's key names.

    path: a safetensors file or a ``torch.save``d state dict holding the ``modules`` (of :data:`GROUNDING_MODULES`),
    optionally behind ``module.`` (DataParallel) or ``avqatask_`` (STG-CMA); other keys are ignored, and so is a
    module the head does not have (``fc_a1`` when the audio width is the head's). Returns the names loaded.
    :class:`~avadapt.errors.CheckpointError` for a module missing from the file or of another shape: the
    reference's checkpoint was trained on VGGish audio (``fc_a1`` 128 → 512).
    """
    path = Path(path)
    unknown = sorted(set(modules) - set(GROUNDING_MODULES))
    if unknown:
        raise OptionError(f"unknown grounding module(s) {unknown}; known: {list(GROUNDING_MODULES)}")
    state = {key.removeprefix(_HEAD_PREFIX): value
             for key, value in read_state_dict(path, "grounding checkpoint").items()}
    updates: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    loaded = []
    for name in modules:
        target = head.get_submodule(GROUNDING_MODULES[name])
        if not isinstance(target, nn.Linear):
            continue
        for kind in ("weight", "bias"):
            key, parameter = f"{name}.{kind}", getattr(target, kind)
            if key not in state:
                raise CheckpointError(f"{path}: no {key} in this checkpoint (grounding keys found: "
                                      f"{sorted(k for k in state if k.split('.')[0] in GROUNDING_MODULES)})")
            value = state[key]
            if tuple(value.shape) != tuple(parameter.shape):
                raise CheckpointError(
                    f"{path}: {key} has shape {tuple(value.shape)} but the head's {GROUNDING_MODULES[name]}.{kind} "
                    f"is {tuple(parameter.shape)} (head width {head.width}); the checkpoint was trained for other "
                    f"feature widths — leave {name} out with modules=[...] or build the head to match")
            updates[key] = (parameter, value)
        loaded.append(name)
    with torch.no_grad():
        for parameter, value in updates.values():
            parameter.copy_(value.to(dtype=parameter.dtype, device=parameter.device))
    return loaded


@register_task
class AVQATask(AVQAPrediction):
    """Audio-visual question answering on MUSIC-AVQA: one of ``num_answers`` answers to a question about a clip;
    selected on overall accuracy. ``avadapt ask`` (``avadapt predict --question``) answers a question about a whole
    video and draws where the model looked."""

    name = "avqa"
    head_class = AVSTHead
    monitor = "accuracy"
    inputs = ("question", "video_index")
    clip_input = "video_index"
    dataset = "music_avqa"
    num_segments = 10
    # the Swin loaders of STG-CMA (its probe too) and LAVISH for this dataset; on a ViT the family's default
    paper_audio_front_ends: ClassVar[dict[tuple[str, str], str]] = {
        ("stg_cma", "swin"): "stg_cma_swin_avqa", ("probe", "swin"): "stg_cma_swin_avqa",
        ("lavish", "swin"): "lavish_swin_avqa"}
    # the embedding size AVST hard-codes (93 question tokens), so that counts compare with the references'
    counting_options: ClassVar[dict[str, Any]] = {
        "question_vocab": ("<pad>", "<unk>", *(f"word{i}" for i in range(REFERENCE_QUESTION_VOCAB_SIZE - 2)))}
