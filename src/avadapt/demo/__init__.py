"""``avadapt demo --task TASK``: a task end to end on a CPU in minutes, with nothing downloaded: synthetic data
in the task's native layout, a tiny random backbone, the main method against its comparisons, a prediction
picture and ``metrics.json``. One module per task (``ave``, ``avs``, ``avqa``), and one per method whose encoders
differ from the task demo's (``dg_sct``: a visual backbone beside an HTS-AT audio encoder, on AVE)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avadapt.demo.ave import DemoConfig, build_data, train_method
from avadapt.errors import OptionError

DEMOS = {"ave": "avadapt.demo.ave", "avs": "avadapt.demo.avs", "avqa": "avadapt.demo.avqa"}
# (task, method) → the demo of a method trained against the probe on that task
METHOD_DEMOS = {("ave", "dg_sct"): "avadapt.demo.dg_sct"}


def run_demo(out: str | Path = "demo_out", task: str = "ave", precision: str | None = None,
             config: Any = None, method: str | None = None) -> dict[str, Any]:
    """Run the demo of ``task`` (its main method against its comparisons), or with ``method`` that method's demo
    on ``task``; returns (and writes to ``OUT/metrics.json``) its numbers."""
    if task not in DEMOS:
        raise OptionError(f"no demo for task {task!r}; demos: {', '.join(sorted(DEMOS))}")
    module = DEMOS[task]
    if method is not None:
        if (task, method) not in METHOD_DEMOS:
            known = ", ".join(f"--task {t} --method {m}" for t, m in sorted(METHOD_DEMOS))
            raise OptionError(f"no demo of method {method!r} on task {task!r}; method demos: {known}")
        module = METHOD_DEMOS[task, method]
    from importlib import import_module

    return import_module(module).run_demo(out, precision=precision, config=config)


__all__ = ["DemoConfig", "build_data", "run_demo", "train_method"]
