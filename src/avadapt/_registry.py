"""Name → factory registries, one per axis (backbone family, method, task, dataset).

Adding a method or task is one `@METHODS.register("name")` line in its own package; every
front door (`create_model`, the CLI, the test matrix) reads these tables instead of a list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from avadapt.errors import OptionError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of factories; an unknown name is an :class:`~avadapt.errors.OptionError` listing the known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise OptionError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


METHODS: Registry = Registry("method")
TASKS: Registry = Registry("task")
DATASETS: Registry = Registry("dataset")
