"""The same run over several seeds: which seeds, and the mean ± standard deviation of every metric over them.

A single run's score moves with its seed (the initial adapters, the order of the batches); a result is worth
reporting with its spread. The standard deviation is the sample one (divided by n − 1), none for one seed.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from avadapt._files import replaced_atomically
from avadapt.errors import OptionError

STD = "sample standard deviation (n - 1); null for one seed"


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``: distinct integers, separated by commas."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise OptionError(f"--seeds {text!r}: expected integers separated by commas, e.g. 0,1,2") from None
    if len(set(seeds)) != len(seeds):
        raise OptionError(f"--seeds {text!r}: a seed is repeated; each seed runs once")
    return seeds


def summarise(runs: Mapping[int, Mapping[str, float]]) -> dict[str, dict[str, Any]]:
    """Per metric: ``mean``, ``std`` (sample; None for one value) and the ``values`` in seed order, over the runs
    (seed → metrics) that logged it; a metric some runs lack names the seeds it has (``seeds``)."""
    names = list(dict.fromkeys(name for metrics in runs.values() for name in metrics))
    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        seeds = [seed for seed, metrics in runs.items() if metrics.get(name) is not None]
        values = [float(runs[seed][name]) for seed in seeds]
        entry: dict[str, Any] = {"mean": statistics.fmean(values),
                                 "std": statistics.stdev(values) if len(values) > 1 else None, "values": values}
        if len(seeds) != len(runs):
            entry["seeds"] = seeds
        summary[name] = entry
    return summary


def format_table(seeds: Sequence[int], summary: Mapping[str, Mapping[str, Any]], digits: int = 4) -> str:
    """A Markdown table: one row per metric with its mean ± std and the value of each seed."""
    header = ["metric", "mean ± std", *(f"seed {seed}" for seed in seeds)]
    rows = [header, ["---"] * len(header)]
    for name, entry in summary.items():
        by_seed = dict(zip(entry.get("seeds", seeds), entry["values"], strict=True))
        spread = f"{entry['mean']:.{digits}f}" + (f" ± {entry['std']:.{digits}f}" if entry["std"] is not None else "")
        rows.append([name, spread, *(f"{by_seed[seed]:.{digits}f}" if seed in by_seed else "–" for seed in seeds)])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n"


def write_summary(folder: str | Path, seeds: Sequence[int], runs: Mapping[int, Mapping[str, Any]],
                  summary: Mapping[str, Mapping[str, Any]]) -> tuple[Path, Path]:
    """Write ``seeds.json`` (the seeds, each run's entry, the summary) and ``seeds.md`` (the table) in ``folder``."""
    folder = Path(folder)
    document = {"seeds": list(seeds), "std": STD, "metrics": summary, "runs": {str(seed): runs[seed] for seed in seeds}}
    written = folder / "seeds.json", folder / "seeds.md"
    with replaced_atomically(written[0]) as temporary:
        temporary.write_text(json.dumps(document, indent=2) + "\n")
    with replaced_atomically(written[1]) as temporary:
        temporary.write_text(format_table(seeds, summary))
    return written
