"""What a run cost: ``cost.json`` beside its metrics, with its wall time, mean training step time, peak memory,
device and precision, so that a result can be judged together with what it took to get it."""

from __future__ import annotations

import json
import platform
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn

from avadapt._files import replaced_atomically

PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")
PROC_CPUINFO = Path("/proc/cpuinfo")
RESET_PEAK_RSS = "5"  # written to /proc/self/clear_refs: resets the process's peak resident set size (Linux ≥ 4.0)
MIB = 2**20


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    if PROC_CPUINFO.is_file():
        found = re.search(r"^model name\s*:\s*(.+)$", PROC_CPUINFO.read_text(errors="replace"), re.MULTILINE)
        if found:
            return found.group(1).strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def reset_peak_rss() -> bool:
    """Start the process's peak resident set size afresh; False where the system cannot (then the peak read later
    is the process's since it started)."""
    try:
        PROC_CLEAR_REFS.write_text(RESET_PEAK_RSS)
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """The process's peak resident set size: ``VmHWM`` on Linux (since the last reset), else ``ru_maxrss`` (since
    the process started; kilobytes on Linux, bytes on macOS)."""
    if PROC_STATUS.is_file():
        found = re.search(r"^VmHWM:\s*(\d+) kB", PROC_STATUS.read_text(), re.MULTILINE)
        if found:
            return int(found.group(1)) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class RunCost(L.Callback):
    """Writes ``cost.json`` in the run's folder (beside ``metrics.csv``) at the end of every ``fit``, ``validate``
    and ``test``, each time with everything measured so far:

    - ``wall_seconds``: the wall-clock time of its stages together, with ``<stage>_seconds`` for each;
    - ``train_steps`` and ``step_seconds_mean``: the mean time of a training step (forward, backward, optimiser
      step; the data loading between steps left out) over every step but the first, which also pays for one-off
      allocations (the first step alone when there is one); ``first_step_seconds`` on its own;
    - ``peak_memory_bytes`` (and ``peak_memory_mib``) with ``peak_memory``, what it measures: on a GPU the most
      memory torch allocated on the device (``torch.cuda.max_memory_allocated``); on a CPU the process's peak
      resident set size (``rss``; ``rss_since_process_start`` where the system cannot reset the peak at the start of
      the run, so an earlier run in the same process counts too);
    - ``device`` (``cpu``, ``cuda``…), ``device_name`` (the CPU's model or the GPU's name), ``devices``,
      ``threads`` (torch's intra-op threads) and ``precision``.

    The figures are the global-zero process's. On a GPU every step ends with a device synchronisation, so that its
    time is the time of its kernels.

    Args:
        dirpath: folder of the file (default: ``trainer.log_dir``, the run's folder).
        filename: name of the file.
    """

    def __init__(self, dirpath: str | None = None, filename: str = "cost.json"):
        super().__init__()
        self.dirpath = dirpath
        self.filename = filename
        self.written: Path | None = None
        self._started: float | None = None
        self._stage_started = 0.0
        self._stage_seconds: dict[str, float] = {}
        self._step_started = 0.0
        self._step_seconds: list[float] = []
        self._peak_scope = "rss"

    # ---- stages ----------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_stage(pl_module.device)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end_stage(trainer, pl_module, "fit")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_stage(pl_module.device)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end_stage(trainer, pl_module, "test")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:  # a validation inside fit belongs to fit
            self._start_stage(pl_module.device)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._end_stage(trainer, pl_module, "validate")

    def _start_stage(self, device: torch.device) -> None:
        _synchronize(device)
        self._stage_started = time.perf_counter()
        if self._started is not None:
            return
        self._started = self._stage_started
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        elif not reset_peak_rss():
            self._peak_scope = "rss_since_process_start"

    def _end_stage(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        _synchronize(pl_module.device)
        seconds = time.perf_counter() - self._stage_started
        self._stage_seconds[stage] = self._stage_seconds.get(stage, 0.0) + seconds
        folder = Path(self.dirpath) if self.dirpath is not None else Path(trainer.log_dir or trainer.default_root_dir)
        if trainer.is_global_zero:  # trainer.log_dir above is a collective under DDP: every rank calls it
            self.write(folder / self.filename, self.summary(trainer, pl_module.device))

    # ---- training steps --------------------------------------------------------------------------------------
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        _synchronize(pl_module.device)
        self._step_started = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        _synchronize(pl_module.device)
        self._step_seconds.append(time.perf_counter() - self._step_started)

    # ---- the file --------------------------------------------------------------------------------------------
    def summary(self, trainer: L.Trainer, device: torch.device) -> dict[str, Any]:
        """The figures measured so far, as written to ``cost.json``."""
        steps = self._step_seconds
        timed = steps[1:] or steps
        if device.type == "cuda":
            peak, scope, name = torch.cuda.max_memory_allocated(device), "cuda_max_allocated", \
                torch.cuda.get_device_name(device)
        else:
            peak, scope, name = peak_rss_bytes(), self._peak_scope, cpu_name() if device.type == "cpu" else device.type
        return {
            "wall_seconds": round(sum(self._stage_seconds.values()), 3),
            **{f"{stage}_seconds": round(seconds, 3) for stage, seconds in self._stage_seconds.items()},
            "train_steps": len(steps),
            "step_seconds_mean": round(sum(timed) / len(timed), 5) if timed else None,
            "first_step_seconds": round(steps[0], 5) if steps else None,
            "peak_memory_bytes": peak, "peak_memory_mib": round(peak / MIB, 1), "peak_memory": scope,
            "device": device.type, "device_name": name, "devices": trainer.num_devices,
            "threads": torch.get_num_threads(), "precision": str(trainer.precision),
        }

    def write(self, path: Path, summary: dict[str, Any]) -> Path:
        with replaced_atomically(path) as temporary:
            temporary.write_text(json.dumps(summary, indent=2) + "\n")
        self.written = path
        return path


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
