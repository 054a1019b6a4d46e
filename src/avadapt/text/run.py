"""The four things one does with the text model, as Python entries the CLI calls: ``pretrain`` on a corpus with
class names, ``zeroshot`` (classes from their names only), ``fewshot`` (prompts trained on K clips per class)
and ``embed`` (a t-SNE picture of clip features)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Dataset

from avadapt._registry import DATASETS
from avadapt.data.datamodule import AVDataModule
from avadapt.errors import OptionError
from avadapt.models import backbone_video_config
from avadapt.text.classes import dataset_classes, read_class_file
from avadapt.text.embed import embedding_picture
from avadapt.text.evaluate import segment_or_clip_scores
from avadapt.text.model import AVTextConfig, AVTextModel
from avadapt.text.shots import sample_shots
from avadapt.text.training import (
    TextModule,
    load_text_adapter,
    objective_for,
    read_text_adapter,
    restore_adapter,
    save_text_adapter,
)
from avadapt.training.callbacks import TrainingCurves
from avadapt.training.checkpoints import LAST, METRICS_ROWS, AtomicCheckpointIO
from avadapt.training.run_log import MetricsRows, RunLogger

BACKGROUND_MODES = ("none", "threshold", "prompt")


def segments_of(dataset: str) -> int:
    """T, the segments per clip a registered dataset gives (the text model is built for it)."""
    return DATASETS.get(dataset).num_segments


def text_preprocessing(model: AVTextModel, dataset: str) -> dict[str, Any]:
    """How clips are made for the text model: CLIP's frames at its input size and CLAP's log-mel per second."""
    from avadapt.audio_front_ends import audio_front_end

    video = backbone_video_config(model.clip.visual)
    audio = model.clap.audio.config
    front_end = audio_front_end(model.clap.front_end, {**(model.config.fbank or {}), "num_mel_bins":
                                                       audio.num_mel_bins, "target_frames": audio.num_frames})
    fbank = front_end.fbank
    return {"video": video, "audio_front_end": front_end.name, "fbank": fbank.to_dict(),
            "num_segments": model.config.num_frames, "dataset": dataset}


def prepare_cache(root: str | Path, dataset: str, cache: str | Path, model: AVTextModel,
                  dataset_options: dict[str, Any] | None = None, workers: int = 1, progress: bool = False) -> Any:
    """Decode every clip of ``dataset`` once into ``cache`` as ``model`` reads it (CLIP's frame size, CLAP's
    log-mel): what ``avadapt prepare <task> --audio-front-end clap --image-size S`` does, with every log-mel
    field the model sets."""
    from avadapt.audio_front_ends import FbankConfig

    preprocessing = text_preprocessing(model, dataset)
    return DATASETS.get(dataset).prepare(root, cache, image_size=preprocessing["video"]["input_size"][-1],
                                         fbank=FbankConfig.from_dict(preprocessing["fbank"]), workers=workers,
                                         progress=progress, **(dataset_options or {}))


class ClipSubset(Dataset):
    """The items ``indices`` of a clip dataset, in that order (a few-shot training set)."""

    def __init__(self, base: Dataset, indices: list[int]):
        self.base, self.indices = base, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, tuple):
            return self.base[(self.indices[key[0]], *key[1:])]
        return self.base[self.indices[key]]

    def item_clips(self) -> None:
        return None


def _data(root: str | Path, dataset: str, model: AVTextModel, cache: str | Path | None, batch_size: int,
          dataset_options: dict[str, Any] | None = None, augment: bool = False) -> AVDataModule:
    return AVDataModule(str(root), dataset=dataset, dataset_options=dataset_options, cache_dir=None if cache is None
                        else str(cache), batch_size=batch_size, num_workers=0, augment=augment,
                        preprocessing=text_preprocessing(model, dataset))


def _loader(data: AVDataModule, split: str) -> DataLoader:
    """The evaluation loader of ``split`` (``val`` or ``test``), its dataset set up."""
    data.setup("test" if split == "test" else "validate")
    return data.test_dataloader() if split == "test" else data.val_dataloader()


def _trainer(out: Path, epochs: int, precision: str, progress: bool, resume: Path | None
             ) -> tuple[L.Trainer, ModelCheckpoint]:
    """A trainer writing into ``out``: checkpoints/ (every epoch's last, the best by val accuracy), metrics.csv and
    curves.png; resuming from ``resume`` keeps the rows of metrics.csv that checkpoint had seen."""
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, filename="epoch{epoch}",
                                 monitor="val/accuracy", mode="max", auto_insert_metric_name=False)
    rows = None
    if resume is not None:
        rows = torch.load(resume, map_location="cpu", weights_only=True).get(METRICS_ROWS, -1)
    logger = RunLogger(str(out), name="", version="", continue_rows=rows)
    trainer = L.Trainer(max_epochs=epochs, default_root_dir=str(out), logger=logger, log_every_n_steps=1,
                        callbacks=[checkpoint, MetricsRows(), TrainingCurves(str(out))],
                        plugins=[AtomicCheckpointIO()], precision=precision, enable_progress_bar=progress,
                        enable_model_summary=False, num_sanity_val_steps=0, accelerator="auto", devices=1)
    return trainer, checkpoint


def _fit(module: TextModule, data: AVDataModule, out: Path, epochs: int, precision: str, progress: bool,
         train: Dataset | None = None) -> TextModule:
    """Fit with a checkpoint after every epoch (resumed from ``out/checkpoints/last.ckpt`` when it is there),
    then load the best validation epoch's state."""
    last = out / "checkpoints" / LAST
    resume = last if last.is_file() else None
    trainer, checkpoint = _trainer(out, epochs, precision, progress, resume)
    if train is not None:
        data.setup("fit")
        data.datasets["train"] = train
    trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume else None)
    best = checkpoint.best_model_path or str(last)
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    return module


def pretrain(root: str | Path, dataset: str, out: str | Path, encoders: dict[str, Any], *,
             cache: str | Path | None = None, model: dict[str, Any] | None = None, epochs: int = 10,
             batch_size: int = 8, lr: float = 3e-4, seed: int = 0, precision: str = "32-true",
             dataset_options: dict[str, Any] | None = None, progress: bool = True) -> Path:
    """Audio-visual pretraining with text on a recognition corpus (``dataset``: a registered clip-label
    dataset, e.g. VGGSound's csv or a folder of clips with a label file): text matching of the clip's class name
    plus the audio–image contrastive pair, weighted dynamically; selected on the corpus's validation split.
    Resumes from ``out/checkpoints/last.ckpt``. Returns ``out/adapter`` (the adapter-only files)."""
    L.seed_everything(seed, workers=True, verbose=False)
    out = Path(out)
    names, _ = dataset_classes(dataset, root, **(dataset_options or {}))
    model = {**(model or {}), "num_frames": segments_of(dataset)}
    module = TextModule(encoders, names, model, objective=None, lr=lr)
    data = _data(root, dataset, module.model, cache, batch_size, dataset_options)
    started = time.perf_counter()
    _fit(module, data, out, epochs, precision, progress)
    return save_text_adapter(module, out / "adapter", {
        "pretrained_on": {"root": str(root), "dataset": dataset, "epochs": epochs, "seed": seed,
                          "seconds": round(time.perf_counter() - started, 1)}})


def class_list(root: str | Path, dataset: str, classes: str | Path | None,
               dataset_options: dict[str, Any] | None = None) -> tuple[list[str], str | None]:
    """The event class names to score, from ``classes`` (a file, one name per line, in label order) or the
    dataset's list, and the background name where the dataset labels background seconds (its list ends with the
    prompt templates' background word, as AVE's does), else None."""
    names, background = dataset_classes(dataset, root, **(dataset_options or {}))
    return (read_class_file(classes) if classes is not None else names), background


@torch.no_grad()
def collect(model: AVTextModel, loader: DataLoader, progress: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``model`` over ``loader``: (N, T, C) logits, the labels, and (N, E) clip features (the mean of the
    normalised visual and audio segment embeddings, each normalised again) for pictures."""
    logits, labels, features = [], [], []
    model.eval()
    for index, batch in enumerate(loader):
        out = model(batch.video, batch.audio)
        logits.append(out.logits.float())
        labels.append(batch.targets["labels"])
        clip = torch.cat([torch.nn.functional.normalize(out.visual_features.mean(1), dim=-1),
                          torch.nn.functional.normalize(out.audio_features.mean(1), dim=-1)], dim=-1)
        features.append(clip.float())
        if progress:
            print(f"\r  {index + 1}/{len(loader)} batches", end="", flush=True)
    if progress:
        print()
    return torch.cat(logits), torch.cat(labels), torch.cat(features)


def frozen_model(encoders: dict[str, Any], names: list[str], num_frames: int,
                 model: dict[str, Any] | None = None) -> AVTextModel:
    """The frozen encoders as a classifier: DG-SCT's gates at 0 (the encoders' own features), CLIP's prompt with
    its context words and no CLIP-Adapter — CLIP and CLAP zero-shot as they come. model: other
    :class:`AVTextConfig` fields (the log-mel settings, the logit mixing)."""
    from avadapt.text.encoders import TextEncodersConfig, build_text_encoders

    clip, clap = build_text_encoders(TextEncodersConfig.from_dict(encoders))
    config = AVTextConfig.from_dict({**(model or {}), "num_frames": num_frames, "adapter_mix": 0.0,
                                     "random_context": False})
    return AVTextModel(clip, clap, names, config).eval()


def zeroshot(root: str | Path, dataset: str, *, adapter: str | Path | None = None,
             encoders: dict[str, Any] | None = None, classes: str | Path | None = None,
             cache: str | Path | None = None, split: str = "test", background: str = "none",
             threshold: float = 0.5, batch_size: int = 4, dataset_options: dict[str, Any] | None = None,
             model: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Classify ``split`` of ``dataset`` from class names only, with a pretrained text adapter (or, without one,
    the frozen encoders as they come). ``background`` (datasets with background seconds, AVE): ``none`` scores
    the event names only, as the reference does (a background second can never be right), ``threshold`` calls a
    second background when no name reaches ``threshold`` probability, ``prompt`` adds a "background" name.
    model: :class:`AVTextConfig` fields of the frozen baseline (its log-mel settings). Returns the scores of
    :func:`~avadapt.text.evaluate.segment_or_clip_scores` with what was run."""
    if background not in BACKGROUND_MODES:
        raise OptionError(f"background must be one of {BACKGROUND_MODES}, got {background!r}")
    names, background_name = class_list(root, dataset, classes, dataset_options)
    scored = names + ([background_name or AVTextConfig().templates.background] if background == "prompt" else [])
    if adapter is not None:
        text_model = load_text_adapter(adapter, scored, encoders, num_frames=segments_of(dataset))
    elif encoders is not None:
        text_model = frozen_model(encoders, scored, segments_of(dataset), model)
    else:
        raise OptionError("zero-shot needs a text adapter (--adapter) or the encoders' weights (frozen baseline)")
    data = _data(root, dataset, text_model, cache, batch_size, dataset_options)
    logits, labels, _ = collect(text_model, _loader(data, split), progress)
    scores = segment_or_clip_scores(logits, labels, background=background, threshold=threshold)
    return {"dataset": dataset, "split": split, "clips": int(labels.shape[0]), "classes": len(names),
            "background": background if labels.dim() == 2 and not labels.is_floating_point() else None,
            "adapter": None if adapter is None else str(adapter), **scores}


def fewshot(root: str | Path, dataset: str, shots: int, out: str | Path, *, adapter: str | Path | None = None,
            encoders: dict[str, Any] | None = None, cache: str | Path | None = None, epochs: int = 20,
            batch_size: int = 4, lr: float = 3e-4, seed: int = 0, train_adapters: bool = False,
            background: bool = True, precision: str = "32-true", model: dict[str, Any] | None = None,
            dataset_options: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train the prompts and CLIP-Adapters (and DG-SCT's adapters with ``train_adapters``) on ``shots`` clips per
    class of the training split (seeded; the chosen clips are recorded in ``out/shots.json``), starting from a
    pretrained text adapter (or the frozen encoders, with ``model``'s :class:`AVTextConfig` fields), select on
    validation, and score the test split. Returns the test scores; the adapter is written to ``out/adapter``."""
    out = Path(out)
    names, background_name = class_list(root, dataset, None, dataset_options)
    L.seed_everything(seed, workers=True, verbose=False)
    record, weights = read_text_adapter(adapter) if adapter is not None else ({}, None)
    encoder_fields = {**record.get("encoders", {}), **(encoders or {})}
    if not encoder_fields:
        raise OptionError("few-shot needs a text adapter (--adapter) or the encoders' weights")
    fields = record.get("model") or {**(model or {}), "random_context": False}
    module = TextModule(encoder_fields, names, {**fields, "num_frames": segments_of(dataset)},
                        background=background and background_name is not None,
                        train_adapters=train_adapters, lr=lr)
    if weights is not None:
        restore_adapter(module.model, weights)
    data = _data(root, dataset, module.model, cache, batch_size, dataset_options)
    data.setup("fit")
    train = data.datasets["train"]
    labels = [train[i]["labels"] for i in range(len(train))]
    objective = objective_for(torch.stack(labels))
    per_clip: list[Any] = [clip_classes(label, objective, len(names)) for label in labels]
    selection = sample_shots(per_clip, shots, seed, names, source=f"{root} ({dataset}, train)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "shots.json").write_text(selection.to_json())
    module.objective = objective
    _fit(module, data, out, epochs, precision, progress, train=ClipSubset(train, selection.indices))
    save_text_adapter(module, out / "adapter", {"few_shot": {"shots": shots, "seed": seed, "dataset": dataset}})
    logits, labels_test, _ = collect(module.model, _loader(data, "test"), progress)
    mode = "prompt" if module.hparams.background else "none"
    return {"dataset": dataset, "shots": shots, "seed": seed, "clips_trained": len(selection.indices),
            **segment_or_clip_scores(logits, labels_test, background=mode)}


def clip_classes(label: torch.Tensor, objective: str, num_classes: int) -> int | set[int]:
    """The classes one training clip counts for when drawing shots: its class; AVE: its first event's class;
    multi-label: the set of its classes."""
    if objective == "multilabel":
        return {int(k) for k in torch.nonzero(label).flatten()}
    if objective == "segment":
        events = [int(k) for k in label if int(k) < num_classes]
        return events[0] if events else -1
    return int(label)


def embed(root: str | Path, dataset: str, out: str | Path, *, adapter: str | Path | None = None,
          encoders: dict[str, Any] | None = None, cache: str | Path | None = None, split: str = "test",
          batch_size: int = 4, max_clips: int = 400, seed: int = 0,
          dataset_options: dict[str, Any] | None = None) -> Path:
    """A t-SNE picture of clip features coloured by class: the frozen encoders beside the adapted model."""
    names, _ = class_list(root, dataset, None, dataset_options)
    record = read_text_adapter(adapter)[0] if adapter is not None else {}
    encoder_fields = {**record.get("encoders", {}), **(encoders or {})}
    panels: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    frames = segments_of(dataset)
    models = {"frozen encoders": frozen_model(encoder_fields, names, frames, record.get("model"))}
    if adapter is not None:
        models["adapted"] = load_text_adapter(adapter, names, encoders, num_frames=frames)
    for title, model in models.items():
        data = _data(root, dataset, model, cache, batch_size, dataset_options)
        _, labels, features = collect(model, _loader(data, split))
        panels[title] = (features[:max_clips].numpy(), clip_label_array(labels[:max_clips], len(names)))
    return embedding_picture(panels, names, out, seed=seed)


def clip_label_array(labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """One colour per clip: its class, its first event's class (per-segment labels) or its first class (multi-hot);
    −1 for a clip without any (:func:`clip_classes`)."""
    objective = objective_for(labels)
    classes = [clip_classes(row, objective, num_classes) for row in labels]
    return np.array([min(c, default=-1) if isinstance(c, set) else c for c in classes])
