"""Audio-visual event localisation (AVE): one of 28 events or background for every 1 s segment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from avadapt._config import JSONConfig
from avadapt._registry import TASKS
from avadapt.errors import OptionError
from avadapt.types import AVFeatures

BACKGROUND_CLASSES = 1
LOSSES = ("cross_entropy", "bce_on_softmax")


@dataclass
class AVEConfig(JSONConfig):
    """Head of STG-CMA's AVE code: concat[audio; video] → Linear 512 → Dropout 0.5 → Linear 29, per segment.

    num_classes counts the background class (28 events + 1 for AVE).
    loss: ``cross_entropy`` (STG-CMA's, with one-hot targets) or ``bce_on_softmax`` (LAVISH's: binary
        cross-entropy between the softmax output and the one-hot targets, averaged over segments and classes).
    """

    num_classes: int = 29
    hidden_dim: int = 512
    dropout: float = 0.5
    loss: str = "cross_entropy"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise OptionError(f"AVE loss must be one of {LOSSES}, got {self.loss!r}")
        if self.num_classes < 2:
            raise ValueError(f"AVE needs at least one event class plus background, got {self.num_classes}")


@TASKS.register("ave")
class AVEHead(nn.Module):
    """Per-segment classifier over the concatenated per-segment features of the active modalities.

    Both modalities: the config's two-layer MLP. One modality (audio-only or visual-only): LayerNorm + Linear,
    the reference's single-branch head. Linear layers start as the reference's: truncated normal weights
    (std 0.02), zero biases.
    """

    config_class = AVEConfig

    def __init__(self, feature_dim: int, modalities: tuple[str, ...], config: AVEConfig):
        super().__init__()
        self.config = config
        self.modalities = tuple(m for m in ("audio", "video") if m in modalities)  # concat order: audio, video
        if len(self.modalities) == 1:
            self.classifier = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, config.num_classes))
        else:
            self.classifier = nn.Sequential(
                nn.Linear(feature_dim * len(self.modalities), config.hidden_dim),
                nn.Dropout(config.dropout),
                nn.Linear(config.hidden_dim, config.num_classes),
            )
        for layer in self.classifier:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)

    def forward(self, features: AVFeatures) -> torch.Tensor:
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
        """Segment accuracy over all segments of a split (ECCV'18 ``compute_acc``), and per class.

        ``accuracy``: micro average = (1 / (T·N)) Σ_i Σ_t 1[argmax_c p_itc = y_it]. ``class_accuracy``:
        recall of each class over its segments (a vector of ``num_classes``; 0 for a class absent from the split).
        """
        classes = self.config.num_classes
        return MetricCollection({
            "accuracy": MulticlassAccuracy(classes, average="micro"),
            "class_accuracy": MulticlassAccuracy(classes, average=None),
        })

    def metric_inputs(self, logits: torch.Tensor, targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, C) logits and (B, T) labels → flat (B·T, C) float scores and (B·T,) labels."""
        return logits.flatten(0, 1).float(), targets["labels"].flatten()

    def predict(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(…, C) logits → (…,) class index and its softmax probability."""
        scores, labels = logits.float().softmax(-1).max(-1)
        return labels, scores


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
