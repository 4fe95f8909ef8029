"""alva: adversarial machine learning for PyTorch."""

__version__ = "0.1.0"

from alva.models.generative import (  # noqa: E402
    ConditionalGenerativeModel,
    GenerativeModel,
    is_generative_model,
)

__all__ = ["ConditionalGenerativeModel", "GenerativeModel", "__version__", "is_generative_model"]
