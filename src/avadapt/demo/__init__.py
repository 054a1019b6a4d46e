"""``avadapt demo --task TASK``: a task end to end on a CPU in minutes, with nothing downloaded: synthetic data
in the task's native layout, a tiny random backbone, the main method against its comparisons, a prediction
picture and ``metrics.json``. One module per task (``ave``, ``avs``, ``avqa``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avadapt.demo.ave import DemoConfig, build_data, train_method
from avadapt.errors import OptionError

DEMOS = {"ave": "avadapt.demo.ave", "avs": "avadapt.demo.avs", "avqa": "avadapt.demo.avqa"}


def run_demo(out: str | Path = "demo_out", task: str = "ave", precision: str | None = None,
             config: Any = None) -> dict[str, Any]:
    """Run the demo of ``task``; returns (and writes to ``OUT/metrics.json``) its numbers."""
    if task not in DEMOS:
        raise OptionError(f"no demo for task {task!r}; demos: {', '.join(sorted(DEMOS))}")
    from importlib import import_module

    return import_module(DEMOS[task]).run_demo(out, precision=precision, config=config)


__all__ = ["DemoConfig", "build_data", "run_demo", "train_method"]
