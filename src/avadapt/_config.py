"""Config dataclasses that validate themselves and round-trip through JSON (the PEFT habit)."""

from __future__ import annotations

import dataclasses
from typing import Any, Self


class JSONConfig:
    """Mixin for dataclass configs: ``to_dict`` / ``from_dict`` with unknown keys rejected by name."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"{cls.__name__} has no option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]


def positive_int(value: Any) -> bool:
    """A whole number ≥ 1; ``True`` is an ``int`` to Python but never a size."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
