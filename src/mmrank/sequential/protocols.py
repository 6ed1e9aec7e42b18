"""Split protocols of a recommendation data set: which events train, validate and test a model,
and a sentence saying so that goes into ``metrics.json``, ``fingerprint.json``, the audit and its
report.

A protocol is a function ``(SplitInput) -> (labels (n,), SplitProtocol)`` registered under a name
(``register_protocol``); ``data.split`` in a sequential config picks one (``auto`` by default):

* ``leave_one_out`` — per user, last event → test, second last → valid, in *time*, or in the
  data's *sequence* order when it has positions but no times (SASRec text). Refused for events
  without any order (``order == "row"``: a table without a time column), since the "last" event
  would be the last row, which says nothing about time.
* ``given`` — the data's own split (MMRec's ``x_label``, a ``split`` column): reproduces the
  published protocol exactly.
* ``targets`` — explicit target files (``data.valid_targets``, ``data.test_targets``): the data
  file holds the training events, each target file the held-out events of its stage.
* ``random`` — random leave-one-out per user (seeded by ``data.split_seed``): one random event
  → test, another → valid (users with fewer than 3 events train only). Not a next-item protocol;
  it says so.

``auto``: target files when given, else the data's own split when it ships one, else
leave-one-out when the events have an order (time or sequence), else ``random``, with a notice.

``SplitProtocol.time_checks`` is True only when the events carry real timestamps: then (and only
then) the audit's temporal checks run; otherwise they SKIP with ``time_checks_reason``.
Another helper adds a protocol (e.g. a cold-start split) by registering a function; nothing
else changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from mmrank.data.interaction_data import id_codes
from mmrank.data.model import ROW, SEQUENCE, TIME, Interactions
from mmrank.errors import ConfigError


@dataclass
class SplitInput:
    """What a protocol may look at: all events (the data file's, then the target files'), the
    part labels the data itself gives (own split or target files; None without), a seed and the
    data's path (for messages)."""

    events: Interactions
    given_labels: np.ndarray | None
    seed: int
    source: str
    given_by: str | None = None  # "own split" or "target files": where given_labels came from


@dataclass
class SplitProtocol:
    """How a split was made, for people: ``name``, ``description`` (one sentence), the events'
    ``order``, whether temporal checks apply (``time_checks``) and why not, and ``params``."""

    name: str
    description: str
    order: str
    time_checks: bool
    time_checks_reason: str | None = None
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready fields (what metrics.json and the audit meta hold under ``split``)."""
        return asdict(self)


Protocol = Callable[[SplitInput], tuple[np.ndarray, SplitProtocol]]
PROTOCOLS: dict[str, Protocol] = {}
AUTO = "auto"


def register_protocol(name: str) -> Callable[[Protocol], Protocol]:
    """Decorator: make ``fn`` the protocol ``name`` (a later registration replaces an earlier one)."""
    def wrap(fn: Protocol) -> Protocol:
        PROTOCOLS[name] = fn
        return fn
    return wrap


def protocol_names() -> tuple[str, ...]:
    """``auto`` and every registered protocol name (what ``data.split`` accepts)."""
    return (AUTO, *PROTOCOLS)


NO_TIME = {SEQUENCE: "the data has no timestamps (only each user's order of events)",
           ROW: "the data has no timestamps (rows carry no time)"}


def _protocol(name: str, description: str, inp: SplitInput, **params) -> SplitProtocol:
    order = inp.events.order
    reason = None if order == TIME else (
        f"{NO_TIME[order]}: temporal leakage cannot be measured; the split is {name} ({description})")
    return SplitProtocol(name, description, order, order == TIME, reason, params)


@register_protocol("leave_one_out")
def leave_one_out_protocol(inp: SplitInput) -> tuple[np.ndarray, SplitProtocol]:
    """Per user, last event → test, second last → valid (time or sequence order)."""
    from mmrank.data.splits import leave_one_out

    order = inp.events.order
    if order == ROW:
        raise ConfigError(f"data.split: leave_one_out needs an order of events, and {inp.source} has no timestamp "
                          "(or position) column: its row order is not time — use data.split: random (or given / "
                          "targets), or add a timestamp column")
    split = leave_one_out(inp.events)
    labels = _labels(split.parts, len(inp.events))
    how = "in time" if order == TIME else "in the data's sequence order (no timestamps: each user's order as the file gives it)"
    return labels, _protocol("leave_one_out", f"leave-one-out {how}: per user, last event → test, second last → valid",
                             inp, users_all_train=split.params["users_all_train"])


@register_protocol("given")
def given_protocol(inp: SplitInput) -> tuple[np.ndarray, SplitProtocol]:
    """The data's own split labels (0 train, 1 valid, 2 test), as they are."""
    if inp.given_labels is None or inp.given_by != "own split":
        raise ConfigError(f"data.split: given needs the data's own split, and {inp.source} has none (no x_label / split "
                          "column) — use data.split: auto, leave_one_out, random, or target files")
    return inp.given_labels, _protocol("given", f"the data's own split (x_label: 0 train, 1 valid, 2 test) of {inp.source}",
                                       inp, **_counts(inp.given_labels))


@register_protocol("targets")
def targets_protocol(inp: SplitInput) -> tuple[np.ndarray, SplitProtocol]:
    """Training events from the data file, held-out events from the target files."""
    if inp.given_labels is None or inp.given_by != "target files":
        raise ConfigError("data.split: targets needs data.test_targets (and optionally data.valid_targets): "
                          "files of the held-out (user, item) events")
    return inp.given_labels, _protocol("targets", f"explicit target files (training events from {inp.source})",
                                       inp, **_counts(inp.given_labels))


@register_protocol("random")
def random_protocol(inp: SplitInput) -> tuple[np.ndarray, SplitProtocol]:
    """Random leave-one-out per user, seeded: one random event → test, another → valid."""
    users, _ = id_codes(inp.events.user_ids)
    rng = np.random.default_rng(inp.seed)
    key = rng.random(len(users))  # a random rank inside each user's events
    order = np.lexsort((key, users))
    counts = np.bincount(users)
    from_end = np.cumsum(counts)[users[order]] - 1 - np.arange(len(order))
    part = np.where(from_end == 0, 2, np.where(from_end == 1, 1, 0))
    part[counts[users[order]] < 3] = 0
    labels = np.empty(len(order), dtype=np.int64)
    labels[order] = part
    return labels, _protocol(
        "random", f"random leave-one-out per user (seed {inp.seed}): one random event → test, another → valid; "
                  "not a next-item protocol", inp, seed=int(inp.seed), users_all_train=int((counts < 3).sum()))


def choose_protocol(requested: str, inp: SplitInput) -> tuple[str, str | None]:
    """(protocol name, a notice for the user or None) for ``data.split`` = ``requested``."""
    if requested != AUTO:
        if requested not in PROTOCOLS:
            raise ConfigError(f"data.split: unknown split {requested!r} — allowed: {list(protocol_names())}")
        return requested, None
    if inp.given_by == "target files":
        return "targets", None
    if inp.given_labels is not None:
        return "given", None
    if inp.events.order != ROW:
        return "leave_one_out", None
    return "random", (f"{inp.source} has no timestamp column: split = random leave-one-out per user "
                      f"(seed {inp.seed}), not time; set data.split to choose another")


def split_events(requested: str, inp: SplitInput) -> tuple[np.ndarray, SplitProtocol, str | None]:
    """Part labels (0 train, 1 valid, 2 test) of every event, the protocol and a notice (or None)."""
    name, notice = choose_protocol(requested, inp)
    labels, protocol = PROTOCOLS[name](inp)
    return np.asarray(labels, dtype=np.int64), protocol, notice


def _labels(parts: dict[str, np.ndarray], n: int) -> np.ndarray:
    labels = np.zeros(n, dtype=np.int64)
    labels[parts["valid"]] = 1
    labels[parts["test"]] = 2
    return labels


def _counts(labels: np.ndarray) -> dict:
    c = np.bincount(labels, minlength=3)
    return {"events": {"train": int(c[0]), "valid": int(c[1]), "test": int(c[2])}}
