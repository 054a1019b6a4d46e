"""Loading a local checkpoint into a timm backbone, converting foreign layouts with timm's own filter."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from avadapt.checkpoint_files import read_state_dict
from avadapt.errors import CheckpointError


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local checkpoint into a timm model, converting foreign layouts with timm's own filter.

    timm's per-architecture ``checkpoint_filter_fn`` turns e.g. OpenAI CLIP or open_clip state dicts into
    timm names. Classifier keys are dropped (the backbone has no head); anything else missing or
    unexpected is an error, since a silently half-loaded backbone would invalidate every result.
    """
    load_backbone_state_dict(model, read_state_dict(path, "backbone weights"), path)


def load_backbone_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
    """:func:`load_backbone_weights` for tensors already read (``source`` names their file in errors): the
    visual tower of a CLIP model loaded by open_clip, for instance."""
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
            f"{source} does not match backbone {type(model).__name__}: "
            f"missing {missing[:8]}{'…' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{'…' if len(unexpected) > 8 else ''}, wrong shapes {wrong_shape[:4]}"
        )
    model.load_state_dict(state_dict, strict=True)
