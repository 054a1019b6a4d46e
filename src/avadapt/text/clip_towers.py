"""CLIP's image and text towers, frozen: the image tower as an avadapt ``ViTBackbone`` (timm), the text tower as
open_clip builds it, both from one CLIP weights file.

DG-SCT's few-/zero-shot setting (haoyi-duan/DG-SCT, few-shot/ and zero-shot/) adapts the blocks of CLIP's image
tower and classifies with class names through CLIP's text tower. The image tower must be a timm ViT for the
adapters (``avadapt.backbones``), so the file is read once by open_clip's own loader and the visual weights are
handed to timm's converter for OpenAI / open_clip layouts (``visual.*`` → timm names); open_clip's visual tower
is then dropped and only what the text path needs is kept.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avadapt.backbones import ViTBackbone, create_backbone, load_backbone_state_dict
from avadapt.checkpoint_files import UnsafeCheckpointError
from avadapt.errors import CheckpointError, OptionError
from avadapt.text._optional import import_optional

# A CLIP small enough for CPU tests and demos, in open_clip's model-config format (``open_clip.get_model_config``).
# The vocabulary is the OpenAI BPE's, so the tokenizer is CLIP's own.
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}

# The open_clip config fields this module understands: a plain ViT image tower (class token, ln_pre, ln_post,
# proj: what timm's CLIP ViT holds) and OpenAI's text transformer with its BPE tokenizer.
_VISION_FIELDS = {"image_size", "layers", "width", "head_width", "mlp_ratio", "patch_size"}
_TEXT_FIELDS = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}
_MODEL_FIELDS = {"embed_dim", "quick_gelu", "vision_cfg", "text_cfg"}
# Tensors OpenAI's TorchScript archives hold besides the weights (open_clip drops them too).
_TORCHSCRIPT_EXTRAS = ("input_resolution", "context_length", "vocab_size")


def clip_model_config(name: str) -> dict[str, Any]:
    """open_clip's model config for ``name`` ("tiny": :data:`TINY_CLIP_CONFIG`), checked to be a shape this
    module can split into a timm ViT and open_clip's text tower."""
    if name == "tiny":
        return {**TINY_CLIP_CONFIG}
    open_clip = import_optional("open_clip")
    config = open_clip.get_model_config(name)
    if config is None:
        raise OptionError(f"unknown open_clip model {name!r} (open_clip.list_models() lists the known names)")
    vision, text = config.get("vision_cfg", {}), config.get("text_cfg", {})
    unsupported = sorted(set(config) - _MODEL_FIELDS) + [f"vision_cfg.{k}" for k in sorted(set(vision) - _VISION_FIELDS)]
    unsupported += [f"text_cfg.{k}" for k in sorted(set(text) - _TEXT_FIELDS)]
    if unsupported or not isinstance(vision.get("layers"), int):
        raise OptionError(f"open_clip model {name!r} is not a plain ViT CLIP with OpenAI's text tower "
                          f"(fields {unsupported or ['vision_cfg.layers']}); pick e.g. ViT-B-32-quickgelu")
    return config


def timm_clip_vit(config: dict[str, Any]) -> ViTBackbone:
    """The timm CLIP ViT with the shape of ``config["vision_cfg"]`` (random weights; QuickGELU when the config
    says so, as OpenAI's weights need)."""
    vision = config["vision_cfg"]
    name = "vit_base_patch32_clip_quickgelu_224" if config.get("quick_gelu") else "vit_base_patch32_clip_224"
    width = vision["width"]
    return create_backbone(name, img_size=vision["image_size"], patch_size=vision["patch_size"], embed_dim=width,
                           depth=vision["layers"], num_heads=width // vision.get("head_width", 64),
                           mlp_ratio=vision.get("mlp_ratio", 4.0))


def _is_torchscript(path: Path) -> bool:
    """OpenAI's released ``ViT-B-32.pt`` is a TorchScript archive: a zip holding ``constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in archive.namelist())


def _load_open_clip_weights(model: nn.Module, path: Path, model_name: str) -> None:
    """Load a CLIP file into open_clip's ``model``, all weights or a one-line :class:`CheckpointError`."""
    open_clip = import_optional("open_clip")
    if not path.is_file():
        raise CheckpointError(f"{path}: CLIP weights not found")
    try:
        if _is_torchscript(path):
            # TorchScript is read by torch.jit.load, which builds TorchScript modules only, never Python objects
            state = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
            for key in _TORCHSCRIPT_EXTRAS:
                state.pop(key, None)
            transient = set(dict(model.named_buffers())) - set(model.state_dict())  # e.g. attn_mask
            model.load_state_dict({k: v for k, v in state.items() if k not in transient}, strict=True)
        else:
            open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"{path}: refusing to load a CLIP file that would unpickle arbitrary Python objects "
            f"({str(err).splitlines()[0][:200]}); save its state dict with safetensors and pass that file") from None
    except (RuntimeError, KeyError, ValueError) as err:
        problems = [line.strip() for line in str(err).splitlines()[1:] if line.strip()] or [str(err)]
        summary = "; ".join(problem[:240] for problem in problems[:3])
        raise CheckpointError(f"{path} does not hold weights of open_clip model {model_name}: {summary}") from None


class CLIPTowers(nn.Module):
    """CLIP's image and text towers, frozen (``requires_grad=False``, eval mode whatever ``.train()`` says).

    ``visual``: the timm CLIP ViT as an avadapt ``ViTBackbone``; ``visual_projection``: CLIP's ``proj`` as a
    bias-free ``nn.Linear`` (W_v → E). The text path is open_clip's (token embedding, positions, causal
    transformer, ``ln_final``, the end-of-text token's feature @ ``text_projection``), opened in two steps so a
    prompt learner can replace token embeddings: :meth:`token_embeddings` then :meth:`encode_text_embeddings`.
    """

    def __init__(self, open_clip_model: nn.Module, visual: ViTBackbone, tokenizer, image_size: int,
                 mean: tuple[float, float, float], std: tuple[float, float, float]):
        super().__init__()
        if getattr(open_clip_model, "text_pool_type", "argmax") != "argmax":
            raise OptionError("CLIPTowers reads the end-of-text token's feature (OpenAI CLIP's argmax pooling)")
        self.visual = visual
        proj = open_clip_model.visual.proj.detach()  # (W_v, E)
        self.visual_projection = nn.Linear(proj.shape[0], proj.shape[1], bias=False)
        self.visual_projection.weight.data.copy_(proj.T)
        self.embed_dim: int = proj.shape[1]
        self.token_embedding = open_clip_model.token_embedding
        self.positional_embedding = open_clip_model.positional_embedding
        self.transformer = open_clip_model.transformer
        self.ln_final = open_clip_model.ln_final
        self.text_projection = open_clip_model.text_projection
        self.register_buffer("attn_mask", open_clip_model.attn_mask, persistent=False)
        self.register_buffer("logit_scale", open_clip_model.logit_scale.detach().clone())
        self.context_length: int = open_clip_model.context_length
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> CLIPTowers:
        """Frozen towers stay in eval mode."""
        return super().train(False)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """(n,) texts → (n, L) long token ids: CLIP's BPE, start and end tokens, zero-padded to the context."""
        return self.tokenizer(list(texts)).to(self.token_embedding.weight.device)

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, L) token ids → (n, L, W_t) token embeddings, before positions are added."""
        return self.token_embedding(tokens)

    def encode_text_embeddings(self, embeddings: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(n, L, W_t) token embeddings of ``tokens`` (n, L) → (n, E) unnormalised text features: open_clip's
        ``encode_text`` after its token lookup. The feature is read at the end-of-text token, the largest id."""
        x = embeddings + self.positional_embedding.to(embeddings.dtype)  # (n, L, W_t)
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask))  # (n, L, W_t)
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]  # (n, W_t)
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection  # (n, E)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        """(n,) texts → (n, E) unnormalised, as open_clip's ``encode_text``."""
        tokens = self.tokenize(texts)
        return self.encode_text_embeddings(self.token_embeddings(tokens), tokens)

    def image_features(self, frames: torch.Tensor) -> torch.Tensor:
        """(S, 3, H, W) normalised frames → (S, E) unnormalised, as open_clip's ``encode_image``: the class token
        after ``ln_post`` through ``proj``."""
        tokens = self.visual.model.forward_features(frames)  # (S, 1 + N, W_v), after the final norm
        return self.visual_projection(tokens[:, 0])


def build_clip_towers(model_name: str, weights: str | Path | None) -> CLIPTowers:
    """CLIP's towers for open_clip model ``model_name`` ("tiny" for tests), weights from ``weights``.

    Formats read (by open_clip's loader): open_clip / OpenAI state dicts as ``.safetensors``, or as torch files
    (``.bin``, ``.pt``, ``.pth``) readable with ``weights_only=True``; OpenAI's TorchScript archive (``ViT-B-32.pt``)
    through ``torch.jit.load``. None: open_clip's random initialisation. A file of another model (other widths,
    depths or patch size) is a one-line :class:`~avadapt.errors.CheckpointError` naming it.
    """
    open_clip = import_optional("open_clip")
    config = clip_model_config(model_name)
    model = open_clip.CLIP(**config).eval()
    if weights is not None:
        _load_open_clip_weights(model, Path(weights), model_name)
    visual = timm_clip_vit(config)
    visual_state = {k: v for k, v in model.state_dict().items() if k.startswith("visual.")}
    load_backbone_state_dict(visual.model, visual_state, weights or f"random {model_name} CLIP")
    mean, std = open_clip.constants.OPENAI_DATASET_MEAN, open_clip.constants.OPENAI_DATASET_STD
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=config["text_cfg"].get("context_length", 77))
    towers = CLIPTowers(model, visual, tokenizer, image_size=config["vision_cfg"]["image_size"], mean=mean, std=std)
    del model  # open_clip's own visual tower is not referenced by the towers and is freed here
    return towers
