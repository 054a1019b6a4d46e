"""Shared fixtures: tiny randomly initialised backbones so the CPU test matrix stays fast."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avadapt.backbones import AudioEmbeddingConfig

TINY_VIT = "test_vit"
TINY_IMAGE = 32
TINY_AUDIO = AudioEmbeddingConfig(num_mel_bins=32, num_frames=48)
TINY_FRAMES = 3


@pytest.fixture
def tiny_options() -> dict:
    """Keyword arguments of ``create_model`` for a 64-wide, 32-pixel ViT and 32×48 spectrograms."""
    return {"backbone": TINY_VIT, "task": "ave",
            "backbone_options": {"img_size": TINY_IMAGE, "audio": TINY_AUDIO}, "num_frames": TINY_FRAMES}


@pytest.fixture
def random_inputs():
    """A function ``(batch=2, seed=0) -> (video, audio)`` of seeded random inputs at the tiny model's sizes:
    video ``(B, T, 3, 32, 32)``, audio ``(B, T, 1, 32, 48)``."""

    def make(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        video = torch.randn(batch, TINY_FRAMES, 3, TINY_IMAGE, TINY_IMAGE, generator=g)
        audio = torch.randn(batch, TINY_FRAMES, 1, TINY_AUDIO.num_mel_bins, TINY_AUDIO.num_frames,
                            generator=g)
        return video, audio

    return make


@pytest.fixture
def one_thread():
    """Run tiny models on one intra-op thread: on a shared 2-core machine, spinning OpenMP workers of
    microsecond-sized ops cost more than they save. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ave" / "tiny_cpu.yaml"


@pytest.fixture(scope="module")
def ave_root(tmp_path_factory) -> Path:
    """A small synthetic AVE (48 clips of 16 events + background, tiny_cpu's 17 classes), one per test module."""
    from avadapt.tasks.ave.synth import synthesize_ave

    root = tmp_path_factory.mktemp("ave")
    synthesize_ave(root, clips=48, seed=1, num_classes=16, size=32)
    return root


def tiny_fit_args(root: Path, out: Path, *extra: str) -> list[str]:
    """``avadapt fit`` of the tiny config on ``root`` into ``out``, in this process, in fp32, plus ``extra``."""
    return ["fit", "--config", str(TINY_CONFIG), "--data.root", str(root), "--data.num_workers", "0",
            "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false",
            "--trainer.precision", "32-true", *extra]
