"""Modality tokens of the neural rerankers: which columns of which matrix each token reads.

``token_layout`` turns a data set's modality names and dims into the token list; with
``token_groups="auto"`` a ``letor`` modality is split into its field groups so that attention has
several tokens to weigh instead of one:

* 46 columns (LETOR 4.0: MQ2007/MQ2008): body, anchor, title, url, whole document + link/structure;
* 45 columns (LETOR 3.0 OHSUMED): title, abstract, title+abstract — 15 features each. The
  OHSUMED table lists 10 low-level features per field (columns 1–10 title, 11–20 abstract, 21–30
  title+abstract) and then 5 high-level ones per field (BM25, log BM25, three LMIR scores:
  31–35, 36–40, 41–45), so a field's token is its 10 low-level plus its 5 high-level columns.

``describe_layout`` says in one line which layout was chosen, and warns when the whole input is a
single token (an unsplit matrix: modality attention and V2's modality switches then do nothing).
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
OHSUMED_FIELDS = ("title", "abstract", "title_abstract")
LETOR45_GROUPS = {f: list(range(10 * i, 10 * i + 10)) + list(range(30 + 5 * i, 35 + 5 * i)) for i, f in enumerate(OHSUMED_FIELDS)}
# Width of a `letor` matrix -> (the layout's name, its field groups), for token_groups="auto".
AUTO_LETOR_LAYOUTS = {46: ("LETOR 4.0 fields", LETOR46_GROUPS), 45: ("LETOR 3.0 OHSUMED fields", LETOR45_GROUPS)}


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
        return AUTO_LETOR_LAYOUTS[dim][1] if (mod == "letor" and dim in AUTO_LETOR_LAYOUTS) else None
    if token_groups in (None, "none"):
        return None
    return token_groups.get(mod)


def describe_layout(tokens: list[TokenSpec], input_dims: dict[str, int] | None = None) -> str:
    """One line naming the tokens a model reads, e.g. ``6 tokens (LETOR 4.0 fields): letor.body,
    ...``; for a single token it says why that makes token attention moot and what to do.

    Example:
        >>> describe_layout([TokenSpec("features", "features", "features", tuple(range(300)))])
        'notice: 1 token (features, 300 columns): the input is not split, so token attention and the V2 modality switches have nothing to weigh — give model.params.token_groups to split it'
    """
    if len(tokens) == 1:
        t = tokens[0]
        return (f"notice: 1 token ({t.name}, {len(t.columns)} columns): the input is not split, so token attention "
                f"and the V2 modality switches have nothing to weigh — give model.params.token_groups to split it")
    named = ""
    width = (input_dims or {}).get("features.letor")
    if width in AUTO_LETOR_LAYOUTS and [t.name for t in tokens if t.modality == "letor"] == \
            [f"letor.{g}" for g in AUTO_LETOR_LAYOUTS[width][1]]:
        named = f" ({AUTO_LETOR_LAYOUTS[width][0]})"
    return f"{len(tokens)} tokens{named}: " + ", ".join(t.name for t in tokens)

