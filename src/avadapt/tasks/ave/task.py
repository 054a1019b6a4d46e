"""Audio-visual event localisation (AVE): one of 28 events or background for every 1 s segment."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from avadapt._config import JSONConfig
from avadapt.errors import OptionError
from avadapt.tasks.ave.dataset import read_events
from avadapt.tasks.base import Task, TaskHead, register_task
from avadapt.types import AVFeatures, FeatureSpec

BACKGROUND_CLASSES = 1
LOSSES = ("cross_entropy", "bce_on_softmax")


@dataclass
class AVEConfig(JSONConfig):
    """The AVE head: ``classifier`` (default) or ``cmbs``.

    ``classifier``: STG-CMA's AVE head, concat[audio; video] → Linear 512 → Dropout 0.5 → Linear 29, per segment.
    ``cmbs``: DG-SCT's AVE head (:class:`~avadapt.tasks.ave.cmbs.CMBSHead`): a CMRAN-style temporal module
    over the per-segment vectors, then CMBS's event-relevance and video-level class scores.

    num_classes counts the background class (28 events + 1 for AVE); background is the last class.
    hidden_dim, dropout, loss: the classifier's. loss: ``cross_entropy`` (STG-CMA's, with one-hot targets) or
        ``bce_on_softmax`` (LAVISH's: binary cross-entropy between the softmax output and the one-hot targets,
        averaged over segments and classes). The CMBS head has its own four-term loss.
    video_projection_dim, audio_projection_dim: the CMBS temporal module's input projections (512 and 128 in
        DG-SCT, from Swin-V2-L's 1536 and HTS-AT's 768).
    temporal_dim: the temporal module's and CMBS head's width d (256).
    gate_scale: γ of the temporal module's cross-modal gates, v·(1 + γ·g_a) (0.1 for AVE in DG-SCT; 0: no gating).
    top_k: segments whose class activations are averaged into the video-level av_score (4 in CMBS).
    av_score_weight: weight of av_score added to the video-level class logits (0.3 in CMBS).
    """

    num_classes: int = 29
    head: str = "classifier"
    hidden_dim: int = 512
    dropout: float = 0.5
    loss: str = "cross_entropy"
    video_projection_dim: int = 512
    audio_projection_dim: int = 128
    temporal_dim: int = 256
    gate_scale: float = 0.1
    top_k: int = 4
    av_score_weight: float = 0.3

    def __post_init__(self):
        if self.head not in AVE_HEADS:
            raise OptionError(f"AVE head must be one of {tuple(AVE_HEADS)}, got {self.head!r}")
        if self.loss not in LOSSES:
            raise OptionError(f"AVE loss must be one of {LOSSES}, got {self.loss!r}")
        if self.num_classes < 2:
            raise ValueError(f"AVE needs at least one event class plus background, got {self.num_classes}")
        for name in ("video_projection_dim", "audio_projection_dim", "temporal_dim", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionError(f"{name} must be a positive integer, got {value!r}")
        if self.temporal_dim % 4:
            raise OptionError(f"temporal_dim must be a multiple of 4 (the temporal module's attention heads), "
                              f"got {self.temporal_dim}")
        for name in ("gate_scale", "av_score_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise OptionError(f"{name} must be a finite number, got {value!r}")


class AVEHead(TaskHead):
    """Per-segment classifier over the concatenated per-segment features of the active modalities.

    Both modalities: the config's two-layer MLP. One modality (audio-only or visual-only): LayerNorm + Linear,
    the reference's single-branch head. Linear layers start as the reference's: truncated normal weights
    (std 0.02), zero biases.
    """

    config_class = AVEConfig

    def __init__(self, spec: FeatureSpec, config: AVEConfig):
        super().__init__(spec, config)
        self.modalities = tuple(m for m in ("audio", "video") if m in spec.modalities)  # concat order: audio, video
        feature_dim = sum(spec.width(m) for m in self.modalities)  # D_a + D_v (both D on a shared backbone)
        if len(self.modalities) == 1:
            self.classifier = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, config.num_classes))
        else:
            self.classifier = nn.Sequential(
                nn.Linear(feature_dim, config.hidden_dim),
                nn.Dropout(config.dropout),
                nn.Linear(config.hidden_dim, config.num_classes),
            )
        for layer in self.classifier:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)

    def forward(self, features: AVFeatures, **inputs: torch.Tensor) -> torch.Tensor:
        """→ (B, T, num_classes) logits."""
        x = torch.cat([getattr(features, m) for m in self.modalities], dim=-1)  # (B, T, D * n_modalities)
        return self.classifier(x)

    def loss(self, logits: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """The config's loss over all segments."""
        logits, labels = logits.flatten(0, 1).float(), targets["labels"].flatten()
        if self.config.loss == "bce_on_softmax":
            one_hot = F.one_hot(labels, self.config.num_classes).to(logits.dtype)
            return F.binary_cross_entropy(logits.softmax(-1), one_hot)
        return F.cross_entropy(logits, labels)

    def metrics(self) -> MetricCollection:
        return segment_accuracy(self.config.num_classes)

    def update_metrics(self, metrics: MetricCollection, logits: torch.Tensor, targets: dict[str, torch.Tensor]) -> None:
        """(B, T, C) logits and (B, T) labels, scored per segment."""
        metrics.update(logits.flatten(0, 1).float(), targets["labels"].flatten())

    def predict(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(…, C) logits → (…,) class index and its softmax probability."""
        scores, labels = logits.float().softmax(-1).max(-1)
        return labels, scores


def segment_accuracy(num_classes: int) -> MetricCollection:
    """Segment accuracy over all segments of a split (ECCV'18 ``compute_acc``), and per class.

    ``accuracy``: micro average = (1 / (T·N)) Σ_i Σ_t 1[argmax_c p_itc = y_it]. ``class_accuracy``:
    recall of each class over its segments (a vector of ``num_classes``; 0 for a class absent from the split).
    """
    return MetricCollection({
        "accuracy": MulticlassAccuracy(num_classes, average="micro"),
        "class_accuracy": MulticlassAccuracy(num_classes, average=None),
    })


AVE_HEADS: dict[str, type[TaskHead]] = {"classifier": AVEHead}
"""The AVE heads by ``AVEConfig.head``; ``avadapt.tasks.ave.cmbs`` adds ``cmbs``."""


@register_task
class AVETask(Task):
    """Event localisation: one of the dataset's events or background for every 1 s segment; selected on
    segment accuracy. The head is ``AVEConfig.head``'s: the per-segment classifier or DG-SCT's CMBS head.
    ``avadapt predict`` writes per-second labels and a timeline picture."""

    name = "ave"
    head_class = AVEHead
    monitor = "accuracy"
    dataset = "ave"
    num_segments = 10
    # the Swin loaders of STG-CMA (its probe too) and LAVISH for this dataset; on a ViT the family's default
    paper_audio_front_ends: ClassVar[dict[tuple[str, str], str]] = {
        ("stg_cma", "swin"): "stg_cma_swin_ave", ("probe", "swin"): "stg_cma_swin_ave",
        ("lavish", "swin"): "lavish_swin_ave"}
    prediction_kind = "per-second event labels (JSON) and a timeline picture (PNG)"

    def build_head(self, spec: FeatureSpec, config: AVEConfig) -> TaskHead:
        """The head ``config.head`` names (:data:`AVE_HEADS`)."""
        return AVE_HEADS[config.head](spec, config)

    def segment_probabilities(self, outputs: Any) -> torch.Tensor:
        """(B, T, C): the softmax of the classifier's logits, or what a structured output (the CMBS head's)
        gives as its per-segment probabilities."""
        if isinstance(outputs, torch.Tensor):
            return outputs.float().softmax(-1)
        return outputs.segment_probabilities()

    def write_prediction(self, probabilities: torch.Tensor, frames: torch.Tensor, info: dict[str, Any],
                         out: Path, ground_truth: str | None = None) -> dict[str, Any]:
        """One entry per second (label, score, top 3); ``ground_truth`` is an annotation row
        ``Category&VideoID&Quality&Start&End`` or an annotation file holding the video's row."""
        num_classes = probabilities.shape[-1]
        names = list(info.get("class_names") or [f"class {k}" for k in range(num_classes)])
        scores, labels = probabilities.max(-1)
        top = probabilities.topk(min(3, num_classes), dim=-1)
        seconds = probabilities.shape[0]
        result = {
            **{k: info[k] for k in ("video", "duration", "seconds", "window_seconds", "window_starts")},
            "class_names": names,
            "segments": [
                {"second": t, "start": t, "end": t + 1, "label": names[int(labels[t])],
                 "label_index": int(labels[t]), "score": round(float(scores[t]), 5),
                 "top": [{"label": names[int(k)], "score": round(float(p), 5)}
                         for p, k in zip(top.values[t], top.indices[t])]}
                for t in range(seconds)
            ],
        }
        predicted = [s["label_index"] for s in result["segments"]]
        truth = None
        if ground_truth is not None:
            category, start, end = parse_annotation(ground_truth, info["video"])
            truth = ground_truth_labels(category, start, end, names, seconds)
            for segment, label in zip(result["segments"], truth):
                segment["ground_truth"] = names[label]
            result["accuracy"] = sum(p == t for p, t in zip(predicted, truth)) / len(truth)
            result["agreement"] = f"agreement with the annotation: {result['accuracy']:.1%}"
        result["summary"] = summary_line(result)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        json_path = out.with_suffix(".json")
        result["json"], result["png"] = str(json_path), str(out.with_suffix(".png"))
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        draw_timeline(out.with_suffix(".png"), predicted, [s["score"] for s in result["segments"]], names,
                      ground_truth=truth, title=Path(info["video"]).name)
        return result


def parse_annotation(labels: str, video: str | Path) -> tuple[str, int, int]:
    """``Category&VideoID&Quality&Start&End`` given inline, or the row of ``video`` in an annotation file.

    Returns (category, start, end). A file is searched for the video's id (its file name without suffix).
    """
    path = Path(labels)
    if "&" not in labels and path.is_file():
        video_id = Path(video).stem
        rows = [event for event in read_events(path) if event.video_id == video_id]
        if not rows:
            raise OptionError(f"{path}: no annotation row for video id {video_id!r}")
        if len({(e.category, e.start, e.end) for e in rows}) > 1:
            raise OptionError(f"{path}: {len(rows)} different rows for {video_id!r} (AVE repeats some ids with "
                              "different events); pass the row itself: --labels 'Category&id&good&start&end'")
        return rows[0].category, rows[0].start, rows[0].end
    fields = [f.strip() for f in labels.split("&")]
    if len(fields) != 5:
        raise OptionError(f"--labels must be an annotation file or a row 'Category&VideoID&Quality&Start&End', "
                          f"got {labels!r}")
    try:
        return fields[0], int(fields[3]), int(fields[4])
    except ValueError:
        raise OptionError(f"start and end of {labels!r} must be whole seconds") from None


def ground_truth_labels(category: str, start: int, end: int, class_names: list[str], seconds: int) -> list[int]:
    """Per-second AVE labels: the category for start ≤ t < end, background (the last class) elsewhere."""
    if category not in class_names:
        raise OptionError(f"category {category!r} is not one of the model's classes {class_names}")
    k, background = class_names.index(category), len(class_names) - 1
    return [k if start <= t < end else background for t in range(seconds)]


def summary_line(result: dict[str, Any]) -> str:
    """``0-2 s background · 2-7 s Violin (0.83) · …``: runs of one label with their mean score."""
    parts, segments = [], result["segments"]
    t = 0
    while t < len(segments):
        end = t
        while end + 1 < len(segments) and segments[end + 1]["label_index"] == segments[t]["label_index"]:
            end += 1
        mean = sum(s["score"] for s in segments[t:end + 1]) / (end - t + 1)
        parts.append(f"{t}-{end + 1} s {segments[t]['label']} ({mean:.2f})")
        t = end + 1
    return " · ".join(parts)


def _runs(labels: Sequence[int]) -> list[tuple[int, int, int]]:
    """Contiguous stretches of one label: (start, end, label), end exclusive."""
    runs: list[tuple[int, int, int]] = []
    for t, label in enumerate(labels):
        if runs and runs[-1][2] == label and runs[-1][1] == t:
            runs[-1] = (runs[-1][0], t + 1, label)
        else:
            runs.append((t, t + 1, label))
    return runs


def class_colors(num_classes: int, background: int | None) -> list[tuple[float, float, float, float]]:
    """A distinct colour per event class (tab20 then tab20b), light grey for background."""
    from matplotlib import colormaps

    palette = [colormaps["tab20"](i) for i in range(20)] + [colormaps["tab20b"](i) for i in range(20)]
    colors = [palette[i % len(palette)] for i in range(num_classes)]
    if background is not None:
        colors[background] = (0.85, 0.85, 0.85, 1.0)
    return colors


def draw_timeline(
    path: str | Path,
    labels: Sequence[int],
    scores: Sequence[float],
    class_names: Sequence[str],
    ground_truth: Sequence[int] | None = None,
    title: str | None = None,
    background: int | None = -1,
) -> Path:
    """A PNG of per-second predictions: a class strip, the confidence per second, and the ground truth.

    labels / scores: predicted class index and its probability for every second. ground_truth: the
    annotated class per second, drawn as a second strip with the seconds it disagrees with marked.
    background: index of the background class (default: the last one), drawn in grey.
    Works for any length: the figure widens with the number of seconds, up to a cap.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    labels, scores = [int(x) for x in labels], [float(x) for x in scores]
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} labels but {len(scores)} scores")
    if ground_truth is not None:
        ground_truth = [int(x) for x in ground_truth]
        if len(ground_truth) != len(labels):
            raise ValueError(f"{len(ground_truth)} ground-truth seconds for {len(labels)} predicted seconds")
    num_classes = len(class_names)
    background = background % num_classes if background is not None else None
    colors = class_colors(num_classes, background)
    seconds = len(labels)
    strips = [("prediction", labels)] + ([("ground truth", ground_truth)] if ground_truth is not None else [])

    figure = Figure(figsize=(min(max(8.0, 0.45 * seconds), 30.0), 2.4 + 0.8 * len(strips)), layout="constrained")
    FigureCanvasAgg(figure)
    strip_axes, score_axes = figure.subplots(2, 1, sharex=True, height_ratios=[len(strips), 1.6])
    for row, (name, values) in enumerate(strips):
        y = len(strips) - 1 - row
        for start, end, label in _runs(values):
            strip_axes.add_patch(_rectangle(start, y, end - start, colors[label]))
            if end - start >= max(1, seconds // 12):
                strip_axes.text((start + end) / 2, y + 0.5, _short(class_names[label], end - start),
                                ha="center", va="center", fontsize=8, clip_on=True)
    if ground_truth is not None:
        wrong = [t for t in range(seconds) if labels[t] != ground_truth[t]]
        strip_axes.plot([t + 0.5 for t in wrong], [len(strips) - 0.08] * len(wrong), "v", color="crimson",
                        markersize=5, label="disagrees")
        accuracy = 1 - len(wrong) / max(seconds, 1)
        title = f"{title + ' — ' if title else ''}{accuracy:.0%} of {seconds} s agree with the annotation"
    strip_axes.set_ylim(0, len(strips))
    strip_axes.set_yticks([len(strips) - 0.5 - i for i in range(len(strips))], [name for name, _ in strips])
    strip_axes.tick_params(axis="y", length=0)
    if title:
        strip_axes.set_title(title, fontsize=10)

    score_axes.bar([t + 0.5 for t in range(seconds)], scores, width=0.9, color=[colors[x] for x in labels],
                   edgecolor="black", linewidth=0.3)
    score_axes.set_ylim(0, 1)
    score_axes.set_ylabel("confidence")
    score_axes.set_xlim(0, seconds)
    score_axes.set_xlabel("time (s)")
    step = max(1, seconds // 20)
    score_axes.set_xticks(range(0, seconds + 1, step))

    shown = sorted(set(labels) | set(ground_truth or []))
    figure.legend(handles=[Patch(color=colors[i], label=class_names[i]) for i in shown], loc="outside right upper",
                  fontsize=8, frameon=False, ncol=(len(shown) + 9) // 10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def _rectangle(x: float, y: float, width: float, color) -> object:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y + 0.05), width, 0.9, facecolor=color, edgecolor="white", linewidth=1.0)


def _short(name: str, width_seconds: int) -> str:
    """The class name cut to what fits in a run of ``width_seconds`` (about 6 characters a second)."""
    room = max(3, 6 * width_seconds)
    name = name.split(",")[0]
    return name if len(name) <= room else name[: room - 1] + "…"
