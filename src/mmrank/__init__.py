"""mmrank: multimodal rankers and an integrity audit that really runs."""

from mmrank.data.model import Interactions, ItemFeatures, RankingSet
from mmrank.errors import ConfigError, DataError, MmrankError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "Interactions",
    "ItemFeatures",
    "MmrankError",
    "RankingSet",
    "__version__",
]
