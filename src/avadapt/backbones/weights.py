"""Reading backbone checkpoints from local files without unpickling arbitrary objects."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

from avadapt.errors import CheckpointError


class UnsafeCheckpointError(CheckpointError):
    """The file needs arbitrary Python objects to be unpickled; we refuse rather than run its code."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a torch file readable with ``weights_only=True``.

    Wrapped checkpoints (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped and a DDP ``module.``
    prefix is removed. A missing, damaged or unsafe file raises :class:`~avadapt.errors.CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: backbone weights not found")
    if path.suffix == ".safetensors":
        try:
            return safetensors.torch.load_file(str(path))
        except safetensors.SafetensorError as err:
            raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {err}") from err
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"{path}: refusing to load a checkpoint that would unpickle arbitrary Python objects "
            f"({str(err).splitlines()[0][:200]}). Re-save its tensors with safetensors "
            "(safetensors.torch.save_file(state_dict, 'weights.safetensors')) and pass that file."
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(f"{path}: expected a mapping of parameter names to tensors")
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local checkpoint into a timm model, converting foreign layouts with timm's own filter.

    timm's per-architecture ``checkpoint_filter_fn`` turns e.g. OpenAI CLIP or open_clip state dicts into
    timm names. Classifier keys are dropped (the backbone has no head); anything else missing or
    unexpected is an error, since a silently half-loaded backbone would invalidate every result.
    """
    state_dict = read_state_dict(path)
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state_dict = filter_fn(state_dict, model)
    head_prefixes = ("head.", "fc_norm.") if isinstance(getattr(model, "fc_norm", None), nn.Identity) else ("head.",)
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(head_prefixes)}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if state_dict[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"{path} does not match backbone {type(model).__name__}: "
            f"missing {missing[:8]}{'…' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{'…' if len(unexpected) > 8 else ''}, wrong shapes {wrong_shape[:4]}"
        )
    model.load_state_dict(state_dict, strict=True)
