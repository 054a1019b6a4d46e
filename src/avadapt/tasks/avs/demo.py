"""The AVS demo (``avadapt demo --task avs``): a small synthetic AVSBench S4 (real PNG frames, masks and wav files;
every clip shows several objects and only the one whose sound plays is in the mask, so the picture alone cannot
say which to segment). STG-CMA on a tiny random ViT with the AVSBench decoder at a small width, against its
visual-only branch (the same model without the audio stream) and the frozen-backbone probe; one test clip is
assembled into an mp4 and predicted, its masks drawn over the frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from avadapt.data.media import read_audio, write_mp4
from avadapt.tasks.avs.dataset import read_frames
from avadapt.tasks.avs.metadata import AVSMedia, metadata_path, read_s4_metadata
from avadapt.tasks.avs.synth import synthesize_avs
from avadapt.tasks.demo_spec import DemoRun, DemoSpec, Predictor, register_demo


@register_demo
@dataclass
class AVSDemo(DemoSpec):
    """Sizes of the AVS demo; the defaults keep it within a few minutes on two CPU cores.

    The backbone is timm's ``test_vit`` (16-pixel patches: a 64-pixel frame is a 4 × 4 token grid, which the
    decoder's pyramid upsamples); the decoder is the AVSBench decoder at a small width.
    """

    clips: int = 160
    num_classes: int = 4
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    patch_size: int = 16
    num_mel_bins: int = 64
    target_frames: int = 48
    ratio: str = "1/4"
    projection_dims: tuple[int, ...] = (16, 16, 32, 32)
    decoder_dim: int = 32
    audio_dim: int = 32
    epochs: int = 12
    # Rates chosen on val mIoU (docs/tasks.md): the decoder learns best at 3e-3, the adapters at 3e-4.
    lr: float = 3e-4
    head_lr_factor: float = 10.0
    probe_lr: float = 3e-3

    task: ClassVar[str] = "avs"
    real_weights_hint: ClassVar[str] = """\
With real weights (not downloadable here), train the paper's rows on the real AVSBench instead, e.g.
  avadapt prepare avs --setting s4 --root AVSBENCH/Single-source --out S4_CACHE --image-size 224 \\
      --audio-front-end stg_cma_swin_avs --workers 8
  avadapt fit --config configs/avs/stg_cma_swin_l_s4.yaml --data.root AVSBENCH/Single-source \\
      --data.cache_dir S4_CACHE --model.weights /path/to/swin_large_patch4_window7_224_22k.safetensors
See docs/training.md."""
    data_marker: ClassVar[str] = "s4_meta_data.csv"
    data_banner: ClassVar[str] = "synthesising {clips} S4 clips of 5 s ({num_classes} object categories)"
    prepare_banner: ClassVar[str] = "decoding every clip once (frames + fbank + masks cache)"
    metrics: ClassVar[dict[str, str]] = {"miou": "mIoU", "fscore": "F", "fscore_split": "F (split)"}
    metric_description: ClassVar[str] = (
        "mIoU: mean IoU over the annotated test frames (threshold 0.5; an empty mask scores its true-negative "
        "ratio); F: AVSBench's F-score (β² = 0.3), per test batch of 4 clips the max over 255 thresholds of the "
        "mean F curve, averaged over batches; F (split): the same with one mean curve over the whole test split")
    eval_batch_size: ClassVar[int] = 4  # AVSBench's test batch (test.sh), on which its F-score depends

    def data_options(self) -> dict[str, Any]:
        return {"eval_batch_size": self.eval_batch_size}

    def synthesize(self, root: Path) -> Any:
        return synthesize_avs(root, clips=self.clips, seed=self.seed, setting="s4", num_classes=self.num_classes,
                              size=self.video_size, split_fractions=(self.val_fraction, self.test_fraction))

    def runs(self) -> list[DemoRun]:
        adapters = {"ratio": self.ratio, "drop_path": 0.0}
        return [DemoRun("stg_cma", "STG-CMA", method_options=adapters, banner="training STG-CMA (adapters + "
                        "AVSBench decoder; selection on val mIoU, then one test)"),
                DemoRun("stg_cma_visual_only", "visual-only", "visual_only_", "stg_cma",
                        {**adapters, "branches": "visual_only"},
                        banner="training its visual-only branch and the frozen-backbone probe for comparison"),
                DemoRun("probe", "probe", "probe_")]

    def model_options(self, method: str, method_options: dict[str, Any], root: Path) -> dict[str, Any]:
        visual_only = method_options.get("branches") == "visual_only"
        return {"backbone": self.backbone, "method_options": {"num_frames": 5, **method_options},
                "task_options": {"projection_dims": list(self.projection_dims), "decoder_dim": self.decoder_dim,
                                 "audio_dim": self.audio_dim, **({"tpavi_stages": []} if visual_only else {})},
                "backbone_options": {"img_size": self.image_size, "patch_size": self.patch_size},
                "audio_front_end": "vit", "fbank": {"num_mel_bins": self.num_mel_bins,
                                                    "target_frames": self.target_frames}}

    def predict(self, root: Path, out: Path, predict: Predictor, ask: Predictor) -> dict[str, Any]:
        """The first test clip, against its annotated masks."""
        clip = next(c for c in read_s4_metadata(metadata_path(root, "s4")) if c.split == "test")
        media = AVSMedia.of(root, "s4", clip)
        frames = read_frames(media.frames)  # (5, H, W, 3), each shown for its second of the mp4
        video = write_mp4(out / "prediction_input.mp4", np.repeat(frames, 2, axis=0), fps=2,
                          audio=read_audio(media.wav, 16000), sample_rate=16000)
        result = predict(video, out / "prediction", ground_truth=str(media.masks[0].parent))
        print(f"{clip.name}: {result['summary']}\n{result.get('agreement', '')}", flush=True)
        return {"video": str(video), "png": result["png"], "agreement": result.get("agreement")}
