"""Shared fixtures: tiny randomly initialised backbones so the CPU test matrix stays fast."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avadapt.backbones import AudioEmbeddingConfig

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

TINY_VIT = "test_vit"
TINY_IMAGE = 32
TINY_AUDIO = AudioEmbeddingConfig(num_mel_bins=32, num_frames=48)
TINY_FRAMES = 3


@pytest.fixture
def tiny_options() -> dict:
    """Keyword arguments of ``create_model`` for a 64-wide, 32-pixel ViT and 32×48 spectrograms."""
    return {"backbone": TINY_VIT, "backbone_options": {"img_size": TINY_IMAGE, "audio": TINY_AUDIO},
            "num_frames": TINY_FRAMES}


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


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
