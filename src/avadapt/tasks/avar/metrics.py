"""Recognition's mean average precision for multi-label lists, over the classes a split shows."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_average_precision
from torchmetrics.utilities import dim_zero_cat


class PresentClassesMAP(Metric):
    """Macro mean average precision over the classes with at least one positive clip in the split, as AudioSet-style
    evaluations average it: a class the split never shows has no precision to speak of, where torchmetrics' macro
    average would count it as 0. update(logits (N, C), multi-hot targets (N, C)); nan when no class has a positive."""

    full_state_update = False

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        if logits.shape != targets.shape or logits.shape[-1] != self.num_classes:
            raise ValueError(f"logits and targets must both be (N, {self.num_classes}), got {tuple(logits.shape)} "
                             f"and {tuple(targets.shape)}")
        self.scores.append(logits.detach().float())
        self.targets.append(targets.detach().long())

    def compute(self) -> torch.Tensor:
        scores, targets = dim_zero_cat(self.scores), dim_zero_cat(self.targets)
        present = [c for c in range(self.num_classes) if bool(targets[:, c].any())]
        if not present:
            return torch.tensor(float("nan"))
        return torch.stack([binary_average_precision(scores[:, c], targets[:, c]) for c in present]).mean()
