"""AVQA's prediction on a whole video, read as the dataset reads one (T moments over the whole file): the top
answers to a question, a picture of where the model looked and a JSON result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avadapt.errors import OptionError
from avadapt.tasks.avqa.questions import QuestionVocabulary, tokenize_question
from avadapt.tasks.base import Task, TaskHead

NEEDS_A_QUESTION = ("AVQA answers a question about a clip: `avadapt ask VIDEO QUESTION` or "
                    "`avadapt predict VIDEO --question QUESTION`")


def top_answers(probabilities: torch.Tensor, answers: Sequence[str], top: int = 3) -> list[tuple[str, float]]:
    """The ``top`` most probable answers with their probabilities; ``answers``: the answer vocabulary, index =
    class of ``probabilities`` (num_answers,)."""
    if len(answers) != probabilities.shape[-1]:
        raise OptionError(f"{len(answers)} answer names for a head with {probabilities.shape[-1]} answers")
    values, classes = probabilities.topk(min(top, len(answers)))
    return [(answers[int(k)], float(p)) for p, k in zip(values, classes)]


class AVQAPrediction(Task):
    """AVQA's results: the ``top`` answers, the question's tokens and unknown words, the temporal attention and
    ``OUT.png`` (:func:`draw_answer`); ground_truth: the expected answer, scored against the top one."""

    segment_seconds = None
    prediction_kind = "the top answers to a question (--question) and a picture of where the model looked"
    prediction_facts = ("video", "question", "tokens", "unknown_words")

    def prediction_inputs(self, head: TaskHead, question: str | None = None
                          ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The question, tokenised as the dataset's are, as (1, L) ids of the head's vocabulary; reports the
        question, its ``tokens``, its ``unknown_words`` (encoded as the unknown token, not an error) and the
        ``grounding_grid`` the picture draws the attention on."""
        if question is None:
            raise OptionError(NEEDS_A_QUESTION)
        if not question.strip():
            raise OptionError("the question is empty")
        vocabulary = QuestionVocabulary(head.config.question_vocab)
        try:
            tokens = tokenize_question(question)
            ids = vocabulary.encode(tokens, max_len=head.config.max_question_tokens)
        except ValueError as error:  # too many words, an empty word, an unknown <placeholder>
            raise OptionError(f"the question cannot be encoded: {error}") from None
        return {"question": torch.tensor([ids])}, {"question": question, "tokens": tokens,
                                                   "unknown_words": vocabulary.unknown_words(tokens),
                                                   "grounding_grid": list(head.grounding_grid)}

    def segment_probabilities(self, outputs: Any) -> dict[str, torch.Tensor]:
        """What the result keeps of the one window's ``AVQAOutputs``: the answer probabilities (num_answers,), the
        grounding attention (T, N) and the temporal attention over the segments, ``visual`` and ``audio`` (T,)."""
        return {"answers": outputs.logits[0].float().softmax(-1).cpu(),
                "grounding": outputs.grounding[0].float().cpu(),
                "visual": outputs.temporal_visual[0].float().cpu(), "audio": outputs.temporal_audio[0].float().cpu()}

    def prediction_result(self, probabilities: dict[str, torch.Tensor], frames: torch.Tensor, info: dict[str, Any],
                          ground_truth: str | None = None, top: int = 3) -> tuple[dict[str, Any], Callable]:
        if not info.get("class_names"):
            raise OptionError("the adapter directory records no answer vocabulary (class_names)")
        answers = top_answers(probabilities["answers"], info["class_names"], top)
        result: dict[str, Any] = {
            "seconds": info["duration"],
            "answers": [{"answer": a, "probability": round(p, 5)} for a, p in answers],
            "temporal_attention": {m: [round(float(w), 5) for w in probabilities[m]] for m in ("visual", "audio")},
            "summary": f"{info['question']} → " + " · ".join(f"{a} ({p:.2f})" for a, p in answers),
        }
        if ground_truth is not None:
            result["correct"] = bool(answers) and answers[0][0] == ground_truth
            result["agreement"] = f"expected {ground_truth!r}: {'right' if result['correct'] else 'wrong'}"
        return result, lambda out, _: draw_answer(out.with_suffix(".png"), frames, probabilities["grounding"],
                                                  tuple(info["grounding_grid"]), probabilities["audio"],
                                                  probabilities["visual"], info["question"], answers)


def draw_answer(path: str | Path, frames: np.ndarray | torch.Tensor, grounding: np.ndarray | torch.Tensor,
                grid: tuple[int, int], temporal_audio: np.ndarray | torch.Tensor,
                temporal_visual: np.ndarray | torch.Tensor, question: str,
                answers: Sequence[tuple[str, float]]) -> Path:
    """A PNG of the answer and where the model looked.

    Top row: the T frames (T, H, W, 3) uint8, each with its grounding attention (T, N), N = h·w row-major on
    ``grid`` = (h, w), upsampled over the frame on the clip's min–max scale, since the cosine-softmax attention
    stays close to uniform. Below: the temporal attention, visual (T,) then audio (T,), as two strips.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frames_np = np.asarray(frames, dtype=np.uint8)
    weights = np.asarray(grounding, dtype=np.float64)
    visual, audio = np.asarray(temporal_visual, dtype=np.float64), np.asarray(temporal_audio, dtype=np.float64)
    segments, height, width = frames_np.shape[:3]
    h, w = grid
    if weights.shape != (segments, h * w):
        raise ValueError(f"grounding must be (T={segments}, h·w={h * w}), got {weights.shape}")
    if visual.shape != (segments,) or audio.shape != (segments,):
        raise ValueError(f"temporal weights must be (T={segments},), got {visual.shape} and {audio.shape}")
    low, high = weights.min(), weights.max()
    maps = (weights - low) / (high - low) if high > low else np.zeros_like(weights)

    figure = Figure(figsize=(max(1.6 * segments, 6.0), 3.4), layout="constrained")
    FigureCanvasAgg(figure)
    rows = figure.add_gridspec(3, segments, height_ratios=[4, 1, 1])
    for t in range(segments):
        axes = figure.add_subplot(rows[0, t])
        axes.imshow(frames_np[t])
        axes.imshow(maps[t].reshape(h, w), cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear",
                    extent=(-0.5, width - 0.5, height - 0.5, -0.5))
        axes.set(xticks=[], yticks=[])
        axes.set_title(f"{t} s", fontsize=8)
    peak = max(float(visual.max()), float(audio.max()), 1e-12)
    for row, (label, values) in enumerate((("visual", visual), ("audio", audio)), start=1):
        axes = figure.add_subplot(rows[row, :])
        axes.imshow(values[None, :], cmap="viridis", vmin=0, vmax=peak, aspect="auto")
        for t, value in enumerate(values):
            axes.text(t, 0, f"{value:.2f}", ha="center", va="center", fontsize=7,
                      color="white" if value < 0.6 * peak else "black")
        axes.set_yticks([0], [f"{label} over time"], fontsize=8)
        axes.set_xticks(range(segments), [f"{t}" for t in range(segments)] if row == 2 else [], fontsize=7)
    axes.set_xlabel("segment (s)", fontsize=8)
    shown = " · ".join(f"{name} ({probability:.2f})" for name, probability in answers)
    figure.suptitle(f"Q: {question}\nA: {shown}", fontsize=10)
    figure.savefig(path, dpi=100)
    return Path(path)
