"""mmrank: multimodal rankers and an integrity audit that really runs.

The verbs (``mmrank.api``): ``load_ranking``, ``fit``, ``load_run``, ``evaluate``,
``evaluate_run``, ``run_audit``; the data classes ``RankingSet``, ``Interactions``, ``ItemFeatures``;
the errors every command turns into one line and exit code 2.
"""

from mmrank.api import evaluate, evaluate_run, fit, load_ranking, load_run, run_audit
from mmrank.data.model import Interactions, ItemFeatures, RankingSet
from mmrank.errors import ConfigError, DataError, MmrankError, UnknownIdError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "Interactions",
    "ItemFeatures",
    "MmrankError",
    "RankingSet",
    "UnknownIdError",
    "__version__",
    "evaluate",
    "evaluate_run",
    "fit",
    "load_ranking",
    "load_run",
    "run_audit",
]
