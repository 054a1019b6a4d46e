"""The AVVP demo (``avadapt demo --task avvp``): a small synthetic LLP whose events are only heard, only seen or
both (:mod:`avadapt.tasks.avvp.synth`), trained from weak labels alone. STG-CMA with the HAN head on a tiny random
ViT against the frozen-backbone probe with the same head, both from the same head weights; the ten F figures of
each on the test split, and the three-track picture of one test clip from the exported adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from avadapt.tasks.avvp.dataset import LLPAnnotations
from avadapt.tasks.avvp.metrics import FIGURES
from avadapt.tasks.avvp.synth import synthesize_llp
from avadapt.tasks.demo_spec import DemoRun, DemoSpec, Predictor, register_demo

FIGURE_TITLES = {
    "segment_audio": "segment audio F", "segment_visual": "segment visual F",
    "segment_audio_visual": "segment audio-visual F", "segment_type_av": "segment Type@AV",
    "segment_event_av": "segment Event@AV", "event_audio": "event audio F", "event_visual": "event visual F",
    "event_audio_visual": "event audio-visual F", "event_type_av": "event Type@AV", "event_event_av": "event Event@AV"}
HEADLINE = "segment_type_av"  # the reference selects its checkpoints on it


@register_demo
@dataclass
class AVVPDemo(DemoSpec):
    """Sizes of the AVVP demo; the defaults keep it within ten minutes on two CPU cores."""

    clips: int = 240
    num_classes: int = 8
    val_fraction: float = 0.15
    test_fraction: float = 0.25  # a larger test split than LLP's, so the comparison is not decided by noise
    image_size: int = 48  # test_vit has 16-pixel patches: 3 × 3 tokens
    depth: int = 3  # of test_vit's 6 blocks: twice the steps in the same time
    num_mel_bins: int = 64
    target_frames: int = 48
    ratio: str = "1/4"
    head_dim: int = 64  # the HAN head's width (the baseline's 512 on features 8 times wider)
    ffn_dim: int = 128
    epochs: int = 20
    # Weak labels: the head first learns that most classes are absent and only later leaves that all-negative
    # start, after about 6 to 10 epochs here; small batches and constant rates (after a one-epoch warm-up) get it
    # there sooner than decaying ones. Adapters at 1e-4, every head at 1e-3, as in the AVQA demo.
    batch_size: int = 4
    lr: float = 1e-4
    head_lr_factor: float = 10.0
    probe_lr: float = 1e-3

    task: ClassVar[str] = "avvp"
    real_weights_hint: ClassVar[str] = """\
With real weights (not downloadable here), train on the real LLP instead, e.g.
  avadapt prepare avvp --root LLP_ROOT --out LLP_CACHE --image-size 224 --workers 8
  avadapt fit --config configs/avvp/stg_cma_clip_vit_b16.yaml --data.root LLP_ROOT --data.cache_dir LLP_CACHE \\
      --model.weights /path/to/clip_vit_b16.safetensors
See docs/tasks.md."""
    data_marker: ClassVar[str] = "AVVP_train.csv"
    data_banner: ClassVar[str] = ("synthesising {clips} clips of 10 s ({num_classes} classes; every event heard, "
                                  "seen or both; training clips with weak labels only)")
    metrics: ClassVar[dict[str, str]] = {HEADLINE: FIGURE_TITLES[HEADLINE],
                                         **{name: FIGURE_TITLES[name] for name in FIGURES if name != HEADLINE}}
    metric_description: ClassVar[str] = (
        "LLP's F-scores (AVVP-ECCV20 utils/eval_metrics.py): per test video, segment-level and event-level (IoU ≥ "
        "0.5) F over the classes predicted or present, for what is heard, seen and both; Type@AV their mean, "
        "Event@AV audio and visual counts pooled; each the mean over the videos")
    same_initial_head: ClassVar[bool] = True  # the two runs differ in the adapters only

    def synthesize(self, root: Path) -> Any:
        return synthesize_llp(root, clips=self.clips, seed=self.seed, num_classes=self.num_classes,
                              size=self.video_size, split_fractions=(self.val_fraction, self.test_fraction))

    def runs(self) -> list[DemoRun]:
        return [DemoRun("stg_cma", "STG-CMA", method_options={"ratio": self.ratio, "drop_path": 0.0},
                        banner="training STG-CMA with the HAN head (weak labels; selection on val segment Type@AV, "
                               "then one test)"),
                DemoRun("probe", "probe", "probe_",
                        banner="training the frozen-backbone probe (HAN head only) for comparison")]

    def model_options(self, method: str, method_options: dict[str, Any], root: Path) -> dict[str, Any]:
        return {"backbone": self.backbone, "method_options": method_options,
                "task_options": {"dim": self.head_dim, "ffn_dim": self.ffn_dim},
                "backbone_options": {"img_size": self.image_size, "depth": self.depth}, "audio_front_end": "vit",
                "fbank": {"num_mel_bins": self.num_mel_bins, "target_frames": self.target_frames},
                "lr_decay": "step", "step_gamma": 1.0}  # constant rates after the warm-up

    def verdict(self, figures: dict[str, Any]) -> str:
        """Whether STG-CMA is ahead of the probe on the headline figure, and on how many of the ten."""
        ours, theirs = figures[f"test_{HEADLINE}"], figures[f"probe_test_{HEADLINE}"]
        leads = sum(figures[f"test_{name}"] > figures[f"probe_test_{name}"] for name in FIGURES)
        side = "ahead of" if ours > theirs else "NOT ahead of"
        return (f"STG-CMA is {side} the probe on test {FIGURE_TITLES[HEADLINE]} ({ours:.3f} vs {theirs:.3f}); it "
                f"leads on {leads} of the {len(FIGURES)} figures")

    def predict(self, root: Path, out: Path, predict: Predictor, ask: Predictor) -> dict[str, Any]:
        """The test clip with the most kinds of event (only heard, only seen, both), against its dense rows."""
        annotations = LLPAnnotations.load(root)

        def kinds(filename: str) -> tuple[int, int, str]:
            audio, visual = annotations.segment_labels(filename)  # (C, T)
            heard, seen = audio.any(-1), visual.any(-1)
            mixed = int((heard & ~seen).any()) + int((seen & ~heard).any()) + int((heard & seen).any())
            return -mixed, -int(heard.sum() + seen.sum()), filename

        row = min(annotations.rows("test"), key=lambda r: kinds(r.filename))
        result = predict(root / "LLP_dataset" / "video" / f"{row.video_id}.mp4", out / "prediction",
                         ground_truth=str(root))
        print(f"{row.filename}: {result['summary']}\n{result['agreement']}", flush=True)
        return {"video": str(result["video"]), "f_scores": result["f_scores"], "png": result["png"]}
