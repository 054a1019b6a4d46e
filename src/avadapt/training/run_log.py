"""The run's metrics log: Lightning's ``CSVLogger`` that continues a resumed run's ``metrics.csv`` at the row its
checkpoint recorded, and rewrites the file atomically when a new metric adds a column."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from avadapt._files import replaced_atomically
from avadapt.training.checkpoints import METRICS_ROWS


class RunLogger(CSVLogger):
    """The CLI's ``CSVLogger``: a new ``version_N`` folder, or, with ``continue_rows``, an existing run's folder
    whose ``metrics.csv`` keeps its first ``continue_rows`` rows (all of them for ``-1``) and grows from there.

    A new header (a metric logged for the first time) rewrites the file under a temporary name, so a kill never
    leaves it truncated; rows are appended in between.
    """

    def __init__(self, save_dir: str | Path, name: str = "lightning_logs", version: int | str | None = None,
                 continue_rows: int | None = None, **kwargs: Any):
        super().__init__(save_dir=save_dir, name=name, version=version, **kwargs)
        self.continue_rows = continue_rows

    @classmethod
    def continuing(cls, run: Path, rows: int | None) -> RunLogger:
        """The logger of the run in folder ``run``, keeping ``rows`` rows of its metrics (all for None)."""
        return cls(save_dir=run.parent.parent, name=run.parent.name, version=run.name,
                   continue_rows=-1 if rows is None else rows)

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _MetricsWriter(self.log_dir, self.continue_rows)
        return self._experiment


class _MetricsWriter(ExperimentWriter):
    def __init__(self, log_dir: str, continue_rows: int | None):
        self.continue_rows = continue_rows
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        """Called by the writer's constructor: a new run starts its file, a continued one trims and keeps it."""
        if self.continue_rows is None:
            super()._check_log_dir_exists()
            return
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with path.open(newline="") as file:
            reader = csv.DictReader(file)
            rows = list(reader)
            self.metrics_keys = list(reader.fieldnames or [])
        if 0 <= self.continue_rows < len(rows):  # rows a killed run logged after its checkpoint
            self._write(self.metrics_keys, rows[: self.continue_rows])

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with open(self.metrics_file_path, newline="") as file:
            rows = list(csv.DictReader(file))
        self._write(fieldnames, rows)

    def _write(self, fieldnames: list[str], rows: list[dict[str, Any]]) -> None:
        with replaced_atomically(self.metrics_file_path) as temporary, temporary.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)


class MetricsRows(L.Callback):
    """Saves in every checkpoint how many rows the run's ``metrics.csv`` holds at that moment (after writing out
    the rows logged so far), so a run resumed from it drops exactly the rows logged after it."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
        if logger is None or not trainer.is_global_zero:
            return
        logger.save()
        path = Path(logger.experiment.metrics_file_path)
        if not path.is_file():
            checkpoint[METRICS_ROWS] = 0
            return
        with path.open(newline="") as file:
            checkpoint[METRICS_ROWS] = sum(1 for _ in csv.DictReader(file))
