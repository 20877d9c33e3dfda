"""Checks on user ids shared by the estimator and the evaluation tools."""

import numpy as np

# the id score_responses and best_of_n give rows of the population (user_id=None): no
# user is fitted under it, and it is not a user id of the wrong type
POPULATION_ID = "__sklearn_lore_population__"


def require_hashable(ids, name="user_ids"):
    """Raise a TypeError naming the first unhashable id (a list, dict, set, array).

    Ids are looked up by hash everywhere (grouping, prediction, splitting). Typed numpy
    arrays (numbers, strings) are hashable by construction and are not scanned; for
    object arrays only the distinct Python types are examined.
    """
    if not isinstance(ids, np.ndarray) or ids.dtype == object:
        kinds = {type(v) for v in ids}
        for kind in kinds:
            if getattr(kind, "__hash__", None) is None:
                row = next(i for i, v in enumerate(ids) if type(v) is kind)
                _unhashable(name, row, ids[row])
        if tuple in kinds:  # a tuple is hashable only if what it holds is
            try:
                set(ids)  # every id hashed at C speed; the row is looked for on failure
            except TypeError:
                for row, value in enumerate(ids):
                    if type(value) is tuple:
                        try:
                            hash(value)
                        except TypeError:
                            _unhashable(name, row, value)
    return ids


def _unhashable(name, row, value):
    raise TypeError(
        f"{name} must be hashable (str, int, tuple, ...); row {row} holds a "
        f"{type(value).__name__}: {value!r:.60}."
    )
