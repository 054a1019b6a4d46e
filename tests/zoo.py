"""Tiny backbones of every family for the method matrix, and helpers shared by the zoo tests."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

import avadapt
from avadapt.backbones import AudioEmbeddingConfig, create_backbone
from tests.conftest import TINY_AUDIO, TINY_IMAGE, TINY_VIT

FRAMES = 3
BATCH = 2
SWIN_IMAGE = 32
# Two stages: an 8×8 grid with 4×4 windows (shifted odd block), then 4×4 = one window (timm turns the shift off).
SWIN_KWARGS = {"embed_dim": 32, "depths": (2, 2), "num_heads": (2, 4), "img_size": SWIN_IMAGE, "window_size": 4}

TINY_BACKBONES = {
    "vit": (TINY_VIT, {"img_size": TINY_IMAGE, "audio": TINY_AUDIO}),
    "swin": ("swin_tiny_patch4_window7_224", SWIN_KWARGS),
    "swinv2": ("swinv2_tiny_window8_256", SWIN_KWARGS),
}


def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Give every LayerNorm of ``model`` random affine parameters.

    timm initialises Swin-V2's res-post-norm weights to 0, which makes every random Swin-V2 block the identity
    and would let identity-at-init tests pass for the wrong reason.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LayerNorm) and module.weight is not None:
                module.weight.copy_(1 + 0.3 * torch.randn(module.weight.shape, generator=g))
                module.bias.copy_(0.3 * torch.randn(module.bias.shape, generator=g))


_WEIGHTS_DIR = tempfile.TemporaryDirectory(prefix="avadapt-zoo-")


@functools.cache
def backbone_weights(family: str, seed: int = 0) -> Path:
    """A safetensors file of random tiny-backbone weights (norms randomised), written once per session.

    Models load it at construction, as real checkpoints are loaded, so modules a method copies from the
    backbone (STG-CMA's tuned final norm) see these weights too.
    """
    name, backbone_options = TINY_BACKBONES[family]
    torch.manual_seed(seed)
    timm_model = create_backbone(name, **{k: v for k, v in backbone_options.items() if k != "audio"}).model
    randomize_norms(timm_model, seed)
    path = Path(_WEIGHTS_DIR.name) / f"{family}-{seed}.safetensors"
    save_file(timm_model.state_dict(), str(path))
    return path


def build(family: str, method: str, seed: int = 0, audio: AudioEmbeddingConfig | None = None,
          task: str = "ave", **options) -> avadapt.AVModel:
    """A tiny model of ``family`` with ``method`` on the backbone weights of ``backbone_weights(family, seed)``.

    audio: the audio embedding to use instead of the family's tiny default / the method's preference.
    """
    name, backbone_options = TINY_BACKBONES[family]
    backbone_options = {**backbone_options, **({"audio": audio} if audio is not None else {})}
    torch.manual_seed(seed)
    return avadapt.create_model(backbone=name, method=method, task=task, backbone_options=backbone_options,
                                weights=backbone_weights(family, seed), num_frames=FRAMES, **options)


def audio_shape(model: avadapt.AVModel) -> tuple[int, int]:
    audio: AudioEmbeddingConfig = model.backbone.audio
    return audio.num_mel_bins, audio.num_frames


def inputs(model: avadapt.AVModel, seed: int = 0) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Random (video, audio) for the model's active branches, None for the others."""
    g = torch.Generator().manual_seed(seed)
    height, width = model.backbone.model.patch_embed.img_size
    video = torch.randn(BATCH, FRAMES, 3, height, width, generator=g)
    audio = torch.randn(BATCH, FRAMES, 1, *audio_shape(model), generator=g)
    modalities = model.method.modalities
    return (video if "video" in modalities else None), (audio if "audio" in modalities else None)



def save_probe_adapter(folder: Path) -> Path:
    """A tiny AVE probe adapter in ``folder`` that records its backbone weights file, so loading it warns about
    nothing: what the prediction and command-line tests predict with."""
    from avadapt.adapter_files import save_adapter
    from avadapt.data.fbank import FbankConfig
    from avadapt.models import video_data_config

    model = build("vit", "probe")
    fbank = FbankConfig(num_mel_bins=TINY_AUDIO.num_mel_bins, target_frames=TINY_AUDIO.num_frames)
    num_classes = model.spec["task_config"]["num_classes"]
    return save_adapter(
        model, folder,
        class_names=[f"event {k}" for k in range(num_classes - 1)] + ["background"],
        preprocessing={"video": video_data_config(model), "fbank": fbank.to_dict(), "num_segments": FRAMES},
        backbone_source={"pretrained": False, "weights": str(backbone_weights("vit"))},
    )
