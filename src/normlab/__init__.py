"""normlab: does batch normalization hinder training for my model, data and batch size?"""

from normlab.errors import NormlabError
from normlab.norms import make_norm, norm_names
from normlab.surgery import freeze_bn, recalibrate_bn, swap_norm

__version__ = "0.1.0"

__all__ = [
    "NormlabError",
    "__version__",
    "freeze_bn",
    "make_norm",
    "norm_names",
    "recalibrate_bn",
    "swap_norm",
]
