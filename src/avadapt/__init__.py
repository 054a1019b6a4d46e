"""avadapt: frozen image transformers turned into audio-visual learners by small trained modules."""

from avadapt.backbones import create_backbone
from avadapt.models import AVModel, create_model, parameter_report
from avadapt.types import AVBatch, AVFeatures

__all__ = ["AVBatch", "AVFeatures", "AVModel", "create_backbone", "create_model", "parameter_report"]
__version__ = "0.1.0"
