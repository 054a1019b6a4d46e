"""CPU memory management: allocator settings before the first tensor, the heap guard in training forwards."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import avadapt
from avadapt._memory import return_free_heap_during_training
from tests.conftest import TINY_AUDIO, TINY_FRAMES, TINY_IMAGE


def allocator_settings_after(imports: str) -> dict:
    """configure_cpu_allocator's report in a fresh interpreter that first runs ``imports``."""
    code = (f"{imports}; import json; from avadapt._memory import configure_cpu_allocator; "
            "print(json.dumps(configure_cpu_allocator().__dict__))")
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    return json.loads(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                                     text=True).stdout)


def test_allocator_settings_take_effect_when_the_cli_applies_them():
    """Importing the CLI creates no tensor, so the huge-page switch it applies before training still counts."""
    settings = allocator_settings_after("import avadapt.cli")
    assert settings["fixed_mmap_threshold"] is True  # glibc on our machines; False elsewhere, never an error
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists() and "[never]" not in thp.read_text():
        assert settings["huge_pages"] is True


def test_huge_pages_are_reported_off_once_torch_has_allocated():
    assert allocator_settings_after("import torch; torch.ones(1 << 22)")["huge_pages"] is False


def test_heap_is_trimmed_after_the_last_frozen_ffns_in_training_forwards_only(tiny_options, monkeypatch):
    from avadapt import _memory

    calls = []

    class FakeLibc:
        def malloc_trim(self, pad):
            calls.append(pad)

    monkeypatch.setattr(_memory, "_libc", lambda: FakeLibc())
    model = avadapt.create_model(method="stg_cma", **tiny_options)
    blocks = model.backbone.blocks
    hooks = return_free_heap_during_training(model.backbone, last_fraction=0.5)
    assert len(hooks) == len(blocks) // 2
    video = torch.randn(1, TINY_FRAMES, 3, TINY_IMAGE, TINY_IMAGE)
    audio = torch.randn(1, TINY_FRAMES, 1, TINY_AUDIO.num_mel_bins, TINY_AUDIO.num_frames)
    with torch.no_grad():
        model(video, audio)
    assert calls == []
    trimmed_blocks = []
    for index, handle in enumerate(blocks):
        handle.block.norm2.register_forward_hook(lambda *_, index=index: trimmed_blocks.append((index, len(calls))))
    model(video, audio)
    assert calls == [0] * len(blocks)  # each of the last half of the blocks runs its FFN once per modality
    # no trim before the second half; then one after each FFN norm
    assert [trims for index, trims in trimmed_blocks if index < len(blocks) // 2] == [0] * len(blocks)
    for hook in hooks:
        hook.remove()
    model(video, audio)
    assert len(calls) == len(blocks)
    with pytest.raises(ValueError, match="last_fraction"):
        return_free_heap_during_training(model.backbone, last_fraction=0)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_free_heap_pages_go_back_to_the_system_when_trimmed():
    """2048 heap blocks of 64 KiB, every other one freed: the freed 64 MiB lie between live blocks, so glibc
    can neither merge them nor shrink the heap's top, and they stay resident after ``free``;
    ``return_free_heap`` must hand (nearly) all of them back."""
    from avadapt._memory import _libc, return_free_heap

    libc = _libc()
    assert libc is not None  # glibc on our machines
    malloc, free = libc.malloc, libc.free
    malloc.restype, malloc.argtypes, free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
    size = 64 << 10  # below glibc's smallest mmap threshold (128 KiB): heap blocks
    blocks = [malloc(size) for _ in range(2048)]
    try:
        for block in blocks:
            ctypes.memset(block, 1, size)  # resident
        for block in blocks[1::2]:
            free(block)
        before = _resident_bytes()
        return_free_heap()
        assert before - _resident_bytes() >= 32 << 20  # at least half of the 64 MiB freed
    finally:
        for block in blocks[::2]:
            free(block)
