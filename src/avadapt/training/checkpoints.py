"""Checkpoints of a ``fit``: written whole (under a temporary name, then renamed), the one to resume from found
and checked, and the run folder that holds it.

A run's folder is ``<default_root_dir>/lightning_logs/version_N/`` with ``checkpoints/``, ``metrics.csv`` and
``curves.png``. Resuming from a checkpoint in ``<run>/checkpoints/`` logs into ``<run>`` again: the checkpoint
callback finds the folder it saved from and keeps its best score and path, and ``metrics.csv`` keeps the rows
logged up to the checkpoint (their number is saved in every checkpoint) and goes on from there
(:mod:`avadapt.training.run_log`).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from avadapt._files import replaced_atomically
from avadapt.errors import CheckpointError

LAST = "last.ckpt"
CHECKPOINTS = "checkpoints"  # the folder Lightning's ModelCheckpoint writes into inside a run's folder
METRICS_ROWS = "metrics_rows"  # checkpoint key: rows of the run's metrics.csv when the checkpoint was written
# what Lightning needs to continue a fit (a save_weights_only checkpoint has the first three only)
RESUMABLE_KEYS = ("state_dict", "epoch", "global_step", "loops", "optimizer_states")


class ResumeError(CheckpointError):
    """No checkpoint to resume from, or one that cannot resume a run: damaged, or holding weights only."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint beside its target under a temporary name, flushes it to disk and renames it into
    place (:mod:`avadapt._files`), so a run killed while saving keeps the previous ``last.ckpt`` intact.

    Lightning's own writer stages the file in the system's temporary folder and moves it: a copy into the target,
    not a rename, wherever that folder lies on another file system. Remote paths (``s3://``…) are left to it.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with replaced_atomically(path) as temporary:
            torch.save(checkpoint, temporary)


def find_last_checkpoint(root: str | Path) -> Path:
    """The ``last.ckpt`` of the latest run under ``root`` that has one (the most recently written)."""
    root = Path(root)
    found = [path for path in root.glob(f"**/{CHECKPOINTS}/{LAST}") if path.is_file()] if root.is_dir() else []
    if not found:
        where = "no such folder" if not root.exists() else f"no run under it has {CHECKPOINTS}/{LAST}"
        raise ResumeError(f"{root}: no checkpoint to resume from ({where})")
    return max(found, key=lambda path: (path.stat().st_mtime_ns, str(path)))


def read_checkpoint(path: str | Path, resume: bool = True) -> dict[str, Any]:
    """Load a Lightning checkpoint as Lightning will (on the CPU, ``weights_only``), to refuse a bad one up front.

    Raises :class:`ResumeError` for a missing file, a damaged one (truncated, corrupt: the message names the
    newest intact checkpoint beside it), one that needs arbitrary unpickling, and, with ``resume``, one without
    the optimiser and loop state that continuing a fit needs.
    """
    path = Path(path)
    if not path.is_file():
        raise ResumeError(f"{path}: checkpoint not found")
    try:
        checkpoint = _load(path)
    except _Unsafe as err:
        raise ResumeError(f"{path}: refusing a checkpoint that would unpickle arbitrary Python objects ({err})") from None
    except _Damaged as err:
        intact = newest_intact_checkpoint(path.parent, besides=path)
        hint = (f"the newest intact checkpoint beside it is {intact}" if intact is not None
                else f"no other checkpoint in {path.parent} can be read")
        raise ResumeError(f"{path}: damaged checkpoint, it cannot be read ({err}); {hint}") from None
    missing = [key for key in RESUMABLE_KEYS if key not in checkpoint]
    if resume and missing:
        raise ResumeError(f"{path}: holds no training state to resume from (no {', '.join(missing)}): a weights-only "
                          "checkpoint; use it with validate or test, or start a new fit")
    return checkpoint


def newest_intact_checkpoint(folder: str | Path, besides: str | Path | None = None) -> Path | None:
    """The most recently written ``*.ckpt`` in ``folder`` (other than ``besides``) that loads whole."""
    besides = Path(besides) if besides is not None else None
    candidates = [path for path in Path(folder).glob("*.ckpt") if path.is_file() and path != besides]
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        try:
            _load(path)
        except (_Damaged, _Unsafe):
            continue
        return path
    return None


class _Damaged(Exception):
    pass


class _Unsafe(Exception):
    pass


def _load(path: Path) -> dict[str, Any]:
    """The checkpoint's contents. ``_Damaged`` when it is no complete zip archive, a record fails its CRC-32 check
    (``torch.load`` does not check them: a flipped bit loads as a wrong number) or it does not parse; ``_Unsafe``
    when it is whole but needs arbitrary unpickling."""
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except zipfile.BadZipFile:
        raise _Damaged("no zip directory at its end: truncated, or not a checkpoint") from None
    except (OSError, EOFError, ValueError) as err:
        raise _Damaged(_first_line(err)) from None
    if broken is not None:
        raise _Damaged(f"its record {broken} fails its CRC-32 check")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise (_Unsafe if "weights only" in str(err).lower() else _Damaged)(_first_line(err)) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as err:
        raise _Damaged(_first_line(err)) from None
    if not isinstance(checkpoint, dict):
        raise _Damaged(f"a {type(checkpoint).__name__}, not a checkpoint's dictionary")
    return checkpoint


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def run_folder(checkpoint: str | Path) -> Path | None:
    """``<run>/checkpoints/<file>.ckpt`` → ``<run>``, the logger's folder that holds it; None for another layout."""
    checkpoint = Path(os.path.abspath(checkpoint))  # as the CLI's logger folder: the checkpoint callback compares them
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS else None
