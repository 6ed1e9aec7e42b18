"""Request and response bodies of the HTTP service (they make the published OpenAPI schema).

A request is one query exactly as one line of a JSONL file (native schema or the seeds' Step5
shape); the fields named here are documented and type-checked, others are allowed (e.g. more
``<name>_features``) and handed to ``mmrank.data.io_jsonl``, which owns the field mapping.
"""

from __future__ import annotations

import functools
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, TypeAdapter
from typing_extensions import NotRequired, TypedDict  # pydantic needs typing_extensions' TypedDict before Python 3.12

from mmrank.serve.reorder import ALL_REASONS, FALLBACK, RERANKED, SHADOW

# The schema's types are meant literally: pydantic's lax mode would take `true` for 1 and "2" for 2.0,
# so ids, labels, scores and features are strict (a JSON int is still a fine number).
# A float id (1.0) is kept a float and echoed exactly as sent, never turned into 1.
Id = Union[StrictStr, StrictInt, StrictFloat]
Number = StrictFloat
Vector = Union[list[Number], Number]


class CandidateIn(TypedDict):
    """One candidate, native schema or Step5 fields (other fields are kept and passed on)."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]

    candidate_id: Annotated[Id, Field(description="unique within the query")]
    features: NotRequired[Annotated[dict[str, Vector] | None, Field(description="native schema: modality name -> vector")]]
    label: NotRequired[Annotated[Number | None, Field(description="native schema: relevance grade (optional when serving)")]]
    baseline_score: NotRequired[Annotated[Number | None, Field(description="native schema: the first-stage score")]]
    image_features: NotRequired[Annotated[list[Number] | None, Field(description="Step5: modality 'image'")]]
    text_features: NotRequired[Annotated[list[Number] | None, Field(description="Step5: modality 'text'")]]
    compliance_score: NotRequired[Annotated[Number | None, Field(description="Step5: modality 'compliance'")]]
    relevance_score: NotRequired[Annotated[Number | None, Field(description="Step5: label (optional when serving)")]]
    raw_score: NotRequired[Annotated[Number | None, Field(description="Step5: baseline score")]]


@functools.lru_cache(maxsize=8)
def rerank_request(max_candidates: int | None = None) -> TypeAdapter:
    """The request body's validator (``validate_json``: parse and check in one pass;
    ``json_schema``: the published schema), a query of 1 to ``max_candidates`` candidates.

    A TypedDict, not a model: validating gives back the plain dict, its ids exactly as sent. The
    bound is part of the schema so that a huge list of bad candidates stops at the limit instead
    of collecting an error per candidate (a huge list of good ones is refused before parsing, by
    the raw-byte count of ``request_parse.quick_candidate_count``)."""

    class RerankRequest(TypedDict):
        """One query, exactly as one line of a JSONL file."""

        __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]

        query_id: Id
        query_text: NotRequired[str | None]
        domain: NotRequired[str | None]
        query_features: NotRequired[dict[str, Vector] | None]
        candidates: Annotated[list[CandidateIn], Field(min_length=1, max_length=max_candidates,
                                                       description="in the first-stage order")]

    return TypeAdapter(RerankRequest)


class RankedCandidate(BaseModel):
    """One candidate of the answer, in answer order."""

    candidate_id: Id
    score: float | None = Field(description="model score; null when the model gave none for it")
    rank: int = Field(description="1-based position in this response")
    original_rank: int = Field(description="1-based position in the request")


Status = Literal[RERANKED, FALLBACK, SHADOW]
Reason = Literal[ALL_REASONS]


class RerankResponse(BaseModel):
    """The answer to /rerank: always a permutation of the request's candidates."""

    query_id: Id
    status: Status
    reason: Reason = Field(description="why this order: see docs/serving.md, 'Statuses and reasons'")
    detail: str = ""
    uncertainty: float | None = None
    model_id: str
    model_version: str
    candidates: list[RankedCandidate]


class HealthResponse(BaseModel):
    """What is served and since when; names no server path (it is open without a token)."""

    status: Literal["ok"]
    model_id: str
    model_kind: str
    model_version: str
    uptime_s: float
    model_loaded_s_ago: float
    mmrank_version: str
    forced_reload: bool = Field(False, description="the model was swapped in with force despite failing the reload check")
    reload_problems: list[str] = Field([], description="what the reload check found, for a forced reload")
    pid: int | None = Field(None, description="the answering server process (one of several with --workers N)")


class ReloadRequest(BaseModel):
    """Which run folder (under the models root) to serve from now on."""

    run_dir: str = Field(min_length=1, description="run folder under the server's models root (relative to it)")
    force: StrictBool = Field(False, description="swap even when the new model fails the check that it can score current traffic")


class FieldError(BaseModel):
    """One field that failed (dotted path, ``body`` for the body as a whole) and why."""

    field: str
    message: str


class ErrorResponse(BaseModel):
    """Every non-200 answer: what is wrong and what to do, and the fields concerned."""

    detail: str
    errors: list[FieldError] = []
