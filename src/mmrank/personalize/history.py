"""Preference profiles from interaction files: each key (a user, or a query = user at a cut time)
learns from the items its user rated **before** the key's cut, so nothing of the period being
ranked leaks into its weights."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from mmrank.data.model import Interactions, ItemFeatures
from mmrank.data.user_history import UserTimeline
from mmrank.errors import DataError
from mmrank.personalize.attributes import AttributeSpec
from mmrank.personalize.profiles import PreferenceProfiles


def item_attribute_rows(items: ItemFeatures, spec: AttributeSpec) -> tuple[np.ndarray, dict[str, int]]:
    """``(n_items, A)`` attributes of every item and the row of each item id."""
    if spec.modality not in items.features:
        raise DataError(f"the items have no {spec.modality!r} modality", hint=f"they have {sorted(items.features)}")
    return spec.matrix(items.features[spec.modality]), items.row_of()


def profiles_before(inter: Interactions, items: ItemFeatures, spec: AttributeSpec,
                    cuts: Mapping[str, tuple[str, float]], alpha: float = 10.0) -> PreferenceProfiles:
    """Profiles keyed like ``cuts`` (``key -> (user id, cut time)``), each from the user's ratings
    before the cut. The population rate is pooled over all the histories used.

    Raises:
        DataError: when a rated item has no item features.
    """
    attrs, row_of = item_attribute_rows(items, spec)
    timeline = UserTimeline(inter)
    histories = {}
    for key, (user, tau) in cuts.items():
        ids = inter.item_ids[timeline.before(str(user), tau)]
        missing = [i for i in ids if i not in row_of]
        if missing:
            raise DataError(f"rated item {missing[0]!r} has no item features", hint="use the item features of the same data set")
        histories[key] = attrs[[row_of[i] for i in ids]]
    return PreferenceProfiles.fit(spec, histories, alpha)
