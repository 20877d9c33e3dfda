"""The new-user prior: empirical Bayes scaled by a cross-fitted ``shrinkage``.

A user folded in with a few pairs must not do worse than the population model. The
empirical-Bayes spread of the fitted users' weights is too wide when the basis is
poorly determined (few users for a large rank in many dimensions); ``shrinkage="auto"``
detects that on held-out users and shrinks new users harder.
"""

import copy

import numpy as np
import pandas as pd
import pytest

from sklearn_lore import LowRankRewardEstimator
from sklearn_lore import _solver
from sklearn_lore.datasets import make_preference_data
from sklearn_lore.model_selection import within_user_position

SHOTS = 10


def _seen_and_new(n_seen, n_features, n_components, n_pairs=30, n_new=300):
    X, y, users, _ = make_preference_data(
        n_users=n_seen + n_new, n_pairs_per_user=n_pairs, n_features=n_features,
        n_components=n_components, random_state=1,
    )
    seen = np.isin(users, pd.unique(users)[:n_seen])
    rank = pd.Series(users).groupby(users).cumcount().to_numpy()
    shot, test = ~seen & (rank < SHOTS), ~seen & (rank >= SHOTS)
    return X, y, users, seen, shot, test


def _population_and_fold_in(est, X, y, users, shot, test):
    population = np.mean(est.predict(X[test], user_ids=users[test]) == y[test])
    folded = copy.deepcopy(est).partial_fit_users(X[shot], y[shot], user_ids=users[shot])
    return population, np.mean(folded.predict(X[test], user_ids=users[test]) == y[test])


@pytest.fixture(scope="module")
def unreliable_basis():
    """Rank 8 in 128 dimensions from 50 users: the basis is mostly noise."""
    return _seen_and_new(50, 128, 8)


def test_auto_shrinkage_protects_new_users_when_the_basis_is_unreliable(unreliable_basis):
    X, y, users, seen, shot, test = unreliable_basis
    kw = dict(random_state=0)
    plain = LowRankRewardEstimator(shrinkage=1.0, **kw).fit(X[seen], y[seen], user_ids=users[seen])
    auto = LowRankRewardEstimator(**kw).fit(X[seen], y[seen], user_ids=users[seen])
    pop_plain, fold_plain = _population_and_fold_in(plain, X, y, users, shot, test)
    pop_auto, fold_auto = _population_and_fold_in(auto, X, y, users, shot, test)
    assert pop_plain == pop_auto  # the population model does not depend on shrinkage
    # the failure the guard exists for: the plain empirical-Bayes prior loses to the
    # population on 300 new users x 20 test pairs
    assert fold_plain < pop_plain - 0.02
    assert auto.shrinkage_ >= 8.0
    assert fold_auto >= pop_auto - 0.005


def test_auto_shrinkage_keeps_personalization_with_a_good_basis():
    X, y, users, seen, shot, test = _seen_and_new(300, 16, 3)
    est = LowRankRewardEstimator(random_state=0).fit(X[seen], y[seen], user_ids=users[seen])
    population, folded = _population_and_fold_in(est, X, y, users, shot, test)
    assert est.shrinkage_ <= 2.0
    assert folded > population + 0.05


def test_prior_precision_is_the_scaled_empirical_bayes_precision(problem_small):
    X, y, users = problem_small
    one = LowRankRewardEstimator(3, shrinkage=1.0, random_state=0).fit(X, y, user_ids=users)
    three = LowRankRewardEstimator(3, shrinkage=3.0, random_state=0).fit(X, y, user_ids=users)
    assert one.shrinkage_ == 1.0 and three.shrinkage_ == 3.0
    np.testing.assert_allclose(three.prior_precision_, 3.0 * one.prior_precision_)
    # only new users are affected: the fitted users and the population are not
    np.testing.assert_array_equal(three.user_weights_, one.user_weights_)
    np.testing.assert_array_equal(three.population_weights_, one.population_weights_)


def test_auto_shrinkage_ignores_row_order_and_user_labels(problem_small):
    X, y, users = problem_small
    est = LowRankRewardEstimator(3, random_state=0).fit(X, y, user_ids=users)
    perm = np.random.RandomState(0).permutation(len(y))
    relabel = {u: f"other-{i}" for i, u in enumerate(np.unique(users)[::-1])}
    shuffled = LowRankRewardEstimator(3, random_state=0).fit(
        X[perm], y[perm], user_ids=np.array([relabel[u] for u in users[perm]])
    )
    assert shuffled.shrinkage_ == est.shrinkage_
    np.testing.assert_allclose(shuffled.prior_precision_, est.prior_precision_, rtol=1e-6,
                               atol=1e-8)
    # the cross-fit that chose the scale also calibrates new users, just as invariantly
    assert shuffled.fold_in_temperature_ == pytest.approx(est.fold_in_temperature_, rel=1e-6)


def test_too_few_users_keep_the_empirical_bayes_prior():
    X, y, users, _ = make_preference_data(n_users=6, n_pairs_per_user=20, n_features=8,
                                          random_state=0)
    est = LowRankRewardEstimator(2, random_state=0).fit(X, y, user_ids=users)
    assert est.shrinkage_ == 1.0


def test_without_user_ids_the_shrinkage_is_the_given_scale(problem_small):
    X, y, _ = problem_small
    assert LowRankRewardEstimator(2, random_state=0).fit(X, y).shrinkage_ == 1.0
    assert LowRankRewardEstimator(2, shrinkage=5.0, random_state=0).fit(X, y).shrinkage_ == 5.0


@pytest.mark.parametrize("bad", ["bogus", 0.0, -1.0, None])
def test_invalid_shrinkage_is_rejected_at_fit(bad, problem_small):
    X, y, users = problem_small
    est = LowRankRewardEstimator(2, shrinkage=bad)
    with pytest.raises(ValueError, match="shrinkage"):
        est.fit(X, y, user_ids=users)


@pytest.fixture(scope="module")
def problem_small():
    X, y, users, _ = make_preference_data(n_users=40, n_pairs_per_user=30, n_features=12,
                                          n_components=3, random_state=3)
    return X, y, users


def test_crossfit_refits_do_not_start_from_the_full_basis(unreliable_basis):
    """The full basis has seen the held-out users' pairs: a fold that started from it
    would keep some of them and favour too little shrinkage. The folds start from their
    own spectral initialization, so the choice does not depend on the basis passed."""
    from sklearn_lore import _solver
    from sklearn_lore._backends._numpy import NumpyBackend

    X, y, users, seen, _, _ = unreliable_basis
    est = LowRankRewardEstimator(random_state=0).fit(X[seen], y[seen], user_ids=users[seen])
    groups = est._user_index(users[seen])
    args = (X[seen], (y[seen] == est.classes_[1]).astype(float), np.ones(seen.sum()), groups,
            len(est.users_))
    P = est.prior_precision_ / est.shrinkage_
    rest = (est._kind, est.alpha, est.prior_strength)
    fitted = _solver.crossfit_shrinkage(NumpyBackend(), *args, est.components_.T, P, *rest,
                                        random_state=0)
    other = np.random.RandomState(5).standard_normal(est.components_.T.shape)
    unrelated = _solver.crossfit_shrinkage(NumpyBackend(), *args, other, P, *rest,
                                           random_state=0)
    assert fitted[0] == unrelated[0] == est.shrinkage_
    assert fitted[1] == unrelated[1]


def test_crossfit_with_the_fits_gram_matrix_matches_recomputing_it(problem_small):
    """The refits' Gram matrix comes from the fit's minus the held-out rows' part."""
    from sklearn_lore import _solver
    from sklearn_lore._backends._numpy import NumpyBackend

    X, y, users = problem_small
    est = LowRankRewardEstimator(2, random_state=0).fit(X, y, user_ids=users)
    groups = est._user_index(users)
    sw = np.ones(len(y))
    args = (X, (y == est.classes_[1]).astype(float), sw, groups, len(est.users_),
            est.components_.T, est.prior_precision_ / est.shrinkage_, est._kind, est.alpha,
            est.prior_strength)
    gram = X.T @ (sw[:, None] / 4.0 * X)
    given = _solver.crossfit_shrinkage(NumpyBackend(), *args, random_state=0, gram=gram)
    recomputed = _solver.crossfit_shrinkage(NumpyBackend(), *args, random_state=0)
    assert given[0] == recomputed[0] == est.shrinkage_
    np.testing.assert_allclose([given[1][c] for c in _solver.SHRINKAGE_GRID],
                               [recomputed[1][c] for c in _solver.SHRINKAGE_GRID], rtol=1e-6)
    assert given[2] == pytest.approx(recomputed[2], rel=1e-6)


def test_the_cross_fit_keys_ignore_labels_and_which_response_is_a():
    """The keys order each held-out user's rows into shots and scored rows and assign
    users to folds. They added y/2 (shots mostly labelled 0), then keyed the
    label-oriented projection (shots and scored rows on either side of a hyperplane:
    Jester's new-user calibration error 0.005 -> 0.05): they must depend on the
    content alone, the same for a row written either way round."""
    from sklearn_lore._backends._numpy import NumpyBackend

    be, rng = NumpyBackend(), np.random.default_rng(0)
    Z, y = rng.standard_normal((200, 7)), rng.integers(0, 2, 200).astype(float)
    keys = _solver._content_keys(be, Z, y)
    np.testing.assert_array_equal(_solver._content_keys(be, -Z, 1 - y), keys)
    relabeled = _solver._content_keys(be, Z, 1 - y)
    assert np.array_equal(np.argsort(relabeled), np.argsort(keys))
    np.testing.assert_allclose(relabeled, keys, rtol=0, atol=2e-12 * np.abs(keys).max())
    # copies of one comparison with both labels: ordered by the label, not by position
    twice = _solver._content_keys(be, np.vstack([Z[:1], Z[:1]]), np.array([1.0, 0.0]))
    assert twice[0] != twice[1]


def test_the_cross_fit_shots_are_spread_over_a_users_rows():
    """The shots were a user's k lowest keys: rows at one end of a direction in the
    embedding space, scored on the rows at the other end. They are now spread over
    the key order, for every k, nested as k grows."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(3), 40)[rng.permutation(120)]
    keys = rng.standard_normal(120)
    rank = _solver._spread_rank(groups, keys)
    masks = _solver._shot_masks(groups, keys, (5, 10, 20))  # what the cross-fit adapts on
    for g in range(3):
        mine = groups == g
        assert sorted(rank[mine]) == list(range(40))
        order = _solver._rank_within(groups, keys)[mine]  # position in key order
        for k, mask in zip((5, 10, 20), masks):
            shots = np.sort(order[mask[mine]])
            assert len(shots) == k
            # evenly spread: no gap between consecutive shots (or the ends) over 3 n/k
            gaps = np.diff(np.r_[-1, shots, 40])
            assert gaps.max() <= 3 * 40 / k, (k, shots)
        assert np.all(masks[0][mine] <= masks[1][mine])  # nested as k grows
    # at most half of a user's rows adapt
    few = _solver._shot_masks(np.zeros(6, dtype=np.intp), keys[:6], (5,))[0]
    assert few.sum() == 3


def test_a_user_whose_one_pair_is_duplicated_is_a_user_of_one_pair():
    """Users held out of the cross-fit need two pairs; counted as rows, a single pair
    duplicated made its user eligible where the same pair weighted 2 did not, and the
    temperatures differed (population 1.656 against 1.760)."""
    X, y, u, _ = make_preference_data(n_users=60, n_pairs_per_user=20, n_features=8,
                                      random_state=0)
    keep = np.isin(u, np.unique(u)[:30]) | (within_user_position(u) < 1)
    X, y, u = X[keep], y[keep], u[keep]
    kw = dict(n_components=2, random_state=0)
    weighted = LowRankRewardEstimator(**kw).fit(X, y, user_ids=u,
                                                sample_weight=np.full(len(y), 2.0))
    copies = LowRankRewardEstimator(**kw).fit(np.r_[X, X], np.r_[y, y], user_ids=np.r_[u, u])
    assert copies.shrinkage_ == weighted.shrinkage_
    for name in ("temperature_", "population_temperature_", "fold_in_temperature_"):
        assert getattr(copies, name) == pytest.approx(getattr(weighted, name), rel=1e-9)


def test_distinct_pairs_are_per_user():
    """One user's last key equal to the next user's first (users who labelled the same
    comparison) are two pairs, not one."""
    index, groups, keys = _solver._distinct_pairs(np.array([0, 0, 1, 1, 1]),
                                                  np.array([1.0, 5.0, 5.0, 9.0, 9.0]))
    np.testing.assert_array_equal(index, [0, 1, 2, 3, 3])
    np.testing.assert_array_equal(groups, [0, 0, 1, 1])
    np.testing.assert_array_equal(keys, [1.0, 5.0, 5.0, 9.0])
    empty = _solver._distinct_pairs(np.zeros(0, dtype=np.intp), np.zeros(0))
    assert [len(part) for part in empty] == [0, 0, 0]


def test_the_cross_fit_shots_take_copies_of_a_pair_together():
    """A held-out user's copies of one comparison were split between its shots and its
    scored rows (with every row duplicated, 750 of 1,650 scored rows at 5 shots were
    copies of shots), so the cross-fit chose the least shrinkage of its grid (1.0)
    where weights of 2 chose 256. Now copies adapt or are scored together, the cap of
    half a user's pairs counts distinct pairs, and duplicates give what weights of 2
    give; without copies the shots are those of the rows' own ranks."""
    from sklearn_lore._backends._numpy import NumpyBackend

    X, y, ids, _ = make_preference_data(n_users=150, n_pairs_per_user=8, n_features=16,
                                        random_state=3)
    groups = np.unique(ids, return_inverse=True)[1]
    keys = _solver._content_keys(NumpyBackend(), X, y)
    rank = _solver._spread_rank(groups, keys)
    n_u = np.bincount(groups)[groups]
    for mask, k in zip(_solver._shot_masks(groups, keys, (5, 10, 20)), (5, 10, 20)):
        np.testing.assert_array_equal(mask, rank < np.minimum(k, n_u // 2))
    g2, k2 = np.r_[groups, groups], np.r_[keys, keys]
    for mask, single in zip(_solver._shot_masks(g2, k2, (5, 10, 20)),
                            _solver._shot_masks(groups, keys, (5, 10, 20))):
        np.testing.assert_array_equal(mask, np.r_[single, single])
    kw = dict(n_components=3, random_state=0)
    copies = LowRankRewardEstimator(**kw).fit(np.vstack([X, X]), np.r_[y, y],
                                              user_ids=np.r_[ids, ids])
    weighted = LowRankRewardEstimator(**kw).fit(X, y, user_ids=ids,
                                                sample_weight=np.full(len(y), 2.0))
    assert copies.shrinkage_ == weighted.shrinkage_
    assert copies.fold_in_temperature_ == pytest.approx(weighted.fold_in_temperature_,
                                                        rel=1e-9)


def test_an_uncalibrated_fit_computes_no_seen_logits_and_chooses_the_same_scale(
        problem_small, monkeypatch):
    """The seen users' held-out logits (an empirical-Bayes prior and a user step per
    fold) serve only the seen users' temperature: an uncalibrated fit skips them, and
    its scale is the calibrated fit's. A calibrated fit computes them with the refits
    (where, on a GPU, they run beside the main fit)."""
    X, y, users = problem_small
    calibrated = LowRankRewardEstimator(3, random_state=0).fit(X, y, user_ids=users)
    calls = []
    original = _solver._crossfit_seen_logits

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(_solver, "_crossfit_seen_logits", counted)
    plain = LowRankRewardEstimator(3, random_state=0, calibrate=False).fit(
        X, y, user_ids=users)
    assert not calls
    assert plain.shrinkage_ == calibrated.shrinkage_
    again = LowRankRewardEstimator(3, random_state=0).fit(X, y, user_ids=users)
    assert calls and again.temperature_ == calibrated.temperature_


def test_the_cross_fit_scores_in_calls_of_bounded_size_with_the_same_result(problem_small,
                                                                           monkeypatch):
    """The held-out users' adaptations (users x 3 shot counts x 11 scales groups) ran as
    one user step: with 20,000 users at rank 8 that step alone held 0.6 GB. They now go
    in calls of at most _CROSSFIT_ENTRIES / B^2 groups (a whole block of one shot count
    and scale at least); the table, the scale and the temperature are those of one
    call."""
    from sklearn_lore._backends._numpy import NumpyBackend

    X, y, users = problem_small
    est = LowRankRewardEstimator(3, random_state=0).fit(X, y, user_ids=users)
    args = (X, (y == est.classes_[1]).astype(float), np.ones(len(y)),
            est._user_index(users), len(est.users_), est.components_.T,
            est.prior_precision_ / est.shrinkage_, est._kind, est.alpha, est.prior_strength)
    scoring = []  # groups of each scoring call (the only ones with a prior per group)
    step = _solver.user_step

    def recorded(be, rows, F, theta, mu, precision, *rest, **kw):
        if precision.ndim == 3:
            scoring.append(theta.shape[0])
        return step(be, rows, F, theta, mu, precision, *rest, **kw)

    monkeypatch.setattr(_solver, "user_step", recorded)
    refits = _solver.crossfit_refits(NumpyBackend(), *args[:5], 3, est._kind, est.alpha,
                                     est.prior_strength, random_state=0)
    held = [len(np.unique(users[fold.held])) for fold in refits.folds]
    assert len(held) == 5 and set(held) == {8}
    results = {}
    # one call per fold; 5 blocks of 8 users per call; one block per call
    for entries, groups in ((1 << 30, [264] * 5), (9 * 45, ([40] * 6 + [24]) * 5),
                            (1, [8] * 33 * 5)):
        monkeypatch.setattr(_solver, "_CROSSFIT_ENTRIES", entries)
        scoring.clear()
        results[entries] = _solver.crossfit_shrinkage(NumpyBackend(), *args, refits=refits)
        assert scoring == groups
    one = results[1 << 30]
    for other in (results[9 * 45], results[1]):
        assert other[0] == one[0]
        np.testing.assert_allclose([other[1][c] for c in _solver.SHRINKAGE_GRID],
                                   [one[1][c] for c in _solver.SHRINKAGE_GRID], rtol=1e-12)
        assert other[2] == pytest.approx(one[2], rel=1e-12)
