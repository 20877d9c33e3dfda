"""Calibration: leave-one-out temperature with the basis, and the fold-in temperature."""

import copy
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import log_loss

from sklearn_lore import LowRankRewardEstimator, _solver
from sklearn_lore._backends import torch_available
from sklearn_lore._backends._numpy import NumpyBackend
from sklearn_lore.datasets import load_jester, make_preference_data, pairs_from_ratings
from sklearn_lore.model_selection import (
    WithinUserKFold,
    fewshot_curve,
    fewshot_split,
    within_user_position,
)


def _kron_case(seed=0, d=5, B=2, n=7):
    rng = np.random.RandomState(seed)
    M = rng.standard_normal((d, d))
    A = M @ M.T + 0.1 * np.eye(d)
    N = rng.standard_normal((B, B))
    S = N @ N.T + 0.1 * np.eye(B)
    return rng.standard_normal((n, d)), rng.standard_normal((n, B)), A, S


def test_basis_leverage_matches_the_exact_kronecker_inverse():
    Z, W, A, S, alpha = *_kron_case(), 0.3
    R, Q = _solver.basis_leverage(NumpyBackend(), Z, A, S, alpha)
    H = np.kron(A, S) + alpha * np.eye(A.shape[0] * S.shape[0])
    w_other = np.array([0.7, -0.2])
    WQ = W @ Q
    for i in range(len(Z)):
        g = np.kron(Z[i], W[i])
        exact = g @ np.linalg.solve(H, g)
        assert np.isclose(R[i] @ WQ[i] ** 2, exact, rtol=1e-10)
        # the same R reads how the basis moves another weighting's logit
        cross = np.kron(Z[i], w_other) @ np.linalg.solve(H, g)
        assert np.isclose((R[i] * WQ[i]) @ (Q.T @ w_other), cross, rtol=1e-10)


@pytest.mark.skipif(not torch_available(), reason="torch is not installed")
@pytest.mark.parametrize("max_data_bytes", [None, 64])
def test_basis_leverage_torch_matches_numpy(max_data_bytes):
    from sklearn_lore._backends._torch import TorchBackend

    Z, _, A, S = _kron_case(seed=1, n=40)
    ref, _ = _solver.basis_leverage(NumpyBackend(), Z, A, S, 0.5)
    be = TorchBackend("cpu", max_data_bytes=max_data_bytes)
    got, _ = _solver.basis_leverage(be, be.as_data(Z), A, S, 0.5)
    np.testing.assert_allclose(got, ref, rtol=1e-8)


@pytest.fixture(scope="module")
def few_users_many_dims():
    """120 planted users in 150 dimensions, rank 4: the basis itself overfits."""
    X, y, users, _ = make_preference_data(n_users=120, n_pairs_per_user=40,
                                          n_features=150, n_components=4, random_state=0)
    split = fewshot_split(users, unseen_size=0.25, n_train_pairs=25, shots=(0, 5, 10),
                          random_state=0)
    return X, y, users, split


def test_calibrated_where_the_basis_overfits(few_users_many_dims):
    X, y, users, split = few_users_many_dims
    curves = {
        cal: fewshot_curve(LowRankRewardEstimator(4, random_state=0, calibrate=cal),
                           X, y, users, split=split).set_index(["group", "shots"])
        for cal in (True, False)
    }
    on, off = curves[True], curves[False]
    # uncalibrated, held-out pairs of seen users are worse than a coin flip
    assert off.loc[("seen", 25), "log_loss"] > np.log(2)
    for line in [("seen", 25), ("unseen", 0), ("unseen", 5), ("unseen", 10)]:
        assert on.loc[line, "log_loss"] < np.log(2) - 0.02, line
        assert on.loc[line, "log_loss"] < off.loc[line, "log_loss"] - 0.05, line
        assert on.loc[line, "ece"] < 0.1, line
        # a temperature never changes a predicted label
        assert on.loc[line, "accuracy"] == off.loc[line, "accuracy"]


def test_fold_in_users_get_the_fold_in_temperature(few_users_many_dims):
    X, y, users, split = few_users_many_dims
    est = LowRankRewardEstimator(4, random_state=0).fit(
        X[split.seen_train], y[split.seen_train], user_ids=users[split.seen_train])
    assert est.temperature_ > 1.5
    assert est.fold_in_temperature_ != est.temperature_
    np.testing.assert_array_equal(est.user_temperature_,
                                  np.full(len(est.users_), est.temperature_))
    rows = split.adapt[5]
    seen_user = est.users_[0]
    extra = np.flatnonzero(users == seen_user)[:3]
    batch = np.r_[rows, extra]
    adapted = copy.deepcopy(est).partial_fit_users(X[batch], y[batch], user_ids=users[batch])
    index = adapted._user_index(np.unique(users[rows]))
    np.testing.assert_array_equal(adapted.user_temperature_[index],
                                  adapted.fold_in_temperature_)
    assert adapted.user_temperature_[adapted._user_index([seen_user])[0]] == est.temperature_
    # logits of a folded-in user are the raw reward margins over its temperature
    new_user = users[rows[0]]
    k = adapted._user_index([new_user])[0]
    test = split.unseen_test[users[split.unseen_test] == new_user]
    raw = (X[test] @ adapted.components_.T) @ adapted.user_weights_[k]
    np.testing.assert_allclose(adapted.decision_function(X[test], user_ids=users[test]),
                               raw / adapted.fold_in_temperature_)


def test_temperatures_follow_users_through_forget_and_pickle(few_users_many_dims):
    X, y, users, split = few_users_many_dims
    est = LowRankRewardEstimator(4, random_state=0).fit(
        X[split.seen_train], y[split.seen_train], user_ids=users[split.seen_train])
    est.partial_fit_users(X[split.adapt[5]], y[split.adapt[5]], user_ids=users[split.adapt[5]])
    before = est.predict_proba(X, user_ids=users)
    gone = [est.users_[0]]
    est2 = pickle.loads(pickle.dumps(est)).forget_users(gone)
    assert len(est2.user_temperature_) == len(est2.users_)
    kept = ~np.isin(users, gone)
    np.testing.assert_allclose(est2.predict_proba(X[kept], user_ids=users[kept]), before[kept])


def test_model_without_user_temperatures_predicts_with_temperature_(few_users_many_dims):
    """A model pickled before per-user temperatures existed: every user gets temperature_."""
    X, y, users, split = few_users_many_dims
    est = LowRankRewardEstimator(4, random_state=0).fit(
        X[split.seen_train], y[split.seen_train], user_ids=users[split.seen_train])
    old = copy.deepcopy(est)
    del old.user_temperature_, old.fold_in_temperature_
    np.testing.assert_allclose(old.predict_proba(X, user_ids=users),
                               est.predict_proba(X, user_ids=users))
    old.partial_fit_users(X[split.adapt[5]], y[split.adapt[5]], user_ids=users[split.adapt[5]])
    assert len(old.user_temperature_) == len(old.users_)
    np.testing.assert_allclose(old.user_temperature_, old.temperature_)


def test_calibrate_false_leaves_every_temperature_at_one(few_users_many_dims):
    X, y, users, split = few_users_many_dims
    est = LowRankRewardEstimator(4, random_state=0, calibrate=False).fit(
        X[split.seen_train], y[split.seen_train], user_ids=users[split.seen_train])
    est.partial_fit_users(X[split.adapt[5]], y[split.adapt[5]], user_ids=users[split.adapt[5]])
    assert est.temperature_ == est.fold_in_temperature_ == est.population_temperature_ == 1.0
    np.testing.assert_array_equal(est.user_temperature_, 1.0)


def test_no_users_model_uses_the_basis_leverage():
    """Without ids the model is one ridge direction in d dimensions: its leave-one-out
    logits come from the direction's leverage, which softens a model fitted on few rows."""
    X, y, users, _ = make_preference_data(n_users=1, n_pairs_per_user=80, n_features=60,
                                          n_components=1, random_state=3)
    est = LowRankRewardEstimator(2, random_state=0, alpha=0.1).fit(X, y)
    assert est.temperature_ > 1.0
    assert est.population_temperature_ == est.temperature_ == est.fold_in_temperature_
    assert est.user_temperature_.shape == (0,)


def test_temperatures_survive_save_and_load(few_users_many_dims, tmp_path, monkeypatch):
    from sklearn_lore import io

    X, y, users, split = few_users_many_dims
    est = LowRankRewardEstimator(4, random_state=0).fit(
        X[split.seen_train], y[split.seen_train], user_ids=users[split.seen_train])
    est.partial_fit_users(X[split.adapt[5]], y[split.adapt[5]], user_ids=users[split.adapt[5]])
    io.save(est, tmp_path / "model.lore")
    loaded = io.load(tmp_path / "model.lore")
    np.testing.assert_array_equal(loaded.user_temperature_, est.user_temperature_)
    assert loaded.fold_in_temperature_ == est.fold_in_temperature_
    np.testing.assert_array_equal(loaded.predict_proba(X, user_ids=users),
                                  est.predict_proba(X, user_ids=users))
    # a file whose temperatures do not match its users is rejected
    broken = copy.deepcopy(est)
    broken.user_temperature_ = broken.user_temperature_[:-1]
    with pytest.raises(ValueError, match="user_temperature_"):
        io.save(broken, tmp_path / "broken.lore")  # refused while still in memory
    assert not (tmp_path / "broken.lore").exists()
    with monkeypatch.context() as patch:  # such a file written anyway (by other code)
        patch.setattr(io, "_CHECKS", {})
        io.save(broken, tmp_path / "broken.lore")
    with pytest.raises(ValueError, match="user_temperature_"):
        io.load(tmp_path / "broken.lore")


@pytest.mark.parametrize("first, then", [(True, False), (False, True)])
def test_calibrate_switched_mid_stream_reaches_new_users(first, then):
    """A stream refit that kept its cross-fitted scale wrote back the new-user
    temperature of before, whatever calibrate was now: after calibrate=False new users
    got 0.91 beside temperature_ 1.0; after calibrate=True they kept 1.0."""
    import warnings

    X, y, users, _ = make_preference_data(n_users=20, n_pairs_per_user=20, n_features=6,
                                          random_state=0)
    est = LowRankRewardEstimator(2, random_state=0, calibrate=first)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(X[:300], y[:300], classes=[0, 1], user_ids=users[:300])
        kept = est.fold_in_temperature_
        est.set_params(calibrate=then)
        est.partial_fit(X[300:], y[300:], user_ids=users[300:])  # refits the memory
    new = np.random.default_rng(1).normal(size=(5, 6))
    est.partial_fit_users(new, [0, 1, 0, 1, 1], user_ids=["new"] * 5)
    temperature = est.user_temperature_[list(est.users_).index("new")]
    if then:
        assert est.fold_in_temperature_ != kept == 1.0  # chosen again, with the scale
        assert temperature == est.fold_in_temperature_
    else:
        assert est.temperature_ == est.fold_in_temperature_ == temperature == 1.0
        assert est.population_temperature_ == 1.0


DATA_DIR = Path(__file__).parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def small_jester():
    """20 Jester users: about 550 training pairs (each user's first 28) for a rank-8
    basis in d = 384, the rest held out."""
    if not (DATA_DIR / "jester5k").is_dir():
        pytest.skip("Jester5k data absent")
    jester = load_jester(DATA_DIR)
    users = np.sort(jester.ratings["user_id"].unique())[20:40]
    pairs = pairs_from_ratings(jester.ratings[jester.ratings["user_id"].isin(users)],
                               item_col="joke_id", random_state=0)
    emb = jester.embeddings
    Z = emb.loc[pairs["item_a"]].to_numpy() - emb.loc[pairs["item_b"]].to_numpy()
    frame = pd.DataFrame(Z, columns=[f"e{i}" for i in range(Z.shape[1])])
    frame["user_id"] = pairs["user_id"].to_numpy()
    y = pairs["label"].to_numpy()
    train = within_user_position(frame["user_id"]) < 28
    return frame, y, train


def _held_out_log_loss(model, frame, y, test):
    return log_loss(y[test], model.predict_proba(frame[test])[:, 1])


def test_small_real_data_seen_users_are_calibrated_on_held_out_pairs(small_jester):
    """The cross-fit's refit leaves pairs of its users out, and the seen users'
    temperature is fitted on them: on 20 Jester users it comes within 0.01 of the best
    single temperature fitted on the test pairs themselves (0.0005 to 0.018 on four
    such sets of users). The leave-one-out
    temperature (no cross-fit: a float shrinkage) went to its bound of 20 there, worse
    than no calibration: the fit says so and names the remedy, CalibratedClassifierCV
    over WithinUserKFold, which calibrates them too."""
    frame, y, train = small_jester
    test = ~train
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = LowRankRewardEstimator(random_state=0).fit(frame[train], y[train])
    assert model._seen_temperature_held_out and model._unknown_temperature_held_out
    plain = LowRankRewardEstimator(random_state=0, calibrate=False).fit(frame[train], y[train])
    logits = plain.decision_function(frame[test])
    tau = _solver.fit_inverse_temperature(logits, y[test].astype(float), np.ones(test.sum()),
                                          bounds=(0.01, 100.0))
    best = log_loss(y[test], _solver.expit(tau * logits))
    uncalibrated = _held_out_log_loss(plain, frame, y, test)
    calibrated = _held_out_log_loss(model, frame, y, test)
    assert calibrated < best + 0.01 and calibrated < uncalibrated - 0.1
    with pytest.warns(UserWarning, match="temperature reached its bound"):
        loo = LowRankRewardEstimator(shrinkage=1.0, random_state=0).fit(frame[train], y[train])
    assert loo.temperature_ == pytest.approx(20.0) and not loo._seen_temperature_held_out
    wrapped = CalibratedClassifierCV(
        LowRankRewardEstimator(random_state=0, calibrate=False),
        cv=WithinUserKFold(5, shuffle=True, random_state=0)).fit(frame[train], y[train])
    held_out = _held_out_log_loss(wrapped, frame, y, test)
    assert held_out < min(_held_out_log_loss(loo, frame, y, test), uncalibrated) - 0.05
    # a leave-one-out temperature inside its bound says nothing
    X, yy, ids = make_preference_data(n_users=60, n_pairs_per_user=30, n_features=8,
                                      random_state=0)[:3]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        LowRankRewardEstimator(n_components=2, shrinkage=1.0, random_state=0).fit(
            X, yy, user_ids=ids)


def test_held_out_temperatures_treat_weights_as_repetitions():
    """The seen and unknown users' temperatures come from the cross-fit's held-out rows
    and are fitted with the rows' weights: a weight of 2 gives what a duplicated row
    gives (copies are held out together, and the folds count weight)."""
    X, y, users = make_preference_data(n_users=80, n_pairs_per_user=25, n_features=16,
                                       random_state=1)[:3]
    w = np.where(np.arange(len(y)) % 3 == 0, 2.0, 1.0)
    rep = np.repeat(np.arange(len(y)), w.astype(int))
    a = LowRankRewardEstimator(3, random_state=0).fit(X, y, sample_weight=w, user_ids=users)
    b = LowRankRewardEstimator(3, random_state=0).fit(X[rep], y[rep], user_ids=users[rep])
    assert a._seen_temperature_held_out and a._unknown_temperature_held_out
    for name in ("temperature_", "population_temperature_"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-9)


def test_a_stream_keeps_the_held_out_temperatures_with_its_scale(tmp_path):
    """A stream refit that keeps the cross-fitted scale keeps the temperatures that
    cross-fit fitted on held-out rows (a refit's leave-one-out temperature would stand
    in for them between two cross-fits), through save and load too; a refit that
    chooses the scale again fits them again."""
    import warnings

    from sklearn_lore import io

    X, y, users, _ = make_preference_data(n_users=60, n_pairs_per_user=20, n_features=8,
                                          random_state=0)
    est = LowRankRewardEstimator(2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(X[:800], y[:800], classes=[0, 1], user_ids=users[:800])
        assert est._seen_temperature_held_out and est._unknown_temperature_held_out
        first = (est.temperature_, est.population_temperature_, est.fold_in_temperature_)
        # a file saved before the held-out flags: its new-user temperature came from the
        # cross-fit and is kept with the scale too (its population temperature, from
        # leave-one-out then, is fitted again)
        old = copy.deepcopy(est)
        del old._unknown_temperature_held_out, old._seen_temperature_held_out
        old.partial_fit(X[800:1000], y[800:1000], user_ids=users[800:1000])
        assert old.fold_in_temperature_ == first[2]
        io.save(est, tmp_path / "stream.lore")
        est = io.load(tmp_path / "stream.lore")
        est.partial_fit(X[800:1000], y[800:1000], user_ids=users[800:1000])  # scale kept
        assert (est.temperature_, est.population_temperature_,
                est.fold_in_temperature_) == first
        np.testing.assert_array_equal(
            est.user_temperature_[est._user_index(users[:1000])], first[0])
        est.partial_fit(X[1000:], y[1000:], user_ids=users[1000:])  # 1,200 rows: kept
        assert est.temperature_ == first[0]
        # the memory doubles (1,800 rows against 800): the scale is chosen again
        est.partial_fit(X[:600], y[:600], user_ids=users[:600])
    assert est._seen_temperature_held_out
    assert est.temperature_ != first[0]


def test_the_leave_one_out_temperature_only_softens():
    """Leave-one-out logits see a row's overfit, not the shift between a user's training
    pairs and new ones: the leave-one-out temperature may only soften (on Jester it asked
    to sharpen by 25 % where held-out pairs wanted 4 %). Logits of a third of their
    fitted size, which alone would ask for sharpening, get 1.0."""
    X, y, users = make_preference_data(n_users=40, n_pairs_per_user=20, n_features=6,
                                       random_state=0)[:3]
    est = LowRankRewardEstimator(2, shrinkage=1.0, random_state=0).fit(X, y, user_ids=users)
    F = X @ est.components_.T
    W_rows = est.user_weights_[est._user_index(users)]
    y01 = (y == est.classes_[1]).astype(float)
    t = np.einsum("nb,nb->n", F, W_rows) / 3.0
    assert _solver.fit_inverse_temperature(t, y01, np.ones(len(y))) > 1.5  # wants sharper
    est._fit_temperature(F / 3.0, y01, np.ones(len(y)), W_rows, None)
    assert est.temperature_ == 1.0 and not est._seen_temperature_held_out


def test_held_out_temperatures_need_enough_rows_and_the_seen_one_only_softens(monkeypatch):
    """10 users with 5 pairs each hold out 10 distinct pairs: their temperature, every
    pair ordered right, ran to its bound and sharpened the fit 20-fold (held-out
    log-loss 8.4 against 0.80 uncalibrated). Fewer than 50 distinct held-out rows fall
    back to leave-one-out. And below 500 held-out pairs the seen users' held-out
    temperature may only soften: its refit has fewer rows than the fit, and 30 planted
    users with 8 simplex-weighted pairs each asked for 0.76 on average over seeds where
    their test pairs wanted about 0.94; with 15 pairs (here, 90 held out) 0.98, and the
    clamp leaves 1.0."""
    X, y, u, _ = make_preference_data(n_users=10, n_pairs_per_user=45, n_features=16,
                                      scale=6.0, random_state=37)
    first = within_user_position(u) < 5
    est = LowRankRewardEstimator(n_components=3, random_state=0).fit(
        X[first], y[first], user_ids=u[first])
    assert not est._seen_temperature_held_out and est.temperature_ >= 1.0
    raw = LowRankRewardEstimator(n_components=3, random_state=0, calibrate=False).fit(
        X[first], y[first], user_ids=u[first])
    test = ~first
    assert (log_loss(y[test], est.predict_proba(X[test], user_ids=u[test])[:, 1])
            < log_loss(y[test], raw.predict_proba(X[test], user_ids=u[test])[:, 1]))
    # the seen users' held-out temperature, unclamped, would sharpen here
    X, y, u, _ = make_preference_data(n_users=30, n_pairs_per_user=45, n_features=8,
                                      random_state=0)
    train = within_user_position(u) < 15
    fitted = []
    original = _solver.fit_inverse_temperature

    def recorded(t, yy, ss, bounds=(0.05, 20.0)):
        if bounds[1] == 1.0:  # the seen users' (the only one that may only soften here)
            fitted.append(original(t, yy, ss, bounds=(0.05, 20.0)))
        return original(t, yy, ss, bounds=bounds)

    monkeypatch.setattr(_solver, "fit_inverse_temperature", recorded)
    est = LowRankRewardEstimator(n_components=3, random_state=0, user_weights="simplex").fit(
        X[train], y[train], user_ids=u[train])
    assert est._seen_temperature_held_out and est.temperature_ == 1.0
    assert len(fitted) == 1 and fitted[0] > 1.0  # unclamped: sharper (0.98)
    # 200 such users hold out 600 pairs: enough for the temperature to sharpen
    X, y, u, _ = make_preference_data(n_users=200, n_pairs_per_user=45, n_features=8,
                                      random_state=0)
    train = within_user_position(u) < 15
    est = LowRankRewardEstimator(n_components=3, random_state=0, user_weights="simplex").fit(
        X[train], y[train], user_ids=u[train])
    assert est._seen_temperature_held_out and 0.9 < est.temperature_ < 1.0


def test_few_held_out_rows_decide_alike_for_weights_and_copies_and_guard_new_users():
    """The 50-row rule counts distinct rows: 40 users with 5 pairs each, duplicated or
    weighted 2, hold out 40 distinct pairs of seen users either way (the copies counted
    twice took the duplicated fit to the held-out temperature alone). And the new
    users' temperature needs 50 distinct rows of held-out users too: 10 users with 2
    pairs each gave it 10, and it sharpened new users 2.2-fold (log-loss 1.65 against
    0.90 uncalibrated); it is now the seen users' temperature there."""
    X, y, u, _ = make_preference_data(n_users=40, n_pairs_per_user=5, n_features=8,
                                      random_state=1)
    kw = dict(n_components=2, random_state=0)
    copies = LowRankRewardEstimator(**kw).fit(np.vstack([X, X]), np.r_[y, y],
                                              user_ids=np.r_[u, u])
    weighted = LowRankRewardEstimator(**kw).fit(X, y, user_ids=u,
                                                sample_weight=np.full(len(y), 2.0))
    for name in ("_seen_temperature_held_out", "_unknown_temperature_held_out"):
        assert getattr(copies, name) == getattr(weighted, name)
    assert not copies._seen_temperature_held_out
    for name in ("temperature_", "population_temperature_"):
        assert getattr(copies, name) == pytest.approx(getattr(weighted, name), rel=1e-9)
    X, y, u, _ = make_preference_data(n_users=40, n_pairs_per_user=45, n_features=16,
                                      scale=6.0, random_state=2)
    position = within_user_position(u)
    fitted_users = np.isin(u, np.unique(u)[:10])
    train = fitted_users & (position < 2)
    adapt, test = ~fitted_users & (position < 5), ~fitted_users & (position >= 5)
    losses = {}
    for calibrate in (True, False):
        est = LowRankRewardEstimator(n_components=3, random_state=0, calibrate=calibrate)
        est.fit(X[train], y[train], user_ids=u[train])
        est.partial_fit_users(X[adapt], y[adapt], user_ids=u[adapt])
        losses[calibrate] = log_loss(y[test], est.predict_proba(X[test], user_ids=u[test])[:, 1])
        if calibrate:
            assert est.fold_in_temperature_ == est.temperature_ >= 1.0
    assert losses[True] <= losses[False]


def test_a_stream_refit_without_held_out_new_users_moves_their_temperature():
    """A stream whose first call was too small for a cross-fit (8 users) calibrates new
    users with the seen users' temperature. A refit on the memory that kept the scale
    also kept that old value for new users (2.36 against the refit's 1.58: folded-in
    users 1.5 times softer than one fit on the same rows makes them); it follows the
    seen users' temperature, as in a fit."""
    X, y, ids, _ = make_preference_data(n_users=12, n_pairs_per_user=30, n_features=16,
                                        random_state=1)
    first = np.isin(ids, [f"u{i}" for i in range(8)])
    est = LowRankRewardEstimator(3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(X[first], y[first], classes=[0, 1], user_ids=ids[first])
        before = est.fold_in_temperature_
        assert not est._unknown_temperature_held_out and before == est.temperature_
        est.partial_fit(X[~first], y[~first], user_ids=ids[~first])  # scale kept
    assert not est._unknown_temperature_held_out
    assert est.temperature_ != before
    assert est.fold_in_temperature_ == est.temperature_
    Xn, yn, idn, _ = make_preference_data(n_users=3, n_pairs_per_user=5, n_features=16,
                                          random_state=9)
    est.partial_fit_users(Xn, yn, user_ids=np.array(["new" + i for i in idn], dtype=object))
    np.testing.assert_array_equal(est.user_temperature_[-3:], est.temperature_)


def _memory_free_stream(X, y, u, first, calls=8, **kwargs):
    est = LowRankRewardEstimator(2, random_state=0, stream_memory=0, **kwargs)
    order = np.random.default_rng(0).permutation(len(y))
    batches = [order[:first]] + np.array_split(order[first:], calls)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rows in batches:
            est.partial_fit(X[rows], y[rows], classes=[0, 1], user_ids=u[rows])
    return est


@pytest.fixture(scope="module")
def stream_case():
    X, y, u, _ = make_preference_data(n_users=40, n_pairs_per_user=60, n_features=8,
                                      random_state=5)
    position = within_user_position(u)
    return X, y, u, position < 40


@pytest.mark.parametrize("backend", ["numpy", pytest.param(
    "torch", marks=pytest.mark.skipif(not torch_available(), reason="needs torch"))])
def test_a_memory_free_stream_refits_its_temperatures_on_held_out_logits(stream_case,
                                                                        backend):
    """A memory-free stream kept the temperatures of its first call: 10 rows put the
    seen users' at its bound, 20, and 1,590 more rows left the probabilities squeezed
    towards 0.5 (held-out log-loss 0.666, chance 0.693, one fit 0.494). Each call now
    scores its batch before learning from it and refits the temperatures on those
    logits: the seen users' comes within 0.005 of the best single temperature's
    log-loss, and the unknown users' (every row under the population) is finite."""
    X, y, u, train = stream_case
    kw = {} if backend == "numpy" else {"backend": "torch", "device": "cpu"}
    est = _memory_free_stream(X[train], y[train], u[train], first=10, **kw)
    seen_cal, population_cal = est._stream_calibration
    assert len(seen_cal[0]) == 1000 and len(population_cal[0]) == 1000  # the windows
    assert est.temperature_ < 5
    np.testing.assert_array_equal(est.user_temperature_, est.temperature_)
    assert est.fold_in_temperature_ == est.temperature_  # no cross-fit in the first call
    test = ~train
    proba = est.predict_proba(X[test], user_ids=u[test])[:, 1]
    loss = log_loss(y[test], proba)
    logits = est.decision_function(X[test], user_ids=u[test]) * est.temperature_
    tau = _solver.fit_inverse_temperature(logits, y[test].astype(float), np.ones(test.sum()),
                                          bounds=(0.01, 100.0))
    best = log_loss(y[test], _solver.expit(tau * logits))
    assert loss <= best + 0.005 and loss < 0.55
    assert 0.05 <= 1 / est.population_temperature_ <= 20


def test_a_stream_call_with_few_held_out_rows_keeps_the_temperatures(stream_case):
    """Below 50 held-out rows a window fits no temperature (as the cross-fit's guard);
    calibrate=False keeps every temperature at 1 and no window."""
    X, y, u, train = stream_case
    fitted = LowRankRewardEstimator(2, random_state=0, stream_memory=0).fit(
        X[train][:1200], y[train][:1200], user_ids=u[train][:1200])
    before = (fitted.temperature_, fitted.population_temperature_,
              fitted.fold_in_temperature_)
    rest = np.flatnonzero(train)[1200:]
    fitted.partial_fit(X[rest[:30]], y[rest[:30]], user_ids=u[rest[:30]])
    assert (fitted.temperature_, fitted.population_temperature_,
            fitted.fold_in_temperature_) == before
    assert len(fitted._stream_calibration[1][0]) == 30
    fitted.partial_fit(X[rest[30:100]], y[rest[30:100]], user_ids=u[rest[30:100]])
    assert fitted.population_temperature_ != before[1]  # 100 rows under the population
    plain = _memory_free_stream(X[train], y[train], u[train], first=10, calibrate=False)
    assert plain.temperature_ == plain.population_temperature_ == 1.0
    assert plain._stream_calibration is None


def _fitted_with_two_folded_in(stream_case):
    """A memory-free model fitted on 30 users' training rows, two more folded in: the
    training rows, the fitted users' and the folded-in users' masks."""
    X, y, u, train = stream_case
    Xt, yt, ut = X[train], y[train], u[train]
    first = np.isin(ut, np.unique(ut)[:30])
    est = LowRankRewardEstimator(2, random_state=0, stream_memory=0).fit(
        Xt[first], yt[first], user_ids=ut[first])
    new = np.isin(ut, np.unique(ut)[30:32])
    est.partial_fit_users(Xt[new], yt[new], user_ids=ut[new])
    return est, (Xt, yt, ut), first, new


def test_stream_temperatures_follow_the_rules_for_users_forget_and_files(stream_case,
                                                                        tmp_path):
    """Users with the seen users' temperature follow it; a user folded in with the
    cross-fit's new-user temperature keeps it; forget_users drops the windows (they
    hold rows of the forgotten users); a saved stream continues as the one in memory."""
    from sklearn_lore import io

    X, y, u, train = stream_case
    est, (Xt, yt, ut), first, new = _fitted_with_two_folded_in(stream_case)
    folded = est._user_index(np.unique(ut[new]))
    kept = est.fold_in_temperature_
    assert kept != est.temperature_ and est._unknown_temperature_held_out
    rest = ~first & ~new
    io.save(est, tmp_path / "stream.lore")
    copy_ = io.load(tmp_path / "stream.lore")
    for model in (est, copy_):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for rows in np.array_split(np.flatnonzero(rest), 3):
                model.partial_fit(Xt[rows], yt[rows], user_ids=ut[rows])
    assert est.fold_in_temperature_ == kept
    np.testing.assert_array_equal(est.user_temperature_[folded], kept)
    others = np.setdiff1d(np.arange(len(est.users_)), folded)
    np.testing.assert_array_equal(est.user_temperature_[others], est.temperature_)
    np.testing.assert_array_equal(copy_.predict_proba(X, user_ids=u),
                                  est.predict_proba(X, user_ids=u))
    io.save(est, tmp_path / "later.lore")  # the windows go through a file
    est.forget_users(np.unique(ut)[:2])
    assert est._stream_calibration is None


def test_a_memory_free_stream_without_users_has_one_temperature(stream_case):
    X, y, u, train = stream_case
    est = LowRankRewardEstimator(2, random_state=0, stream_memory=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rows in np.array_split(np.flatnonzero(train), 6):
            est.partial_fit(X[rows], y[rows], classes=[0, 1])
    assert est._stream_calibration[0] is None
    assert est.temperature_ == est.population_temperature_ == est.fold_in_temperature_
    assert est.temperature_ != 1.0


def test_a_memory_free_stream_counts_copies_of_a_row_once(stream_case):
    """A batch of 30 rows weighted 2 and the same rows duplicated: the duplicated
    batch's 60 rows passed the 50-row line and sharpened the population's temperature
    2-fold (0.559 against the weighted batch's unchanged 1.264). Copies of a row of one
    user are one held-out row with their weights summed, as in the cross-fit."""
    X, y, u, train = stream_case
    Xt, yt, ut = X[train], y[train], u[train]
    order = np.random.default_rng(0).permutation(len(yt))

    def fitted():
        return LowRankRewardEstimator(2, random_state=0, stream_memory=0).fit(
            Xt[order[:1200]], yt[order[:1200]], user_ids=ut[order[:1200]])

    rows = order[1200:1230]
    weighted, copies = fitted(), fitted()
    weighted.partial_fit(Xt[rows], yt[rows], sample_weight=np.full(30, 2.0),
                         user_ids=ut[rows])
    both = np.r_[rows, rows]
    copies.partial_fit(Xt[both], yt[both], user_ids=ut[both])
    for a, b in zip(weighted._stream_calibration, copies._stream_calibration):
        for part_a, part_b in zip(a, b):
            np.testing.assert_allclose(part_a, part_b, rtol=1e-12)
    assert len(copies._stream_calibration[1][0]) == 30
    for name in ("temperature_", "population_temperature_", "fold_in_temperature_"):
        assert getattr(copies, name) == getattr(weighted, name)
    assert copies.population_temperature_ == fitted().population_temperature_


def test_stream_temperatures_when_calibrate_is_switched_off_and_on(stream_case):
    """calibrate=False during a memory-free stream: every temperature 1 and no held-out
    logits, as a fit or a memory refit makes it (they stayed calibrated, and the
    windows of the older model came back with calibrate=True)."""
    X, y, u, train = stream_case
    rows = np.array_split(np.flatnonzero(train), 5)
    est = LowRankRewardEstimator(2, random_state=0, stream_memory=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in rows[:3]:
            est.partial_fit(X[r], y[r], classes=[0, 1], user_ids=u[r])
        assert est.temperature_ != 1.0 and est._stream_calibration is not None
        est.set_params(calibrate=False).partial_fit(X[rows[3]], y[rows[3]],
                                                     user_ids=u[rows[3]])
    assert est._stream_calibration is None
    assert est.temperature_ == est.population_temperature_ == est.fold_in_temperature_ == 1
    np.testing.assert_array_equal(est.user_temperature_, 1.0)
    np.testing.assert_array_equal(est.predict_proba(X[:5], user_ids=u[:5])[:, 1],
                                  _solver.expit(est.decision_function(X[:5], user_ids=u[:5])))
    est.set_params(calibrate=True).partial_fit(X[rows[4]], y[rows[4]], user_ids=u[rows[4]])
    assert len(est._stream_calibration[1][0]) == len(rows[4])  # this call's rows alone


def test_a_stream_of_an_old_file_without_users_keeps_one_temperature(stream_case):
    """Files saved before the with-users flag existed: partial_fit reads a model with no
    users as fitted without ids, and so do the stream's temperatures now (they took it
    for a model with users: the population's moved alone)."""
    X, y, u, train = stream_case
    idx = np.flatnonzero(train)
    est = LowRankRewardEstimator(2, random_state=0, stream_memory=0).fit(X[idx[:300]],
                                                                        y[idx[:300]])
    del est._fit_with_users
    for r in np.array_split(idx[300:], 3):
        est.partial_fit(X[r], y[r])
    assert est.temperature_ == est.population_temperature_ == est.fold_in_temperature_
    assert est.temperature_ != 1.0


def test_a_memory_refit_gives_folded_in_users_its_new_user_temperature():
    """A user folded in between two calls of a stream with memory kept the temperature
    of the model before the refit (1.554, beside the refit's 1.489 and 1.493), and no
    later call moved it. It gets the refit's new-user temperature."""
    X, y, ids, _ = make_preference_data(n_users=21, n_pairs_per_user=30, n_features=16,
                                        random_state=1)
    first = np.isin(ids, [f"u{i}" for i in range(8)])
    folded = ids == "u20"
    rest = ~first & ~folded
    est = LowRankRewardEstimator(3, random_state=0, stream_memory=100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(X[first], y[first], classes=[0, 1], user_ids=ids[first])
        est.partial_fit_users(X[folded][:10], y[folded][:10], user_ids=ids[folded][:10])
        before = est.user_temperature_[est._user_index(np.array(["u20"]))[0]]
        est.partial_fit(X[rest], y[rest], user_ids=ids[rest])  # a refit of the memory
    assert est.fold_in_temperature_ != before
    assert est.user_temperature_[est._user_index(np.array(["u20"]))[0]] == \
        est.fold_in_temperature_


def test_stream_windows_are_fitted_as_documented_and_reset_by_fit(stream_case):
    """Each temperature is fitted on its own window (the seen users' on known users'
    rows, the population's on every row), a window keeps a content-chosen sample of a
    batch larger than it (the same whatever the rows' order), a fit drops the windows
    (a later call then starts from its own rows), and a seen window under 50 rows
    leaves temperature_ as it was."""
    X, y, u, _ = stream_case
    idx = np.arange(len(y))
    first = idx[within_user_position(u) < 20]
    est = LowRankRewardEstimator(2, random_state=0, stream_memory=0).fit(
        X[first], y[first], user_ids=u[first])
    before = est.temperature_
    rest = np.setdiff1d(idx, first)
    few = rest[np.isin(u[rest], est.users_)][:40]  # known users' rows: a seen window of 40
    est.partial_fit(X[few], y[few], user_ids=u[few])
    assert len(est._stream_calibration[0][0]) == 40 and est.temperature_ == before
    batch = np.random.default_rng(1).permutation(np.setdiff1d(rest, few))
    other = copy.deepcopy(est)
    est.partial_fit(X[batch], y[batch], user_ids=u[batch])
    # a batch larger than the window: the rows kept do not depend on the rows' order
    # (in the batch's order they did), and they are an even sample of the batch
    shuffled = batch[np.random.default_rng(2).permutation(len(batch))]
    other.partial_fit(X[shuffled], y[shuffled], user_ids=u[shuffled])
    for a, b in zip(est._stream_calibration, other._stream_calibration):
        for part_a, part_b in zip(a, b):
            np.testing.assert_array_equal(part_a, part_b)
    assert other.temperature_ == est.temperature_
    assert other.population_temperature_ == est.population_temperature_
    seen, population = est._stream_calibration
    assert abs(population[1].mean() - y[batch].mean()) < 0.03
    for window, name in ((seen, "temperature_"), (population, "population_temperature_")):
        assert len(window[0]) == 1000
        assert getattr(est, name) == 1.0 / _solver.fit_inverse_temperature(
            *window, bounds=(0.05, 20.0))
    est.fit(X[first], y[first], user_ids=u[first])
    assert est._stream_calibration is None
    temperatures = (est.temperature_, est.population_temperature_)
    est.partial_fit(X[few[:30]], y[few[:30]], user_ids=u[few[:30]])
    assert [len(w[0]) for w in est._stream_calibration] == [30, 30]
    assert (est.temperature_, est.population_temperature_) == temperatures


def test_the_seen_users_stream_temperature_sharpens_only_on_500_rows():
    """Fitted on labels of which 30 % were flipped, the model is too soft for clean
    rows: a window of 200 held-out rows wants to sharpen it, which it may only from
    500 rows on (the cross-fit's rule); 600 rows do."""
    X, y, u, _ = make_preference_data(n_users=40, n_pairs_per_user=60, n_features=8,
                                      random_state=5)
    position = within_user_position(u)
    noisy = y.copy()
    flip = np.random.default_rng(0).random(len(y)) < 0.3
    noisy[flip] = 1 - noisy[flip]
    fit_rows = position < 30
    for n_rows, sharpened in ((200, False), (600, True)):
        est = LowRankRewardEstimator(2, random_state=0, stream_memory=0).fit(
            X[fit_rows], noisy[fit_rows], user_ids=u[fit_rows])
        clean = np.flatnonzero(~fit_rows)[:n_rows]
        est.partial_fit(X[clean], y[clean], user_ids=u[clean])
        assert (est.temperature_ < 1.0) == sharpened


def test_calibrate_switched_off_in_a_memory_free_stream_reaches_folded_in_users(stream_case):
    est, (Xt, yt, ut), first, _ = _fitted_with_two_folded_in(stream_case)
    assert est.fold_in_temperature_ != est.temperature_
    rows = np.flatnonzero(first)[:200]
    est.set_params(calibrate=False).partial_fit(Xt[rows], yt[rows], user_ids=ut[rows])
    np.testing.assert_array_equal(est.user_temperature_, 1.0)
    assert est.fold_in_temperature_ == 1.0


def test_a_streams_bound_warning_gives_a_streams_advice():
    """A small first partial_fit call reaches the leave-one-out bound; the warning said
    to wrap the estimator in CalibratedClassifierCV, which cannot stream. In a stream it
    says that later calls fit the temperature again; after a fit it names the wrapper."""
    X, y, u, _ = make_preference_data(n_users=40, n_pairs_per_user=30, n_features=16,
                                      random_state=0)
    with pytest.warns(UserWarning, match="reached its bound .* the next partial_fit calls "
                                         "fit it again") as caught:
        LowRankRewardEstimator(3, random_state=0).partial_fit(
            X[:40], y[:40], classes=[0, 1], user_ids=u[:40])
    assert not any("CalibratedClassifierCV" in str(w.message) for w in caught)
    with pytest.warns(UserWarning, match="reached its bound .* CalibratedClassifierCV"):
        LowRankRewardEstimator(3, random_state=0).fit(X[:40], y[:40], user_ids=u[:40])
