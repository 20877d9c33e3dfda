"""The user step's row layout (sklearn_lore._solver.make_blocks) and the user step on it.

The user step works on the rows laid out user by user: one block per user when the row
counts are even enough, else blocks as wide as the mean count, several for a heavy user.
Both layouts must give every user the same sums and the same minimizer as a plain
per-user computation, whatever the row order.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from sklearn_lore import LowRankRewardEstimator
from sklearn_lore import _solver
from sklearn_lore._backends import torch_available
from sklearn_lore._backends._numpy import NumpyBackend

BACKENDS = ["numpy"] + (["torch"] if torch_available() else [])

# row counts per user: even, one heavy user among light ones (several blocks), users
# without rows in both layouts, a single user, no rows at all
COUNTS = {
    "even": [5, 5, 5, 5],
    "uneven": [2, 3, 1, 4],
    "heavy": [300] + [2] * 60,
    "heavy_with_empty": [0, 250, 0] + [1] * 80 + [0],
    "empty_users": [0, 3, 0, 2],
    "single": [17],
    "no_rows": [0, 0, 0],
}


def _backend(name):
    if name == "numpy":
        return NumpyBackend()
    from sklearn_lore._backends._torch import TorchBackend

    return TorchBackend("cpu")


def _to_numpy(a):
    return np.asarray(a.numpy() if hasattr(a, "numpy") else a)


def _rows(counts, seed=0):
    rng = np.random.default_rng(seed)
    groups = rng.permutation(np.repeat(np.arange(len(counts)), counts))
    n = groups.shape[0]
    return groups, (rng.random(n) < 0.5).astype(float), rng.uniform(0.5, 2.0, n)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(COUNTS))
def test_blocks_hold_every_row_once_and_sum_like_segments(backend, case):
    be = _backend(backend)
    counts = COUNTS[case]
    groups, y, s = _rows(counts)
    n, G = groups.shape[0], len(counts)
    blocks = _solver.make_blocks(be, groups, y, s, G)
    index, yb, sb = (_to_numpy(a) for a in (blocks.index, blocks.y, blocks.s))
    real = sb > 0
    # every row exactly once, with its label and weight; padding weighs nothing
    np.testing.assert_array_equal(np.sort(index[real]), np.arange(n))
    np.testing.assert_array_equal(yb[real], y[index[real]])
    np.testing.assert_array_equal(sb[real], s[index[real]])
    assert index.size <= 2 * n + 1024 + index.shape[1]
    one_per_user = G * max(counts) <= 2 * n + 1024
    assert (blocks.owner is None) == one_per_user
    owner = np.arange(G) if blocks.owner is None else _to_numpy(blocks.owner)
    np.testing.assert_array_equal(owner[np.nonzero(real)[0]], groups[index[real]])
    # per-user sums from blocks equal the sums over each user's rows
    rows = _solver.make_rows(be, np.zeros((n, 1)), y, s, groups, G)
    values = np.random.default_rng(1).standard_normal(n)
    per_block = be.asarray(np.sum(sb * values[index], axis=1))
    got = _to_numpy(_solver._to_users(be, rows, per_block))
    np.testing.assert_allclose(got, np.bincount(groups, s * values, minlength=G),
                               atol=1e-12)


def _reference_user_step(F, y, s, groups, G, mu, P):
    """Each user's MAP weights by scipy's exact trust-region Newton, one user at a time."""
    out = np.zeros((G, F.shape[1]))
    for g in range(G):
        out[g] = _reference_one_user(F[groups == g], y[groups == g], s[groups == g], mu, P)
    return out


def _reference_one_user(Fg, yg, sg, mu, P):
    def f(w):
        t = Fg @ w
        p = 1.0 / (1.0 + np.exp(-t))
        value = np.sum(sg * (np.logaddexp(0.0, t) - yg * t)) + 0.5 * (w - mu) @ P @ (w - mu)
        return value, Fg.T @ (sg * (p - yg)) + P @ (w - mu)

    def hess(w):
        p = 1.0 / (1.0 + np.exp(-(Fg @ w)))
        return Fg.T @ ((sg * p * (1.0 - p))[:, None] * Fg) + P

    return minimize(f, mu.copy(), jac=True, hess=hess, method="trust-exact",
                    options={"gtol": 1e-12}).x


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["even", "heavy", "heavy_with_empty", "empty_users"])
def test_user_step_matches_a_per_user_minimizer(backend, case):
    be = _backend(backend)
    counts = COUNTS[case]
    groups, y, s = _rows(counts, seed=2)
    n, G, B = groups.shape[0], len(counts), 3
    rng = np.random.default_rng(3)
    F = rng.standard_normal((n, B))
    mu, P = np.array([0.2, -0.1, 0.0]), 0.5 * np.eye(B)
    rows = _solver.make_rows(be, np.zeros((n, 1)), y, s, groups, G)
    # a decrement tolerance near round-off: Newton then lands on the minimizer itself
    theta, hess = _solver.user_step(be, rows, be.asarray(F), be.zeros((G, B)), be.asarray(mu),
                                    be.asarray(P), "free", tol=1e-20)
    theta, hess = _to_numpy(theta), _to_numpy(hess)
    np.testing.assert_allclose(theta, _reference_user_step(F, y, s, groups, G, mu, P),
                               atol=1e-8)
    # the returned curvature is each user's data Hessian at its solution
    t = np.einsum("nb,nb->n", F, theta[groups])
    c = s / (1.0 + np.exp(-t)) / (1.0 + np.exp(t))
    expected = np.zeros((G, B, B))
    np.add.at(expected, groups, c[:, None, None] * F[:, :, None] * F[:, None, :])
    np.testing.assert_allclose(hess, expected, atol=1e-8)
    # users without rows stay at the prior centre
    empty = np.asarray(counts) == 0
    np.testing.assert_allclose(theta[empty], np.broadcast_to(mu, theta[empty].shape),
                               atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(counts=st.lists(st.integers(0, 40), min_size=1, max_size=30),
       seed=st.integers(0, 2**16), kind=st.sampled_from(["free", "simplex"]))
def test_user_step_ignores_row_order_and_layout(counts, seed, kind):
    """Shuffling the rows changes neither the users' solutions nor their curvature."""
    be = NumpyBackend()
    groups, y, s = _rows(counts, seed)
    n, G, B = groups.shape[0], len(counts), 2
    F = np.random.default_rng(seed + 1).standard_normal((n, B))
    perm = np.random.default_rng(seed + 2).permutation(n)
    results = []
    for order in (np.arange(n), perm):
        rows = _solver.make_rows(be, np.zeros((n, 1)), y[order], s[order], groups[order], G)
        results.append(_solver.user_step(be, rows, F[order], be.zeros((G, B)), be.zeros(B),
                                         be.eye(B), kind))
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-9)
    np.testing.assert_allclose(results[0][1], results[1][1], atol=1e-9)


# ---------------------------------------------------------------------------
# the spectral start's randomized path (users and features both over 512)


def _decaying(n, d, rank, seed):
    rng = np.random.RandomState(seed)
    U, _ = np.linalg.qr(rng.standard_normal((n, 40)))
    V, _ = np.linalg.qr(rng.standard_normal((d, 40)))
    values = np.r_[np.linspace(40.0, 10.0, rank), np.linspace(2.0, 0.5, 40 - rank)]
    return (U * values) @ V.T + 0.01 * rng.standard_normal((n, d))


@pytest.mark.parametrize("backend", BACKENDS)
def test_randomized_top_right_matches_the_exact_svd(backend):
    be = _backend(backend)
    A = _decaying(600, 700, 6, seed=0)
    _, exact_values, exact_vt = np.linalg.svd(A, full_matrices=False)
    values, vt = _solver._randomized_top_right(be, be.asarray(A), 6, np.random.RandomState(1))
    np.testing.assert_allclose(values, exact_values[:6], rtol=1e-10)
    np.testing.assert_allclose(vt, _solver.svd_flip_rows(exact_vt[:6]), atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_spectral_start_of_many_users_and_features_on_both_backends(backend):
    """600 users x 600 features takes the randomized path; a rank-3 signal asked for
    5 columns keeps 3 from the data and fills 2 at random, orthonormal to them."""
    rng = np.random.RandomState(5)
    n_users, d = 600, 600
    groups = np.repeat(np.arange(n_users), 2)
    mix = rng.standard_normal((n_users, 3)) @ np.linalg.qr(rng.standard_normal((d, 3)))[0].T
    Z = np.repeat(mix, 2, axis=0) / 2.0  # each user's two rows sum to its signal
    y, s = np.ones(len(groups)), np.ones(len(groups))
    be = _backend(backend)
    basis = _solver.spectral_init(be, be.as_data(Z), y, s, groups, n_users, 5, 0)
    reference = _solver.spectral_init(NumpyBackend(), Z, y, s, groups, n_users, 5, 0)
    assert basis.shape == (d, 5)
    np.testing.assert_allclose(basis.T @ basis, np.eye(5), atol=1e-10)
    _, _, vt = np.linalg.svd(mix, full_matrices=False)
    np.testing.assert_allclose(np.abs(basis[:, :3].T @ vt[:3].T), np.eye(3), atol=1e-8)
    np.testing.assert_allclose(basis, reference, atol=1e-8)


# ---------------------------------------------------------------------------
# the user step by graph replays (CUDA graphs on a GPU), emulated on the CPU


class _EmulatedGraph:
    """What a CUDA graph does, eagerly: static input buffers copied into, outputs the
    same tensors after every call, overwritten by each."""

    def __init__(self, body, inputs):
        self.body, self.inputs, self.outputs = body, [x.clone() for x in inputs], None

    def __call__(self, *inputs):
        for static, value in zip(self.inputs, inputs):
            if value is not None and value is not static:
                static.copy_(value)
        new = self.body(*self.inputs)
        if self.outputs is None:
            self.outputs = new
        else:
            for out, value in zip(self.outputs, new):
                out.copy_(value)
        return self.outputs


def _graph_backend(captures):
    from sklearn_lore._backends._torch import TorchBackend

    class GraphBackend(TorchBackend):
        def graph(self, body, inputs, nbytes=0):
            captures.append(nbytes)
            return _EmulatedGraph(body, inputs)

    be = GraphBackend("cpu")
    be.cuda_graphs = True
    return be


needs_torch = pytest.mark.skipif(not torch_available(), reason="needs torch")


@needs_torch
@pytest.mark.parametrize("trials", [0, 1, 2])
@pytest.mark.parametrize("kind", ["free", "simplex"])
@pytest.mark.parametrize("per_user_prior", [False, True])
def test_graphed_user_step_gives_the_eager_iterates(monkeypatch, trials, kind, per_user_prior):
    """Bit for bit, whether the graph's fixed-length line search settles every user
    (trials=2 mostly does) or an eager search reruns it (trials=0 always)."""
    monkeypatch.setattr(_solver, "_GRAPH_TRIALS", trials)
    captures = []
    eager, graphed = _backend("torch"), _graph_backend(captures)
    groups, y, s = _rows(COUNTS["heavy_with_empty"], seed=4)
    n, G, B = groups.shape[0], len(COUNTS["heavy_with_empty"]), 3
    rng = np.random.default_rng(5)
    F = 3.0 * rng.standard_normal((n, B))  # steep: some users need several halvings
    mu = rng.standard_normal((G, B)) if per_user_prior else rng.standard_normal(B)
    P = np.stack([np.eye(B) * (1 + g % 3) for g in range(G)]) if per_user_prior else np.eye(B)
    results = []
    for be in (eager, graphed):
        rows = _solver.make_rows(be, np.zeros((n, 1)), y, s, groups, G)
        theta = be.zeros((G, B))
        for _ in range(3):  # the graph is captured at the second call, replayed at the third
            theta, hess = _solver.user_step(be, rows, be.asarray(F * (1 + 0.1 * _)), theta,
                                            be.asarray(mu), be.asarray(P), kind)
        results.append((_to_numpy(theta), _to_numpy(hess)))
    assert len(captures) == 1
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@needs_torch
@pytest.mark.parametrize("graphed", [False, True])
def test_user_step_reports_newton_iterations_running_out(graphed):
    """Both the eager loop and the graph's replays append "max_iter" to ``status`` when
    the iterations run out before every user converged, and nothing when they suffice."""
    be = _graph_backend([]) if graphed else _backend("torch")
    groups, y, s = _rows(COUNTS["heavy"], seed=2)
    n, G, B = groups.shape[0], len(COUNTS["heavy"]), 3
    F = be.asarray(4.0 * np.random.default_rng(3).standard_normal((n, B)))
    rows = _solver.make_rows(be, np.zeros((n, 1)), y, s, groups, G)
    mu, P = be.asarray(np.zeros(B)), be.asarray(1e-3 * np.eye(B))
    for _ in range(_solver._GRAPH_AT_CALL - 1):  # a graph is used from this call on
        _solver.user_step(be, rows, F, be.zeros((G, B)), mu, P, "free")
    for max_iter, expected in [(1, ["max_iter"]), (50, [])]:
        status = []
        theta, _ = _solver.user_step(be, rows, F, be.zeros((G, B)), mu, P, "free",
                                     max_iter=max_iter, status=status)
        assert status == expected
        assert np.isfinite(_to_numpy(theta)).all()


@pytest.mark.parametrize("kind", ["free", "simplex"])
@pytest.mark.parametrize("per_user_prior", [False, True])
@pytest.mark.parametrize("max_iter", [50, 6])
def test_the_compacting_user_step_gives_the_full_loops_numbers(kind, per_user_prior, max_iter,
                                                                monkeypatch):
    """On numpy the users already converged drop out of the user step's problem: bit for
    bit the parameters and Hessians of iterating on all of them, the status alike."""
    class FullLoop(NumpyBackend):
        name = "numpy-full"  # not compacted

    groups, y, s = _rows([1, 2, 14, 3, 9, 1, 20, 2] * 6, seed=3)
    G, B = 48, 3
    rng = np.random.default_rng(1)
    F = 4.0 * rng.standard_normal((groups.shape[0], B))  # steep: users converge unevenly
    mu = rng.standard_normal((G, B)) if per_user_prior else rng.standard_normal(B)
    P = (np.stack([np.eye(B) * (0.2 + g % 3) for g in range(G)]) if per_user_prior
         else 0.3 * np.eye(B))
    results, shrunk = [], []
    layout = _solver._Layout
    monkeypatch.setattr(_solver, "_Layout", lambda blocks: shrunk.append(1) or layout(blocks))
    for be in (NumpyBackend(), FullLoop()):
        rows = _solver.make_rows(be, np.zeros((groups.shape[0], 1)), y, s, groups, G)
        assert rows.blocks.owner is None
        status = []
        theta, hess = _solver.user_step(be, rows, F, np.zeros((G, B)), mu, P, kind,
                                        max_iter=max_iter, status=status)
        results.append((theta, hess, status))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert results[0][2] == results[1][2] == (["max_iter"] if max_iter == 6 else [])
    assert shrunk  # the problem did shrink


@needs_torch
def test_fit_with_graphed_user_steps_predicts_as_eager(monkeypatch):
    from sklearn_lore import LowRankRewardEstimator
    from sklearn_lore._backends import _torch as torch_module
    from sklearn_lore.datasets import make_preference_data

    X, y, users, _ = make_preference_data(n_users=30, n_pairs_per_user=20, n_features=6,
                                          n_components=2, random_state=1)
    eager = LowRankRewardEstimator(2, backend="torch", device="cpu", random_state=0)
    eager.fit(X, y, user_ids=users)
    captures = []
    graph_backend = type(_graph_backend(captures))

    def make(*args, **kwargs):
        be = graph_backend(*args, **kwargs)
        be.cuda_graphs = True
        return be

    monkeypatch.setattr(torch_module, "TorchBackend", make)  # resolve_backend's import
    graphed = LowRankRewardEstimator(2, backend="torch", device="cpu", random_state=0)
    graphed.fit(X, y, user_ids=users)
    assert len(captures) >= 2  # at least the main fit's and the prior's user steps
    np.testing.assert_array_equal(graphed.predict_proba(X, user_ids=users),
                                  eager.predict_proba(X, user_ids=users))
    np.testing.assert_array_equal(graphed.components_, eager.components_)


@needs_torch
def test_a_graphed_user_step_does_not_keep_the_rows_alive():
    """The graph is stored in the rows; it must not refer back to them (a cycle would
    hold the data on the GPU until a garbage collection)."""
    import gc
    import weakref

    be = _graph_backend([])
    groups, y, s = _rows(COUNTS["even"])
    n, G = groups.shape[0], len(COUNTS["even"])
    rows = _solver.make_rows(be, np.zeros((n, 1)), y, s, groups, G)
    for _ in range(2):
        _solver.user_step(be, rows, be.asarray(np.ones((n, 2))), be.zeros((G, 2)), be.zeros(2),
                          be.eye(2), "free")
    assert any(rows.graphs.values())
    ref = weakref.ref(rows)
    gc.disable()
    try:
        del rows
        assert ref() is None
    finally:
        gc.enable()


# ---------------------------------------------------------------------------
# the L-BFGS two-loop recursion with batched inner products


def _plain_two_loop(g, pairs, precond):
    """The textbook recursion, one inner product at a time (the reference)."""
    q, coeffs = g.copy(), []
    for s_vec, y_vec, rho in reversed(pairs):
        a = rho * np.vdot(s_vec, q)
        coeffs.append(a)
        q = q - a * y_vec
    q = precond(q)
    if pairs:
        s_vec, y_vec, rho = pairs[-1]
        q = q * ((1.0 / rho) / np.vdot(y_vec, precond(y_vec)))
    for (s_vec, y_vec, rho), a in zip(pairs, reversed(coeffs)):
        b = rho * np.vdot(y_vec, q)
        q = q + (a - b) * s_vec
    return q


def _two_loop(be, g, pairs, precond):
    """H g for plain pairs ``[(s, y, rho)]`` through the solver's memory (inner products
    computed here, as L-BFGS reads them with the objective) and `_solver._direction`."""
    memory = _solver._Pairs(be, max(len(pairs), 1))
    for s_vec, y_vec, _ in pairs:
        s_vec, y_vec = s_vec.reshape(-1), y_vec.reshape(-1)
        stacks = memory.stacks()
        held = [] if stacks is None else [stacks[1] @ s_vec, stacks[0] @ y_vec]
        host = be.read(be.dot(s_vec, y_vec), *held)
        n = len(memory)
        memory.add(s_vec, y_vec, host[0], host[1:1 + n], host[1 + n:1 + 2 * n])
    Sg = be.read(memory.stacks()[0] @ g.reshape(-1)) if pairs else np.zeros(0)
    return -_solver._direction(be, g, memory, Sg, precond)[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("m", [0, 1, 3, 10])
def test_batched_two_loop_gives_the_textbook_direction(backend, m):
    be = _backend(backend)
    rng = np.random.default_rng(m)
    shape = (7, 3)
    M = rng.standard_normal((21, 21))
    M = M @ M.T + 21 * np.eye(21)  # a positive definite "Hessian"
    P = np.diag(rng.uniform(0.5, 2.0, 21))  # the preconditioner, a fixed scaling here
    pairs_np = []
    for _ in range(m):
        s_vec = rng.standard_normal(shape)
        y_vec = (M @ s_vec.reshape(-1)).reshape(shape)
        pairs_np.append((s_vec, y_vec, 1.0 / np.vdot(s_vec, y_vec)))
    g = rng.standard_normal(shape)

    def precond_np(q):
        return (P @ q.reshape(-1)).reshape(shape)

    Pb = be.asarray(P)

    def precond(q):
        return (Pb @ q.reshape(-1)).reshape(shape)

    pairs = [(be.asarray(s_vec), be.asarray(y_vec), rho) for s_vec, y_vec, rho in pairs_np]
    got = _to_numpy(_two_loop(be, be.asarray(g), pairs, precond))
    np.testing.assert_allclose(got, _plain_two_loop(g, pairs_np, precond_np), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("bounds", [(0.05, 1.0), (0.05, 20.0), (2.0, 20.0)])
def test_inverse_temperature_is_the_constrained_minimizer_and_stops_at_a_bound(
        bounds, monkeypatch):
    """The clipped 1-d Newton gives the minimizer of the convex loss over the interval
    (checked on a fine grid), and when that is a bound it stops after a step or two
    instead of repeating the clipped step up to its iteration limit."""
    from sklearn_lore import _solver

    rng = np.random.RandomState(0)
    t = 3.0 * rng.standard_normal(2000)
    y = (rng.uniform(size=t.size) < _solver.expit(0.4 * t)).astype(float)  # wants tau ~ 0.4
    s = rng.uniform(0.5, 1.5, t.size)
    calls = []
    expit = _solver.expit
    monkeypatch.setattr(_solver, "expit", lambda u: calls.append(1) or expit(u))
    tau = _solver.fit_inverse_temperature(t, y, s, bounds=bounds)
    grid = np.linspace(*bounds, 20001)
    loss = [np.sum(s * (np.logaddexp(0, g * t) - y * g * t)) for g in grid]
    assert abs(tau - grid[int(np.argmin(loss))]) <= (bounds[1] - bounds[0]) / 20000
    if bounds[0] > 0.4:
        assert tau == bounds[0] and len(calls) <= 3


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preconditioned", [True, False])
def test_lbfgs_reads_the_host_twice_a_round_and_finds_the_minimizer(backend, preconditioned,
                                                                      monkeypatch):
    """L-BFGS on a ridge logistic regression: the minimizer scipy finds, the objective
    decreasing, and every value it needs from the backend comes in batched reads, one
    per evaluation and one per direction: no other host sync."""
    be = _backend(backend)
    rng = np.random.default_rng(5)
    Z = rng.standard_normal((300, 12)) * rng.uniform(0.2, 3.0, 12)
    y = (rng.uniform(size=300) < _solver.expit(Z @ rng.standard_normal(12))).astype(float)
    Zb, yb = be.asarray(Z), be.asarray(y)
    evaluations, directions, reads = [], [], []

    def fg(u):
        evaluations.append(1)
        t = (Zb @ u)[:, 0]
        value = be.sum(be.softplus(t) - yb * t) + 0.5 * be.sum(u * u)
        return value, Zb.T @ (be.sigmoid(t) - yb)[:, None] + u, None

    for name in ("scalar", "vdot", "abs_max", "to_numpy", "max_value"):
        def refuse(*args, _name=name):
            raise AssertionError(f"lbfgs read the host through be.{_name}")
        setattr(be, name, refuse)
    read = be.read
    be.read = lambda *arrays: reads.append(1) or read(*arrays)
    direction = _solver._direction
    monkeypatch.setattr(_solver, "_direction",
                        lambda *args: directions.append(1) or direction(*args))
    A_inv = be.asarray(np.linalg.inv(Z.T @ Z / 4 + np.eye(12)))
    trace = []
    u, f, _, n_iter = _solver.lbfgs(
        be, fg, be.zeros((12, 1)), max_iter=200, gtol=1e-9, ftol=0.0,
        precond=(lambda q: A_inv @ q) if preconditioned else None,
        callback=lambda k, value: trace.append(value) and False)

    def loss(w):
        t = Z @ w
        return np.sum(np.logaddexp(0, t) - y * t) + 0.5 * w @ w

    best = minimize(loss, np.zeros(12), jac=lambda w: Z.T @ (_solver.expit(Z @ w) - y) + w,
                    method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(_to_numpy(u)[:, 0], best.x, atol=1e-6)
    assert abs(f - best.fun) <= 1e-9 * abs(best.fun)
    assert np.all(np.diff(trace) <= 1e-12)
    assert len(reads) == len(evaluations) + len(directions)
    assert len(directions) <= n_iter + 1 and len(evaluations) >= n_iter


def test_the_fit_stops_by_its_own_rule_not_on_one_tiny_step(caplog):
    """L-BFGS's own exit (one round of relative decrease under 1e-12) ended a creeping,
    nearly separable fit at round 1,336 with tol=1e-10 unmet and no warning (an audit;
    the objective fell by 8e-4 relative after it). Now the fit ends when three rounds
    in a row change it by under tol, or warns at max_iter."""
    import logging

    from scipy.special import expit

    rng = np.random.RandomState(11)
    G, n, d = 20, 25, 6
    V, W = rng.randn(d, 2), rng.randn(G, 2) + 0.5
    g = np.repeat(np.arange(G), n)
    Z = rng.randn(G * n, d) / np.sqrt(d) * 2
    y = (rng.rand(G * n) < expit(np.einsum("nd,db,nb->n", Z, V, W[g]))).astype(int)
    est = LowRankRewardEstimator(2, shrinkage=1.0, calibrate=False, tol=1e-10, max_iter=3000,
                                 random_state=0, verbose=1, backend="numpy")
    with caplog.at_level(logging.INFO, logger="sklearn_lore"):
        est.fit(Z * 1e6, y, user_ids=g)  # features this large: a weak penalty in effect
    values = np.array([record.args[1] for record in caplog.records
                       if record.msg.startswith("round %d")])
    assert len(values) == est.n_iter_ < 3000
    assert np.all(np.abs(np.diff(values[-4:])) <= 1e-10 * abs(values[-1]))


@pytest.mark.parametrize("stream", [False, True])
def test_users_newton_iterations_running_out_in_a_fit_are_reported(monkeypatch, stream):
    """The fold-in warned when the users' Newton iterations ran out; a fit and a stream
    update did not (a 240-row fit with a broken Newton direction took 280 s, silently)."""
    import functools
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from sklearn_lore.datasets import make_preference_data

    X, y, users, _ = make_preference_data(n_users=8, n_pairs_per_user=20, n_features=4,
                                          random_state=0)
    est = LowRankRewardEstimator(2, random_state=0, shrinkage=1.0, calibrate=False,
                                 stream_memory=0)
    if stream:
        est.fit(X, y, user_ids=users)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as fitted normally: no warning
        (est.partial_fit(X[:40], y[:40], user_ids=users[:40]) if stream
         else est.fit(X, y, user_ids=users))
    # one Newton iteration a user step: it runs out wherever a user has not converged
    monkeypatch.setattr(_solver, "user_step",
                        functools.partial(_solver.user_step, max_iter=1))
    with pytest.warns(ConvergenceWarning, match="users' Newton iterations ran out"):
        (est.partial_fit(X[40:80], y[40:80], user_ids=users[40:80]) if stream
         else est.fit(X, y, user_ids=users))


def test_users_newton_iterations_running_out_in_the_final_prior_step_are_reported(
        monkeypatch):
    """The stored user weights come from the empirical-Bayes prior's last user step,
    which reported nothing when its iterations ran out."""
    from sklearn.exceptions import ConvergenceWarning

    from sklearn_lore.datasets import make_preference_data

    X, y, users, _ = make_preference_data(n_users=8, n_pairs_per_user=20, n_features=4,
                                          random_state=0)
    original = _solver.empirical_bayes_prior

    def running_out(*args, status=None, **kwargs):
        out = original(*args, status=status, **kwargs)
        if status is not None:
            status.append("max_iter")
        return out

    monkeypatch.setattr(_solver, "empirical_bayes_prior", running_out)
    with pytest.warns(ConvergenceWarning, match="users' Newton iterations ran out"):
        LowRankRewardEstimator(2, random_state=0, shrinkage=1.0).fit(X, y, user_ids=users)


def test_lbfgs_reports_a_line_search_that_found_no_decrease():
    """Forty halvings without a decrease ended the iteration silently, short of every
    other rule; ``status`` now records it (the estimator warns, see test_reliability)."""
    from sklearn_lore._backends._numpy import NumpyBackend

    be = NumpyBackend()

    def uphill(x):  # a gradient of the wrong sign: no step along -g decreases f
        return float(np.sum(x * x)), -2.0 * x, None

    status = []
    x, f, _, n_iter = _solver.lbfgs(be, uphill, np.ones((3, 1)), max_iter=50, gtol=1e-12,
                                    ftol=0.0, status=status)
    assert status == ["line_search"] and n_iter == 1
    np.testing.assert_array_equal(x, np.ones((3, 1)))
    status = []
    _solver.lbfgs(be, lambda x: (float(np.sum(x * x)), 2.0 * x, None), np.ones((3, 1)),
                  max_iter=50, gtol=1e-12, ftol=0.0, status=status)
    assert status == []
