"""``avadapt ask``: a question about a video, answered by an AVQA adapter, with where the model looked.

The video is read as MUSIC-AVQA's loaders read one: T moments spread over the whole file (T equal parts, the
frame at each part's centre, an audio window from each part's start; ``avadapt.tasks.avqa.dataset``). The question is
tokenised as the dataset's questions are and encoded with the vocabulary the adapter was trained with; a word
the vocabulary lacks becomes the unknown token and is reported, not an error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from avadapt.audio_front_ends import recorded_audio_front_end
from avadapt.data.transforms import VideoTransform, as_video_tensor
from avadapt.errors import OptionError
from avadapt.models import AVModel
from avadapt.tasks import get_task
from avadapt.tasks.avqa.dataset import AVQAMedia, QuestionVocabulary, tokenize_question


@torch.no_grad()
def ask(model: AVModel, video: str | Path, question: str, top: int = 3, out: str | Path | None = None
        ) -> dict[str, Any]:
    """Answer ``question`` about ``video``; returns ``answers`` (top ``top`` with probabilities), the question's
    ``tokens`` and its ``unknown_words``; with ``out``, writes ``OUT.png`` (the frames with the grounding
    attention, the temporal attention strips) and ``OUT.json``."""
    task = get_task(model.spec["task"])
    if not hasattr(task, "answer"):
        raise OptionError(f"this adapter was trained for {model.spec['task']!r}, not question answering; use "
                          "avadapt predict")
    if not question.strip():
        raise OptionError("the question is empty")
    config = getattr(model, "adapter_config", {})
    preprocessing, answers = config.get("preprocessing") or {}, config.get("class_names")
    if not answers:
        raise OptionError("the adapter directory records no answer vocabulary (class_names)")
    fbank = recorded_audio_front_end(preprocessing).fbank
    transform = VideoTransform.from_timm(preprocessing["video"])
    segments = int(preprocessing.get("num_segments") or model.method.num_frames)
    frames, spectrograms, seconds = AVQAMedia(Path(video).stem, "mp4", (Path(video),)).read(fbank, segments)
    pixels = transform.geometry(as_video_tensor(frames))  # (T, 3, H, W) uint8 at the model's size

    head = model.head
    vocabulary = QuestionVocabulary.from_list(head.config.question_vocab)
    tokens = tokenize_question(question)
    try:
        ids = vocabulary.encode(tokens, max_len=head.config.max_question_tokens)
    except ValueError as error:
        raise OptionError(f"the question is too long: {error}") from None
    device = next(model.parameters()).device
    model.eval()
    outputs = model(transform.normalize(pixels)[None].to(device), spectrograms[None].to(device),
                    question=torch.tensor([ids], device=device))
    top_answers = task.answer(outputs, answers, top=top)
    result: dict[str, Any] = {
        "video": str(video),
        "seconds": round(seconds, 3),
        "question": question,
        "tokens": tokens,
        "unknown_words": vocabulary.unknown_words(tokens),
        "answers": [{"answer": a, "probability": round(p, 5)} for a, p in top_answers],
        "temporal_attention": {"visual": [round(float(w), 5) for w in outputs.temporal_visual[0]],
                               "audio": [round(float(w), 5) for w in outputs.temporal_audio[0]]},
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        result["png"] = str(task.draw_answer(
            out.with_suffix(".png"), pixels.permute(0, 2, 3, 1), outputs.grounding[0].float().cpu(),
            head.grounding_grid, outputs.temporal_audio[0].float().cpu(), outputs.temporal_visual[0].float().cpu(),
            question, top_answers))
        result["json"] = str(out.with_suffix(".json"))
        out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    return result


__all__ = ["ask"]
