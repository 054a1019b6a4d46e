"""One package per task (``ave``, ``avs``, ``avqa``, ``avvp``, ``avar``): head, loss, metrics, datasets, prepare job,
synthetic data, prediction and demo spec, on the contract of ``base.py``. Importing a task package registers its
task and datasets; a package outside avadapt declares ``[project.entry-points."avadapt.tasks"] name =
"its_package"`` and is found as the built-in ones are (``avadapt._registry.load_task_plugins``).
"""

from avadapt.tasks import avar, ave, avqa, avs, avvp  # noqa: F401  (registration side effect)
from avadapt.tasks.base import Task, TaskHead, get_task

DEFAULT_TASK = "ave"
"""The task of commands that take one and are given none (``avadapt params``, ``avadapt demo``): event
localisation, the benchmark every method's paper reports."""

__all__ = ["DEFAULT_TASK", "Task", "TaskHead", "get_task"]
