"""The precision a CPU run should use by default."""

from __future__ import annotations

import torch


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX-512 BF16 or AMX), where bf16 autocast pays off."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def default_precision() -> str:
    """``"bf16-mixed"`` on a GPU or on a CPU with native bf16, else ``"32-true"``.

    GPUs older than Ampere have no bf16; Lightning then says so itself when the run starts.
    """
    if torch.cuda.is_available() or cpu_supports_bf16():
        return "bf16-mixed"
    return "32-true"
