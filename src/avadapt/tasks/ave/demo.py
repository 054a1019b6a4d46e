"""The AVE demos (``avadapt demo``, the default; ``avadapt demo --method dg_sct``) on a small synthetic AVE whose
events are visible AND audible, while background seconds often carry a class in one modality only
(:mod:`avadapt.tasks.ave.synth`), so segment accuracy rewards fusing the two streams over time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from avadapt.tasks.ave.dataset import AVE_SEGMENTS, AVEAnnotations
from avadapt.tasks.ave.synth import synthesize_ave
from avadapt.tasks.demo_spec import RANDOM, DemoRun, DemoSpec, Predictor, register_demo


@torch.no_grad()
def set_mel_statistics(model: nn.Module, batches: Iterable[Any]) -> None:
    """Give the random HTS-AT encoder's ``bn0`` the train split's mean and variance of every mel bin, as a trained
    one holds AudioSet's: the ``htsat`` log-mel is in dB and leaves normalisation to ``bn0``, so with its initial
    0 / 1 every patch would be dominated by the spectrogram's offset of tens of dB."""
    total = squares = count = 0
    for batch in batches:
        mel = batch.audio.flatten(0, 2).transpose(1, 2).flatten(0, 1).double()  # (B, T, 1, F, L) → (B*T*L, F)
        total, squares, count = total + mel.sum(0), squares + mel.square().sum(0), count + len(mel)
    mean = total / count
    model.audio_backbone.bn0.running_mean.copy_(mean)
    model.audio_backbone.bn0.running_var.copy_(squares / count - mean.square())


@dataclass
class SyntheticAVEDemo(DemoSpec):
    """What both AVE demos share: the synthetic clips, their cache, and the test clip predicted."""

    clips: int = 320
    # Sixteen classes: with four, a head on the random frozen features already tells the classes apart and
    # the comparison only measures noise; with many, telling them apart needs adapted features.
    num_classes: int = 16
    val_fraction: float = 0.15
    test_fraction: float = 0.25  # a larger test split than AVE's, so the comparison is not decided by noise
    image_size: int = 48  # test_vit has 16-pixel patches: 3 × 3 tokens

    task: ClassVar[str] = "ave"
    data_marker: ClassVar[str] = "Annotations.txt"
    data_banner: ClassVar[str] = "synthesising {clips} clips of 10 s ({num_classes} event classes + background)"
    metrics: ClassVar[dict[str, str]] = {"accuracy": "accuracy"}
    metric_description: ClassVar[str] = ("segment accuracy: correct 1 s segments / all segments of the split "
                                         "(AVE's metric)")

    def synthesize(self, root: Path) -> Any:
        return synthesize_ave(root, clips=self.clips, seed=self.seed, num_classes=self.num_classes,
                              size=self.video_size, split_fractions=(self.val_fraction, self.test_fraction))

    def predict(self, root: Path, out: Path, predict: Predictor, ask: Predictor) -> dict[str, Any]:
        """The test clip whose event covers about half of it, so that both the event and background seconds show
        in the picture, against its annotation."""
        annotations = AVEAnnotations.load(root)
        test_events = [annotations.events[r] for r in annotations.rows("test")]
        event = min(test_events, key=lambda e: (abs(e.end - e.start - AVE_SEGMENTS / 2), e.row))
        result = predict(root / "AVE" / f"{event.video_id}.mp4", out / "prediction",
                         ground_truth="&".join(map(str, event.key)))
        print(f"{event.video_id}: {result['summary']}\nannotated: {event.category} at {event.start}-{event.end} s; "
              f"agreement {result['accuracy']:.0%}", flush=True)
        return {"video": str(result["video"]), "accuracy": result["accuracy"], "png": result["png"]}


@dataclass
class AVEDemo(SyntheticAVEDemo):
    """Sizes of the AVE demo; the defaults keep it to a few minutes on two CPU cores."""

    num_mel_bins: int = 64
    target_frames: int = 48  # fbank frames per 1 s segment (10 ms hop, cut from ~98)
    preset: str | None = None
    ratio: str | None = "1/4"  # bottleneck width 16 of test_vit's 64 channels (the presets give 2–8)
    head_lr_factor: float = 1.0

    real_weights_hint: ClassVar[str] = """\
With real weights (not downloadable here), train the paper's rows on the real AVE instead, e.g.
  avadapt prepare ave --root AVE_ROOT --out AVE_CACHE --image-size 224 --workers 8
  avadapt fit --config configs/ave/clip_vit_b16_tiny.yaml --data.root AVE_ROOT --data.cache_dir AVE_CACHE \\
      --model.weights /path/to/clip_vit_b16.safetensors     (or --model.pretrained true where timm can fetch)
See docs/training.md."""

    def runs(self) -> list[DemoRun]:
        bottleneck = {"ratio": self.ratio} if self.ratio is not None else {"preset": self.preset}
        return [DemoRun("stg_cma", "STG-CMA", method_options={**bottleneck, "drop_path": 0.0},
                        banner="training STG-CMA (adapters + head; model selection on val, then one test)"),
                DemoRun("probe", "probe", "probe_",
                        banner="training the frozen-backbone probe (head only) for comparison")]

    def model_options(self, method: str, method_options: dict[str, Any], root: Path) -> dict[str, Any]:
        return {"backbone": self.backbone, "method_options": method_options,
                "task_options": {"num_classes": self.num_classes + 1},
                "backbone_options": {"img_size": self.image_size},
                "fbank": {"num_mel_bins": self.num_mel_bins, "target_frames": self.target_frames}}


@dataclass
class DGSCTDemo(SyntheticAVEDemo):
    """Sizes of the DG-SCT demo (the AVE demo's clips); the defaults keep it within ten minutes on two CPU cores."""

    audio_backbone: str = "htsat_tiny"  # HTS-AT's fold and Swin layout, 16 wide (avadapt.backbones.htsat)
    # HTS-AT's log-mel shrunk for the CPU: 16 mel bins every 40 ms of each second tiled to 10 s (as DG-SCT's AVE
    # loader tiles it), 251 frames stretched to 256 and folded into a 64 × 64 image, 16 × 16 patches. The synthetic
    # audio is 16 kHz, so the mel filters stop at its Nyquist frequency.
    fbank: dict[str, Any] = field(default_factory=lambda: {
        "num_mel_bins": 16, "frame_shift_ms": 40.0, "target_frames": 251, "high_freq": 8000.0})
    # The CMBS head's widths narrowed to the 64-wide visual and 128-wide audio encoder (DG-SCT: 512 / 128 / 256 on
    # Swin-V2-L's 1536 and HTS-AT's 768), as configs/ave/tiny_cpu_cmbs.yaml does.
    head: dict[str, Any] = field(default_factory=lambda: {
        "head": "cmbs", "video_projection_dim": 64, "audio_projection_dim": 32, "temporal_dim": 64})
    # Rates and epochs chosen on val (docs/training.md, "The CPU demo"); the epochs are what ten minutes allow.
    epochs: int = 8
    lr: float = 3e-4  # DG-SCT's adapters
    head_lr: float = 1e-3  # DG-SCT's CMBS head
    probe_epochs: int = 10

    method: ClassVar[str] = "dg_sct"
    real_weights_hint: ClassVar[str] = """\
With real weights (not downloadable here), train DG-SCT on the real AVE with the paper's encoders instead:
Swin-V2-L beside HTS-AT's AudioSet checkpoint (--model.audio_backbone htsat --model.audio_weights
HTSAT_AudioSet_Saved_1.ckpt) and the htsat audio front end. See docs/training.md."""
    random_note: ClassVar[str] = ("NOTE: the audio encoder (HTS-AT's layout, '{audio_backbone}') is RANDOMLY "
                                  "INITIALISED too.")
    prepare_banner: ClassVar[str] = "decoding every clip once (frames + HTS-AT log-mel cache)"
    calibrate: ClassVar[Callable[[Any, Any], None]] = staticmethod(set_mel_statistics)

    def runs(self) -> list[DemoRun]:
        return [DemoRun("dg_sct", "DG-SCT",
                        banner="training DG-SCT (adapters + CMBS head; model selection on val, then one test)"),
                DemoRun("probe", "probe", "probe_", banner="training the probe on the same frozen encoders and "
                        "CMBS head (head only) for comparison", epochs=self.probe_epochs)]

    def model_options(self, method: str, method_options: dict[str, Any], root: Path) -> dict[str, Any]:
        return {"backbone": self.backbone, "task_options": {"num_classes": self.num_classes + 1, **self.head},
                "backbone_options": {"img_size": self.image_size}, "audio_front_end": "htsat", "fbank": self.fbank,
                "audio_backbone": self.audio_backbone}

    @property
    def head_lr_factor(self) -> float:
        return self.head_lr / self.lr

    def extra_metrics(self) -> dict[str, Any]:
        return {"audio_backbone": f"{self.audio_backbone} ({RANDOM})", "head": "cmbs"}


AVEDemo.variants = {"dg_sct": DGSCTDemo}
register_demo(AVEDemo)
