"""``avadapt demo``: a task end to end on a CPU in minutes, with nothing downloaded, as the task's demo spec
(:mod:`avadapt.tasks.demo_spec`) says: synthesise a small dataset, decode it once, train the main method and its
comparisons on the same tiny random frozen encoders (selecting on val, testing once), predict one test clip from
the main run's exported adapter. Writes ``OUT/metrics.json``, ``OUT/prediction.png``, the data, cache and runs
(each with its ``cost.json``).

With ``seeds`` above 1 the comparison is trained once per seed (the spec's seed, then the next ones) on the same
data and frozen encoders, each seed's runs in ``OUT/runs/seed_<s>/``; ``metrics.json`` keeps the first seed's
figures where one run's stand and adds ``seeds``: the mean ± sample standard deviation of every run's figure.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from safetensors.torch import save_file

from avadapt._registry import DATASETS
from avadapt.adapter_files import load_adapter
from avadapt.data.datamodule import AVDataModule
from avadapt.errors import OptionError
from avadapt.models import parameter_report
from avadapt.prediction import ask, predict_video, write_prediction
from avadapt.tasks import DEFAULT_TASK, get_task
from avadapt.tasks.demo_spec import DEMOS, RANDOM, DemoRun, DemoSpec
from avadapt.training.callbacks import AdapterExport, TrainingCurves
from avadapt.training.checkpoints import AtomicCheckpointIO
from avadapt.training.cost import RunCost
from avadapt.training.module import AVAdaptModule
from avadapt.training.precision import default_precision
from avadapt.training.seeds import STD, format_table, summarise


@dataclass
class DemoData:
    """What every run of a demo trains on: the synthetic data, its cache, the random frozen encoders' files."""

    root: Path
    cache: Path
    weights: Path
    audio_weights: Path | None = None


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def demo_spec(task: str | None = None, method: str | None = None) -> type[DemoSpec]:
    """The demo of ``task`` (default: the default task), or with ``method`` that method's variant of it."""
    task = task or DEFAULT_TASK
    spec = DEMOS.get(task)  # an unknown task: an OptionError lists the demos
    if method is not None and method not in spec.variants:
        known = ", ".join(f"--task {t} --method {m}" for t in DEMOS.names() for m in DEMOS.get(t).variants)
        raise OptionError(f"no demo of method {method!r} on task {task!r}; method demos: {known}")
    return spec.variants[method] if method else spec


def build_module(cfg: DemoSpec, method: str, root: Path, data: DemoData | None = None,
                 method_options: dict[str, Any] | None = None) -> AVAdaptModule:
    """One model of the demo, on its frozen encoders' files (``data``; random without)."""
    return AVAdaptModule(method=method, task=cfg.task, **cfg.model_options(method, method_options or {}, root),
                         weights=str(data.weights) if data else None,
                         audio_weights=str(data.audio_weights) if data and data.audio_weights else None,
                         **cfg.training(method))


def datamodule(cfg: DemoSpec, root: Path, cache: Path, module: AVAdaptModule, batch_size: int) -> AVDataModule:
    return AVDataModule(str(root), dataset=get_task(cfg.task).dataset, cache_dir=str(cache), batch_size=batch_size,
                        num_workers=0, preprocessing=module.preprocessing, **cfg.data_options())


def build_data(out: Path, cfg: DemoSpec, steps: int = 5) -> DemoData:
    """Steps 1 and 2 of ``steps``: synthesise the data (reused when there), decode it once, write the random
    frozen encoders. The same ``cfg`` gives the same data and encoders, so every run is compared on them."""
    banner(f"1/{steps} {cfg.data_banner.format_map(vars(cfg))}")
    root, cache = out / cfg.task, out / "cache"
    print(cfg.synthesize(root) if not (root / cfg.data_marker).is_file() else f"reusing {root}", flush=True)
    banner(f"2/{steps} {cfg.prepare_banner}")
    torch.manual_seed(cfg.seed)
    module = build_module(cfg, "probe", root)
    video = module.preprocessing["video"]
    DATASETS.get(get_task(cfg.task).dataset).prepare(root, cache, workers=1, image_size=cfg.image_size,
                                                     fbank=module.fbank, crop_pct=video.get("crop_pct") or 1.0,
                                                     interpolation=video["interpolation"],
                                                     crop_mode=video.get("crop_mode") or "center")
    if cfg.calibrate is not None:
        loader = datamodule(cfg, root, cache, module, batch_size=16)
        loader.setup("fit")
        cfg.calibrate(module.model, loader.train_dataloader())
    data = DemoData(root, cache, out / "random_backbone.safetensors")
    save_file({k: v.contiguous() for k, v in module.model.backbone.model.state_dict().items()}, str(data.weights))
    if module.model.method.audio_encoder is not None:
        data.audio_weights = save_audio_encoder(module.model.method.audio_encoder, out)
    return data


def save_audio_encoder(encoder: torch.nn.Module, out: Path) -> Path:
    """Write a method's own (random) audio encoder to ``out/random_audio_encoder.safetensors`` in its checkpoint
    layout, the one its loader reads, so that every run and the exported adapter use the same encoder."""
    path = out / "random_audio_encoder.safetensors"
    save_file(encoder.checkpoint_state(), str(path))
    return path


def train_run(cfg: DemoSpec, data: DemoData, run: DemoRun, out: Path, precision: str, test: bool = True,
              seed: int | None = None) -> dict[str, Any]:
    """Fit one run on the CPU selecting on the task's val metric; test the best val checkpoint once (``test=False``:
    val only, for choosing settings). ``seed`` (default: the spec's) draws the trained modules and the batch order.
    Writes ``out/{checkpoints,adapter,logs,curves.png,cost.json}``; returns ``best_val_<monitor>``,
    ``test_<metric>`` per test metric, ``train_seconds``, parameter counts and paths."""
    seed = cfg.seed if seed is None else seed
    L.seed_everything(seed, verbose=False)
    module = build_module(cfg, run.method_name, data.root, data, run.method_options)
    if cfg.same_initial_head:  # a head drawn after a method's own modules would start elsewhere
        L.seed_everything(seed, verbose=False)
        module.model.head.load_state_dict(build_module(cfg, "probe", data.root, data).model.head.state_dict())
    loader, task = datamodule(cfg, data.root, data.cache, module, cfg.batch_size), module.task
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", monitor=module.monitor, mode=task.monitor_mode,
                                 save_last=True, filename=task.checkpoint_filename(), auto_insert_metric_name=False)
    export, curves = AdapterExport(str(out / "adapter")), TrainingCurves(str(out))
    trainer = L.Trainer(accelerator="cpu", devices=1, precision=precision, max_epochs=run.epochs or cfg.epochs,
                        callbacks=[checkpoint, export, curves, RunCost(str(out))], plugins=[AtomicCheckpointIO()],
                        logger=CSVLogger(out, name="logs", version=""), default_root_dir=out, log_every_n_steps=5,
                        enable_model_summary=False, num_sanity_val_steps=0)
    size = parameter_report(module.model)
    print(f"{run.name}: {size['trainable']:,} trainable of {size['total']:,} parameters "
          f"({size['trainable_percent']:.1f}%), precision {precision}", flush=True)
    started = time.perf_counter()
    trainer.fit(module, datamodule=loader)
    result: dict[str, Any] = {
        f"best_val_{task.monitor}": round(float(checkpoint.best_model_score), 4),
        "train_seconds": round(time.perf_counter() - started, 1), "trainable_parameters": size["trainable"],
        "total_parameters": size["total"], "adapter": str(export.exported), "curves": str(curves.written)}
    if test:
        tested = trainer.test(module, datamodule=loader, ckpt_path="best", weights_only=True, verbose=False)[0]
        # test/accuracy → test_accuracy, test/type/x → test_type_x
        result.update({k.replace("/", "_"): round(float(v), 4) for k, v in tested.items() if k.startswith("test/")})
    scores = "".join(f"test {title} {result[f'test_{key}']:.3f}, " for key, title in cfg.metrics.items()
                     if f"test_{key}" in result)
    print(f"{run.label}: {scores}best val {cfg.metrics.get(task.monitor, task.monitor)} "
          f"{result[f'best_val_{task.monitor}']:.3f} after {result['train_seconds']:.0f} s of training", flush=True)
    return result


def run_demo(out: str | Path = "demo_out", task: str | None = None, precision: str | None = None,
             config: DemoSpec | None = None, method: str | None = None, seeds: int = 1) -> dict[str, Any]:
    """Run the demo of ``task``, or with ``method`` that method's variant; ``config``: the spec's settings (task and
    method default to its); ``seeds``: how many seeds train the comparison. Returns (and writes to
    ``OUT/metrics.json``) its numbers."""
    if seeds < 1:
        raise OptionError(f"--seeds {seeds}: the demo needs at least one seed")
    spec = demo_spec(task or getattr(config, "task", None), method or getattr(config, "method", None))
    cfg = config or spec()
    if not isinstance(cfg, spec):
        raise OptionError(f"the {spec.__name__} demo does not take {type(cfg).__name__} settings")
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _run(Path(out), precision or default_precision(), cfg, seeds)
    finally:
        torch.set_num_threads(threads)


def _run(out: Path, precision: str, cfg: DemoSpec, seeds: int = 1) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    flags = (f" --task {cfg.task}" if cfg.task != DEFAULT_TASK else "") + (f" --method {cfg.method}" if cfg.method else "")
    print(f"avadapt demo{flags} → {out.resolve()}\n"
          f"NOTE: the backbone is a tiny RANDOMLY INITIALISED ViT (timm '{cfg.backbone}'): no pretrained weights can "
          "be downloaded here, so the numbers below only show that the pipeline learns.\n" + cfg.real_weights_hint,
          flush=True)
    if cfg.random_note:
        print(cfg.random_note.format_map(vars(cfg)), flush=True)
    runs = cfg.runs()
    steps = 3 + sum(run.banner is not None for run in runs)
    data = build_data(out, cfg, steps)
    seed_list = [cfg.seed + index for index in range(seeds)]
    results_by_seed: dict[int, list[dict[str, Any]]] = {seed: [] for seed in seed_list}
    step = 2
    for run in runs:
        if run.banner:
            step += 1
            banner(f"{step}/{steps} {run.banner}")
        for seed in seed_list:
            folder = out / "runs" / (run.name if seeds == 1 else f"seed_{seed}/{run.name}")
            if seeds > 1:
                print(f"seed {seed}", flush=True)
            results_by_seed[seed].append(train_run(cfg, data, run, folder, precision, seed=seed))
    results = results_by_seed[cfg.seed]

    banner(f"{steps}/{steps} {cfg.predict_banner}")
    model = load_adapter(results[0]["adapter"])

    def predict(video: Path, out: Path, ground_truth: str | None = None) -> dict[str, Any]:
        return write_prediction(predict_video(model, video), out, ground_truth=ground_truth)

    prediction = cfg.predict(data.root, out, predict=predict, ask=partial(ask, model))

    pairs = list(zip(runs, results))
    metrics = run_figures(cfg, runs, results)
    metrics["total_seconds"] = round(time.perf_counter() - started, 1)
    metrics.update({f"{run.prefix}trainable_parameters": result["trainable_parameters"] for run, result in pairs})
    metrics.update({"total_parameters": results[0]["total_parameters"], "metric": cfg.metric_description,
                    "precision": precision, "backbone": f"{cfg.backbone} ({RANDOM})", **cfg.extra_metrics(),
                    "adapter": results[0]["adapter"], "curves": {run.name: result["curves"] for run, result in pairs},
                    "prediction": prediction, "config": asdict(cfg)})
    verdict = cfg.verdict(metrics)
    if verdict:
        metrics["verdict"] = verdict
    spread: dict[str, dict[str, Any]] = {}
    if seeds > 1:
        spread = summarise({seed: run_figures(cfg, runs, results_by_seed[seed]) for seed in seed_list})
        metrics["seeds"] = {"seeds": seed_list, "std": STD, "metrics": spread}
        print(f"\n{seeds} seeds ({', '.join(map(str, seed_list))}), mean ± sample std:\n"
              f"{format_table(seed_list, spread)}", end="", flush=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    headline = next(iter(cfg.metrics))

    def score(run: DemoRun) -> str:
        key = f"{run.prefix}test_{headline}"
        return f"{spread[key]['mean']:.3f} ± {spread[key]['std']:.3f}" if spread else f"{metrics[key]:.3f}"

    versus = "".join(f" vs {run.label} {score(run)}" for run in runs[1:])
    banner(f"done in {metrics['total_seconds']:.0f} s: {runs[0].label} test {cfg.metrics[headline]} "
           f"{score(runs[0])}{versus} → {out / 'metrics.json'}, {prediction['png']}")
    if verdict:
        print(verdict, flush=True)
    return metrics


def run_figures(cfg: DemoSpec, runs: list[DemoRun], results: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one seed's runs as ``metrics.json`` names them: test metrics, the spec's summaries, the best
    val score and the training time of each run (its prefix before each name)."""
    pairs, monitor = list(zip(runs, results, strict=True)), get_task(cfg.task).monitor
    figures = {f"{run.prefix}test_{key}": result[f"test_{key}"] for run, result in pairs for key in cfg.metrics}
    for run, result in pairs:
        figures.update({run.prefix + key: value for key, value in cfg.summaries(result).items()})
    figures.update({f"{run.prefix}val_{monitor}": result[f"best_val_{monitor}"] for run, result in pairs})
    figures.update({f"{run.prefix}train_seconds": result["train_seconds"] for run, result in pairs})
    return figures


__all__ = ["DemoData", "build_data", "build_module", "demo_spec", "run_demo", "run_figures", "save_audio_encoder",
           "train_run"]
