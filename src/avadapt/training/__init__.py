"""The training system: LightningModule, callbacks, schedule, CLI over an ``AVModel``."""

from avadapt.models import video_data_config
from avadapt.training.callbacks import AdapterExport, TrainingCurves
from avadapt.training.cost import RunCost
from avadapt.training.module import AVAdaptModule
from avadapt.training.precision import default_precision
from avadapt.training.schedule import warmup_cosine_factor

__all__ = ["AVAdaptModule", "AdapterExport", "RunCost", "TrainingCurves", "default_precision", "video_data_config",
           "warmup_cosine_factor"]
