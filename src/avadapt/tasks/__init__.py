"""One module per task: head, loss, metrics; importing registers them in ``avadapt._registry.TASKS``."""

from avadapt.tasks import ave  # noqa: F401  (registration side effect)
