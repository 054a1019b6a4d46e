"""The action-recognition demo (``avadapt demo --task avar``): a small synthetic Kinetics-Sounds (real mp4 files of
6–10 s and the lists in the native layout; most classes are a picture and a sound that only together name the
action, a few are recognisable from either stream, and the other seconds carry one-modality distractors).
AV-STFP and STG-CMA against the frozen-backbone probe on the same tiny random ViT, all three from the same head;
top-1 and top-5 accuracy; the exported AV-STFP adapter predicts one test clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from avadapt.tasks.avar.dataset import CLASS_FILE, KINETICS_SOUNDS_LISTS, KineticsSoundsDataset
from avadapt.tasks.avar.synth import synthesize_avar
from avadapt.tasks.demo_spec import DemoRun, DemoSpec, Predictor, register_demo


@register_demo
@dataclass
class AVARDemo(DemoSpec):
    """Sizes of the action-recognition demo; the defaults keep it within ten minutes on two CPU cores."""

    clips: int = 240
    num_classes: int = 16  # a 4 × 3 grid of picture-and-sound pairs and 4 solo actions
    test_fraction: float = 0.25
    val_fraction: float = 0.15  # of the training list, held out for model selection
    image_size: int = 48  # test_vit has 16-pixel patches: 3 × 3 tokens
    num_mel_bins: int = 64
    target_frames: int = 48
    ratio: str = "1/4"  # STG-CMA's bottleneck: 16 of test_vit's 64 channels
    epochs: int = 20
    lr: float = 1e-3
    head_lr_factor: float = 1.0

    task: ClassVar[str] = "avar"
    real_weights_hint: ClassVar[str] = """\
With real weights (not downloadable here), train the poster's rows on the real Kinetics-Sounds instead, e.g.
  avadapt prepare avar --root KS_LISTS --media-root KS_VIDEOS --out KS_CACHE --image-size 224 --workers 8
  avadapt fit --config configs/avar/av_stfp_clip_vit_b16.yaml --data.root KS_LISTS --data.cache_dir KS_CACHE \\
      --model.weights /path/to/clip_vit_b16.safetensors
See docs/tasks.md."""
    data_marker: ClassVar[str] = KINETICS_SOUNDS_LISTS["train"]
    data_banner: ClassVar[str] = "synthesising {clips} clips of 6-10 s ({num_classes} actions)"
    metrics: ClassVar[dict[str, str]] = {"accuracy": "top-1", "top5_accuracy": "top-5"}
    metric_description: ClassVar[str] = ("top-1 / top-5 accuracy: test clips whose class is the most probable / "
                                         "among the five most probable")
    # On so small a set a head's start alone moves the accuracy: every run starts from the probe's head.
    same_initial_head: ClassVar[bool] = True

    def synthesize(self, root: Path) -> Any:
        return synthesize_avar(root, clips=self.clips, seed=self.seed, num_classes=self.num_classes,
                               size=self.video_size, test_fraction=self.test_fraction)

    def runs(self) -> list[DemoRun]:
        return [DemoRun("av_stfp", "AV-STFP", banner="training AV-STFP (prompts + head; selection on val top-1, "
                                                     "then one test)"),
                DemoRun("stg_cma", "STG-CMA", "stg_cma_", method_options={"ratio": self.ratio, "drop_path": 0.0},
                        banner="training STG-CMA (adapters + head) on the same backbone"),
                DemoRun("probe", "probe", "probe_", banner="training the frozen-backbone probe (head only)")]

    def model_options(self, method: str, method_options: dict[str, Any], root: Path) -> dict[str, Any]:
        return {"backbone": self.backbone, "method_options": method_options,
                "task_options": {"num_classes": self.num_classes},
                "backbone_options": {"img_size": self.image_size}, "audio_front_end": "vit",
                "fbank": {"num_mel_bins": self.num_mel_bins, "target_frames": self.target_frames}}

    def data_options(self) -> dict[str, Any]:
        return {"dataset_options": {"val_fraction": self.val_fraction}}

    def predict(self, root: Path, out: Path, predict: Predictor, ask: Predictor) -> dict[str, Any]:
        """The first test clip of the list, against its annotated class."""
        lists = KineticsSoundsDataset.load_lists(root, val_fraction=self.val_fraction)
        row = lists.rows("test")[0]
        annotated = lists.classes[row.labels[0]]
        result = predict(root / f"{row.clip}.mp4", out / "prediction", ground_truth=annotated)
        print(f"{row.clip}: {result['summary']}\n{result['agreement']} (classes in {root / CLASS_FILE})", flush=True)
        return {"video": str(result["video"]), "annotated": annotated, "rank": result["rank"],
                "classes": result["classes"][:5], "png": result["png"]}
