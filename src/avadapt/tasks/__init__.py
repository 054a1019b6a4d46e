"""One package per task (``ave``, ``avs``, ``avqa``): head, loss, metrics, datasets for each native layout, the
prepare job, the synthetic generator, prediction and the demo spec; ``base.py`` is the contract the generic
machinery reads. Importing a task package registers its task in ``TASKS`` and its datasets in ``DATASETS``;
tasks from other installed packages are found through the ``avadapt.tasks`` entry point group
(``avadapt._registry.load_task_plugins``).
"""

from avadapt.tasks import ave, avqa, avs  # noqa: F401  (registration side effect)
from avadapt.tasks.base import Task, TaskHead, get_task

DEFAULT_TASK = "ave"
"""The task of commands that take one and are given none (``avadapt params``, ``avadapt demo``): event
localisation, the benchmark every method's paper reports."""

__all__ = ["DEFAULT_TASK", "Task", "TaskHead", "get_task"]
