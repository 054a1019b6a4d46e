"""avadapt: frozen image transformers turned into audio-visual learners by small trained modules.

The public names are imported lazily, so that data worker processes (which import ``avadapt.data``)
do not pay for timm and the model code.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AVBatch": "avadapt.types",
    "AVFeatures": "avadapt.types",
    "AVModel": "avadapt.models",
    "create_backbone": "avadapt.backbones",
    "create_model": "avadapt.models",
    "parameter_report": "avadapt.models",
}

__all__ = ["AVBatch", "AVFeatures", "AVModel", "create_backbone", "create_model", "parameter_report"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'avadapt' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
