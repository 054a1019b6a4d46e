"""The ``text`` extra (open_clip, transformers) is imported where it is used, so ``import avadapt`` stays light
and a missing extra is one line saying what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from avadapt.errors import AVAdaptError


class MissingExtraError(AVAdaptError, ImportError):
    """A package of an optional extra is not installed."""


def import_optional(module: str) -> ModuleType:
    """``module`` imported, or :class:`MissingExtraError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(f"{module} is not installed ({err}); the text encoders need it: "
                                "pip install 'avadapt[text]'") from None
