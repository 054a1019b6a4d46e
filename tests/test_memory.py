"""CPU heap tuning (avadapt.kernels.heap): huge pages before the first tensor, heap trims in training only."""

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
from avadapt.kernels import heap, tune_heap_for_training
from tests.conftest import TINY_AUDIO, TINY_FRAMES, TINY_IMAGE

THP_ON = Path("/sys/kernel/mm/transparent_hugepage/enabled").exists() and "[never]" not in Path(
    "/sys/kernel/mm/transparent_hugepage/enabled").read_text()


def in_fresh_interpreter(code: str, **env: str) -> dict:
    """The JSON a fresh interpreter prints after ``code``, without the huge-page switch inherited."""
    environ = {k: v for k, v in os.environ.items() if k not in ("THP_MEM_ALLOC_ENABLE", heap.HEAP_TUNING_VARIABLE)}
    return json.loads(subprocess.run([sys.executable, "-c", code], env={**environ, **env}, check=True,
                                     capture_output=True, text=True).stdout)


def huge_pages_after(imports: str, **env: str) -> dict:
    return in_fresh_interpreter(
        f"{imports}; import json, os; from avadapt.kernels import enable_huge_pages; on = enable_huge_pages(); "
        "print(json.dumps({'on': on, 'switch': os.environ.get('THP_MEM_ALLOC_ENABLE')}))", **env)


@pytest.mark.skipif(not THP_ON, reason="the kernel gives no transparent huge pages here")
def test_huge_pages_take_effect_when_the_cli_asks_before_any_tensor():
    """Importing the CLI creates no tensor, so the switch it applies before training still counts."""
    assert huge_pages_after("import avadapt.cli") == {"on": True, "switch": "1"}


def test_huge_pages_are_reported_off_once_torch_has_allocated():
    assert huge_pages_after("import torch; torch.ones(1 << 22)")["on"] is False


def test_the_environment_switch_turns_huge_pages_off():
    assert huge_pages_after("import avadapt.cli", AVADAPT_CPU_HEAP_TUNING="0") == {"on": False, "switch": None}


@pytest.mark.parametrize(("command", "prepared"), [(["fit", "--help"], True), (["params", "--help"], False),
                                                  (["validate", "--help"], False)])
def test_only_training_commands_prepare_the_process_for_cpu_training(command, prepared):
    code = ("import json, sys\nfrom avadapt import cli\ncalls = []\n"
            "cli._prepare_cpu_training = lambda: calls.append(1)\n"
            f"try:\n    cli.main({command!r})\nexcept SystemExit:\n    pass\n"
            "print(json.dumps({'prepared': bool(calls)}), file=sys.__stdout__)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == {"prepared": prepared}


def test_no_huge_pages_where_a_gpu_will_train(monkeypatch):
    from avadapt import cli, kernels

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(kernels, "enable_huge_pages", lambda: calls.append(1))
    cli._prepare_cpu_training()
    assert calls == []


class FakeLibc:
    def __init__(self):
        self.trims, self.mallopts = [], []

    def malloc_trim(self, pad):
        self.trims.append(pad)

    def mallopt(self, option, value):
        self.mallopts.append((option, value))
        return 1


def test_heap_tuning_trims_after_the_last_frozen_ffns_in_training_forwards_and_is_undone(tiny_options, monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(heap, "_libc", lambda: libc)
    model = avadapt.create_model(method="stg_cma", **tiny_options)
    blocks = model.backbone.blocks  # test_vit: 6
    tuning = tune_heap_for_training(model.backbone, last_fraction=0.5)
    assert len(tuning.trim_hooks) == 3
    mmap_threshold, trim_threshold = -3, -1  # glibc's mallopt parameter numbers (malloc.h)
    assert libc.mallopts == [(mmap_threshold, 32 << 20), (trim_threshold, 32 << 20)]
    video = torch.randn(1, TINY_FRAMES, 3, TINY_IMAGE, TINY_IMAGE)
    audio = torch.randn(1, TINY_FRAMES, 1, TINY_AUDIO.num_mel_bins, TINY_AUDIO.num_frames)
    with torch.no_grad():
        model(video, audio)
    assert libc.trims == []
    trims_when_block_ran = []
    for index, handle in enumerate(blocks):
        handle.block.norm2.register_forward_hook(
            lambda *_, index=index: trims_when_block_ran.append((index, len(libc.trims))))
    model(video, audio)
    assert libc.trims == [0] * 6  # each of the last three blocks runs its FFN once per modality
    assert [trims for index, trims in trims_when_block_ran if index < 3] == [0] * 6  # none before them
    tuning.undo()
    assert tuning.trim_hooks == [] and libc.mallopts[2:] == [(mmap_threshold, 128 << 10), (trim_threshold, 128 << 10)]
    model(video, audio)
    assert len(libc.trims) == 6
    with pytest.raises(ValueError, match="last_fraction"):
        tune_heap_for_training(model.backbone, last_fraction=0)


def test_heap_tuning_switched_off_by_the_environment(tiny_options, monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(heap, "_libc", lambda: libc)
    monkeypatch.setenv(heap.HEAP_TUNING_VARIABLE, "0")
    tuning = tune_heap_for_training(avadapt.create_model(method="probe", **tiny_options).backbone)
    assert (tuning.fixed_mmap_threshold, tuning.trim_hooks, libc.mallopts) == (False, [], [])


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_free_heap_pages_go_back_to_the_system_when_trimmed():
    """2048 heap blocks of 64 KiB, every other one freed: the freed 64 MiB lie between live blocks, so glibc
    can neither merge them nor shrink the heap's top, and they stay resident after ``free``;
    ``return_free_heap`` must hand (nearly) all of them back."""
    from avadapt.kernels.heap import _libc, return_free_heap

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
