"""The AVQA demo (``avadapt demo --task avqa``): a small synthetic MUSIC-AVQA (real mp4 performances and questions
from the real templates, in the released json format; audio questions need the sound, visual ones the picture).
STG-CMA with the AVST head on a tiny random ViT against the frozen-backbone probe, both from the same head;
accuracy overall, per question type and per modality group; the exported adapter is asked one test question.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from avadapt.tasks.avqa.questions import QUESTION_TYPE_NAMES, TYPE_GROUPS, read_avqa_json
from avadapt.tasks.avqa.synth import synthesize_avqa
from avadapt.tasks.demo_spec import DemoRun, DemoSpec, Predictor, register_demo


@register_demo
@dataclass
class AVQADemo(DemoSpec):
    """Sizes of the AVQA demo; the defaults keep it within a few minutes on two CPU cores."""

    clips: int = 150
    questions_per_clip: int = 16
    num_mel_bins: int = 64
    target_frames: int = 48
    depth: int = 2  # of test_vit's 6 blocks
    ratio: str = "1/4"
    epochs: int = 30
    batch_size: int = 32  # questions: two videos with all their questions, each video encoded once
    items_per_clip: int = 16
    # rates chosen on val accuracy (docs/tasks.md)
    lr: float = 1e-4
    head_lr_factor: float = 10.0  # the head at 1e-3, as the probe's

    task: ClassVar[str] = "avqa"
    real_weights_hint: ClassVar[str] = """\
With real weights (not downloadable here), train the paper's rows on the real MUSIC-AVQA instead, e.g.
  avadapt prepare avqa --root MUSIC_AVQA --media-root MUSIC_AVQA_VIDEOS --out AVQA_CACHE --image-size 224 \\
      --audio-front-end stg_cma_swin_avqa --workers 8
  avadapt fit --config configs/avqa/stg_cma_swin_l.yaml --data.root MUSIC_AVQA --data.cache_dir AVQA_CACHE \\
      --model.weights /path/to/swin_large_patch4_window7_224_22k.safetensors
See docs/tasks.md."""
    data_marker: ClassVar[str] = "avqa-train.json"
    data_banner: ClassVar[str] = "synthesising {clips} performances of 10 s with {questions_per_clip} questions each"
    prepare_banner: ClassVar[str] = "decoding every video once (frames + fbank cache)"
    predict_banner: ClassVar[str] = "asking the exported adapter a test question"
    metrics: ClassVar[dict[str, str]] = {"accuracy": "accuracy"}
    metric_description: ClassVar[str] = "top-1 answer accuracy over the test questions; groups pool their types' questions"
    # On so small a set a head's start alone moves the accuracy by several points: every method starts from one.
    same_initial_head: ClassVar[bool] = True

    def synthesize(self, root: Path) -> Any:
        return synthesize_avqa(root, clips=self.clips, seed=self.seed, size=self.video_size,
                               questions_per_clip=self.questions_per_clip)

    def runs(self) -> list[DemoRun]:
        return [DemoRun("stg_cma", "STG-CMA", method_options={"ratio": self.ratio, "drop_path": 0.0},
                        banner="training STG-CMA with the AVST head (selection on val accuracy, then one test)"),
                DemoRun("probe", "probe", "probe_",
                        banner="training the frozen-backbone probe (head only) for comparison")]

    def model_options(self, method: str, method_options: dict[str, Any], root: Path) -> dict[str, Any]:
        return {"backbone": self.backbone, "method_options": method_options,
                "task_options": {"question_vocab": str(root)},  # built from avqa-train.json, saved with the adapter
                "backbone_options": {"img_size": self.image_size, "depth": self.depth}, "audio_front_end": "vit",
                "fbank": {"num_mel_bins": self.num_mel_bins, "target_frames": self.target_frames}}

    def data_options(self) -> dict[str, Any]:
        return {"items_per_clip": self.items_per_clip}

    def summaries(self, result: dict[str, Any]) -> dict[str, Any]:
        """The test accuracies per question type and per modality group."""
        names = [f"type/{name}" for name in QUESTION_TYPE_NAMES] + [*TYPE_GROUPS, "accuracy"]
        keys = {name.replace("type/", ""): f"test_{name.replace('/', '_')}" for name in names}
        return {"test_accuracy_by_type": {name: result[key] for name, key in keys.items() if key in result}}

    def predict(self, root: Path, out: Path, predict: Predictor, ask: Predictor) -> dict[str, Any]:
        """The first test question, against its annotated answer."""
        question = read_avqa_json(root / "avqa-test.json")[0]
        answer = ask(root / f"{question.video_id}.mp4", question.text, out=out / "prediction")
        best = answer["answers"][0]
        print(f"{question.video_id}: {question.text} → {best['answer']} ({best['probability']:.2f}); "
              f"annotated: {question.answer}", flush=True)
        return {"video": answer["video"], "question": question.text, "annotated": question.answer,
                "answers": answer["answers"], "png": answer["png"]}
