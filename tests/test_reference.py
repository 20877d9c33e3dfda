"""The fitted model against an independent numpy/scipy reference of the documented math.

Everything the package is checked against here is re-derived in this file from the
documentation (``sklearn_lore._objective``, the docstrings of ``fit_alternating``,
``empirical_bayes_prior``, ``kron_curvature``, ``basis_leverage`` and
``LowRankRewardEstimator._fit_temperature`` / ``_update_population``); none of the
package's objective or gradient helpers is called for a reference value:

* the alternating fit ends at a stationary point of the documented objective
  J(V, Theta, mu), and ``objective_`` is J at the fit divided by the total weight
  (free and simplex weights, through the estimator and through ``fit_alternating``);
* the new-user prior (``prior_mean_``, ``prior_precision_`` with ``shrinkage=1``) is
  the fixed point of a Laplace EM written here;
* ``temperature_`` and ``population_temperature_`` equal a slow per-row recomputation of
  the approximate leave-one-out logits, the basis leverage read off an explicit
  ``kron(A, S) + alpha I`` inverted directly, then a bounded 1-d logistic fit;
* a memory-free ``partial_fit`` adds exactly the batch's data Hessian at the new
  population weights to the population's precision;
* the torch backend (CPU) gives the numpy backend's probabilities for simplex weights,
  after ``fit`` and after ``partial_fit_users``.

The problems are tiny (12 users, d = 8, B = 2) so that the references can be slow and
explicit and the whole file runs in a few seconds.
"""

import numpy as np
import pytest
from scipy.optimize import approx_fprime, minimize, minimize_scalar
from scipy.special import expit, log_softmax

from sklearn_lore import LowRankRewardEstimator, _solver
from sklearn_lore._backends._numpy import NumpyBackend
from sklearn_lore.datasets import make_preference_data

N_USERS, D, B = 12, 8, 2


def _data(n_pairs=20, weights="free", seed=0, sample_weight=False, noise=1.0):
    """Rows of N_USERS users (grouped by user), labels in {0, 1}, weights, groups."""
    X, y, users, _ = make_preference_data(n_users=N_USERS, n_pairs_per_user=n_pairs,
                                          n_features=D, n_components=B, weights=weights,
                                          noise=noise, random_state=seed)
    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    groups = np.unique(users, return_inverse=True)[1]
    s = np.ones(len(y))
    if sample_weight:
        s = np.random.RandomState(seed + 100).uniform(0.5, 2.0, len(y))
    return X, y, s, np.asarray(users), groups


def _rank_within_user(g):
    """Position of each row among its user's rows (0, 1, ... in row order)."""
    return np.array([np.count_nonzero(g[:i] == g[i]) for i in range(len(g))])


# ---------------------------------------------------------------------------
# the reference: the documented objective, written out again


def _weights(theta, kind):
    """w = m(theta): identity (free) or row softmax (simplex)."""
    return np.exp(log_softmax(theta, axis=1)) if kind == "simplex" else theta


def _ref_objective(Z, y, s, g, V, theta, mu, lam, alpha, kind):
    """J(V, Theta, mu) of the _objective module docstring, with P = lam I."""
    t = np.einsum("nb,nb->n", Z @ V, _weights(theta, kind)[g])
    value = s @ (np.logaddexp(0.0, t) - y * t)
    value += 0.5 * lam * np.sum((theta - mu) ** 2) + 0.5 * alpha * np.sum(V * V)
    if kind == "free":
        value += 0.5 * lam * mu @ mu
    return value


def _ref_gradient(Z, y, s, g, V, theta, mu, lam, alpha, kind):
    """Analytic gradient of :func:`_ref_objective` in (V, Theta, mu)."""
    F = Z @ V
    W = _weights(theta, kind)
    r = s * (expit(np.einsum("nb,nb->n", F, W[g])) - y)
    gV = Z.T @ (r[:, None] * W[g]) + alpha * V
    gW = np.zeros_like(theta)
    np.add.at(gW, g, r[:, None] * F)
    if kind == "simplex":  # chain rule through the softmax: J g = w * (g - w . g)
        gW = W * (gW - np.sum(W * gW, axis=1, keepdims=True))
    gtheta = gW + lam * (theta - mu)
    gmu = lam * mu - lam * np.sum(theta - mu, axis=0) if kind == "free" else 0.0 * mu
    return gV, gtheta, gmu


def _ref_users_and_mu(Z, y, s, g, V, lam, alpha, kind):
    """min over (Theta, mu) of J with V fixed (mu = 0 for simplex), by scipy L-BFGS-B."""
    G = int(g.max()) + 1
    n_mu = B if kind == "free" else 0

    def unpack(x):
        return x[:G * B].reshape(G, B), (x[G * B:] if n_mu else np.zeros(B))

    def fg(x):
        theta, mu = unpack(x)
        _, gt, gm = _ref_gradient(Z, y, s, g, V, theta, mu, lam, alpha, kind)
        f = _ref_objective(Z, y, s, g, V, theta, mu, lam, alpha, kind)
        return f, np.concatenate([gt.ravel(), gm[:n_mu]])

    res = minimize(fg, np.zeros(G * B + n_mu), jac=True, method="L-BFGS-B",
                   options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 10000})
    return unpack(res.x)


def _check_reference_gradient(Z, y, s, g, V, theta, mu, lam, alpha, kind):
    """The reference gradient is the derivative of the reference objective (finite
    differences at a nearby point), so a stationarity test cannot pass vacuously."""
    rng = np.random.RandomState(7)
    shapes = [V.shape, theta.shape, mu.shape]
    x0 = np.concatenate([V.ravel(), theta.ravel(), mu.ravel()])
    x0 = x0 + 0.1 * rng.standard_normal(x0.shape)

    def split(x):
        a, b = V.size, V.size + theta.size
        return [x[:a].reshape(shapes[0]), x[a:b].reshape(shapes[1]), x[b:].reshape(shapes[2])]

    def f(x):
        return _ref_objective(Z, y, s, g, *split(x), lam, alpha, kind)

    analytic = np.concatenate([a.ravel() for a in _ref_gradient(Z, y, s, g, *split(x0),
                                                                 lam, alpha, kind)])
    numeric = approx_fprime(x0, f, 1e-6)
    if kind == "simplex":  # mu is fixed at 0 for simplex weights: no mu block
        analytic[V.size + theta.size:] = numeric[V.size + theta.size:] = 0.0
    # forward differences with step 1e-6 on O(100) function values: error ~1e-3
    np.testing.assert_allclose(analytic, numeric, atol=5e-3 * max(1.0, np.abs(numeric).max()))


# ---------------------------------------------------------------------------
# stationarity of the alternating fit


@pytest.mark.parametrize("kind", ["free", "simplex"])
def test_fit_is_a_stationary_point_of_the_documented_objective(kind):
    """Guards the basis gradient of the alternating fit (a lost ``alpha * V`` term, a
    wrong weighting of rows) and ``objective_``: with V = components_.T fixed, the users
    (and, for free weights, mu) minimized by scipy on the reference objective, the
    reference gradient in V must vanish and J / sum(s) must equal ``objective_``."""
    lam, alpha = 1.3, 0.7
    Z, y, s, users, g = _data(weights=kind, sample_weight=True)
    est = LowRankRewardEstimator(B, user_weights=kind, alpha=alpha, prior_strength=lam,
                                 shrinkage=1.0, calibrate=False, tol=1e-12, max_iter=2000,
                                 backend="numpy", random_state=0)
    est.fit(Z, y, sample_weight=s, user_ids=users)
    V = est.components_.T
    theta, mu = _ref_users_and_mu(Z, y, s, g, V, lam, alpha, kind)
    _check_reference_gradient(Z, y, s, g, V, theta, mu, lam, alpha, kind)
    gV, gtheta, _ = _ref_gradient(Z, y, s, g, V, theta, mu, lam, alpha, kind)
    total = s.sum()
    # the inner solve is converged (the V-gradient test below relies on it)
    assert np.abs(gtheta).max() / total < 1e-7
    worst = np.abs(gV).max() / total
    # the fit stops at a relative objective change of 1e-12 (L-BFGS gtol 1e-9 on J /
    # sum(s)): observed max |dJ/dV| / sum(s) <= 7e-8; a basis gradient without the
    # alpha V term leaves about alpha max|V| / sum(s) ~ 5e-3, one without lam mu 3e-3
    assert worst < 1e-5, f"max |dJ/dV| / sum(s) = {worst:.2e} at the fitted basis"
    # J is flat at the optimum: the inner solve's error enters squared (~1e-13 observed)
    ref = _ref_objective(Z, y, s, g, V, theta, mu, lam, alpha, kind) / total
    assert est.objective_ == pytest.approx(ref, rel=1e-8)


@pytest.mark.parametrize("kind", ["free", "simplex"])
def test_fit_alternating_is_stationary_in_every_block(kind):
    """Guards the gradient of every block of ``_solver.fit_alternating`` (basis V, users
    Theta, prior centre mu; a lost ``lam * mu`` term moves mu to mean(theta) instead of
    sum(theta) / (G + 1)): the reference gradient at its returned (V, Theta, mu) must
    vanish and its objective must be J / sum(s) there."""
    lam, alpha = 1.3, 0.7
    Z, y, s, _, g = _data(weights=kind, sample_weight=True, seed=3)
    be = NumpyBackend()
    rows = _solver.make_rows(be, Z, y, s, g, N_USERS)
    V0 = _solver.spectral_init(be, rows.Z, y, s, g, N_USERS, B, 0)
    res = _solver.fit_alternating(be, rows, V0, kind, alpha, lam, 2000, 1e-12)
    mu = np.zeros(B) if res.mu is None else res.mu
    if kind == "simplex":
        assert res.mu is None or np.allclose(res.mu, 0.0)  # documented: mu = 0
    gV, gtheta, gmu = _ref_gradient(Z, y, s, g, res.V, res.theta, mu, lam, alpha, kind)
    total = s.sum()
    # same scale as above: observed <= 5e-8 per block; a gradient without lam mu leaves
    # lam |mu| / sum(s) ~ 4e-3 in the mu block (and 3e-4 in the V block)
    for name, grad in (("mu", gmu), ("theta", gtheta), ("V", gV)):
        worst = np.abs(grad).max() / total
        assert worst < 1e-5, f"max |dJ/d{name}| / sum(s) = {worst:.2e} at the fit"
    if kind == "free":
        # the documented block optimum of mu, to the fit's accuracy (observed 2e-7
        # absolute for |mu| ~ 1); a gradient without lam * mu gives mean(theta), 8% off
        np.testing.assert_allclose(mu, res.theta.sum(axis=0) / (N_USERS + 1), rtol=0,
                                   atol=1e-5 * np.abs(mu).max())
    ref = _ref_objective(Z, y, s, g, res.V, res.theta, mu, lam, alpha, kind) / total
    # evaluated at the same point: only rounding separates them
    assert res.objective == pytest.approx(ref, rel=1e-10)


# ---------------------------------------------------------------------------
# empirical-Bayes prior of new users


def _ref_map_users(F, y, s, g, mu, P, theta=None):
    """Every user's MAP (free weights) under N(mu, P^-1), damped Newton, and its data
    Hessian there."""
    G = int(g.max()) + 1
    theta = np.tile(mu, (G, 1)) if theta is None else theta.copy()

    def f(th):
        t = np.einsum("nb,nb->n", F, th[g])
        dev = th - mu
        return (np.bincount(g, s * (np.logaddexp(0.0, t) - y * t), minlength=G)
                + 0.5 * np.einsum("gb,bc,gc->g", dev, P, dev))

    def hessian_and_p(th):
        p = expit(np.einsum("nb,nb->n", F, th[g]))
        H = np.zeros((G, B, B))
        np.add.at(H, g, (s * p * (1 - p))[:, None, None] * F[:, :, None] * F[:, None, :])
        return H, p

    for _ in range(100):
        H, p = hessian_and_p(theta)
        grad = np.zeros((G, B))
        np.add.at(grad, g, (s * (p - y))[:, None] * F)
        grad += (theta - mu) @ P
        step = np.linalg.solve(H + P, grad[:, :, None])[:, :, 0]
        if np.abs(step).max() < 1e-13:
            break
        rate, f0 = np.ones(G), f(theta)
        for _ in range(50):
            worse = f(theta - rate[:, None] * step) > f0 + 1e-14 * np.abs(f0)
            if not worse.any():
                break
            rate[worse] /= 2
        theta = theta - rate[:, None] * step
    return theta, hessian_and_p(theta)[0]


def _ref_laplace_em(F, y, s, g, lam, max_iter=1000, tol=1e-13):
    """Laplace EM for N(mu, Sigma) over the users' parameters, run to its fixed point:
    E-step every user's MAP and posterior covariance (H_u + P)^-1, M-step mu = mean of
    the MAPs, Sigma = their covariance (over G) + the mean posterior covariance."""
    G = int(g.max()) + 1
    mu, sigma, theta = np.zeros(B), np.eye(B) / lam, None
    for _ in range(max_iter):
        P = np.linalg.inv(sigma)
        theta, H = _ref_map_users(F, y, s, g, mu, P, theta)
        mu = theta.mean(axis=0)
        dev = theta - mu
        new = (dev.T @ dev + np.linalg.inv(H + P).sum(axis=0)) / G
        change, sigma = np.abs(new - sigma).max(), new
        if change <= tol:
            break
    return mu, np.linalg.inv(sigma), sigma


def test_new_user_prior_is_the_laplace_em_fixed_point():
    """Guards the empirical-Bayes prior (``prior_mean_``, ``prior_precision_`` with
    shrinkage=1): a Sigma that drops the users' mean posterior covariance, or a wrong
    centre, departs from the fixed point of the Laplace EM written here. Also the
    users of the fit are the MAPs under that prior (``user_weights_``) and
    ``user_precision_`` is their data Hessian plus the prior precision."""
    Z, y, s, users, g = _data(n_pairs=40)
    est = LowRankRewardEstimator(B, shrinkage=1.0, calibrate=False, tol=1e-12,
                                 max_iter=2000, backend="numpy", random_state=0)
    est.fit(Z, y, user_ids=users)
    F = Z @ est.components_.T
    mu, P, sigma = _ref_laplace_em(F, y, s, g, lam=1.0)
    # the package stops its EM when Sigma changes by at most 1e-6 (relative) in a round;
    # on this problem it converges (observed 7e-6 relative off the fixed point, EM
    # converging linearly); dropping the posterior covariance multiplies P by ~2.5
    np.testing.assert_allclose(est.prior_precision_, P, rtol=1e-3,
                               atol=1e-3 * np.abs(P).max())
    np.testing.assert_allclose(est.prior_mean_, mu, rtol=0, atol=1e-3 * np.abs(mu).max())
    # the users re-solved under the package's own prior: its Newton stops at a
    # decrement of 1e-10 before stepping: its weights are within ~1e-5 (observed 2e-6
    # relative)
    theta, H = _ref_map_users(F, y, s, g, est.prior_mean_, est.prior_precision_)
    assert list(est.users_) == list(np.unique(users))  # g indexes users_
    np.testing.assert_allclose(est.user_weights_, theta, rtol=0,
                               atol=1e-4 * np.abs(theta).max())
    np.testing.assert_allclose(est.user_precision_, H + est.prior_precision_, rtol=0,
                               atol=1e-4 * np.abs(H).max())


# ---------------------------------------------------------------------------
# leave-one-out temperatures


def _ref_inverse_temperature(t, y, s, bounds):
    """argmin over tau in ``bounds`` of sum_i s_i logloss(y_i, sigmoid(tau t_i))."""
    def loss(tau):
        return s @ (np.logaddexp(0.0, tau * t) - y * tau * t)
    return minimize_scalar(loss, bounds=bounds, method="bounded",
                           options={"xatol": 1e-12}).x


def _ref_temperatures(est, Z, y, s, g, kind, floor=0.05):
    """``temperature_`` and ``population_temperature_`` recomputed row by row.

    Per the docstrings of ``_fit_temperature``, ``kron_curvature`` and
    ``basis_leverage``: held-out logit t_i + h_i r_i / max(1 - c_i h_i, floor) for the
    user part (h_i = (J F_i)^T P_u^-1 (J F_i)) and the same with the basis leverage
    h_b = g_i^T (kron(A, S) + alpha I)^-1 g_i, g_i = vec(z_i w_i^T), for the basis part;
    A = (sum_i c_i) / (sum_i s_i) Z^T diag(s) Z, S = sum_i c_i w_i w_i^T / sum_i c_i with
    c_i = s_i p_i (1 - p_i). The population's logit moves by the same basis step read
    with its own weights. Inverse temperatures in [0.05, 1] (users) and [0.05, 20]."""
    V, W, w_pop = est.components_.T, est.user_weights_, est.population_weights_
    n, d = Z.shape
    F = Z @ V
    t = np.einsum("nb,nb->n", F, W[g])
    p = expit(t)
    c, residual = p * (1 - p), p - y
    curv = s * c
    A = (Z.T * s) @ Z * curv.sum() / s.sum()
    S = (W[g].T * curv) @ W[g] / curv.sum()
    H_inv = np.linalg.inv(np.kron(A, S) + est.alpha * np.eye(d * B))
    shift, pop_shift = np.zeros(n), np.zeros(n)
    for i in range(n):
        w = W[g[i]]
        Gi = F[i] if kind == "free" else (np.diag(w) - np.outer(w, w)) @ F[i]
        h = Gi @ np.linalg.solve(est.user_precision_[g[i]], Gi)
        shift[i] += residual[i] * h / max(1.0 - c[i] * h, floor)
        gi = np.kron(Z[i], w)
        h_basis = gi @ H_inv @ gi
        scale = residual[i] / max(1.0 - c[i] * h_basis, floor)
        shift[i] += scale * h_basis
        pop_shift[i] = scale * (np.kron(Z[i], w_pop) @ H_inv @ gi)
    tau = _ref_inverse_temperature(t + shift, y, s, (0.05, 1.0))
    tau_pop = _ref_inverse_temperature(F @ w_pop + pop_shift, y, s, (0.05, 20.0))
    return 1.0 / tau, 1.0 / tau_pop


@pytest.mark.parametrize("kind", ["free", "simplex"])
def test_temperatures_match_a_slow_leave_one_out_recomputation(kind):
    """Guards the calibration: the user part of the leave-one-out shift (without it
    ``temperature_`` drops, 1.77 to 1.16 here for free weights) and the basis part of
    the population's shift (without it ``population_temperature_`` drops, 1.83 to
    1.18) must both be there, with the documented floors and bounds."""
    # noisy labels and a weak basis penalty: the fit overfits, so the leave-one-out
    # temperatures are inside their bounds (at a bound they would not see a change)
    Z, y, s, users, g = _data(n_pairs=10, weights=kind, noise=3.0)
    est = LowRankRewardEstimator(B, user_weights=kind, alpha=0.1, shrinkage=1.0,
                                 calibrate=True, tol=1e-10, max_iter=2000, backend="numpy",
                                 random_state=0)
    est.fit(Z, y, user_ids=users)
    assert list(est.users_) == list(np.unique(users))  # g indexes users_
    T, T_pop = _ref_temperatures(est, Z, y, s, g, kind)
    assert 1.05 < T < 19.0 and 0.06 < 1 / T_pop < 19.0, (T, T_pop)
    # Brent's bounded search to 1e-12 against Newton to 1e-10: observed 1e-8 relative
    assert est.temperature_ == pytest.approx(T, rel=1e-6)
    assert est.population_temperature_ == pytest.approx(T_pop, rel=1e-6)


# ---------------------------------------------------------------------------
# streaming population


@pytest.mark.parametrize("kind", ["free", "simplex"])
def test_memory_free_batch_adds_its_hessian_to_the_population_precision(kind):
    """Guards the streaming population update (``_update_population``): after one
    memory-free ``partial_fit`` batch, the population's posterior precision must be
    the previous one plus that batch's data Hessian at the new population parameters
    (Gauss-Newton through the softmax for simplex), and those parameters the MAP of
    the batch under the previous population prior."""
    Z, y, s, users, g = _data(n_pairs=30, weights=kind)
    rank = _rank_within_user(g)
    first, batch = rank < 20, rank >= 20
    est = LowRankRewardEstimator(B, user_weights=kind, shrinkage=1.0, calibrate=False,
                                 stream_memory=0, tol=1e-10, max_iter=2000,
                                 backend="numpy", random_state=0)
    est.fit(Z[first], y[first], user_ids=users[first])
    P_old = est._population_precision.copy()  # the population's posterior precision
    centre_old = est.prior_mean_.copy()
    est.partial_fit(Z[batch], y[batch], user_ids=users[batch])
    F = Z[batch] @ est.components_.T
    theta, w = est.prior_mean_, est.population_weights_
    np.testing.assert_allclose(_weights(theta[None], kind)[0], w, rtol=1e-12, atol=1e-15)
    p = expit(F @ w)
    H = F.T @ ((s[batch] * p * (1 - p))[:, None] * F)
    grad = F.T @ (s[batch] * (p - y[batch]))
    if kind == "simplex":
        J = np.diag(w) - np.outer(w, w)
        H, grad = J @ H @ J, J @ grad
    # the MAP: the package's Newton stops at a decrement of 1e-10
    grad = grad + P_old @ (theta - centre_old)
    assert np.abs(grad).max() < 1e-6 * np.abs(P_old).max(), f"population gradient {grad}"
    # the same Hessian at the same point up to rounding; a missing Hessian is O(1)
    np.testing.assert_allclose(est._population_precision, P_old + H, rtol=1e-9,
                               atol=1e-9 * np.abs(H).max())
    assert np.abs(H).max() > 1e-2 * np.abs(P_old).max()  # the batch's part is visible


# ---------------------------------------------------------------------------
# backends


def test_torch_backend_matches_numpy_with_simplex_weights():
    """Guards the torch backend's softmax and simplex path: one simplex user step on
    torch (CPU, float64) must reach the reference MAP first (cheap: a broken torch
    path fails here instead of running a slow fit), then torch and numpy estimators
    must give the same probabilities after fit and after partial_fit_users (new users
    and a known one), for known and unknown users."""
    pytest.importorskip("torch")
    from sklearn_lore._backends import resolve_backend

    Z, y, s, users, g = _data(n_pairs=30, weights="simplex", seed=1)
    lam = 1.0
    F = Z @ np.random.RandomState(0).standard_normal((D, B))
    # the user problem is J with Z -> F and V = I (plus a constant alpha term)
    theta_ref, _ = _ref_users_and_mu(F, y, s, g, np.eye(B), lam, 0.0, "simplex")
    for name in ("numpy", "torch"):
        be = resolve_backend(name, "cpu")
        rows = _solver.make_rows(be, F, y, s, g, N_USERS)
        theta, _ = _solver.user_step(be, rows, be.asarray(F), be.zeros((N_USERS, B)),
                                     be.zeros(B), lam * be.eye(B), "simplex")
        # the package's Newton stops at a decrement of 1e-10 (weights within ~1e-6);
        # a softmax over the wrong axis is O(0.1) off
        np.testing.assert_allclose(_weights(be.to_numpy(theta), "simplex"),
                                   _weights(theta_ref, "simplex"), atol=1e-5, err_msg=name)

    fit_rows = _rank_within_user(g) < 20
    fit_rows &= g < N_USERS - 3  # three users are only ever folded in
    models = {}
    for backend in ("numpy", "torch"):
        est = LowRankRewardEstimator(B, user_weights="simplex", shrinkage=1.0, tol=1e-12,
                                     max_iter=2000, backend=backend, device="cpu",
                                     random_state=0)
        models[backend] = est.fit(Z[fit_rows], y[fit_rows], user_ids=users[fit_rows])
    unknown = np.full(len(y), "nobody")
    # the same float64 iterates up to rounding (observed 2e-16 apart); 1e-6 leaves room
    # for another BLAS's rounding to move a stopping round (a wrong softmax axis: O(0.1))
    for ids in (users, unknown):
        np.testing.assert_allclose(models["torch"].predict_proba(Z, user_ids=ids),
                                   models["numpy"].predict_proba(Z, user_ids=ids), atol=1e-6)
    fold = ~fit_rows & ((g >= N_USERS - 3) | (g == 0))
    for est in models.values():
        est.partial_fit_users(Z[fold], y[fold], user_ids=users[fold])
    np.testing.assert_allclose(models["torch"].predict_proba(Z, user_ids=users),
                               models["numpy"].predict_proba(Z, user_ids=users), atol=1e-6)
    np.testing.assert_allclose(models["torch"].user_weights_, models["numpy"].user_weights_,
                               atol=1e-6)
