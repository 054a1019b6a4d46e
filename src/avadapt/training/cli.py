"""``avadapt fit | validate | test``: LightningCLI over the typed signatures of the module and data module.

There is no second schema of flags: every option is a constructor argument of :class:`AVAdaptModule`,
:class:`AVDataModule`, ``lightning.Trainer`` or the four callbacks added here, and a YAML config is the
same tree (``avadapt fit --print_config`` shows it).

``avadapt fit ... --seeds 0,1,2`` is the one option outside that tree: it runs the same ``fit`` once per seed
(``seed_everything``), each in its own run folder, and summarises their metrics (:func:`run_seeds`).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_warn

from avadapt.data.datamodule import AVDataModule
from avadapt.errors import OptionError
from avadapt.training.callbacks import AdapterExport, TrainingCurves
from avadapt.training.checkpoints import (
    CHECKPOINTS,
    LAST,
    METRICS_ROWS,
    AtomicCheckpointIO,
    ResumeError,
    find_last_checkpoint,
    read_checkpoint,
    run_folder,
)
from avadapt.training.cost import RunCost
from avadapt.training.module import AVAdaptModule
from avadapt.training.precision import default_precision
from avadapt.training.run_log import MetricsRows, RunLogger
from avadapt.training.seeds import format_table, parse_seeds, summarise, write_summary

SUBCOMMANDS = ("fit", "validate", "test")
TASK_MONITOR = "task"  # checkpoint.monitor default: the task's own metric (val/accuracy for AVE, val/miou for AVS)
LIGHTNING_CKPT_NAMES = ("best", "hpc", "registry")  # ckpt_path values Lightning resolves itself ("last" is ours)
SEEDS_OPTION = "--seeds"
SEEDS_FOLDER = "seeds"  # <default_root_dir>/seeds/version_N/seed_<s>/: one sweep, one run folder per seed
# options that would send every seed's run to the same place
PER_RUN_PATHS = ("checkpoint.dirpath", "adapter_export.dirpath", "curves.dirpath", "cost.dirpath")


@dataclass
class SeedSweep:
    """One ``fit`` per seed: the seed of the run being set up, the sweep's folder (chosen by its first run)."""

    seeds: list[int]
    seed: int = 0
    folder: Path | None = None
    runs: dict[int, dict] = field(default_factory=dict)

    def logger(self, root: str) -> RunLogger:
        """The run folder of the current seed, ``<root>/seeds/version_N/seed_<s>``, N new for each sweep."""
        if self.folder is None:
            self.folder = Path(RunLogger(save_dir=os.path.abspath(root), name=SEEDS_FOLDER).log_dir)
        return RunLogger(save_dir=self.folder.parent, name=self.folder.name, version=f"seed_{self.seed}")


class AVAdaptCLI(LightningCLI):
    """LightningCLI with model selection on validation, adapter export, training curves and a final test on the
    best weights."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {name: spec for name, spec in LightningCLI.subcommands().items() if name in SUBCOMMANDS}

    def __init__(self, *args: Any, sweep: SeedSweep | None = None, **kwargs: Any):
        self.sweep = sweep  # LightningCLI's constructor runs the subcommand: set first
        self.test_results: list[dict[str, float]] = []
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": TASK_MONITOR,
            "checkpoint.save_last": True,
            "checkpoint.auto_insert_metric_name": False,
            "trainer.precision": default_precision(),
        })
        parser.add_lightning_class_args(AdapterExport, "adapter_export")
        parser.add_lightning_class_args(TrainingCurves, "curves")
        parser.add_lightning_class_args(RunCost, "cost")
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="after fit, evaluate the best validation checkpoint once on the test split")
        # the data follow the model: image transform from the backbone's data config, fbank from the model
        parser.link_arguments("model.preprocessing", "data.preprocessing", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The default logger (``trainer.logger`` unset or true) is a ``CSVLogger`` in ``default_root_dir``, the one
        Lightning picks when TensorBoard is not installed, whether it is or not: ``curves.png`` reads its file.

        ``--ckpt_path last`` is resolved here to the ``last.ckpt`` of the latest run under ``default_root_dir`` (or
        in ``checkpoint.dirpath`` when that is set), and the checkpoint is checked before anything is trained; a
        ``fit`` that resumes from ``<run>/checkpoints/`` logs into ``<run>`` again (:mod:`avadapt.training.checkpoints`).
        Checkpoints are written atomically (:class:`~avadapt.training.checkpoints.AtomicCheckpointIO`) unless a
        ``CheckpointIO`` plugin is configured.
        """
        config = self.config_for_subcommand()
        config_init = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer_config = config_init["trainer"]
        self._select_on_task_metric(config_init)
        root = trainer_config.get("default_root_dir") or os.getcwd()
        if self.sweep is not None:
            self._check_sweep(config_init)
        resumed = self._checkpoint_to_start_from(config_init, root)
        if resumed is not None:
            config["ckpt_path"] = config_init["ckpt_path"] = str(resumed[0])
        if self.sweep is not None:
            kwargs["logger"] = self.sweep.logger(root)
        elif "logger" not in kwargs and trainer_config.get("logger") in (None, True):
            kwargs["logger"] = self._default_logger(root, resumed)
        plugins = trainer_config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        if "plugins" not in kwargs and not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.append(MetricsRows())
        return trainer

    def _select_on_task_metric(self, config_init: Any) -> None:
        """``checkpoint.monitor: task`` (the default) becomes the model's task metric with its mode; the file name
        (unless set) holds that metric's value."""
        checkpoint = config_init.get("checkpoint")
        if not isinstance(checkpoint, ModelCheckpoint) or checkpoint.monitor != TASK_MONITOR:
            return
        task = self.model.task
        options = self.config_for_subcommand()["checkpoint"]
        options = options.as_dict() if hasattr(options, "as_dict") else dict(options)
        options.update(monitor=self.model.monitor, mode=task.monitor_mode)
        if options.get("filename") is None:
            options["filename"] = task.checkpoint_filename()
        config_init["checkpoint"] = ModelCheckpoint(**options)

    def _check_sweep(self, config_init: Any) -> None:
        """Each seed's run needs a folder of its own and a fresh start."""
        if config_init.get("ckpt_path") is not None:
            raise OptionError(f"{SEEDS_OPTION} starts every seed afresh: it does not take --ckpt_path")
        if config_init["trainer"].get("logger") not in (None, True):
            raise OptionError(f"{SEEDS_OPTION} writes each seed's run into its own folder through the default "
                              "logger: leave trainer.logger unset")
        for path in PER_RUN_PATHS:
            component, name = path.split(".")
            if getattr(config_init.get(component), name, None) is not None:
                raise OptionError(f"{SEEDS_OPTION}: {path} would send every seed's run to the same folder; "
                                  "leave it unset (each run's files go into its own folder)")

    def _checkpoint_to_start_from(self, config_init: Any, root: str) -> tuple[Path, dict[str, Any]] | None:
        """``ckpt_path`` as a checked local file and its contents; None when unset or left to Lightning."""
        ckpt_path = config_init.get("ckpt_path")
        if ckpt_path is None or "://" in str(ckpt_path) or str(ckpt_path).split(":")[0] in LIGHTNING_CKPT_NAMES:
            return None
        path = Path(ckpt_path)
        if ckpt_path == "last":
            dirpath = getattr(config_init.get("checkpoint"), "dirpath", None)
            path = find_last_checkpoint(root) if dirpath is None else Path(dirpath) / LAST
            if not path.is_file():
                raise ResumeError(f"{dirpath}: no checkpoint to resume from (no {LAST})")
        return path, read_checkpoint(path, resume=self.subcommand == "fit")

    def _default_logger(self, root: str, resumed: tuple[Path, dict[str, Any]] | None) -> CSVLogger:
        """A new run folder, or the resumed checkpoint's run folder with the rows it had logged until then."""
        if resumed is not None and self.subcommand == "fit":
            path, checkpoint = resumed
            run = run_folder(path)
            if run is not None:
                return RunLogger.continuing(run, checkpoint.get(METRICS_ROWS))
            rank_zero_warn(f"{path} lies outside a run folder (<run>/{CHECKPOINTS}/): the resumed fit logs to a new "
                           "run folder, and model selection starts over from the checkpoint's epoch")
        # absolute, so that the checkpoint callback recognises its folder from wherever the run is resumed
        return RunLogger(save_dir=os.path.abspath(root) if "://" not in str(root) else root)

    def after_fit(self) -> None:
        if not self.config_for_subcommand().get("test_after_fit", True):
            return
        fast = self.trainer.fast_dev_run
        self.test_results = self.trainer.test(self.model, datamodule=self.datamodule,
                                              ckpt_path=None if fast else "best", weights_only=True)

    def config_for_subcommand(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config


def run_lightning(argv: list[str]) -> AVAdaptCLI | SeedSweep:
    """Run ``avadapt fit|validate|test ARGS``; checkpoints are read with ``weights_only=True`` by default.
    ``fit ... --seeds 0,1,2``: :func:`run_seeds`."""
    seeds, rest = _pop_seeds(argv)
    if seeds is not None:
        if rest[:1] != ["fit"]:
            raise OptionError(f"{SEEDS_OPTION} is an option of fit (avadapt fit --config FILE {SEEDS_OPTION} 0,1,2)")
        return run_seeds(rest, seeds, console=argv == sys.argv[1:])
    return _lightning_cli(argv, console=argv == sys.argv[1:])


def run_seeds(argv: list[str], seeds: list[int], console: bool = False) -> SeedSweep:
    """Run ``avadapt fit ARGS`` once per seed (``--seed_everything S``), each run in
    ``<default_root_dir>/seeds/version_N/seed_<S>/`` (its checkpoints, adapter, metrics, curves, ``cost.json``);
    then write ``seeds.json`` and ``seeds.md`` in ``version_N``: the mean ± sample standard deviation over the seeds
    of every test metric and of the best validation score (``best_<monitor>``), each run's figures and cost."""
    sweep = SeedSweep(seeds)
    cli = None
    for seed in seeds:
        sweep.seed = seed
        cli = _lightning_cli([*argv, "--seed_everything", str(seed)], console=console, sweep=sweep)
        if not cli.trainer.is_global_zero:
            continue
        sweep.runs[seed] = _seed_run(cli)
    if cli is None or not cli.trainer.is_global_zero or sweep.folder is None:
        return sweep
    summary = summarise({seed: run["metrics"] for seed, run in sweep.runs.items()})
    json_path, table_path = write_summary(sweep.folder, seeds, sweep.runs, summary)
    print(f"\n{len(seeds)} seeds ({', '.join(map(str, seeds))}), mean ± sample std:\n{format_table(seeds, summary)}"
          f"wrote {json_path} and {table_path}", flush=True)
    return sweep


def _seed_run(cli: AVAdaptCLI) -> dict:
    """One seed's entry of ``seeds.json``: its folder, metrics (test, best validation) and cost."""
    trainer = cli.trainer
    metrics = {name: float(value) for results in cli.test_results for name, value in results.items()}
    checkpoint = trainer.checkpoint_callback
    best = getattr(checkpoint, "best_model_score", None)
    if best is not None:
        metrics[f"best_{checkpoint.monitor}"] = float(best)
    cost = next((callback for callback in trainer.callbacks if isinstance(callback, RunCost)), None)
    written = cost.written if cost is not None else None
    return {"folder": str(trainer.log_dir), "metrics": metrics,
            "cost": json.loads(written.read_text()) if written is not None and written.is_file() else None}


def _pop_seeds(argv: list[str]) -> tuple[list[int] | None, list[str]]:
    """``--seeds 0,1`` or ``--seeds=0,1`` taken out of ``argv``."""
    for index, arg in enumerate(argv):
        if arg == SEEDS_OPTION:
            if index + 1 >= len(argv):
                raise OptionError(f"{SEEDS_OPTION}: expected integers separated by commas, e.g. 0,1,2")
            return parse_seeds(argv[index + 1]), argv[:index] + argv[index + 2:]
        if arg.startswith(f"{SEEDS_OPTION}="):
            return parse_seeds(arg.split("=", 1)[1]), argv[:index] + argv[index + 1:]
    return None, argv


def _lightning_cli(argv: list[str], console: bool, sweep: SeedSweep | None = None) -> AVAdaptCLI:
    # From the console LightningCLI reads the arguments from sys.argv itself (given both, it warns): they are put
    # there; from Python (tests, notebooks) they are passed explicitly.
    if console:
        sys.argv[1:] = argv
    return AVAdaptCLI(
        AVAdaptModule, AVDataModule, args=None if console else argv, save_config_kwargs={"overwrite": True},
        parser_kwargs={name: {"default_env": False} for name in SUBCOMMANDS}, seed_everything_default=0,
        auto_configure_optimizers=False, sweep=sweep,
    )
