from evalkit.models.embedded import EMBEDDED
from evalkit.models.loader import LoadedModel, load_model

__all__ = ["EMBEDDED", "LoadedModel", "load_model"]
