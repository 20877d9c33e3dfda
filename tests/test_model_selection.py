"""Tests of sklearn_lore.model_selection: metrics, user-aware splits, few-shot curves."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression

from sklearn_lore import LowRankRewardEstimator
from sklearn_lore.datasets import make_preference_data
from sklearn_lore.model_selection import (
    CURVE_COLUMNS,
    expected_calibration_error,
    fewshot_curve,
    fewshot_split,
    macro_accuracy,
    per_user_accuracy,
    preference_metrics,
    split_users,
    within_user_position,
)


@pytest.fixture(scope="module")
def data():
    return make_preference_data(n_users=40, n_pairs_per_user=30, n_features=8,
                                n_components=2, random_state=0)


class UserBlindLogistic(LogisticRegression):
    """A model that follows the user contract but ignores the ids; no fold-in."""

    def fit(self, X, y, user_ids=None):
        return super().fit(X, y)

    def predict_proba(self, X, user_ids=None):
        return super().predict_proba(X)


def small_estimator():
    return LowRankRewardEstimator(n_components=2, random_state=0, max_iter=50)


# --------------------------------------------------------------------------- ECE


def test_ece_perfect_and_worst_cases():
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0
    assert expected_calibration_error([1, 0], [0.0, 1.0]) == 1.0
    # 0.5 on balanced labels is calibrated (and useless): ECE does not measure accuracy
    assert expected_calibration_error([0, 1, 0, 1], [0.5] * 4) == 0.0


def test_ece_hand_computed_bins():
    y = [1, 1, 0, 0, 1]
    p = [0.9, 0.7, 0.75, 0.1, 0.15]
    # bins of width 0.5: {0.1, 0.15} -> |1/2 - 0.125| = 0.375 with weight 2/5;
    # {0.9, 0.7, 0.75} -> |2/3 - 0.7833| = 0.1167 with weight 3/5
    expected = 2 / 5 * 0.375 + 3 / 5 * abs(2 / 3 - (0.9 + 0.7 + 0.75) / 3)
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(expected)


def test_ece_proba_of_one_in_last_bin_and_two_columns():
    y, p = np.array([1, 1, 0]), np.array([1.0, 0.95, 0.0])
    two = np.column_stack([1 - p, p])
    assert expected_calibration_error(y, p) == pytest.approx(0.05 / 3)
    assert expected_calibration_error(y, two) == expected_calibration_error(y, p)


def test_ece_string_labels_and_pos_label():
    y = np.array(["b", "a", "b", "b"])
    p = np.array([0.8, 0.3, 0.6, 0.9])
    assert expected_calibration_error(y, p, pos_label="b") == pytest.approx(
        expected_calibration_error((y == "b").astype(int), p))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 20))
def test_ece_matches_reliability_diagram(seed, n_bins):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=200)
    y = (rng.uniform(size=200) < p ** 2).astype(int)
    # a quarter of the probabilities on bin edges (0.5 is a coin flip's, the population's)
    p[:50] = rng.integers(0, n_bins + 1, size=50) / n_bins
    for strategy in ("uniform", "quantile"):
        frac, mean_p = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
        edges = (np.linspace(0, 1, n_bins + 1) if strategy == "uniform"
                 else np.percentile(p, np.linspace(0, 100, n_bins + 1)))
        counts = np.bincount(np.digitize(p, edges[1:-1], right=True), minlength=n_bins)
        weights = counts[counts > 0] / len(p)
        assert expected_calibration_error(y, p, n_bins=n_bins, strategy=strategy) == (
            pytest.approx(np.sum(weights * np.abs(frac - mean_p))))


def test_ece_puts_an_edge_probability_in_the_bin_below():
    assert expected_calibration_error([1, 0, 1], [0.5, 0.45, 0.55]) == pytest.approx(
        (2 * abs(0.5 - 0.475) + abs(1 - 0.55)) / 3)
    # 0.29 * 100 is 28.999...: it is in (0.28, 0.29], with 0.285, not with 0.295
    assert expected_calibration_error([1, 0, 1], [0.29, 0.285, 0.295], n_bins=100) == (
        pytest.approx((2 * abs(0.5 - 0.2875) + abs(1 - 0.295)) / 3))


def test_ece_quantile_strategy_and_bad_input():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=1000)
    y = (rng.uniform(size=1000) < p).astype(int)
    assert expected_calibration_error(y, p, strategy="quantile") < 0.06
    with pytest.raises(ValueError, match="strategy"):
        expected_calibration_error(y, p, strategy="kmeans")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([0, 1], [0.2, 1.2])
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0, 1], [0.2, 0.8], n_bins=0)


# --------------------------------------------------------------------------- accuracy


def test_per_user_and_macro_accuracy():
    y = np.array([1, 0, 1, 1, 1, 0])
    pred = np.array([1, 1, 1, 1, 1, 1])
    users = np.array(["a", "a", "b", "b", "b", "b"])
    acc = per_user_accuracy(y, pred, users)
    assert acc.index.tolist() == ["a", "b"]
    assert acc.tolist() == [0.5, 0.75]
    assert macro_accuracy(y, pred, users) == pytest.approx(0.625)
    assert np.mean(y == pred) == pytest.approx(4 / 6)


def test_preference_metrics_values():
    m = preference_metrics([1, 0, 1, 0], [0.8, 0.4, 0.5, 0.1], [1, 1, 2, 2])
    assert m["n_users"] == 2 and m["n_pairs"] == 4
    assert m["accuracy"] == 0.75          # 0.5 predicts the negative class
    assert m["macro_accuracy"] == 0.75
    expected = -np.mean(np.log([0.8, 0.6, 0.5, 0.9]))
    assert m["log_loss"] == pytest.approx(expected)


# --------------------------------------------------------------------------- splits


def test_within_user_position_follows_row_order():
    assert within_user_position([3, 1, 3, 1, 3]).tolist() == [0, 0, 1, 1, 2]


def test_split_users_disjoint_deterministic():
    ids = np.repeat([f"u{i}" for i in range(50)], 3)
    seen, unseen = split_users(ids, unseen_size=0.2, random_state=0)
    assert len(unseen) == 10 and len(seen) == 40
    assert not set(seen) & set(unseen)
    again = split_users(ids[::-1], unseen_size=0.2, random_state=0)   # row order irrelevant
    assert seen.tolist() == again[0].tolist() and unseen.tolist() == again[1].tolist()
    other = split_users(ids, unseen_size=0.2, random_state=1)
    assert set(other[1]) != set(unseen)
    with pytest.raises(ValueError, match="unseen_size"):
        split_users(ids, unseen_size=1.0)


def test_fewshot_split_partitions_rows(data):
    _, _, users, _ = data
    s = fewshot_split(users, unseen_size=0.25, n_train_pairs=20, shots=(10, 0, 5),
                      random_state=0)
    assert s.shots == [0, 5, 10]
    train, test, unseen = set(s.seen_train), set(s.seen_test), set(s.unseen_test)
    assert not train & test and not train & unseen and not test & unseen
    assert set(np.unique(users[s.seen_train])) == set(s.seen_users)
    assert set(np.unique(users[s.unseen_test])) == set(s.unseen_users)
    assert len(s.seen_train) == 30 * 20 and len(s.seen_test) == 30 * 10
    assert len(s.adapt[0]) == 0 and len(s.adapt[5]) == 10 * 5
    for k in (5, 10):
        adapt = s.adapt[k]
        assert set(users[adapt]) == set(s.unseen_users)
        assert (s.position[adapt] < k).all() and not set(adapt) & unseen
    assert set(s.adapt[5]) < set(s.adapt[10])
    assert (s.position[s.unseen_test] >= 20).all()
    again = fewshot_split(users, unseen_size=0.25, n_train_pairs=20, shots=(0, 5, 10),
                          random_state=0)
    for key in ("seen_train", "seen_test", "unseen_test"):
        np.testing.assert_array_equal(s[key], again[key])


def test_fewshot_split_rejects_shots_beyond_training_pairs(data):
    with pytest.raises(ValueError, match="shots"):
        fewshot_split(data[2], n_train_pairs=10, shots=(0, 20))


# --------------------------------------------------------------------------- curve


def test_fewshot_curve_shape_and_sanity(data):
    X, y, users, _ = data
    curve = fewshot_curve(small_estimator(), X, y, users, shots=(0, 5, 10),
                          unseen_size=0.25, n_train_pairs=20)
    assert curve.columns.tolist() == CURVE_COLUMNS
    assert curve[["group", "shots"]].values.tolist() == [
        ["seen", 20], ["unseen", 0], ["unseen", 5], ["unseen", 10]]
    assert curve["n_users"].tolist() == [30, 10, 10, 10]
    assert curve["n_pairs"].tolist() == [300, 100, 100, 100]
    assert curve["accuracy"].between(0.6, 1).all()
    assert curve["ece"].between(0, 1).all()
    assert curve.loc[0, "fit_time"] > 0 and np.isnan(curve.loc[0, "adapt_time"])
    assert curve.loc[1:, "adapt_time"].notna().all()


def test_adapted_model_at_zero_shots_is_population_model(data):
    X, y, users, _ = data
    s = fewshot_split(users, unseen_size=0.25, n_train_pairs=20, shots=(0,), random_state=0)
    est = small_estimator()
    curve = fewshot_curve(est, X, y, users, split=s)
    test = s.unseen_test
    population = est.predict_proba(X[test])                     # no ids: population model
    personal = est.predict_proba(X[test], user_ids=users[test])
    np.testing.assert_array_equal(population, personal)
    expected = preference_metrics(y[test], population, users[test])
    row = curve[curve["group"].eq("unseen")].iloc[0]
    assert row["accuracy"] == expected["accuracy"]
    assert row["log_loss"] == expected["log_loss"]


def test_fewshot_curve_leaves_fitted_model_untouched(data):
    X, y, users, _ = data
    est = small_estimator()
    fewshot_curve(est, X, y, users, shots=(0, 5), unseen_size=0.25, n_train_pairs=20)
    assert len(est.users_) == 30                      # adaptation ran on copies


def test_fewshot_curve_dataframe_route_and_adapt_hook(data):
    X, y, users, _ = data
    df = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
    df.insert(0, "user_id", users)
    by_keyword = fewshot_curve(small_estimator(), X, y, users, shots=(0, 5),
                               unseen_size=0.25, n_train_pairs=20)
    by_column = fewshot_curve(small_estimator(), df, y, shots=(0, 5),
                              unseen_size=0.25, n_train_pairs=20)
    cols = ["accuracy", "macro_accuracy", "log_loss", "ece"]
    np.testing.assert_allclose(by_keyword[cols], by_column[cols])
    with pytest.raises(ValueError, match="twice"):
        fewshot_curve(small_estimator(), df, y, users)

    calls = []

    def ignore_users(fitted, X_k, y_k, ids_k):
        calls.append(len(y_k))
        return fitted

    glob = fewshot_curve(UserBlindLogistic(fit_intercept=False), X, y, users,
                         shots=(0, 5), unseen_size=0.25, n_train_pairs=20,
                         adapt=ignore_users)
    assert calls == [50]
    assert glob.loc[1, "accuracy"] == glob.loc[2, "accuracy"]


def test_fewshot_curve_without_partial_fit_users_needs_hook(data):
    X, y, users, _ = data
    with pytest.raises(TypeError, match="adapt="):
        fewshot_curve(UserBlindLogistic(), X, y, users, shots=(0, 5),
                      unseen_size=0.25, n_train_pairs=20)


# --------------------------------------------------------------------------- review fixes


@pytest.fixture(scope="module")
def small():
    X, y, users, _ = make_preference_data(n_users=8, n_pairs_per_user=12, n_features=6,
                                          random_state=0)
    return X, y, users


@pytest.mark.parametrize("metric", ["ece", "preference_metrics"])
def test_pos_label_not_among_two_labels_is_an_error(metric):
    y = np.array(["a", "b", "b", "a", "b"])
    p = [0.1, 0.9, 0.8, 0.3, 0.7]
    call = {
        "ece": lambda **kw: expected_calibration_error(y, p, **kw),
        "preference_metrics": lambda **kw: preference_metrics(y, p, list("aabbb"), **kw),
    }[metric]
    with pytest.raises(ValueError, match=r"pos_label=1 is not a valid label: \['a' 'b'\]"):
        call()
    with pytest.raises(ValueError, match="pos_label=c is not a valid label"):
        call(pos_label="c")
    call(pos_label="b")  # a label of y_true works


def test_pos_label_with_a_single_class_is_taken_as_given():
    # as in scikit-learn: one class present, pos_label need not be among the labels
    p = [0.1, 0.9, 0.8]
    assert expected_calibration_error(np.array(["a"] * 3), p) == pytest.approx(0.6)
    assert expected_calibration_error([0, 0, 0], p) == pytest.approx(0.6)
    assert expected_calibration_error([1, 1, 1], p) == pytest.approx(0.4)
    m = preference_metrics(np.array(["a"] * 3), p, ["u", "u", "v"])
    assert m["accuracy"] == pytest.approx(1 / 3)
    # booleans and floats equal to 1 count as the label 1
    assert expected_calibration_error([True, False, True], p) == pytest.approx(
        expected_calibration_error([1.0, 0.0, 1.0], p))


def test_unhashable_ids_in_the_evaluation_tools():
    ids = np.array(["a", "b", ["c"], "d"], dtype=object)
    for call in (lambda: split_users(ids, unseen_size=0.25, random_state=0),
                 lambda: fewshot_split(ids, n_train_pairs=1, shots=(0,))):
        with pytest.raises(TypeError, match="user_ids must be hashable .* row 2 holds a list"):
            call()


def test_split_users_with_mixed_type_ids():
    ids = np.array([1, "1", 2, "a"], dtype=object)
    seen, unseen = split_users(ids, unseen_size=0.25, random_state=0)
    assert len(seen) == 3 and len(unseen) == 1
    together = [*seen, *unseen]
    # 1 and "1" stay two users, each keeping its type
    assert sorted(map(repr, together)) == sorted(map(repr, ids.tolist()))
    # the split depends on the set of ids, not on the order of the rows
    for order in ([3, 2, 1, 0], [2, 0, 3, 1, 1, 2]):
        again = split_users(ids[order], unseen_size=0.25, random_state=0)
        assert list(map(repr, again[0])) == list(map(repr, seen))
        assert list(map(repr, again[1])) == list(map(repr, unseen))


def test_split_users_with_partially_ordered_ids():
    """Sets compare by inclusion, a partial order under which a sort depends on the
    input order: the split must still depend on the set of ids only."""
    ids = [frozenset({k}) for k in range(8)] + [frozenset({1, 2}), frozenset()]
    first = split_users(ids, unseen_size=0.3, random_state=0)
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(len(ids))
        again = split_users([ids[i] for i in order], unseen_size=0.3, random_state=0)
        assert list(again[0]) == list(first[0]) and list(again[1]) == list(first[1])
    assert set(first[0]) | set(first[1]) == set(ids)


def test_fewshot_curve_with_mixed_type_ids(small):
    X, y, users = small
    mixed = np.array([int(u[1:]) if int(u[1:]) % 2 else u for u in users], dtype=object)
    curve = fewshot_curve(small_estimator(), X, y, mixed, shots=(0, 2), n_train_pairs=8,
                          unseen_size=0.25)
    assert curve["n_users"].tolist() == [6, 2, 2]
    # the split does not depend on the order of the rows
    order = np.random.default_rng(0).permutation(len(y))
    split = fewshot_split(mixed, unseen_size=0.25, n_train_pairs=8, shots=(0, 2),
                          random_state=0)
    shuffled = fewshot_split(mixed[order], unseen_size=0.25, n_train_pairs=8, shots=(0, 2),
                             random_state=0)
    assert set(map(repr, split.unseen_users)) == set(map(repr, shuffled.unseen_users))


def test_fewshot_curve_without_seen_test_pairs_says_why(small):
    X, y, users = small
    est = small_estimator()
    with pytest.raises(ValueError, match=r"No seen user has more than n_train_pairs=25 rows "
                                         r"\(the most any has is 12\).*Lower n_train_pairs"):
        fewshot_curve(est, X, y, users, shots=(0, 2), n_train_pairs=25)
    assert not hasattr(est, "components_")  # raised before fitting
    with pytest.raises(ValueError, match="No seen user has more than n_train_pairs=12"):
        fewshot_curve(est, X, y, users, shots=(0, 12), n_train_pairs=12)


def test_fewshot_curve_without_unseen_test_pairs_says_why(small):
    X, y, users = small
    split = fewshot_split(users, unseen_size=0.25, n_train_pairs=6, shots=(0, 2),
                          random_state=0)
    # unseen users keep only the rows before n_train_pairs: nothing to test them on
    keep = ~np.isin(users, split.unseen_users) | (split.position < 6)
    with pytest.raises(ValueError, match=r"No unseen user has more than n_train_pairs=6 rows "
                                         r"\(the most any has is 6\).*no unseen test pairs"):
        fewshot_curve(small_estimator(), X[keep], y[keep], users[keep], shots=(0, 2),
                      n_train_pairs=6, unseen_size=0.25)
    # a precomputed split is checked too
    bad = fewshot_split(users[keep], unseen_size=0.25, n_train_pairs=6, shots=(0, 2),
                        random_state=0)
    with pytest.raises(ValueError, match="No unseen user"):
        fewshot_curve(small_estimator(), X[keep], y[keep], users[keep], split=bad)


def _curve_data():
    return make_preference_data(n_users=20, n_pairs_per_user=30, n_features=6, random_state=0)


@pytest.mark.parametrize("extra", [1, -1])
def test_fewshot_curve_refuses_x_of_another_length_before_fitting(extra):
    X, y, users, _ = _curve_data()
    bad = np.vstack([np.zeros((1, 6)), X]) if extra > 0 else X[1:]

    class Unfittable(LowRankRewardEstimator):
        def fit(self, *args, **kwargs):
            raise AssertionError("fitted before the check")

    with pytest.raises(ValueError, match=f"X has {len(y) + extra} rows but y has {len(y)}"):
        fewshot_curve(Unfittable(n_components=2), bad, y, users, shots=(0, 5),
                      n_train_pairs=20)


def test_fewshot_curve_refuses_a_split_of_other_rows():
    X, y, users, _ = _curve_data()
    _, _, others, _ = make_preference_data(n_users=10, n_pairs_per_user=30, n_features=6,
                                           random_state=1)
    foreign = fewshot_split(others, n_train_pairs=20, shots=(0, 5), random_state=0)
    with pytest.raises(ValueError, match="split was made for other rows"):
        fewshot_curve(LowRankRewardEstimator(n_components=2), X, y, users, split=foreign)
    with pytest.raises(TypeError, match="split must be a fewshot_split result"):
        fewshot_curve(LowRankRewardEstimator(n_components=2), X, y, users,
                      split=dict(foreign))
    # the same users in another row order is another split too
    shuffled = fewshot_split(users[::-1], n_train_pairs=20, shots=(0, 5), random_state=0)
    with pytest.raises(ValueError, match="split was made for other rows"):
        fewshot_curve(LowRankRewardEstimator(n_components=2), X, y, users, split=shuffled)
    own = fewshot_split(users, n_train_pairs=20, shots=(0, 5), random_state=0)
    curve = fewshot_curve(LowRankRewardEstimator(n_components=2, random_state=0), X, y,
                          users, split=own)
    assert curve["shots"].tolist() == [20, 0, 5]


@pytest.mark.parametrize("y_true", [[1, np.nan, 0], [1, None, 0], [0, np.nan, 0],
                                    pd.array([1, None, 1], dtype="Int64")])
def test_metrics_refuse_missing_labels(y_true):
    proba = [0.9, 0.1, 0.3]
    with pytest.raises(ValueError, match="y_true contains missing values .* at row 1"):
        preference_metrics(y_true, proba, ["a", "b", "c"])
    with pytest.raises(ValueError, match="y_true contains missing values"):
        expected_calibration_error(y_true, proba)


# --------------------------------------------------------------------------- input validation

# six users, each a tuple id: of one length (numpy alone reads these as a 2-d array) or of
# different lengths (a prefix of another id included)
TUPLE_IDS = {
    "equal-length": [(0, "a"), (1, "b"), (2, "c"), (3, "d"), (4, "e"), (5, "f")],
    "different-lengths": [(0,), (0, "b"), (2, "c", 3.5), (3,), (4, "e"), (5, "f", 0)],
}


@pytest.mark.parametrize("kind", list(TUPLE_IDS))
def test_tuple_ids_in_the_metrics_and_splits(kind):
    users = TUPLE_IDS[kind]
    rows = [0, 1, 2, 3, 4, 5] * 4 + [0, 1]
    ids = [users[r] for r in rows]                         # a list of tuples, one per row
    letters = np.array(list("abcdef"), dtype=object)[rows]  # the same users as strings
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=len(rows))
    proba = rng.uniform(size=len(rows))
    pred = (proba > 0.5).astype(int)

    acc = per_user_accuracy(y, pred, ids)
    assert sorted(acc.index.tolist(), key=repr) == sorted(users, key=repr)
    assert all(isinstance(user, tuple) for user in acc.index)
    by_letter = per_user_accuracy(y, pred, letters)
    for user, letter in zip(users, "abcdef"):
        assert acc[[user]].iloc[0] == by_letter[letter]
    assert macro_accuracy(y, pred, ids) == macro_accuracy(y, pred, letters)
    assert preference_metrics(y, proba, ids) == preference_metrics(y, proba, letters)
    np.testing.assert_array_equal(within_user_position(ids), within_user_position(letters))

    seen, unseen = split_users(ids, unseen_size=0.3, random_state=0)
    assert len(seen) == 4 and len(unseen) == 2
    assert all(isinstance(user, tuple) for user in [*seen, *unseen])
    assert set(seen) | set(unseen) == set(users) and not set(seen) & set(unseen)
    again = split_users(ids[::-1], unseen_size=0.3, random_state=0)   # row order irrelevant
    assert list(again[0]) == list(seen) and list(again[1]) == list(unseen)

    split = fewshot_split(ids, unseen_size=0.3, n_train_pairs=2, shots=(0, 1), random_state=0)
    id_array = np.fromiter(ids, dtype=object, count=len(ids))
    assert set(id_array[split.seen_train]) == set(split.seen_users)
    assert set(id_array[split.unseen_test]) == set(split.unseen_users)
    assert set(id_array[split.adapt[1]]) == set(split.unseen_users)
    assert len(split.seen_test) == sum(rows.count(users.index(user)) - 2 for user in seen)


def test_fewshot_curve_with_tuple_ids(small):
    X, y, users = small
    numbers = np.unique(users, return_inverse=True)[1]
    # (k, "x") sorts as k does: the tuple ids split as the int ids, and score the same
    tuples = [(int(k), "x") for k in numbers]
    by_int = fewshot_curve(small_estimator(), X, y, numbers, shots=(0, 2), n_train_pairs=8,
                           unseen_size=0.25)
    by_tuple = fewshot_curve(small_estimator(), X, y, tuples, shots=(0, 2), n_train_pairs=8,
                             unseen_size=0.25)
    cols = ["n_users", "n_pairs", "accuracy", "macro_accuracy", "log_loss", "ece"]
    pd.testing.assert_frame_equal(by_tuple[cols], by_int[cols])


@pytest.mark.parametrize("bad, message", [
    ({1, 2, 3}, "1-d sequence of ids in row order"),
    ({"a": 1, "b": 2, "c": 3}, "1-d sequence of ids in row order"),
    ("abc", "1-d sequence of ids in row order"),
    (7, "1-d sequence of ids in row order"),
    (pd.DataFrame({"user_id": ["a", "b", "c"]}), r"not df\[\['user_id'\]\]"),
    (np.array([["a"], ["b"], ["c"]]), r"must be 1-d; got an array of shape \(3, 1\)"),
    # a list of lists is one (unhashable) id per row, as the estimator reads it
    ([["a"], ["b"], ["c"]], r"must be hashable .* row 0 holds a list"),
])
def test_user_ids_that_are_not_one_id_per_row_are_refused(bad, message):
    error = TypeError if "hashable" in message else ValueError
    for call in (lambda: per_user_accuracy([1, 0, 1], [1, 1, 1], bad),
                 lambda: preference_metrics([1, 0, 1], [0.9, 0.2, 0.6], bad),
                 lambda: within_user_position(bad),
                 lambda: split_users(bad, random_state=0),
                 lambda: fewshot_split(bad, n_train_pairs=1, shots=(0,))):
        with pytest.raises(error, match=message):
            call()


class FitForbidden(LowRankRewardEstimator):
    """Fails loudly if fewshot_curve fits it: the checks must come first."""

    def fit(self, *args, **kwargs):
        raise AssertionError("fit was called")


class BlindFitForbidden(UserBlindLogistic):
    """No partial_fit_users, and no fit either."""

    def fit(self, *args, **kwargs):
        raise AssertionError("fit was called")


@pytest.mark.parametrize("estimator, kwargs, error, message", [
    (FitForbidden(), dict(n_bins=0), ValueError, "n_bins must be a positive integer, got 0"),
    (FitForbidden(), dict(n_bins=2.5), ValueError, "n_bins must be a positive integer"),
    (FitForbidden(), dict(n_bins=True), ValueError, "n_bins must be a positive integer, got True"),
    (BlindFitForbidden(), {}, TypeError,
     "BlindFitForbidden has no partial_fit_users method; pass adapt="),
    (FitForbidden(), dict(adapt="refit"), TypeError, "adapt must be None or a callable"),
])
def test_fewshot_curve_checks_its_parameters_before_fitting(small, estimator, kwargs, error,
                                                            message):
    X, y, users = small
    with pytest.raises(error, match=message):
        fewshot_curve(estimator, X, y, users, shots=(0, 2), n_train_pairs=8, unseen_size=0.25,
                      **kwargs)


@pytest.mark.parametrize("row", [0, 3, -1])
@pytest.mark.parametrize("kind", ["float", "object"])
def test_fewshot_curve_names_the_callers_row_of_a_missing_label_before_fitting(small, row,
                                                                               kind):
    """A NaN label was named by its place among the seen users' training rows ("row 0"
    for the caller's row 12), and a test row's only after the fit."""
    X, y, users = small
    y = y.astype(float) if kind == "float" else y.astype(object)
    row = row % len(y)
    y[row] = np.nan if kind == "float" else None
    with pytest.raises(ValueError, match=f"missing .*label .* at row {row};"):
        fewshot_curve(FitForbidden(), X, y, users, shots=(0, 2), n_train_pairs=8,
                      unseen_size=0.25)


def test_fewshot_curve_checks_a_split_before_fitting(small):
    X, y, users = small
    split = fewshot_split(users, unseen_size=0.25, n_train_pairs=8, shots=(0, 2),
                          random_state=0)
    del split["shots"]
    with pytest.raises(TypeError, match="split must be a fewshot_split result"):
        fewshot_curve(FitForbidden(), X, y, users, split=split)


def test_fewshot_curve_at_zero_shots_only_needs_no_partial_fit_users(small):
    # nothing is adapted at 0 shots: an estimator without partial_fit_users still works
    X, y, users = small
    curve = fewshot_curve(UserBlindLogistic(), X, y, users, shots=(0,), n_train_pairs=8,
                          unseen_size=0.25)
    assert curve["shots"].tolist() == [8, 0]


@pytest.mark.parametrize("call, message", [
    (lambda ids: expected_calibration_error([0, 1], [0.2, 0.8], n_bins=True),
     "n_bins must be a positive integer, got True"),
    (lambda ids: preference_metrics([0, 1], [0.2, 0.8], ["a", "b"], n_bins=True),
     "n_bins must be a positive integer, got True"),
    (lambda ids: fewshot_split(ids, n_train_pairs=True, shots=(0,)),
     "n_train_pairs must be a positive integer, got True"),
    (lambda ids: fewshot_split(ids, n_train_pairs=4, shots=(0, True)),
     r"shots must be integers in \[0, n_train_pairs=4\], not booleans; got \[0, True\]"),
    (lambda ids: fewshot_split(ids, n_train_pairs=4, shots=[np.True_, 2]),
     "shots must be integers .* not booleans"),
    (lambda ids: split_users(ids, random_state=True),
     "random_state must be an int, a RandomState instance or None, got True"),
    (lambda ids: fewshot_split(ids, n_train_pairs=4, shots=(0,), random_state=False),
     "random_state must be an int, a RandomState instance or None, got False"),
])
def test_bools_are_not_integers(call, message):
    ids = np.repeat(["a", "b", "c", "d"], 6)
    with pytest.raises(ValueError, match=message):
        call(ids)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_train_pairs=True), "n_train_pairs must be a positive integer, got True"),
    (dict(shots=(0, True)), "shots must be integers .* not booleans"),
    (dict(random_state=True), "random_state must be an int"),
    (dict(n_bins=True), "n_bins must be a positive integer, got True"),
])
def test_fewshot_curve_refuses_bools_before_fitting(small, kwargs, message):
    X, y, users = small
    params = dict(shots=(0, 2), n_train_pairs=8, unseen_size=0.25) | kwargs
    with pytest.raises(ValueError, match=message):
        fewshot_curve(FitForbidden(), X, y, users, **params)


@pytest.mark.parametrize("dtype", ["datetime64[D]", "datetime64[ns]", "timedelta64[ns]"])
def test_fewshot_split_with_date_ids_of_any_unit(dtype):
    """pandas' isin missed numpy dates of day and nanosecond units: every row fell in the
    unseen group, seen users' rows included."""
    days = np.repeat(np.arange(5), 4)
    ids = (np.datetime64("2020-01-01", "D") + days).astype(dtype) if "datetime" in dtype \
        else (days * np.timedelta64(1, "D")).astype(dtype)
    split = fewshot_split(ids, n_train_pairs=2, shots=(0, 1), unseen_size=0.4, random_state=0)
    reference = fewshot_split(days, n_train_pairs=2, shots=(0, 1), unseen_size=0.4,
                              random_state=0)
    assert len(split.seen_users) == 3
    for name in ["seen_train", "seen_test", "unseen_test"]:
        assert len(getattr(split, name)) == len(getattr(reference, name)) > 0
        seen = set(pd.Series(split.seen_users).tolist())
        members = set(pd.Series(ids[getattr(split, name)]).tolist())
        assert (members <= seen) == name.startswith("seen")
    assert len(split.adapt[1]) == 2


def test_a_split_of_other_rows_with_the_same_positions_is_refused():
    """Only the training and unseen test rows were checked: a split of rows whose users
    and positions agree could score an unseen user in the seen group."""
    a = np.array(["a", "a", "b", "b", "a"], dtype=object)
    b = np.array(["a", "a", "b", "b", "b"], dtype=object)
    for seed in range(20):
        split = fewshot_split(a, n_train_pairs=1, shots=(0, 1), unseen_size=0.5,
                              random_state=seed)
        if list(split.seen_users) == ["a"]:
            break
    X, y = np.random.RandomState(0).randn(5, 3), np.array([0, 1, 0, 1, 1])
    with pytest.raises(ValueError, match="split was made for other rows"):
        fewshot_curve(LowRankRewardEstimator(1), X, y, b, split=split)


# --------------------------------------------------------------------------- bad metric inputs


@pytest.mark.parametrize("y_true, y_pred, message", [
    ([1, np.nan, 0], [1, 1, 0], "y_true contains missing values .* at row 1"),
    ([1, None, 0], [1, None, 0], "y_true contains missing values .* at row 1"),
    ([1, 0, 1], [0.9, 0.2, 0.6], "y_pred holds fractional values such as 0.9"),
    ([[1], [0], [1]], [1, 0, 1], r"y_true must be 1-d; got shape \(3, 1\)"),
])
def test_accuracy_by_user_refuses_labels_it_would_miscount(y_true, y_pred, message):
    """A NaN counted as a miss, None == None as a hit, probabilities as predictions
    scored 0: all silently."""
    for metric in (per_user_accuracy, macro_accuracy):
        with pytest.raises(ValueError, match=message):
            metric(y_true, y_pred, ["a", "a", "b"])


def test_accuracy_by_user_refuses_text_labels_against_numbers():
    """"1" never equals 1: every user scored 0.0, silently (scikit-learn's accuracy
    raises "Mix of label input types")."""
    for metric in (per_user_accuracy, macro_accuracy):
        with pytest.raises(ValueError, match="Mix of label input types"):
            metric(pd.Series(["1", "0", "1", "1"]), np.array([1, 0, 1, 1]), ["a", "a", "b", "b"])
    assert per_user_accuracy([1, 0], [1.0, 1.0], ["a", "b"]).tolist() == [1.0, 0.0]


def test_complex_probabilities_are_refused():
    """They were cut to their real part."""
    with pytest.raises(ValueError, match="real probabilities"):
        expected_calibration_error([1, 0], np.array([0.9, 0.2]) + 0j)
    with pytest.raises(ValueError, match="real probabilities"):
        preference_metrics([1, 0], np.array([0.9, 0.2]) + 0j, ["a", "b"])


@pytest.mark.parametrize("bad_y", [lambda y: (v for v in y), lambda y: y[:, None]])
def test_fewshot_curve_refuses_a_y_that_is_not_1d_before_fitting(bad_y):
    """A generator failed with IndexError at y.shape[0]; a column vector after the fit,
    with a message about the seen test rows' y_true."""
    X, y, users, _ = make_preference_data(n_users=10, n_pairs_per_user=10, n_features=3,
                                          random_state=0)
    est = LowRankRewardEstimator(1, random_state=0)
    with pytest.raises(ValueError, match="y must be a 1-d array-like with one label per row"):
        fewshot_curve(est, X, bad_y(y), users, shots=(0,), n_train_pairs=5)
    assert not hasattr(est, "components_")


def test_fewshot_curve_reads_a_polars_frame_with_a_user_column():
    pl = pytest.importorskip("polars")
    X, y, users, _ = make_preference_data(n_users=20, n_pairs_per_user=30, n_features=4,
                                          random_state=0)
    names = [f"x{j}" for j in range(4)]
    frame = pl.DataFrame(X, schema=names).with_columns(pl.Series("user_id", users))
    kwargs = dict(shots=(0, 5), n_train_pairs=20)
    got = fewshot_curve(LowRankRewardEstimator(2, random_state=0), frame, y, **kwargs)
    expected = fewshot_curve(LowRankRewardEstimator(2, random_state=0),
                             pd.DataFrame(X, columns=names).assign(user_id=users), y, **kwargs)
    timings = [c for c in got.columns if c.endswith("_time")]
    pd.testing.assert_frame_equal(got.drop(columns=timings), expected.drop(columns=timings))


def test_metrics_name_their_input_mistakes():
    with pytest.raises(ValueError, match="y_true has 2 entries but proba has 3"):
        preference_metrics([1, 0], [0.9, 0.2, 0.6], ["a", "b"])
    for metric in (preference_metrics, lambda y, p, ids: expected_calibration_error(y, p)):
        with pytest.raises(ValueError, match=r"y_true must be 1-d; got shape \(2, 1\)"):
            metric([[1], [0]], [0.9, 0.2], ["a", "b"])
    with pytest.raises(ValueError, match="preference_metrics needs at least one pair"):
        preference_metrics([], [], [])
    with pytest.raises(ValueError, match="macro_accuracy needs at least one pair"):
        macro_accuracy([], [], [])


def test_fewshot_curve_takes_a_list_of_rows(data):
    X, y, users, _ = data
    as_array = fewshot_curve(small_estimator(), X, y, users, shots=(0, 2), n_train_pairs=8)
    as_list = fewshot_curve(small_estimator(), X.tolist(), y, users, shots=(0, 2),
                            n_train_pairs=8)
    cols = ["n_users", "n_pairs", "accuracy", "log_loss"]
    pd.testing.assert_frame_equal(as_list[cols], as_array[cols])


def test_a_numpy_int_and_a_python_int_are_one_id_in_any_row_order():
    """The first form seen was kept and mixed types sort by type name (int, int64):
    swapping two rows changed the split."""
    ids = [1, np.int64(1), 2, np.int64(2), "a", 3, 4, 5, 6, 7, 8, 9] * 3
    swapped = [ids[1], ids[0]] + ids[2:]
    for container in (list, lambda v: np.array(v, dtype=object)):  # an array as it is
        a = split_users(container(ids), unseen_size=0.25, random_state=0)
        b = split_users(container(swapped), unseen_size=0.25, random_state=0)
        assert [x.tolist() for x in a] == [x.tolist() for x in b]


def test_macro_accuracy_is_the_mean_of_per_user_accuracies_sorted_by_id():
    """Every earlier example had two users, whose median is their mean, and ids in
    sorted order already (a mutation audit: median and an unsorted index passed)."""
    y_true = [1, 1, 1, 1, 0, 0, 1, 0, 1]
    y_pred = [1, 1, 1, 1, 1, 1, 1, 1, 1]
    ids = ["c", "c", "c", "c", "b", "b", "a", "a", "a"]  # c: 1.0, b: 0.0, a: 2/3
    per_user = per_user_accuracy(y_true, y_pred, ids)
    assert per_user.index.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(per_user.to_numpy(), [2 / 3, 0.0, 1.0])
    assert macro_accuracy(y_true, y_pred, ids) == pytest.approx(5 / 9)  # median: 2/3


def test_label_kinds_are_judged_without_sorting_the_labels():
    """The text-against-numbers check sorted every label (scikit-learn's unique_labels:
    3 to 4 times the metric on a million object labels); the kinds it accepts and
    refuses are unchanged."""
    ids = ["a", "a", "b", "b"]
    accepted = [([True, False, True, True], [1, 0, 1, 1]), ([1.0, 0.0, 1.0, 1.0], [1, 0, 1, 1]),
                (pd.Categorical(["x", "y", "x", "x"]), np.array(["x", "y", "y", "x"])),
                (np.array(["a", "bb", "a", "a"]), np.array(["a", "a", "a", "bb"], dtype=object)),
                (pd.array([1, 0, 1, 1], dtype="Int64"), [1, 0, 1, 1])]
    for y_true, y_pred in accepted:
        per_user_accuracy(y_true, y_pred, ids)
    for y_true, y_pred in [(np.array(["1", "0", "1", "1"], dtype=object), [1, 0, 1, 1]),
                           ([1, 0, 1, 1], np.array(["1", "0", "1", "1"]))]:
        with pytest.raises(ValueError, match="Mix of label input types"):
            per_user_accuracy(y_true, y_pred, ids)


def test_labels_that_never_match_are_refused_whatever_their_containers():
    """The fast label check let bytes against text, dates against text and
    probabilities in an object array through (accuracy 0, silently); scikit-learn's
    check had refused them."""
    ids = ["a", "a", "b", "b"]
    cases = [(np.array([b"p", b"n", b"p", b"p"]), np.array(["p", "n", "p", "n"])),
             (np.array(pd.date_range("2020", periods=4).to_pydatetime(), dtype=object),
              np.array(["x", "y", "x", "x"])),
             ([1, 0, 1, 1], np.array([0.3, 0.7, 1.0, 1.0], dtype=object))]
    for y_true, y_pred in cases:
        with pytest.raises((ValueError, TypeError)):
            per_user_accuracy(y_true, y_pred, ids)
