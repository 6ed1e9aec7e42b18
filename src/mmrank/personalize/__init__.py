"""Lightweight personalisation (docs/personalisation.md): per-user weights over 3-5 item
attributes learned from history, applied as a reweighting of any reranker's scores.

* ``attributes``: named column groups of an item modality (preset: ML-100K genre groups);
* ``profiles``: the weights (shrunk log-lift over the population rate), saved as JSON;
* ``history``: profiles from an interaction file, each before its cut time;
* ``reweight``: the serving-time reweighting and the choice of its strength on validation;
* ``scored_file``: personalise a ``mmrank rerank`` output file.
"""

from mmrank.personalize.profiles import PreferenceProfiles
from mmrank.personalize.reweight import personalised_scores, tune_beta

__all__ = ["PreferenceProfiles", "personalised_scores", "tune_beta"]
