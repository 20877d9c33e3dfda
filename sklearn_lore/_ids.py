"""Checks on user ids shared by the estimator and the evaluation tools."""

import numpy as np


def require_hashable(ids, name="user_ids"):
    """Raise a TypeError naming the first unhashable id (a list, dict, set, array).

    Ids are looked up by hash everywhere (grouping, prediction, splitting). Typed numpy
    arrays (numbers, strings) are hashable by construction and are not scanned; for
    object arrays only the distinct Python types are examined.
    """
    if not isinstance(ids, np.ndarray) or ids.dtype == object:
        for kind in {type(v) for v in ids}:
            if getattr(kind, "__hash__", None) is None:
                row = next(i for i, v in enumerate(ids) if type(v) is kind)
                raise TypeError(
                    f"{name} must be hashable (str, int, tuple, ...); row {row} holds a "
                    f"{kind.__name__}: {ids[row]!r:.60}."
                )
    return ids
