"""One module per task: head, loss, metrics and the task's declarations (``base.py``: the contract);
importing registers them in ``avadapt._registry.TASKS``."""

from avadapt.tasks import ave, ave_cmbs, avqa, avs  # noqa: F401  (registration side effect)
from avadapt.tasks.base import Task, TaskHead, get_task

__all__ = ["Task", "TaskHead", "get_task"]
