"""The precision a CPU run should use by default."""

from __future__ import annotations

import torch

from avadapt.kernels import cpu_supports_bf16


def default_precision() -> str:
    """``"bf16-mixed"`` on a GPU or on a CPU with native bf16, else ``"32-true"``.

    GPUs older than Ampere have no bf16; Lightning then says so itself when the run starts.
    """
    if torch.cuda.is_available() or cpu_supports_bf16():
        return "bf16-mixed"
    return "32-true"
