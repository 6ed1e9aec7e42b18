"""Weak relevance labels from click/impression logs (docs/clicks.md).

* ``log``: the click-log schema (JSONL / Parquet), its reader and writer;
* ``pbm``: the position-based model fitted by EM; ``cascade``: the cascade model;
* ``simulate``: click logs simulated from real labels with a known position bias;
* ``labels``: fitted relevance → graded labels on a RankingSet, and agreement with true labels.
"""

from mmrank.clicks.cascade import CascadeModel
from mmrank.clicks.log import ClickLog, read_click_log, write_click_log
from mmrank.clicks.pbm import PositionBasedModel

MODELS = {PositionBasedModel.kind: PositionBasedModel, CascadeModel.kind: CascadeModel}

__all__ = ["CascadeModel", "ClickLog", "MODELS", "PositionBasedModel", "read_click_log", "write_click_log"]
