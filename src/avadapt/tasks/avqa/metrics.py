"""MUSIC-AVQA's accuracy: top-1 answer accuracy overall, per question type and per modality group.

The reference (``net_grd_avst/main_avst.py:test``) counts, within each of the 9 question types, the questions
answered correctly. A group's figure pools its types' counts (Audio = A-Counting + A-Comparative, Visual =
V-Counting + V-Location, Audio-Visual = the five AV types), and so does the overall one: group rows are not
means of their types. Keeping only per-type counts makes every figure independent of how a split is batched or
ordered, and correct across devices (the counts are summed).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from avadapt.tasks.avqa.questions import QUESTION_TYPE_NAMES, TYPE_GROUPS

# modality group → indices into QUESTION_TYPE_NAMES (the paper's A, V and AV columns)
TYPE_GROUP_INDICES: dict[str, tuple[int, ...]] = {
    group: tuple(QUESTION_TYPE_NAMES.index(name) for name in names) for group, names in TYPE_GROUPS.items()
}


class AVQAAccuracy(Metric):
    """Answer accuracy of MUSIC-AVQA, overall, per modality group and per question type.

    ``update``: (B, num_answers) logits or (B,) predictions, (B,) answers (−1: outside the model's vocabulary,
    always wrong), (B,) indices into ``QUESTION_TYPE_NAMES``. ``compute()``: ``accuracy``, ``audio``,
    ``visual``, ``audio_visual`` and ``type/<name>``; a type or group without questions scores 0.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        count = len(QUESTION_TYPE_NAMES)
        self.add_state("type_correct", torch.zeros(count, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("type_total", torch.zeros(count, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: torch.Tensor, answers: torch.Tensor, question_types: torch.Tensor) -> None:
        if predictions.dim() == 2:
            predictions = predictions.argmax(-1)  # (B,)
        if predictions.dim() != 1 or answers.shape != predictions.shape or question_types.shape != predictions.shape:
            raise ValueError(f"predictions (B,) or (B, C), answers (B,) and question_types (B,) must agree, got "
                             f"{tuple(predictions.shape)}, {tuple(answers.shape)}, {tuple(question_types.shape)}")
        count = len(QUESTION_TYPE_NAMES)
        types = question_types.long()
        if types.numel() and (int(types.min()) < 0 or int(types.max()) >= count):
            raise ValueError(f"question_types must index the {count} types 0..{count - 1}, got values "
                             f"{int(types.min())}..{int(types.max())}")
        correct = (predictions.long() == answers.long()) & (answers >= 0)  # (B,): an answer of −1 is never right
        self.type_correct += torch.bincount(types[correct], minlength=count)
        self.type_total += torch.bincount(types, minlength=count)

    @staticmethod
    def _ratio(correct: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        return correct.float() / total if total > 0 else torch.zeros((), device=correct.device)

    def compute(self) -> dict[str, torch.Tensor]:
        correct, total = self.type_correct, self.type_total
        result = {"accuracy": self._ratio(correct.sum(), total.sum())}
        for group, members in TYPE_GROUP_INDICES.items():
            index = torch.tensor(members, device=correct.device)
            result[group] = self._ratio(correct[index].sum(), total[index].sum())
        for k, name in enumerate(QUESTION_TYPE_NAMES):
            result[f"type/{name}"] = self._ratio(correct[k], total[k])
        return result
