"""Reading tensors from checkpoint files without unpickling arbitrary objects.

Backbone weights, HTS-AT checkpoints and AVQA's grounding pretraining all come as a ``.safetensors`` file or a
``torch.save``d state dict; one reader serves them all, so each refuses the same unsafe files the same way.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import safetensors.torch
import torch

from avadapt.errors import CheckpointError


class UnsafeCheckpointError(CheckpointError):
    """The file needs arbitrary Python objects to be unpickled; we refuse rather than run its code."""


def read_state_dict(path: str | Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a torch file readable with ``weights_only=True``.

    Wrapped checkpoints (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped and a DDP ``module.``
    prefix is removed. A missing, damaged or unsafe file raises :class:`~avadapt.errors.CheckpointError`
    naming the file; ``what`` names the kind of file in the "not found" message (``backbone weights``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found")
    if path.suffix == ".safetensors":
        try:
            checkpoint = safetensors.torch.load_file(str(path))
        except safetensors.SafetensorError as err:
            raise CheckpointError(
                f"{path}: not a readable safetensors file (truncated or corrupt?): {err}"
            ) from err
    else:
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


def state_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], show: int = 8) -> str | None:
    """What keeps ``found`` from loading strictly where ``expected`` is: the missing and unexpected keys and the
    shapes that differ (at most ``show`` of each), or None when every key and shape matches."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong_shape = [f"{k}: file {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}"
                   for k in sorted(set(expected) & set(found)) if found[k].shape != expected[k].shape]
    if not (missing or unexpected or wrong_shape):
        return None

    def listed(items: list[str]) -> str:
        return f"{items[:show]}{'…' if len(items) > show else ''}"

    return f"missing {listed(missing)}, unexpected {listed(unexpected)}, wrong shapes {listed(wrong_shape)}"
