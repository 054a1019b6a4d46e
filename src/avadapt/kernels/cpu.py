"""What the CPU offers, asked of torch's private probes where there is no public one."""

from __future__ import annotations

import torch


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX-512 BF16 or AMX), where bf16 autocast pays off;
    False where this torch build has neither probe."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)
