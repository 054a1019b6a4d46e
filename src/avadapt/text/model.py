"""Audio-visual classification by class names: DG-SCT's adapters between a frozen CLIP image tower and a frozen
CLAP audio tower, with the two text towers as the classifier (Duan et al., NeurIPS 2023, its few-/zero-shot
setting; haoyi-duan/DG-SCT, ``pretrain/nets/net_trans.py`` and ``nets/prompt_learner.py``).

Per segment, the visual vector is CLIP's (class token after the final norm, through CLIP's projection) and the
audio vector CLAP's (HTS-AT's final tokens after its norm, averaged, through CLAP's audio projection), both taken
from the adapted encoders. Class names become classifiers twice: through CLIP's text tower with learnt context
vectors before each name (CoOp; CoCoOp's image-conditioned shift on request), and through CLAP's text tower as
"The sounds of {name}". The two sets of logits are mixed per class in proportion to themselves, as the reference
does; an audio-to-visual projection of the clip means gives the audio–image contrastive logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avadapt._config import JSONConfig
from avadapt.errors import OptionError
from avadapt.methods.dg_sct import DGSCT, DGSCTConfig
from avadapt.text.classes import PromptTemplates, readable_name

FUSIONS = ("ratio", "sum", "visual", "audio")
AUDIO_SCALES = ("reference", "clap")


@dataclass
class AVTextConfig(JSONConfig):
    """How the text model reads class names and mixes its two classifiers.

    num_frames: segments per clip T.
    templates: the prompts (:class:`PromptTemplates`): CLIP's context words (one learnt vector per token of
        them, the reference's "a photo of a": 4), CLAP's sentence and the background class's name.
    random_context: the learnt context starts as N(0, 0.02) draws, as the reference's (it computes the context
        words' embeddings, then overwrites them); off, as the context words' token embeddings (CLIP's own
        zero-shot prompt until trained).
    conditioned: CoCoOp's meta-network (E → E/16 → W) shifts the context by each segment's image feature. The
        reference builds it but never adds its output (its prompts are CoOp's); on costs one CLIP text pass per
        segment and class.
    adapter_reduction, adapter_mix: CLIP-Adapter (Gao et al., 2021) on the image and on the text features:
        x ← mix · MLP(x) + (1 − mix) · x with a bias-free E → E/reduction → E MLP (the reference: 4, 0.2).
    fusion: ``ratio`` (the reference: per class, w_v = l_v / (l_v + l_a), w_a = l_a / (l_v + l_a), logits =
        w_v · l_v + w_a · l_a), ``sum`` (l_v + l_a), or one stream alone (``visual``, ``audio``).
    audio_logit_scale: ``reference`` multiplies CLAP's cosine similarities by the stored ``logit_scale_a`` as it
        is (its logarithm, about 3.4 in the released checkpoint), as DG-SCT's code does; ``clap`` by its
        exponential, as CLAP itself scores.
    dg_sct: DG-SCT's adapter options (its AVE preset by default; ``num_frames`` follows T).
    fbank: log-mel fields replacing those of CLAP's front end (the ``clap`` entry of
        ``avadapt.audio_front_ends``) other than its size, which is the HTS-AT's: a tiny encoder on a CPU reads a
        coarser one (e.g. ``{"frame_shift_ms": 40.0}``).
    """

    num_frames: int = 10
    templates: PromptTemplates | None = None
    random_context: bool = True
    conditioned: bool = False
    adapter_reduction: int = 4
    adapter_mix: float = 0.2
    fusion: str = "ratio"
    audio_logit_scale: str = "reference"
    dg_sct: dict | None = None
    fbank: dict | None = None

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise OptionError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.audio_logit_scale not in AUDIO_SCALES:
            raise OptionError(f"audio_logit_scale must be one of {AUDIO_SCALES}, got {self.audio_logit_scale!r}")
        if not 0.0 <= self.adapter_mix <= 1.0:
            raise OptionError(f"adapter_mix must lie in [0, 1], got {self.adapter_mix}")
        if isinstance(self.templates, dict):
            self.templates = PromptTemplates.from_dict(self.templates)
        if self.templates is None:
            self.templates = PromptTemplates()
        if not self.templates.clip_context:
            raise OptionError(f"the CLIP template {self.templates.clip!r} needs context words before '{{}}' (one "
                              "learnt vector per token of them)")


class CLIPAdapter(nn.Module):
    """CLIP-Adapter's residual MLP on a CLIP feature: mix · MLP(x) + (1 − mix) · x (bias-free, ReLU after both)."""

    def __init__(self, dim: int, reduction: int, mix: float):
        super().__init__()
        self.mix = mix
        self.mlp = nn.Sequential(nn.Linear(dim, dim // reduction, bias=False), nn.ReLU(),
                                 nn.Linear(dim // reduction, dim, bias=False), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix * self.mlp(x) + (1 - self.mix) * x


class PromptLearner(nn.Module):
    """Learnt context vectors in place of the context words of CLIP's template, "{context} {name}." (CoOp, Zhou
    et al., IJCV 2022; CoCoOp's image-conditioned shift when ``conditioned``).

    The context is shared by all classes; it starts random (N(0, 0.02), the reference's) or as the token
    embeddings of the context words. The class names' token embeddings are buffers rebuilt by
    :meth:`set_classes`, so one trained context serves any list of names (the pretraining corpus's, then a
    downstream dataset's).
    """

    def __init__(self, clip, templates: PromptTemplates, random_context: bool, conditioned: bool):
        super().__init__()
        self.clip = (clip,)  # not a submodule: the frozen towers belong to the model, not to the prompts
        self.templates = templates
        tokens = clip.tokenize([templates.clip_context])  # (1, L): start, the context's tokens, end, padding
        self.num_context = int(tokens.argmax(-1)) - 1  # the end token has the highest id
        with torch.no_grad():
            start = clip.token_embeddings(tokens)[0, 1:1 + self.num_context]  # (n_ctx, W)
        if random_context:
            start = torch.randn_like(start) * 0.02
        # With a random start the context words are placeholders of one token each, as the reference's "X X X X".
        self.context_words = " ".join(["X"] * self.num_context) if random_context else templates.clip_context
        self.context = nn.Parameter(start.clone())
        width, dim = start.shape[-1], clip.embed_dim
        self.meta_net = nn.Sequential(nn.Linear(dim, dim // 16), nn.ReLU(), nn.Linear(dim // 16, width)) \
            if conditioned else None

    def set_classes(self, names: list[str]) -> None:
        """Token ids and frozen embeddings of "{context} {name}." for each name (buffers, not saved)."""
        clip = self.clip[0]
        template = self.templates.clip.replace(self.templates.clip_context, self.context_words, 1)
        tokens = clip.tokenize([template.format(readable_name(name)) for name in names])  # (C, L)
        tokens = tokens.to(self.context.device)
        with torch.no_grad():
            embedded = clip.token_embeddings(tokens).to(self.context.dtype)  # (C, L, W)
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("prefix", embedded[:, :1], persistent=False)  # (C, 1, W) start token
        self.register_buffer("suffix", embedded[:, 1 + self.num_context:], persistent=False)  # (C, L-1-n, W)

    def forward(self, image_features: torch.Tensor | None = None) -> torch.Tensor:
        """(C, L, W) prompt embeddings; with the meta-network and (S, E) image features, (S, C, L, W)."""
        num_classes = self.prefix.shape[0]
        context = self.context.unsqueeze(0).expand(num_classes, -1, -1)  # (C, n_ctx, W)
        if self.meta_net is None or image_features is None:
            return torch.cat([self.prefix, context, self.suffix], dim=1)  # (C, L, W)
        shift = self.meta_net(image_features)[:, None, None, :]  # (S, 1, 1, W)
        context = context.unsqueeze(0) + shift  # (S, C, n_ctx, W)
        count = image_features.shape[0]
        return torch.cat([self.prefix.expand(count, -1, -1, -1), context,
                          self.suffix.expand(count, -1, -1, -1)], dim=2)  # (S, C, L, W)


@dataclass
class TextLogits:
    """What one forward pass gives.

    logits: (B, T, C) mixed class logits per segment; visual, audio: each stream's own (B, T, C).
    contrastive: (B, B) audio-to-image logits of the clip means (rows: audio, columns: image); its transpose is
        the image-to-audio direction.
    visual_features, audio_features: (B, T, E) normalised per-segment embeddings the logits come from (for
        pictures of the feature space).
    """

    logits: torch.Tensor
    visual: torch.Tensor
    audio: torch.Tensor
    contrastive: torch.Tensor
    visual_features: torch.Tensor
    audio_features: torch.Tensor


class AVTextModel(nn.Module):
    """DG-SCT between CLIP's image tower and CLAP's audio tower, classifying segments by class names.

    Trainable: DG-SCT's adapters, the two CLIP-Adapters, the prompt context (and CoCoOp's meta-network) and the
    audio-to-image projection of the contrastive loss; the towers stay frozen (``trainable(adapters=False)``
    freezes DG-SCT's adapters too, for few-shot training of the prompts and CLIP-Adapters alone).
    """

    def __init__(self, clip, clap, class_names: list[str], config: AVTextConfig | None = None):
        super().__init__()
        self.config = config = config or AVTextConfig()
        self.clip, self.clap = clip, clap
        for tower in (clip, clap):
            tower.requires_grad_(False)
        options = {**(config.dg_sct or {}), "num_frames": config.num_frames}
        self.dg_sct = DGSCT(clip.visual, DGSCTConfig(**options), audio_backbone=clap.audio)
        self.image_adapter = CLIPAdapter(clip.embed_dim, config.adapter_reduction, config.adapter_mix)
        self.text_adapter = CLIPAdapter(clip.embed_dim, config.adapter_reduction, config.adapter_mix)
        self.prompts = PromptLearner(clip, config.templates, config.random_context, config.conditioned)
        self.audio_to_image = nn.Linear(clap.embed_dim, clip.embed_dim)  # the reference's fc_a1
        self.set_classes(class_names)

    def set_classes(self, names: list[str]) -> None:
        """Make ``names`` the classes the logits score: CLIP's prompt tokens and CLAP's frozen text features."""
        if not names:
            raise OptionError("the text model needs at least one class name")
        self.class_names = list(names)
        self.prompts.set_classes(names)
        with torch.no_grad():
            sounds = self.clap.text_features(self.config.templates.clap_prompts(names))  # (C, E_a)
        self.register_buffer("sound_classifier", F.normalize(sounds.float(), dim=-1), persistent=False)

    def trainable(self, adapters: bool = True) -> None:
        """Which parts train: everything but the towers, or (``adapters=False``) the prompts, CLIP-Adapters and
        the contrastive projection only."""
        self.requires_grad_(True)
        self.clip.requires_grad_(False)
        self.clap.requires_grad_(False)
        if not adapters:
            self.dg_sct.blocks.requires_grad_(False)

    def encode(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, 3, H, W), (B, T, 1, F, L) → CLIP image and CLAP audio embeddings per segment, (B, T, E), (B, T, E_a),
        unnormalised, from the adapted encoders."""
        batch, frames = video.shape[:2]
        maps, _ = self.dg_sct.encode(video, audio)
        visual_tokens = self.clip.visual.final_norm(maps["video"][-1])  # (B*T, 1 + N, W_v)
        image = self.clip.visual_projection(visual_tokens[:, 0])  # (B*T, E)
        sound = self.clap.pool(maps["audio"][-1])  # (B*T, E_a)
        return image.view(batch, frames, -1), sound.view(batch, frames, -1)

    def text_classifier(self, image: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised CLIP class embeddings through the learnt prompts and the text CLIP-Adapter: (C, E), or
        (S, C, E) per image feature when the prompts are conditioned."""
        prompts = self.prompts(image)
        tokens = self.prompts.tokens
        if prompts.dim() == 4:  # (S, C, L, W)
            count, classes = prompts.shape[:2]
            text = self.clip.encode_text_embeddings(prompts.flatten(0, 1), tokens.repeat(count, 1))
            text = text.view(count, classes, -1)  # (S, C, E)
        else:
            text = self.clip.encode_text_embeddings(prompts, tokens)  # (C, E)
        return F.normalize(self.text_adapter(text), dim=-1)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> TextLogits:
        image, sound = self.encode(video, audio)  # (B, T, E), (B, T, E_a)
        batch, frames = image.shape[:2]
        # Contrastive pair: the clip means of the audio (projected into the image space) and of the image features.
        audio_mean = F.normalize(self.audio_to_image(sound).mean(1), dim=-1)  # (B, E)
        image_mean = F.normalize(image.mean(1), dim=-1)  # (B, E)
        scale = self.clip.logit_scale.exp()
        contrastive = scale * audio_mean @ image_mean.t()  # (B, B)

        adapted = F.normalize(self.image_adapter(image.flatten(0, 1)), dim=-1)  # (B*T, E)
        classifier = self.text_classifier(adapted if self.prompts.meta_net is not None else None)
        if classifier.dim() == 3:
            visual = scale * torch.einsum("se,sce->sc", adapted, classifier)  # (B*T, C)
        else:
            visual = scale * adapted @ classifier.t()  # (B*T, C)
        sound_unit = F.normalize(sound.flatten(0, 1), dim=-1)  # (B*T, E_a)
        audio_scale = self.clap.logit_scale if self.config.audio_logit_scale == "reference" \
            else self.clap.logit_scale.exp()
        heard = audio_scale * sound_unit @ self.sound_classifier.t().to(sound_unit.dtype)  # (B*T, C)
        logits = mix_logits(visual, heard, self.config.fusion)
        shape = (batch, frames, -1)
        return TextLogits(logits.view(shape), visual.view(shape), heard.view(shape), contrastive,
                          adapted.view(shape), sound_unit.view(shape))


def mix_logits(visual: torch.Tensor, audio: torch.Tensor, fusion: str) -> torch.Tensor:
    """One set of class logits from the two streams' (same shape). ``ratio``: each stream weighted by its share
    of the sum, w_v = l_v / (l_v + l_a) (the reference's ``event_scores``); a sum closer to 0 than 1e-6 is held
    at ±1e-6 so that the weights stay finite."""
    if fusion == "visual":
        return visual
    if fusion == "audio":
        return audio
    if fusion == "sum":
        return visual + audio
    total = visual + audio
    total = torch.where(total.abs() < 1e-6, torch.full_like(total, 1e-6).copysign(total), total)
    return (visual * visual + audio * audio) / total
