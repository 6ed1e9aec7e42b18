"""Modality tokens of the neural rerankers: which columns of which matrix each token reads.

``token_layout`` turns a data set's modality names and dims into the token list; with
``token_groups="auto"`` a 46-d ``letor`` modality is split into its LETOR 4.0 feature groups
(body, anchor, title, url, whole document + link/structure features), so attention has six
tokens to weigh instead of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mmrank.data.model import RankingSet
from mmrank.errors import ConfigError, DataError

LETOR_FIELDS = ("body", "anchor", "title", "url", "whole")
# LETOR 4.0: features 1-40 are 8 measures (TF, IDF, TF*IDF, DL, BM25, LMIR.ABS/DIR/JM) × 5 fields
# in field order; 41-46 are PageRank, inlinks, outlinks, URL slashes, URL length, child pages.
LETOR46_GROUPS = {f: [m * 5 + i for m in range(8)] for i, f in enumerate(LETOR_FIELDS)} | {"link": list(range(40, 46))}


@dataclass(frozen=True)
class TokenSpec:
    """One input token: which matrix it reads (``source`` + ``modality``) and which columns."""

    name: str
    modality: str
    source: Literal["features", "query_features"]
    columns: tuple[int, ...]


def token_layout(rset: RankingSet, token_groups: Any, modalities: list[str] | None, use_query_features: bool) -> list[TokenSpec]:
    """The token list a model builds from a data set's modality names and dims."""
    names = sorted(rset.features) if modalities is None else list(modalities)
    missing = [m for m in names if m not in rset.features]
    if missing:
        raise DataError(f"the model wants modalities {missing} that the data lacks", hint=f"the data has {sorted(rset.features)}")
    tokens: list[TokenSpec] = []
    sources = [("features", m, rset.features[m].shape[1]) for m in names]
    if use_query_features:
        sources += [("query_features", m, d) for m, d in sorted(rset.query_feature_dims.items())]
    for source, mod, dim in sources:
        groups = _groups_for(mod, dim, token_groups)
        if groups is None:
            tokens.append(TokenSpec(mod if source == "features" else f"query.{mod}", mod, source, tuple(range(dim))))
            continue
        for gname, cols in groups.items():
            bad = [c for c in cols if not 0 <= c < dim]
            if bad:
                raise ConfigError(f"model.params.token_groups.{mod}.{gname}: columns {bad} outside 0..{dim - 1}")
            tokens.append(TokenSpec(f"{mod}.{gname}", mod, source, tuple(int(c) for c in cols)))
    if not tokens:
        raise DataError("no modality to build tokens from", hint="the data needs at least one feature matrix")
    return tokens


def _groups_for(mod: str, dim: int, token_groups: Any) -> dict[str, list[int]] | None:
    if token_groups == "auto":
        return LETOR46_GROUPS if (mod == "letor" and dim == 46) else None
    if token_groups in (None, "none"):
        return None
    return token_groups.get(mod)
