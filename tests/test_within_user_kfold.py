"""WithinUserKFold: folds dealt within every user, for tuning on seen users' pairs."""

import numpy as np
import pandas as pd
import pytest
import sklearn
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import GridSearchCV, cross_val_score

from sklearn_lore import LowRankRewardEstimator
from sklearn_lore.datasets import make_preference_data
from sklearn_lore.model_selection import WithinUserKFold


def folds(cv, ids, X=None):
    X = np.zeros((len(ids), 1)) if X is None else X
    return [(train, test) for train, test in cv.split(X, groups=ids)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=6, max_size=60), st.integers(2, 6),
       st.booleans(), st.integers(0, 1000))
def test_folds_partition_rows_and_spread_every_user(raw, n_splits, shuffle, seed):
    ids = np.asarray(raw)
    if len(ids) < n_splits:
        return
    cv = WithinUserKFold(n_splits, shuffle=shuffle, random_state=seed if shuffle else None)
    split = folds(cv, ids)
    assert len(split) == n_splits == cv.get_n_splits()
    tests = np.concatenate([test for _, test in split])
    assert np.array_equal(np.sort(tests), np.arange(len(ids)))  # each row tested once
    for train, test in split:
        assert np.array_equal(np.sort(np.r_[train, test]), np.arange(len(ids)))
    sizes = [len(test) for _, test in split]
    assert max(sizes) - min(sizes) <= 1
    for user in np.unique(ids):
        per_fold = [np.count_nonzero(ids[test] == user) for _, test in split]
        assert max(per_fold) - min(per_fold) <= 1
        if np.count_nonzero(ids == user) >= 2:
            # a user with two rows or more is in the training part of every fold
            assert all(np.any(ids[train] == user) for train, _ in split)
    # deterministic, and the users' names do not matter (only who is who)
    again = folds(cv, np.asarray([f"user-{i}" for i in raw], dtype=object))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(split, again))


def test_shuffle_changes_the_deal_and_seeds_repeat():
    ids = np.repeat(np.arange(20), 7)
    plain = folds(WithinUserKFold(3), ids)
    one = folds(WithinUserKFold(3, shuffle=True, random_state=1), ids)
    same = folds(WithinUserKFold(3, shuffle=True, random_state=1), ids)
    other = folds(WithinUserKFold(3, shuffle=True, random_state=2), ids)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(one, same))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(one, other))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(one, plain))
    # without shuffling each user's rows go round the folds in row order
    assert plain[0][1][:3].tolist() == [0, 3, 6]


def test_ids_from_the_frame_column_or_groups():
    ids = np.repeat(["a", "b", "c"], 4)
    frame = pd.DataFrame({"x": np.arange(12.0), "who": ids})
    by_column = list(WithinUserKFold(2, user_col="who").split(frame))
    by_groups = folds(WithinUserKFold(2), ids)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(by_column, by_groups))
    # the same ids as groups too (an outer GroupKFold's, routed to an inner search)
    twice = list(WithinUserKFold(2, user_col="who").split(frame, groups=list(ids)))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(twice, by_groups))
    with pytest.raises(ValueError, match="given twice and differ"):
        list(WithinUserKFold(2, user_col="who").split(frame, groups=ids[::-1]))
    with pytest.raises(TypeError, match="groups must be hashable"):
        list(WithinUserKFold(2).split(np.zeros((3, 1)), groups=[{1}, {2}, {1}]))
    with pytest.raises(ValueError, match="needs the user ids"):
        list(WithinUserKFold(2).split(np.zeros((12, 1))))
    with pytest.raises(ValueError, match="needs the user ids"):
        list(WithinUserKFold(2).split(frame))  # no "user_id" column
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        list(WithinUserKFold(2).split(np.zeros((12, 1)), groups=["a", "b", "c"]))
    with pytest.raises(ValueError, match="groups contains missing values"):
        list(WithinUserKFold(2).split(np.zeros((3, 1)), groups=["a", None, "b"]))
    with pytest.raises(ValueError, match="groups must be 1-d"):
        list(WithinUserKFold(2).split(np.zeros((12, 1)), groups=ids[:, None]))
    frame["who"] = frame["who"].where(np.arange(12) != 4, None)
    with pytest.raises(ValueError, match="X\\['who'\\] contains missing values"):
        list(WithinUserKFold(2, user_col="who").split(frame))
    with pytest.raises(ValueError, match="Cannot split 3 rows into n_splits=4"):
        list(WithinUserKFold(4).split(np.zeros((3, 1)), groups=["a", "a", "b"]))


@pytest.mark.parametrize("kwargs, match", [
    ({"n_splits": 1}, "at least 2"),
    ({"n_splits": 2.0}, "at least 2"),
    ({"n_splits": True}, "at least 2"),
    ({"random_state": 0}, "shuffle is False"),
])
def test_constructor_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WithinUserKFold(**kwargs)


@pytest.mark.parametrize("shuffle", ["yes", 1, None])
def test_a_shuffle_that_is_not_a_bool_is_a_type_error_as_in_kfold(shuffle):
    with pytest.raises(TypeError, match="shuffle must be True or False"):
        WithinUserKFold(shuffle=shuffle)


@pytest.fixture(scope="module")
def grouped():
    """Users with their own preferences, rows grouped user by user (as most data come)."""
    X, y, ids = make_preference_data(n_users=30, n_pairs_per_user=24, n_features=8,
                                     n_components=2, weights="free", concentration=0.1,
                                     random_state=3)[:3]
    order = np.argsort(ids, kind="stable")
    frame = pd.DataFrame(X[order], columns=[f"x{j}" for j in range(X.shape[1])])
    frame["user_id"] = ids[order]
    return frame, y[order]


def test_search_scores_seen_users_not_the_population(grouped):
    frame, y = grouped
    est = LowRankRewardEstimator(n_components=2, shrinkage=1.0, random_state=0)
    within = cross_val_score(est, frame, y, cv=WithinUserKFold(3), scoring="roc_auc")
    # the default folds of rows grouped by user hold whole users out: every test row is
    # an unknown user's, scored with the population weights
    default = cross_val_score(est, frame, y, cv=3, scoring="roc_auc")
    for train, test in WithinUserKFold(3).split(frame):
        assert set(frame.user_id.iloc[test]) <= set(frame.user_id.iloc[train])
    assert within.mean() > default.mean() + 0.05
    search = GridSearchCV(est, {"n_components": [1, 2]}, cv=WithinUserKFold(3),
                          scoring="roc_auc").fit(frame, y)
    assert search.best_params_ == {"n_components": 2}


def test_groups_routed_as_metadata(grouped):
    frame, y = grouped
    X, ids = frame.drop(columns="user_id").to_numpy(), frame.user_id.to_numpy()
    with sklearn.config_context(enable_metadata_routing=True):
        est = (LowRankRewardEstimator(n_components=2, shrinkage=1.0, random_state=0)
               .set_fit_request(user_ids=True).set_score_request(user_ids=True))
        routed = cross_val_score(est, X, y, cv=WithinUserKFold(3),
                                 params={"user_ids": ids, "groups": ids})
    plain = cross_val_score(LowRankRewardEstimator(n_components=2, shrinkage=1.0,
                                                   random_state=0), frame, y,
                            cv=WithinUserKFold(3))
    np.testing.assert_allclose(routed, plain, rtol=1e-12)


def test_nested_search_inside_group_folds_under_routing(grouped):
    """New users held out by an outer GroupKFold, the rank tuned on seen users' pairs
    inside: with metadata routing the outer groups reach the inner splitter too, which
    refused them as ids given twice although they were the column's own."""
    from sklearn.model_selection import GroupKFold

    frame, y = grouped
    ids = frame.user_id.to_numpy()
    inner = GridSearchCV(LowRankRewardEstimator(shrinkage=1.0, calibrate=False,
                                                random_state=0),
                         {"n_components": [1, 2]}, cv=WithinUserKFold(3), scoring="roc_auc")
    with sklearn.config_context(enable_metadata_routing=True):
        routed = cross_val_score(inner, frame, y, cv=GroupKFold(3), params={"groups": ids},
                                 scoring="roc_auc", error_score="raise")
    plain = cross_val_score(inner, frame, y, cv=GroupKFold(3), groups=ids, scoring="roc_auc",
                            error_score="raise")
    np.testing.assert_allclose(routed, plain, rtol=1e-12)
