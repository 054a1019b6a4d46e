"""Name → factory registries, one per axis (backbone family, method, task, dataset).

Adding a method or task is one `@METHODS.register("name")` line in its own package; every
front door (`create_model`, the CLI, the test matrix) reads these tables instead of a list.

Tasks (and the datasets they read) are plugins: the first lookup in ``TASKS`` or ``DATASETS`` imports the
built-in task packages (``avadapt.tasks``) and every module named in the ``avadapt.tasks`` entry point group,
so that a task from another installed package is found as the built-in ones are, with no edit to avadapt.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from avadapt.errors import OptionError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of factories; an unknown name is an :class:`~avadapt.errors.OptionError` listing the known ones."""

    def __init__(self, kind: str, discover: Callable[[], None] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._discover = discover

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def _load(self) -> None:
        if self._discover is not None:
            discover, self._discover = self._discover, None  # once, and not again from inside the imports
            discover()

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise OptionError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries


TASK_PLUGINS = "avadapt.tasks"  # the entry point group (and the package of the built-in tasks)


def load_task_plugins() -> None:
    """Import the built-in task packages and every module the ``avadapt.tasks`` entry point group names;
    importing a task package registers its task and datasets."""
    importlib.import_module(TASK_PLUGINS)
    for entry in entry_points(group=TASK_PLUGINS):
        try:
            entry.load()
        except Exception as error:
            raise ImportError(f"task plugin {entry.name!r} ({entry.value}) failed to load: {error}") from error


METHODS: Registry = Registry("method")
TASKS: Registry = Registry("task", discover=load_task_plugins)
DATASETS: Registry = Registry("dataset", discover=load_task_plugins)
