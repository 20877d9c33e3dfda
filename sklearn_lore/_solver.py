"""Alternating minimization of the low-rank Bradley-Terry objective.

The objective and its derivatives are stated in :mod:`sklearn_lore._objective`.
Every function here takes a backend ``be`` (:mod:`sklearn_lore._backends`) and
clean arrays of that backend: validation happened at the estimator's boundary.

* :func:`user_step`: all users' weights at once, V fixed; batched damped Newton
  (exact Newton for free weights, Gauss-Newton through the softmax for simplex
  weights) with a per-user backtracking line search. Few-shot fold-in is exactly
  this step for new users.
* :func:`fit_alternating`: from a spectral initialization, rounds of an exact user
  step and an L-BFGS basis step (one pass ``Z V`` and one pass ``Z^T R`` over the
  data each) until the relative objective change falls below ``tol``.
"""

from dataclasses import dataclass, field, replace

import numpy as np
from sklearn.utils import check_random_state

from . import _objective as obj


@dataclass
class Blocks:
    """The rows laid out user by user for the user step.

    ``index`` (n_blocks, width) holds row numbers (padding points at row 0 and has
    weight 0), ``y`` and ``s`` the rows' labels and weights in that layout. A user's
    rows fill one block when the users' row counts are not too uneven (block g is then
    user g, ``owner`` is None); otherwise the blocks are as wide as the mean count, a
    user owns as many as its rows need, ``owner`` (n_blocks,) names it and ``owner_seg``
    sums blocks into users. Either way the layout holds at most about twice the rows, and
    the user step's per-user sums are batched matrix products.
    """

    index: object
    y: object
    s: object
    owner: object
    owner_seg: object


def make_blocks(be, groups, y, s, n_groups):
    """The :class:`Blocks` of numpy rows ``groups``, ``y``, ``s`` in backend arrays."""
    groups = np.asarray(groups, dtype=np.intp)
    n = groups.shape[0]
    counts = np.bincount(groups, minlength=n_groups)
    top = int(counts.max()) if n else 0
    if n_groups * top <= 2 * n + 1024:
        width, per_user = top, np.ones(n_groups, dtype=np.intp)
    else:
        width = max(-(-n // max(np.count_nonzero(counts), 1)), 1)
        per_user = -(-counts // width)
    order = np.argsort(groups, kind="stable")
    ordered = groups[order]
    position = np.arange(n) - (np.cumsum(counts) - counts)[ordered]
    block = (np.cumsum(per_user) - per_user)[ordered] + position // width
    column = position % width if width else position
    n_blocks = int(per_user.sum())
    index = np.zeros((n_blocks, width), dtype=np.intp)
    yb, sb = np.zeros((n_blocks, width)), np.zeros((n_blocks, width))
    index[block, column] = order
    yb[block, column] = np.asarray(y, dtype=np.float64)[order]
    sb[block, column] = np.asarray(s, dtype=np.float64)[order]
    owner = owner_seg = None
    if n_blocks != n_groups or np.any(per_user != 1):
        owner = be.as_index(np.repeat(np.arange(n_groups), per_user))
        owner_seg = be.segments(owner, n_groups)
    return Blocks(index=be.as_index(index), y=be.asarray(yb), s=be.asarray(sb), owner=owner,
                  owner_seg=owner_seg)


@dataclass
class Rows:
    """The comparisons in backend arrays: data Z, labels y in {0, 1}, weights s, and the
    same rows laid out user by user (:class:`Blocks`) for the user step."""

    Z: object
    y: object
    s: object
    groups: object
    n_groups: int
    s_total: float
    blocks: Blocks
    graphs: dict = field(default_factory=dict)  # the user step's CUDA graphs, by shapes


def make_rows(be, Z, y, s, groups, n_groups):
    """Move numpy inputs to the backend once per fit (Z may already be backend data)."""
    return Rows(
        Z=be.as_data(Z),
        y=be.asarray(y),
        s=be.asarray(s),
        groups=be.as_index(groups),
        n_groups=int(n_groups),
        s_total=float(np.sum(s)),
        blocks=make_blocks(be, groups, y, s, int(n_groups)),
    )


# ---------------------------------------------------------------------------
# initialization


def svd_flip_rows(vt):
    """Deterministic signs: the largest entry of each singular vector is positive."""
    signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
    return vt * np.where(signs == 0, 1.0, signs)[:, None]


def spectral_init(be, Z, y, s, groups, n_groups, n_components, random_state):
    """Top singular directions of the users' aggregated preference signals.

    Each user contributes ``sum_i s_i (2 y_i - 1) z_i``, the direction its
    comparisons point to (one pass over the backend data ``Z``); the top right
    singular vectors of that (G, d) matrix give distinct, deterministic basis
    columns (signs fixed by ``svd_flip``). Columns beyond the matrix rank are
    filled from ``random_state``. A (G, d) matrix with both sides over 512 is
    decomposed by randomized subspace iteration where it was summed (on the GPU
    for the torch backend): only a (k, d) matrix, k = rank + 10, comes to the host.
    """
    d = Z.shape[1]
    agg = be.group_sums(Z, groups, s * (2.0 * y - 1.0), n_groups, to_host=False)
    rank = min(n_components, *agg.shape)
    rng = check_random_state(random_state)
    if rank > 0 and be.abs_max(agg) > 0:
        if min(agg.shape) <= 512:
            _, sv, vt = np.linalg.svd(be.to_numpy(agg), full_matrices=False)
            sv, vt = sv[:rank], svd_flip_rows(vt[:rank])
        else:
            sv, vt = _randomized_top_right(be, agg, rank, rng)
        basis = vt[sv > sv[0] * 1e-10].T
    else:
        basis = np.zeros((d, 0))
    missing = n_components - basis.shape[1]
    if missing > 0:
        extra = rng.standard_normal((d, missing))
        if basis.shape[1]:
            extra -= basis @ (basis.T @ extra)
        if missing <= d - basis.shape[1]:  # orthonormal among themselves too
            extra = np.linalg.qr(extra)[0]
        else:
            extra /= np.maximum(np.linalg.norm(extra, axis=0), 1e-12)
        basis = np.hstack([basis, extra])
    return basis


def _randomized_top_right(be, A, rank, rng, n_iter=6, oversample=10):
    """The top ``rank`` singular values and right singular vectors (rows, signs
    fixed) of a backend matrix A, (G, d), by randomized subspace iteration with a QR
    after every product (Halko, Martinsson and Tropp, 2011, algorithm 4.4): the
    products and the thin QRs run where A lives; the SVD of the (k, d) projection
    Q^T A on the host."""
    k = min(rank + oversample, *A.shape)
    Q = be.orthonormalize(A @ be.asarray(rng.standard_normal((A.shape[1], k))))
    for _ in range(n_iter):
        Q = be.orthonormalize(A @ be.orthonormalize(A.T @ Q))
    _, sv, vt = np.linalg.svd(be.to_numpy(Q.T @ A), full_matrices=False)
    return sv[:rank], svd_flip_rows(vt[:rank])


# ---------------------------------------------------------------------------
# user step


def _block_logits(rows, Fp, W):
    """Each laid-out row's logit f_i . w_u, (n_blocks, width): one batched product."""
    owner = rows.blocks.owner
    Wb = W if owner is None else W[owner]
    return (Fp @ Wb[:, :, None])[:, :, 0]


def _to_users(be, rows, values):
    """Per-block sums (n_blocks, ...) -> per-user sums (n_groups, ...)."""
    if rows.blocks.owner is None:
        return values
    return be.segment_sum(rows.blocks.owner_seg, values)


def _group_objective(be, rows, Fp, theta, mu, precision, kind):
    b = rows.blocks
    W = obj.user_weights_from_params(be, theta, kind)
    t = _block_logits(rows, Fp, W)
    data = _to_users(be, rows, be.sum(obj.row_losses(be, t, b.y, b.s), axis=1))
    return data + obj.prior_penalty(be, theta, mu, precision), W, t


def _block_hessian(be, rows, Fp, curv):
    """Per-user sum_i c_i f_i f_i^T, (n_groups, B, B), from the laid-out rows."""
    return _to_users(be, rows, (Fp * curv[:, :, None]).swapaxes(1, 2) @ Fp)


def user_step(be, rows, F, theta, mu, precision, kind, max_iter=50, tol=1e-10, status=None):
    """Minimize every user's objective over its parameters with V fixed.

    ``status``: a list that gets "max_iter" appended when the Newton iterations run out
    before every user converged (eager or replayed as a CUDA graph).

    Parameters
    ----------
    F : (N, B) backend array, ``Z @ V``.
    theta : (G, B) starting parameters. mu : (B,) prior centre.
    precision : (B, B) or (G, B, B) prior precision.

    Returns
    -------
    theta : (G, B) backend array, the minimizer.
    hessian : (G, B, B) backend array, each user's data Hessian in parameter space
        (without the prior), used as that user's curvature for later updates.
    """
    B = theta.shape[1]
    eye = be.eye(B)
    b = rows.blocks
    Fp = F[b.index]  # the rows' F laid out user by user, once per call
    graph = _newton_graph(be, rows, Fp, theta, mu, precision, kind, tol, eye)
    if graph is not None:
        return _user_step_graphed(be, rows, graph, Fp, theta, mu, precision, kind, max_iter,
                                  tol, status)
    if be.name == "numpy" and b.owner is None:
        return _user_step_compacting(be, rows, Fp, theta, mu, precision, kind, max_iter, tol,
                                     eye, status)
    f_g = None
    for _ in range(max_iter):
        f_g, W, step, decrement, H_w = _newton_at(be, rows, Fp, theta, mu, precision, kind,
                                                  f_g, eye)
        if be.max_value(decrement) <= tol:
            # converged where H_w was just computed: it is the data Hessian there
            return theta, _param_hessian(be, W, H_w, kind)
        theta, f_g = _line_search_users(
            be, rows, Fp, theta, mu, precision, kind, f_g, step, decrement, tol
        )
    if status is not None:
        status.append("max_iter")
    return theta, _user_hessian(be, rows, Fp, theta, kind)


def _newton_at(be, rows, Fp, theta, mu, precision, kind, f_g, eye):
    """Every user's objective (``f_g`` when the line search already evaluated it where
    it stopped), weights, Newton step, decrement and data Hessian at ``theta``."""
    if f_g is None:
        f_g, W, t = _group_objective(be, rows, Fp, theta, mu, precision, kind)
    else:
        W = obj.user_weights_from_params(be, theta, kind)
        t = _block_logits(rows, Fp, W)
    step, decrement, H_w = _newton_system(be, rows, Fp, theta, mu, precision, kind, W, t, eye)
    return f_g, W, step, decrement, H_w


def _user_step_compacting(be, rows, Fp, theta, mu, precision, kind, max_iter, tol, eye,
                          status):
    """The eager loop of :func:`user_step` on numpy, one block per user, working on the
    users not yet converged only: a user whose Newton decrement is at most ``tol``
    never moves again (its decrement stays where its parameters stay), so its
    parameters and data Hessian are final there. When at most half of the users
    still move, the problem shrinks to them (a large fold-in spent most of its
    iterations on a few slow users). Every user's numbers are those of the full loop:
    each user's sums read its own block only."""
    theta_out = np.array(theta, dtype=np.float64, copy=True)
    hess_out = np.empty(theta.shape + theta.shape[1:])
    users = np.arange(theta.shape[0])  # the full problem's rows of the current one
    layout, f_g = rows, None
    for _ in range(max_iter):
        f_g, W, step, decrement, H_w = _newton_at(be, layout, Fp, theta, mu, precision, kind,
                                                  f_g, eye)
        moving = decrement > tol
        if not moving.any():
            theta_out[users] = theta
            hess_out[users] = _param_hessian(be, W, H_w, kind)
            return theta_out, hess_out
        theta_new, f_g = _line_search_users(
            be, layout, Fp, theta, mu, precision, kind, f_g, step, decrement, tol
        )
        if 2 * np.count_nonzero(moving) <= len(users):
            done = ~moving  # final: parameters unmoved, Hessian where they are
            theta_out[users[done]] = theta[done]
            hess_out[users[done]] = _param_hessian(be, W[done], H_w[done], kind)
            b = layout.blocks
            layout = _Layout(Blocks(index=b.index[moving], y=b.y[moving], s=b.s[moving],
                                    owner=None, owner_seg=None))
            Fp, theta_new, f_g = Fp[moving], theta_new[moving], f_g[moving]
            if mu.ndim == 2:
                mu = mu[moving]
            if precision.ndim == 3:
                precision = precision[moving]
            users = users[moving]
        theta = theta_new
    if status is not None:
        status.append("max_iter")
    theta_out[users] = theta
    hess_out[users] = _user_hessian(be, layout, Fp, theta, kind)
    return theta_out, hess_out


def _newton_system(be, rows, Fp, theta, mu, precision, kind, W, t, eye, sync_free=False):
    """Every user's Newton step, its decrement and the data Hessian in weight space.

    ``sync_free``: no host sync (a CUDA graph's body): the simplex fallback step is
    computed whether or not any user needs it, and the solves skip their singularity
    check; the same values either way.
    """
    b = rows.blocks
    solve = be.solve_unchecked if sync_free else be.solve
    p = be.sigmoid(t)
    grad_w = _to_users(be, rows, ((b.s * (p - b.y))[:, None, :] @ Fp)[:, 0, :])
    H_w = _block_hessian(be, rows, Fp, b.s * p * (1.0 - p))
    prior_grad = obj.prior_gradient(be, theta - mu, precision)
    if kind == "simplex":
        grad, H = _simplex_newton_system(be, W, grad_w, H_w, precision, eye)
        grad = grad + prior_grad
        step = solve(H + 1e-10 * eye, grad)
        decrement = be.sum(grad * step, axis=1)
        if sync_free or not bool((decrement > 0).all()):
            J = _softmax_jacobian(be, W, eye)
            gn_step = solve(J @ H_w @ J + precision + 1e-10 * eye, grad)
            step = be.where((decrement > 0)[:, None], step, gn_step)
    else:
        grad = grad_w + prior_grad
        step = solve(H_w + precision, grad)
    return step, be.sum(grad * step, axis=1), H_w


# Newton iterations of one user step as a CUDA graph: captured at the second call with
# the same rows and shapes (a one-off user step, a fold-in say, stays eager), with this
# many line-search trials in the graph (the main fit's searches take one).
_GRAPH_AT_CALL = 2
_GRAPH_TRIALS = 2


def _newton_graph(be, rows, Fp, theta, mu, precision, kind, tol, eye):
    """The graph of one Newton iteration for these rows and shapes, or None (eager)."""
    if not getattr(be, "cuda_graphs", False) or theta.shape[0] == 0 or Fp.shape[0] == 0:
        return None
    key = (kind, tol, tuple(Fp.shape), tuple(theta.shape), tuple(mu.shape),
           tuple(precision.shape))
    entry = rows.graphs.get(key, 0)
    if isinstance(entry, int):
        if entry + 1 < _GRAPH_AT_CALL:
            rows.graphs[key] = entry + 1
            return None
        # the body sees the layout alone: a graph that held the rows (stored in them)
        # would keep the data on the GPU until a garbage collection
        layout = _Layout(rows.blocks)

        def body(Fp, theta, mu, precision, f_g):
            return _newton_iteration(be, layout, Fp, theta, mu, precision, kind, f_g, tol, eye)

        # about twenty (blocks, width, B) intermediates per trial, float64
        nbytes = 8 * 20 * (1 + _GRAPH_TRIALS) * Fp.shape[0] * Fp.shape[1] * Fp.shape[2]
        # the inputs only give shapes: every replay's values are copied in first
        f_g = be.zeros((theta.shape[0],))
        entry = be.graph(body, [Fp, theta, mu, precision, f_g], nbytes=nbytes) or False
        rows.graphs[key] = entry
    return entry or None


@dataclass
class _Layout:
    """What the user step reads of :class:`Rows`: the per-user blocks."""

    blocks: Blocks


def _newton_iteration(be, rows, Fp, theta, mu, precision, kind, f_g, tol, eye):
    """One Newton iteration of every user without a host sync (a graph's body): the
    decrement, the data Hessian at ``theta``, and a line search of fixed length."""
    W = obj.user_weights_from_params(be, theta, kind)
    t = _block_logits(rows, Fp, W)
    step, decrement, H_w = _newton_system(be, rows, Fp, theta, mu, precision, kind, W, t, eye,
                                          sync_free=True)
    theta_new, f_new, settled = _line_search_users(
        be, rows, Fp, theta, mu, precision, kind, f_g, step, decrement, tol,
        trials=_GRAPH_TRIALS,
    )
    converged = (decrement <= tol).all()
    return converged, _param_hessian(be, W, H_w, kind), theta_new, f_new, settled, step, \
        decrement


def _user_step_graphed(be, rows, graph, Fp, theta, mu, precision, kind, max_iter, tol,
                       status=None):
    """:func:`user_step` by replays of the Newton iteration's graph: one host sync per
    iteration (converged? every user's search done?); a search that needs more trials
    than the graph holds is rerun eagerly from the start. The same iterates as eager."""
    f_g = _group_objective(be, rows, Fp, theta, mu, precision, kind)[0]
    static = graph.inputs  # Fp, theta, mu, precision, f_g
    inputs = (Fp, theta, mu, precision, f_g)
    for _ in range(max_iter):
        converged, hess, theta_new, f_new, settled, step, decrement = graph(*inputs)
        inputs = ()
        done, ok = be.read_flags(converged, settled)
        if done:
            return static[1].clone(), hess.clone()
        if not ok:
            theta_new, f_new = _line_search_users(
                be, rows, Fp, static[1], static[2], static[3], kind, static[4], step,
                decrement, tol,
            )
        static[1].copy_(theta_new)
        static[4].copy_(f_new)
    if status is not None:
        status.append("max_iter")
    return static[1].clone(), _user_hessian(be, rows, Fp, static[1], kind)


def _softmax_jacobian(be, W, eye):
    return W[:, :, None] * eye - W[:, :, None] * W[:, None, :]


def _simplex_newton_system(be, W, grad_w, H_w, precision, eye):
    """Gradient and exact Hessian in theta of the data term for w = softmax(theta).

    With J = diag(w) - w w^T the gradient is J g; the Hessian is J H_w J plus the
    curvature of the softmax itself, diag(a) - a w^T - w a^T with a = w * (g - w.g).
    """
    J = _softmax_jacobian(be, W, eye)
    grad = (J @ grad_w[:, :, None])[:, :, 0]
    a = W * (grad_w - be.sum(W * grad_w, axis=1)[:, None])
    H = J @ H_w @ J + a[:, :, None] * eye
    H = H - a[:, :, None] * W[:, None, :] - W[:, :, None] * a[:, None, :]
    return grad, H + precision


def _line_search_users(be, rows, Fp, theta, mu, precision, kind, f_g, step, decrement, tol,
                       trials=None):
    """Per-user backtracking (Armijo) along the Newton directions, all users at once.

    Users whose Newton decrement is already below ``tol`` do not move; a small
    slack absorbs rounding in the per-user objective. Returns the new parameters and
    each user's objective there (the trial value where the user was accepted, the
    old one where it did not move), so the next Newton iteration need not recompute it.
    ``trials``: exactly that many halvings without a host sync (a graph's body), and
    a third value, whether every user was accepted; else up to 40, stopping early.
    """
    alpha = decrement * 0.0 + 1.0
    still = decrement > tol
    accepted = ~still
    f_out = f_g
    # each user's objective is a sum of non-negative terms: a relative slack per user
    bound = f_g + 1e-12 * (f_g + 1.0)
    armijo = 1e-4 * decrement
    for _ in range(40 if trials is None else trials):
        trial = theta - alpha[:, None] * step
        f_new, _, _ = _group_objective(be, rows, Fp, trial, mu, precision, kind)
        f_out = be.where(accepted, f_out, f_new)
        accepted = accepted | (f_new <= bound - alpha * armijo)
        if trials is None and bool(accepted.all()):
            break
        alpha = be.where(accepted, alpha, 0.5 * alpha)
    moved = accepted & still
    theta_new = theta - be.where(moved, alpha, 0.0 * alpha)[:, None] * step
    if trials is None:
        return theta_new, be.where(moved, f_out, f_g)
    return theta_new, be.where(moved, f_out, f_g), accepted.all()


def _user_hessian(be, rows, Fp, theta, kind):
    W = obj.user_weights_from_params(be, theta, kind)
    p = be.sigmoid(_block_logits(rows, Fp, W))
    return _param_hessian(be, W, _block_hessian(be, rows, Fp, rows.blocks.s * p * (1.0 - p)),
                          kind)


def _param_hessian(be, W, H_w, kind):
    """Gauss-Newton data Hessian in parameter space from the one in weight space."""
    if kind == "simplex":
        J = _softmax_jacobian(be, W, be.eye(W.shape[1]))
        return J @ H_w @ J
    return H_w


# ---------------------------------------------------------------------------
# basis step


def _kron_preconditioner(be, rows, alpha, lam, state, kind, d, optimize_mu, anchor, gram=None):
    """Approximate inverse Hessian of the basis block for L-BFGS, K-FAC style.

    The basis Hessian sum_i c_i (z_i z_i^T) (x) (w_i w_i^T) + alpha I is
    approximated by (A + alpha I) (x) S with A = Z^T diag(s / 4) Z (the curvature
    at p = 1/2, one Gram pass per fit) and S the users' mean w w^T (refreshed at
    every call from the current user weights, its spectrum floored at a tenth of
    its mean so that rank-deficient weights, a single user say, stay well scaled).
    Applying its inverse to a (d, B) matrix costs two small products; it makes the
    number of rounds insensitive to how anisotropic the embeddings are. Only the
    relative scaling of directions matters: L-BFGS rescales the step itself.
    ``gram``, when given, is that Gram matrix already computed (a backend array).
    """
    state["gram"] = be.gram(rows.Z, rows.s / 4.0) if gram is None else gram
    A = state["gram"] + alpha * be.eye(d)
    if anchor is not None:
        A = A + anchor[1] + anchor[3] * be.eye(d)
    A_solve = be.spd_solver(A)
    counts = _to_users(be, rows, be.sum(rows.blocks.s, axis=1))  # each user's total weight

    cache = {}

    def S_inverse():
        # the two-loop applies the preconditioner twice per round at the same users
        if cache.get("theta") is not state["theta"]:
            W = obj.user_weights_from_params(be, state["theta"], kind)
            S = (W * counts[:, None]).T @ W / rows.s_total
            eye = be.eye(S.shape[0])
            floor = 1e-1 * be.sum(S * eye) / S.shape[0] + 1e-12  # stays on the device
            cache.update(theta=state["theta"], S_inv=be.inv(S + floor * eye) * rows.s_total)
        return cache["S_inv"]

    def apply(q):
        qV = A_solve(q[:d]) @ S_inverse()
        if not optimize_mu:
            return qV
        q_mu = q[d] * rows.s_total / (lam * (rows.n_groups + 1))
        return be.concat_rows(qV, q_mu)

    return apply


def lbfgs(be, fg, x, max_iter=100, gtol=1e-7, ftol=1e-12, memory=10, callback=None,
          precond=None, status=None):
    """Limited-memory BFGS with Armijo backtracking, on backend arrays.

    ``status``: a list that gets "line_search" appended when 40 halvings of a step
    found no decrease (the iteration stops there, short of its other rules).

    ``fg(x)`` returns ``(f, grad, aux)`` (f a backend scalar or a float); returns the
    final ``(x, f, aux, n_iter)`` with ``aux`` that of the returned x. ``callback(k,
    f)`` is called after each iteration and stops it by returning True. ``precond(q)``
    applies an approximate inverse Hessian, the initial matrix of the two-loop
    recursion. Written against the backend so numpy and torch follow the same
    iterates.

    Host reads: the inner products the next direction needs (s . y, y . y, S g, S y,
    s Y, max |g|) come back with the objective in one transfer per evaluation, and the
    direction in one more (:func:`_direction`); the memory keeps its inner products on
    the host (:class:`_Pairs`). On a GPU each read waits for the device, so two per
    round instead of seven.
    """
    scaled = precond is not None
    precond = precond or (lambda q: q)
    pairs = _Pairs(be, memory)
    f, g, aux = fg(x)
    f, g_max = be.read(f, be.abs_max_array(g))
    Sg = np.zeros(0)  # s_i . g of the pairs in memory, for the current g
    k = 0
    for k in range(1, max_iter + 1):
        if g_max <= gtol:
            break
        d, gd, d_max = _direction(be, g, pairs, Sg, precond)
        if gd >= 0:
            pairs.clear()
            Sg = np.zeros(0)
            d, gd, d_max = _direction(be, g, pairs, Sg, precond)
        # a preconditioned direction is Newton-scaled; a bare gradient is not
        step = 1.0 if len(pairs) or scaled else min(1.0, 1.0 / max(d_max, 1e-12))
        stacks = pairs.stacks()
        m = len(pairs)
        for _ in range(40):
            x_new = x + step * d
            f_new, g_new, aux_new = fg(x_new)
            s_vec, y_vec = (x_new - x).reshape(-1), (g_new - g).reshape(-1)
            # what the next direction needs, read with the objective (a rejected
            # trial's products are dropped)
            products = [] if stacks is None else [
                stacks[0] @ g_new.reshape(-1), stacks[0] @ y_vec, stacks[1] @ s_vec]
            host = be.read(f_new, be.abs_max_array(g_new), be.dot(s_vec, y_vec),
                           be.dot(y_vec, y_vec), be.dot(s_vec, g_new), *products)
            f_new = float(host[0])
            if f_new <= f + 1e-4 * step * gd:
                break
            step *= 0.5
        else:
            if status is not None:
                status.append("line_search")
            break
        g_max_new, sy, yy, s_g = host[1:5]
        S_g, S_y, s_Y = host[5:5 + m], host[5 + m:5 + 2 * m], host[5 + 2 * m:5 + 3 * m]
        Sg = S_g
        if sy > 1e-12 * yy:
            dropped = pairs.add(s_vec, y_vec, sy, s_Y, S_y)
            Sg = np.append(S_g, s_g)[dropped:]
        converged = len(pairs) > 0 and (f - f_new) <= ftol * max(abs(f), abs(f_new), 1.0)
        x, f, g, aux, g_max = x_new, f_new, g_new, aux_new, g_max_new
        if converged or (callback is not None and callback(k, f)):
            break
    return x, float(f), aux, k


class _Pairs:
    """The L-BFGS memory: pairs (s_i, y_i), flat backend vectors, with their inner
    products ``SY[i, j] = s_i . y_j`` on the host, grown by a row and a column per
    pair (read with the objective) instead of recomputed every round."""

    def __init__(self, be, size):
        self.be, self.size = be, size
        self.clear()

    def clear(self):
        self.s, self.y = [], []
        self.SY = np.zeros((0, 0))
        self._stacks = None

    def __len__(self):
        return len(self.s)

    def stacks(self):
        """(S, Y), the pairs stacked as (m, n) backend matrices, or None when empty."""
        if self._stacks is None and self.s:
            self._stacks = (self.be.stack(self.s), self.be.stack(self.y))
        return self._stacks

    def add(self, s_vec, y_vec, sy, s_Y, S_y):
        """Append a pair given ``s . y``, ``s . y_j`` and ``s_i . y`` over the pairs
        held; returns how many old pairs were dropped (0 or 1)."""
        m = len(self.s)
        SY = np.empty((m + 1, m + 1))
        SY[:m, :m], SY[:m, m], SY[m, :m], SY[m, m] = self.SY, S_y, s_Y, sy
        self.s.append(s_vec)
        self.y.append(y_vec)
        self._stacks = None
        dropped = max(m + 1 - self.size, 0)
        if dropped:
            del self.s[:dropped], self.y[:dropped]
            SY = SY[dropped:, dropped:]
        self.SY = SY
        return dropped


def _direction(be, g, pairs, Sg, precond):
    """The L-BFGS direction d = -H g by the two-loop recursion, ``g . d`` and max |d|
    (read for a bare preconditioned gradient only, where the step length needs it;
    inf otherwise).

    Each loop's coefficient depends on the previous ones only through inner products
    of the stored pairs with each other (``pairs.SY``, on the host) and with g (``Sg``,
    on the host) or with the preconditioned vector r (second loop): ``s_i . q_i =
    s_i . g - sum_{j>i} a_j s_i . y_j`` and ``y_i . r_i = y_i . r + sum_{j<i} (a_j -
    b_j) y_i . s_j``. So the m-step recursions run on the host on m numbers, the vector
    updates are two matrix products, and Y r comes back in one transfer with g . r and
    y . H0 y (the initial matrix's scaling); ``g . d`` follows from those without
    another. The same direction as the textbook recursion up to rounding.
    """
    shape = g.shape
    if not len(pairs):
        r = precond(g)
        gr, r_max = be.read(be.dot(g, r), be.abs_max_array(r))
        return -r, -float(gr), float(r_max)
    S, Y = pairs.stacks()
    SY = pairs.SY
    rho = 1.0 / np.diag(SY)
    m = len(pairs)
    a = np.zeros(m)
    for i in range(m - 1, -1, -1):
        a[i] = rho[i] * (Sg[i] - SY[i, i + 1:] @ a[i + 1:])
    r = precond((g.reshape(-1) - be.asarray(a) @ Y).reshape(shape))
    y_last = pairs.y[-1].reshape(shape)
    host = be.read(Y @ r.reshape(-1), be.dot(g, r), be.dot(y_last, precond(y_last)))
    scale = SY[-1, -1] / host[m + 1]  # H0 = scale * precond, scaled by the last pair
    Yr = scale * host[:m]
    c = np.zeros(m)  # a_j - b_j
    for i in range(m):
        b = rho[i] * (Yr[i] + SY[:i, i] @ c[:i])
        c[i] = a[i] - b
    d = -(scale * r + (be.asarray(c) @ S).reshape(shape))
    gd = -(scale * float(host[m]) + float(c @ Sg))
    return d, gd, np.inf


# ---------------------------------------------------------------------------
# alternating minimization


@dataclass
class FitResult:
    V: np.ndarray
    theta: np.ndarray
    mu: np.ndarray
    user_hessian: np.ndarray
    n_iter: int
    objective: float
    F: object  # Z V at the solution, a backend array (the last pass, kept)
    gram_be: object = None  # the rows' Gram matrix where the data live (a backend array)
    # the users' Newton iterations ran out at the returned basis
    user_steps_exhausted: bool = False
    # the basis step's line search found no decrease before the stopping rule held
    line_search_failed: bool = False


def fit_alternating(be, rows, V0, kind, alpha, lam, max_iter, tol, *, prior=None,
                    anchor=None, gram=None, log=None):
    """Alternating minimization of J from the basis ``V0``; returns a :class:`FitResult`.

    Every outer round solves the user block exactly (batched Newton; it needs only
    ``F = Z V``, no pass over the data) and then takes one L-BFGS step on the basis
    block of the objective with the users minimized out, phi(V) = min_Theta J.
    At the exact user optimum the gradient of phi is the plain basis-block gradient
    (envelope theorem), so a round costs one pass ``Z V`` and one pass ``Z^T R``,
    while L-BFGS gathers the curvature that plain block descent ignores along the
    directions that couple the two blocks. For free weights the prior centre mu
    joins V in the L-BFGS vector. Stops when the relative objective change over a
    round stays below ``tol`` for three rounds, or after ``max_iter`` rounds.

    ``prior``, when given, is ``(centres (G, B), precisions (G, B, B))`` fixed per
    user (streaming and fold-in); mu is then not optimized. ``anchor`` is the
    streaming basis prior ``(V_prev, A, S, a0)``: 1/2 <D, A D S> + a0/2 ||D||^2
    with D = V - V_prev (a Kronecker-factored curvature of earlier batches).
    ``gram``: the rows' Gram matrix Z^T diag(s / 4) Z if already known (backend
    array), else one pass computes it.
    """
    B, d = V0.shape[1], V0.shape[0]
    optimize_mu = kind == "free" and prior is None
    if prior is None:
        centres, precision = None, lam * be.eye(B)
    else:
        centres, precision = prior
    # users start at their prior centre: no per-user random draw, row order irrelevant
    state = {"theta": be.zeros((rows.n_groups, B)) if centres is None else centres}

    def unpack(x):
        if optimize_mu:
            return x[:d], x[d]
        return x, (be.zeros(B) if centres is None else centres)

    def fg(x):
        V, mu = unpack(x)
        F = be.matmul_ZV(rows.Z, V)
        status = []
        theta, hess = user_step(be, rows, F, state["theta"], mu, precision, kind,
                                status=status)
        state.update(theta=theta, hess=hess, F=F)
        W_rows = obj.user_weights_from_params(be, theta, kind)[rows.groups]
        t = obj.row_logits(be, F, W_rows)
        value = obj.pair_loss(be, t, rows.y, rows.s) + 0.5 * alpha * be.sum(V * V)
        value = value + be.sum(obj.prior_penalty(be, theta, mu, precision))
        R = (rows.s * (be.sigmoid(t) - rows.y))[:, None] * W_rows
        g = be.matmul_ZtR(rows.Z, R) + alpha * V
        if anchor is not None:
            diff = V - anchor[0]
            Cd = anchor[1] @ diff @ anchor[2] + anchor[3] * diff
            value = value + 0.5 * be.sum(diff * Cd)
            g = g + Cd
        if optimize_mu:
            value = value + 0.5 * lam * be.sum(mu * mu)
            gmu = lam * (rows.n_groups * mu - be.sum(theta, axis=0)) + lam * mu
            g = be.concat_rows(g, gmu)
        return value / rows.s_total, g / rows.s_total, {"theta": theta, "hess": hess, "F": F,
                                                       "exhausted": bool(status)}

    x0 = be.asarray(V0)
    if optimize_mu:
        x0 = be.concat_rows(x0, be.zeros(B))
    trace = [np.inf]

    def callback(k, f):
        # three calm rounds in a row: one short L-BFGS step is not convergence
        trace.append(f)
        if log is not None:
            log(k, f)
        recent = np.abs(np.diff(trace[-4:]))
        return len(recent) == 3 and bool(np.all(recent <= tol * max(abs(f), 1e-12)))

    precond = _kron_preconditioner(be, rows, alpha, lam, state, kind, d, optimize_mu, anchor,
                                   gram)
    # the stopping rule is the callback's alone: L-BFGS's own exit after one round of
    # relative decrease under 1e-12 stopped creeping fits short of a small tol, silently
    status = []
    x, f, final, n_iter = lbfgs(be, fg, x0, max_iter=max_iter, gtol=1e-9, ftol=0.0,
                                callback=callback, precond=precond, status=status)
    state.update(final)  # the users, their Hessians and Z V at the returned basis
    V, mu = unpack(x)
    return FitResult(
        V=be.to_numpy(V),
        theta=be.to_numpy(state["theta"]),
        mu=be.to_numpy(mu) if optimize_mu else None,
        user_hessian=be.to_numpy(state["hess"]),
        user_steps_exhausted=state.get("exhausted", False),
        line_search_failed=bool(status),
        n_iter=n_iter,
        objective=f,
        F=state["F"],
        gram_be=state["gram"],
    )


def empirical_bayes_prior(be, rows, F, theta, kind, lam, max_iter=30, tol=1e-6, sigma0=None,
                          status=None):
    """Gaussian prior N(mu, Sigma) over users' parameters by Laplace EM, basis fixed.

    E-step: every user's MAP parameters and posterior covariance (H_u + P)^-1 under
    the current prior (one batched user step). M-step: mu = mean of the MAPs,
    Sigma = their covariance plus the mean posterior covariance. Starts from the
    fit's prior (mu = mean of ``theta``, Sigma = I / lam, or ``sigma0``). Returns numpy
    ``(theta, hessian, mu, precision, n_iter)`` with the users refitted under the
    final prior.
    """
    B, G = F.shape[1], rows.n_groups
    theta = be.asarray(theta)
    mu = be.sum(theta, axis=0) / G
    sigma = np.eye(B) / lam if sigma0 is None else np.array(sigma0, dtype=float)
    eye = be.eye(B)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        P = np.linalg.inv(sigma)
        P_be = be.asarray(P)
        theta, hess = user_step(be, rows, F, theta, mu, P_be, kind)
        # the M-step where the users are (G small inverses in one batched call); only
        # the B x B covariance comes back, for the stopping test
        mu = be.sum(theta, axis=0) / G
        diff = theta - mu
        new = (diff.T @ diff + be.sum(be.inv(hess + P_be), axis=0)) / G + 1e-9 * eye
        new = be.read(new).reshape(B, B)
        done = np.abs(new - sigma).max() <= tol * np.abs(sigma).max()
        sigma = new
        if done:
            break
    P = np.linalg.inv(sigma)
    # the users as stored: ``status`` (a list) gets "max_iter" if their iterations ran out
    theta, hess = user_step(be, rows, F, theta, mu, be.asarray(P), kind, status=status)
    return be.to_numpy(theta), be.to_numpy(hess), be.to_numpy(mu), P, n_iter


# the cross-fit holds one pair in this many of each training user out of its refit
_SEEN_PAIRS = 5
# a temperature is fitted on the cross-fit's held-out rows when there are this many
# distinct ones (pairs of seen users, rows of held-out users), else on leave-one-out logits
_MIN_HELD_OUT_ROWS = 50
# the seen users' held-out temperature may sharpen (go below 1) only on this many
_SHARPEN_ROWS = 500

# the cross-fit's user steps hold groups (held-out user, shot count, scale) x B x B
# numbers per array at most this many (8 MB of float64), unless one block needs more
_CROSSFIT_ENTRIES = 1 << 20

SHRINKAGE_GRID = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)


def _content_keys(be, Z, y):
    """A pseudo-random key per row that depends on its content only (not its position
    nor, beyond breaking exact ties, its label), the same for the row written the other
    way round (a and b swapped: -z, 1 - y), so that the folds and shots, hence
    ``shrinkage_``, depend neither on which response was called a nor on the labels.

    Each row is turned to a canonical orientation, the one whose projection on a second
    random direction is positive (independent of the label), and keyed by its
    projection on the first; :func:`_spread_rank` takes shots spread over that order.
    Keys that used the label put the shots on one side: with z.r + y/2 a held-out
    user's shots were mostly rows labelled 0, and with the label-oriented projection
    (2y - 1) z.r the shots and the scored rows lay on either side of a hyperplane
    through the oriented pairs (on Jester the new users' calibration error rose from
    0.005-0.010 to 0.045-0.057)."""
    r = np.random.RandomState(12345).standard_normal((Z.shape[1], 2))
    projections = be.to_numpy(be.matmul_ZV(Z, be.asarray(r)))
    turn = projections[:, 1] < 0  # the row written the other way round is canonical
    keys = np.where(turn, -projections[:, 0], projections[:, 0])
    # the canonical label only orders copies of one comparison (equal keys)
    y = np.asarray(y, dtype=float)
    label = np.where(turn, 1.0 - y, y)
    return keys + label * (1e-12 * max(float(np.abs(keys).max(initial=0.0)), 1e-300))


def _rank_within(groups, keys):
    """Rank of each row among its group's rows, ordered by ``keys``."""
    order = np.lexsort((keys, groups))
    rank = np.empty(len(groups), dtype=np.intp)
    sorted_groups = groups[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
    rank[order] = np.arange(len(groups)) - first
    return rank


# the golden ratio's fractional part: multiples of it mod 1 spread evenly over [0, 1)
GOLDEN = 0.6180339887498949


def _spread_rank(groups, keys):
    """A rank of each row among its group's rows by which the first k rows of a group,
    for any k, are spread evenly over its rows ordered by ``keys`` (a golden-ratio
    sequence over the key order): the shots of a held-out user are then a sample of
    its rows, not the ones at one end of a direction in the embedding space (the
    lowest k keys made the shots and the scored rows differ systematically)."""
    spread = (_rank_within(groups, keys) * GOLDEN) % 1.0
    return _rank_within(groups, spread)


def _distinct_pairs(groups, keys):
    """Copies of a row (one group, one content key) as one pair: each row's index among
    the distinct (group, key) pairs, ordered by group then key, and those pairs' groups
    and keys."""
    order = np.lexsort((keys, groups))
    g, k = groups[order], keys[order]
    new = np.r_[True, (g[1:] != g[:-1]) | (k[1:] != k[:-1])][:len(g)]
    index = np.empty(len(groups), dtype=np.intp)
    index[order] = np.cumsum(new) - 1
    return index, g[new], k[new]


def _shot_masks(groups, keys, shots):
    """For each shot count k, the rows a held-out user adapts on: k of its distinct pairs
    (at most half of them) spread over its pairs in key order (:func:`_spread_rank`);
    the others are scored. Copies of a pair adapt or are scored together: split, a
    user was scored on copies of the pairs it adapted on (with every row duplicated,
    750 of 1,650 scored rows at 5 shots), and the cross-fit chose the least shrinkage
    of its grid where weights of 2 chose 256."""
    index, g, k = _distinct_pairs(groups, keys)
    rank = _spread_rank(g, k)[index]
    n_u = np.bincount(g, minlength=groups.max(initial=-1) + 1)[groups]
    return [rank < np.minimum(k_shots, n_u // 2) for k_shots in shots]


def crossfit_shrinkage(be, Z, y, s, groups, n_groups, V, P, kind, alpha, lam, *,
                       grid=SHRINKAGE_GRID, shots=(5, 10, 20), n_splits=5,
                       min_held_users=60, max_iter=100, tol=1e-3, random_state=None,
                       gram=None, refits=None, seen_logits=True):
    """Scale of the new-user prior precision, chosen on held-out users (cross-fitting).

    The empirical-Bayes spread of the fitted users' weights is estimated with the
    basis those users were fitted with, so it is too wide when the basis itself is
    poorly determined (a rank-B basis in d dimensions from few users): new users
    adapted under it can do worse than the population. Here the users are cut into
    ``n_splits`` folds; for as many folds as it takes to hold out
    ``min_held_users`` users (all folds for small data, one for large), the basis is
    refitted without the fold with its own empirical-Bayes prior, and each held-out
    user is adapted on k of their pairs (k in ``shots``, at most half of them) and
    scored on the others. The returned
    scale c in ``grid`` is the largest whose pooled held-out log-loss (after a
    fitted temperature: a measure of ranking that does not punish a mere scale of
    the logits) is within one standard error of the best scale's, users taken as
    the sampling unit: where the data cannot tell two scales apart, the one that
    shrinks more is safer. The new-user prior precision is then c P. Folds and
    adaptation pairs depend on the rows' content only, so the choice does not change
    with row order or user labels. ``Z`` is the rows' backend data
    (``make_rows(...).Z``): folds are gathered where the data live (on the GPU,
    not through the host).

    The refit starts from its own spectral initialization (``random_state``), not
    from ``V``: the full basis has seen the held-out users' pairs, and a refit
    warm-started from it keeps some of them (in a basis learned from few users it
    made adaptation look better than it is and picked too little shrinkage); from
    a cold start the loose tolerance ``tol`` is enough. ``V`` gives the rank.
    ``gram``, the full data's Gram matrix Z^T diag(s / 4) Z (the fit's, numpy or a backend array),
    gives each refit its own by subtracting the held-out rows' part: a pass over
    the held-out rows instead of the training ones. It holds no labels.
    ``refits``: the folds' refitted bases (:func:`crossfit_refits` with the same
    arguments) when they were computed already, for instance alongside the main fit;
    they do not depend on ``V``'s values or on ``P``. ``seen_logits`` goes to
    :func:`crossfit_refits` when they were not (False: no seen users' temperature).

    Each refit also leaves out about one pair in five of the training users, chosen by
    content (:func:`_seen_pairs`): the refit's users scored on those pairs are seen
    users on held-out pairs (:func:`_crossfit_seen_logits`), and the held-out users'
    rows under the refit's population weights are unknown users.

    Returns ``(c, table, temperature, held_out)`` with ``table`` mapping each c to its
    held-out log-loss, ``temperature`` the one fitted to the held-out users' logits under
    c (the calibration of adapted new users; None where the held-out users have fewer
    than ``_MIN_HELD_OUT_ROWS`` distinct rows) and ``held_out`` a dict of the temperatures
    fitted on the seen users' held-out pairs (``"seen"``; at least 1 unless there are
    ``_SHARPEN_ROWS`` of them) and on the unknown users' rows (``"unknown"``), None where
    there were fewer than ``_MIN_HELD_OUT_ROWS`` distinct ones; or ``(1.0, {}, None, {"seen": None,
    "unknown": None})`` when there are too few users to split.
    """
    if refits is None:
        refits = crossfit_refits(be, Z, y, s, groups, n_groups, V.shape[1], kind, alpha, lam,
                                 n_splits=n_splits, min_held_users=min_held_users,
                                 max_iter=max_iter, tol=tol, random_state=random_state,
                                 gram=gram, seen_logits=seen_logits)
    if not refits.folds:
        return 1.0, {}, None, {"seen": None, "unknown": None}
    scored = [_crossfit_scores(be, y, s, groups, fold, refits.keys, P, kind, lam, grid, shots)
              for fold in refits.folds]
    held_out = {}
    enough = refits.enough
    for name, parts in zip(("seen", "unknown"), zip(*[other for _, *other in scored])):
        t, yy, ss = (np.concatenate(part) for part in zip(*parts))
        held_out[name] = None
        # a temperature of a few pairs runs to its bounds (10 pairs, every one ordered
        # right, sharpened a fit 20-fold: held-out log-loss 8.4); the seen users' may
        # sharpen only on many pairs, as their refit had fewer rows than the fit (0.76
        # where 0.94 was best on 30 planted users with 8 pairs each; on all of Jester's
        # users about 0.96, which its test pairs confirmed)
        if enough[name] and len(yy):  # no seen logits: an uncalibrated fit's cross-fit
            sharpen = name == "unknown" or enough["sharpen"]
            bounds = (0.05, 20.0) if sharpen else (0.05, 1.0)
            held_out[name] = 1.0 / fit_inverse_temperature(t, yy, ss, bounds=bounds)
    folds = [adapted for adapted, *_ in scored]
    logits, yy, ss, owner = (np.concatenate(part, axis=-1) for part in zip(*folds))
    _, owner = np.unique(owner, return_inverse=True)
    per_user, tau = {}, {}
    for c, t in zip(grid, logits):
        tau[c] = fit_inverse_temperature(t, yy, ss)
        q = np.clip(expit(tau[c] * t), 1e-12, 1 - 1e-12)
        loss = -ss * (yy * np.log(q) + (1 - yy) * np.log1p(-q))
        per_user[c] = np.bincount(owner, weights=loss)
    total = ss.sum()
    table = {c: float(per_user[c].sum() / total) for c in grid}
    best = min(grid, key=table.get)
    # one-standard-error rule, users as the sampling unit: the strongest shrinkage
    # whose held-out loss the data cannot tell from the best one's
    choice = best
    for c in grid:
        diff = per_user[c] - per_user[best]
        se = np.sqrt(len(diff)) * diff.std() / total
        if c > choice and table[c] - table[best] <= se:
            choice = c
    # the new users' temperature, as the others, only on enough distinct scored rows
    # (10 of them, one per held-out user, sharpened new users 2.2-fold: log-loss 1.65
    # against 0.90 uncalibrated); else the caller falls back to the seen users'
    fold_in = 1.0 / tau[choice] if enough["unknown"] else None
    return float(choice), table, fold_in, held_out


def _enough_held_out(folds, groups, keys):
    """Whether the folds hold out at least ``_MIN_HELD_OUT_ROWS`` distinct pairs of
    seen users (``"seen"``) and rows of held-out users (``"unknown"``, which also
    decides the new users' temperature): where the cross-fit's temperatures are fitted
    (:func:`crossfit_shrinkage`); and at least ``_SHARPEN_ROWS`` pairs of seen users,
    for their temperature to go below 1 (``"sharpen"``). Copies of a row (one user,
    one content key) count once, so a row of weight 2 and a duplicated row decide
    alike."""
    if not folds:
        return {"seen": False, "unknown": False, "sharpen": False}
    counts = {}
    for name, mask in (("seen", "pairs"), ("unknown", "held")):
        rows = np.flatnonzero(np.any([getattr(f, mask) for f in folds], axis=0))
        counts[name] = len(_distinct_pairs(groups[rows], keys[rows])[1])
    return {"seen": counts["seen"] >= _MIN_HELD_OUT_ROWS,
            "unknown": counts["unknown"] >= _MIN_HELD_OUT_ROWS,
            "sharpen": counts["seen"] >= _SHARPEN_ROWS}


@dataclass
class CrossfitRefits:
    """The cross-fit's folds, each basis refitted without its held-out users.

    ``keys``: the rows' content keys (numpy); ``folds``: one :class:`_Fold` per fold
    used, empty when there are too few users to split; ``enough``: which temperatures
    the folds hold out enough rows for (:func:`_enough_held_out`).
    """

    keys: object
    folds: list
    enough: dict


@dataclass
class _Fold:
    held: object  # numpy mask of the held-out users' rows
    rows: Rows  # the training users' rows (backend)
    result: FitResult  # the basis refitted on them
    Z_held: object  # the held-out rows' backend data
    # the training users' held-out pairs (numpy mask), their users in ``rows``' numbering
    # and their backend data (None where no pair is held out)
    pairs: object = None
    pair_groups: object = None
    Z_pairs: object = None
    # the refit's users' logits, labels and weights on those pairs (crossfit_refits)
    seen: tuple = None


def crossfit_refits(be, Z, y, s, groups, n_groups, rank, kind, alpha, lam, *, n_splits=5,
                    min_held_users=60, max_iter=100, tol=1e-3, random_state=None, gram=None,
                    seen_logits=True):
    """The expensive half of :func:`crossfit_shrinkage`: the folds (from the rows'
    content), each fold's basis refitted without its held-out users, from its own
    spectral start, and (``seen_logits``, for the seen users' temperature) the
    refit's users' logits on their held-out pairs (:func:`_crossfit_seen_logits`).
    It needs neither the full fit's basis nor its prior, so it can run while the
    full fit does (:meth:`TorchBackend.side_task` on a GPU). Without ``seen_logits``
    (an uncalibrated fit) the folds hold no seen logits: the temperature fitted on
    them is then not wanted. Returns a :class:`CrossfitRefits`."""
    keys = _content_keys(be, Z, y)
    # each user's distinct pairs (a duplicated single pair is one pair, as a row of
    # weight 2: counted as rows, such a user was held out where the weighted one was not)
    counts = np.bincount(_distinct_pairs(groups, keys)[1], minlength=n_groups)
    # a row of weight 2 counts as two copies of it (the same folds as duplicated rows)
    user_keys = np.bincount(groups, weights=keys * s, minlength=n_groups)
    user_rank = np.empty(n_groups, dtype=np.intp)
    user_rank[np.argsort(user_keys, kind="stable")] = np.arange(n_groups)
    fold = user_rank % n_splits
    if n_groups < 2 * n_splits or (counts >= 2).sum() < n_splits:
        return CrossfitRefits(keys=keys, folds=[], enough=_enough_held_out([], groups, keys))
    per_fold = max(n_groups // n_splits, 1)
    n_folds = min(n_splits, -(-min_held_users // per_fold))
    seen_pairs = _seen_pairs(groups, keys, n_groups)
    folds = [
        _crossfit_refit(be, Z, y, s, groups, held, seen_pairs & ~held, rank, kind, alpha,
                        lam, max_iter, tol, random_state, gram)
        for held in (((fold == f) & (counts >= 2))[groups] for f in range(n_folds))
        if held.any()
    ]
    for f in folds:
        # what the seen users' temperature needs of the fold, here where it may run
        # beside the full fit; the held-out pairs' data is then no longer needed
        f.seen = (_crossfit_seen_logits(be, y, s, groups, f, kind, lam) if seen_logits
                  else (np.zeros(0), np.zeros(0), np.zeros(0)))
        f.Z_pairs = None
    return CrossfitRefits(keys=keys, folds=folds,
                          enough=_enough_held_out(folds, groups, keys))


def _seen_pairs(groups, keys, n_groups):
    """The rows of training users held out of the cross-fit's refits (the seen users'
    temperature is fitted on them): each user's distinct rows in key order, every
    ``_SEEN_PAIRS``-th of them (about one in five; none of a user with fewer distinct
    rows). Copies of a row share its key and its place, so a row of weight 2 and its
    duplicate are in or out together (a copy on either side would leak the pair); the
    choice follows the keys' order, not their last digits (float32 rows on a GPU give
    the same pairs), and changes neither with row order nor with which response is
    called a (:func:`_content_keys`)."""
    index, g, k = _distinct_pairs(groups, keys)
    rank = _rank_within(g, k)[index]
    return rank % _SEEN_PAIRS == _SEEN_PAIRS - 1


def _regroup(groups, mask):
    distinct, inverse = np.unique(groups[mask], return_inverse=True)
    return inverse.astype(np.intp), len(distinct)


def _crossfit_refit(be, Z, y, s, groups, held, pairs, rank, kind, alpha, lam, max_iter, tol,
                    random_state, gram):
    """One fold's basis, refitted on the rows outside ``held`` (the held-out users) and
    ``pairs`` (held-out pairs of the training users); a :class:`_Fold`."""
    train = ~held & ~pairs
    g_tr, n_tr = _regroup(groups, train)
    Z_tr = be.take_rows(Z, np.flatnonzero(train))
    rows_tr = make_rows(be, Z_tr, y[train], s[train], g_tr, n_tr)
    V0 = spectral_init(be, Z_tr, y[train], s[train], g_tr, n_tr, rank, random_state)
    Z_h = be.take_rows(Z, np.flatnonzero(held))
    Z_p = pair_groups = None
    if pairs.any():
        Z_p = be.take_rows(Z, np.flatnonzero(pairs))
        # every such user keeps rows in the refit (_seen_pairs)
        pair_groups = np.searchsorted(np.unique(groups[train]), groups[pairs])
    gram_tr = None
    if gram is not None:
        gram_tr = be.asarray(gram) - be.gram(Z_h, be.asarray(s[held] / 4.0))
        if Z_p is not None:
            gram_tr = gram_tr - be.gram(Z_p, be.asarray(s[pairs] / 4.0))
    res = fit_alternating(be, rows_tr, V0, kind, alpha, lam, max_iter, tol, gram=gram_tr)
    # what the scoring needs: the training rows' layout and Z V, not their data or Gram
    # matrix (several folds' refits are held at once)
    return _Fold(held=held, rows=replace(rows_tr, Z=None), result=replace(res, gram_be=None),
                 Z_held=Z_h, pairs=pairs, pair_groups=pair_groups, Z_pairs=Z_p)


def _crossfit_seen_logits(be, y, s, groups, fold, kind, lam):
    """Leave-one-out logits of the refit's users on their held-out pairs: the basis
    never saw the pairs (they stayed out of the refit), and the users' part of leaving
    a pair out is the exact one-step correction (:func:`user_leave_one_out_shift`) of
    the users fitted on all their pairs, so each user misses one pair, as a fitted
    user would (fitted without a fifth of their pairs, the users were overconfident
    by more than the fitted model's users, and their temperature too soft: 1.29
    against 1.0 on 1,000 planted users whose basis is well learned). Returns the
    logits, labels and weights of those pairs (empty where none was held out)."""
    if fold.Z_pairs is None:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    res, pairs = fold.result, fold.pairs
    train = ~fold.held & ~pairs
    # the users' prior as the fit makes it (the same empirical-Bayes run from the same
    # start): its iterations stop before it settles, and the users' temperature follows
    # where it stops (1.27 from the fit's prior in 10 iterations, 1.05 as the fit does,
    # on 1,000 planted users whose truth was 1.02)
    theta, _, mu, P, _ = empirical_bayes_prior(be, fold.rows, res.F, res.theta, kind, lam)
    Fp = be.matmul_ZV(fold.Z_pairs, be.asarray(res.V))
    F_all = be.concat([res.F, Fp])
    y_all = np.concatenate([y[train], y[pairs]])
    s_all = np.concatenate([s[train], s[pairs]])
    g_pairs = fold.pair_groups
    g_train, n = _regroup(groups, train)
    groups_all = np.concatenate([g_train, g_pairs])
    rows_all = Rows(Z=None, y=None, s=None, groups=None, n_groups=n, s_total=float(s_all.sum()),
                    blocks=make_blocks(be, groups_all, y_all, s_all, n))
    theta, hess = user_step(be, rows_all, F_all, be.asarray(theta), be.asarray(mu),
                            be.asarray(P), kind)
    W = be.to_numpy(obj.user_weights_from_params(be, theta, kind))[g_pairs]
    Fp = be.to_numpy(Fp)
    yp = y[pairs]
    t = np.einsum("nb,nb->n", Fp, W)
    shift = user_leave_one_out_shift(Fp, W, yp, be.to_numpy(hess) + P, g_pairs, kind)
    return t + shift, yp, s[pairs]


def _crossfit_scores(be, y, s, groups, fold, keys, P, kind, lam, grid, shots):
    """The held-out users of one fold (:class:`_Fold`) adapted under every scale.

    Returns the held-out logits under each scale (len(grid), n), and the labels,
    weights and user index of those n rows, every shot count's rows one after another.
    """
    held, res = fold.held, fold.result
    theta_tr, _, mu, P_cf, _ = empirical_bayes_prior(be, fold.rows, res.F, res.theta, kind,
                                                     lam, max_iter=10,
                                                     sigma0=np.linalg.inv(P))
    g_h, n_h = _regroup(groups, held)
    yh, sh, owner = y[held], s[held], groups[held]
    Fh = be.to_numpy(be.matmul_ZV(fold.Z_held, be.asarray(res.V)))
    seen = fold.seen
    # the held-out users' rows under the population weights: unknown users
    unknown = (Fh @ be.to_numpy(obj.user_weights_from_params(be, be.asarray(mu[None]),
                                                             kind))[0], yh, sh)
    adapts = _shot_masks(g_h, keys[held], shots)
    # every (shot count, scale, user) is its own group of a batched user step: block
    # b = j * len(grid) + ci holds shot count j under scale ci, its users' groups are
    # b * n_h + user; the blocks go in calls of at most _CROSSFIT_ENTRIES / B^2 groups
    # (all in one call held about 4.5 KB per group at rank 8: 0.6 GB with 20,000 users)
    n_grid, B = len(grid), P.shape[0]
    blocks = [(ci, np.flatnonzero(a)) for a in adapts for ci in range(n_grid)]
    W = np.empty((len(blocks) * n_h, B))
    per_call = max(1, _CROSSFIT_ENTRIES // (B * B * max(n_h, 1)))
    for first in range(0, len(blocks), per_call):
        chunk = blocks[first:first + per_call]
        rows_idx = np.concatenate([idx for _, idx in chunk])
        group_idx = np.concatenate([k * n_h + g_h[idx] for k, (_, idx) in enumerate(chunk)])
        n_groups = len(chunk) * n_h
        rows_all = make_rows(be, Fh[rows_idx], yh[rows_idx], sh[rows_idx], group_idx, n_groups)
        scales = np.repeat(np.asarray([grid[ci] for ci, _ in chunk], dtype=float), n_h)
        precision = be.asarray(scales[:, None, None] * P_cf[None])
        start = be.asarray(np.tile(mu, (n_groups, 1)))
        theta, _ = user_step(be, rows_all, be.asarray(Fh[rows_idx]), start, be.asarray(mu),
                             precision, kind)
        W[first * n_h:first * n_h + n_groups] = be.to_numpy(
            obj.user_weights_from_params(be, theta, kind))
    logits = []
    for j, adapt in enumerate(adapts):
        test_rows = np.flatnonzero(~adapt)
        logits.append(np.stack([
            np.einsum("nb,nb->n", Fh[test_rows], W[(j * n_grid + ci) * n_h + g_h[test_rows]])
            for ci in range(n_grid)
        ]))
    test = np.concatenate([~a for a in adapts])
    n_shots = len(shots)
    return (np.concatenate(logits, axis=1), np.tile(yh, n_shots)[test],
            np.tile(sh, n_shots)[test], np.tile(owner, n_shots)[test]), seen, unknown


def fit_single_model(be, rows, alpha, max_iter, gtol=1e-10):
    """Ridge Bradley-Terry model without users: min_u sum_i s_i loss(z_i . u) + alpha/2 |u|^2.

    With one group the factorized problem only sees ``V w`` and its minimizers form
    a flat valley; this convex equivalent has a unique solution, found by L-BFGS
    preconditioned with (Z^T diag(s / 4) Z + alpha I)^-1, at most ``max_iter`` iterations
    (the estimator's _SINGLE_MODEL_ITERATIONS). Returns u (d,), the
    objective and the iteration count in numpy, and that Gram matrix where the data
    live (a backend array).
    """
    d = rows.Z.shape[1]
    gram = be.gram(rows.Z, rows.s / 4.0)
    A_solve = be.spd_solver(gram + alpha * be.eye(d))

    def fg(u):
        t = be.matmul_ZV(rows.Z, u)[:, 0]
        value = obj.pair_loss(be, t, rows.y, rows.s) + 0.5 * alpha * be.sum(u * u)
        g = be.matmul_ZtR(rows.Z, (rows.s * (be.sigmoid(t) - rows.y))[:, None]) + alpha * u
        return value / rows.s_total, g / rows.s_total, None

    u, f, _, n_iter = lbfgs(be, fg, be.zeros((d, 1)), max_iter=max_iter, gtol=gtol,
                            ftol=0.0, precond=lambda q: A_solve(q) * rows.s_total)
    return be.to_numpy(u)[:, 0], f, n_iter, gram


# 1 - c h, floored: a leave-one-out shift is at most 20 times the first-order one
LEVERAGE_FLOOR = 0.05
_LEVERAGE_CHUNK = 32768


def user_leave_one_out_shift(F, W_rows, y, P, groups, kind):
    """How much each row's logit moves when one unit of its weight leaves its user's
    fit (numpy): one Newton step of the user's parameters, P_u,-i^-1 J_u F_i (p_i - y_i)
    with P_u,-i = P_u minus that unit's curvature (J_u the softmax Jacobian for simplex
    weights, the identity otherwise), so the row's held-out logit is t_i + h_i (p_i -
    y_i) / (1 - c_i h_i) with h_i = (J_u F_i)^T P_u^-1 (J_u F_i) and c_i = p_i (1 - p_i)
    (Sherman-Morrison). ``P`` (G, B, B): the users' posterior precisions; ``groups``:
    each row's user; ``F`` (n, B) and ``W_rows`` (n, B): each row's Z V and its user's
    weights."""
    t = np.einsum("nb,nb->n", F, W_rows)
    p = expit(t)
    c = p * (1.0 - p)
    G = F
    if kind == "simplex":
        G = W_rows * (F - t[:, None])
    # one inverse per user, not one solve per row (a third of the time); rows in
    # chunks: each row's B x B inverse gathered for all rows at once took n B^2
    # doubles (0.5 GB more for a million rows at B = 8)
    P_inv = np.linalg.inv(P)
    h = np.empty(len(t))
    for start in range(0, len(t), _LEVERAGE_CHUNK):
        part = slice(start, start + _LEVERAGE_CHUNK)
        Gc = G[part]
        h[part] = np.einsum("ni,ni->n", Gc, (P_inv[groups[part]] @ Gc[..., None])[..., 0])
    return (p - y) * h / np.maximum(1.0 - c * h, LEVERAGE_FLOOR)


def expit(t):
    """Logistic function (numpy)."""
    return 1.0 / (1.0 + np.exp(-np.clip(t, -500, 500)))


def fit_inverse_temperature(t, y, s, bounds=(0.05, 20.0)):
    """tau minimizing sum_i s_i logloss(y_i, tau t_i): 1-d Newton, clipped to ``bounds``.

    The loss is convex in tau, so at a bound with the Newton step pointing out of the
    interval that bound is the minimizer: it stops there (instead of repeating the
    same clipped step to the iteration limit).
    """
    tau = 1.0
    for _ in range(100):
        q = expit(tau * t)
        grad = np.sum(s * (q - y) * t)
        hess = np.sum(s * q * (1 - q) * t * t)
        if hess <= 1e-300:
            break
        step = grad / hess
        if (tau == bounds[0] and step > 0) or (tau == bounds[1] and step < 0):
            break
        tau = float(np.clip(tau - step, *bounds))
        if abs(step) <= 1e-10 * max(tau, 1.0):
            break
    return tau


# ---------------------------------------------------------------------------
# streaming curvature


def kron_curvature(F, s, W_rows, gram):
    """Kronecker factors (A, S) of the basis-block Hessian of one batch.

    The exact Hessian is sum_i c_i (z_i z_i^T) (x) (w_i w_i^T) with
    c_i = s_i p_i (1 - p_i); it is approximated by A (x) S with
    S = sum_i c_i w_i w_i^T / sum_i c_i and A = sum_i c_i z_i z_i^T, itself taken as
    the solver's Gram matrix ``gram`` = Z^T diag(s / 4) Z rescaled to the batch's
    total curvature (saving a second Gram pass); ``F = Z V`` gives the logits.
    Applying A (x) S to a (d, B) matrix D costs A D S. Returned with the batch's
    total curvature (the weight used when factors of several batches are merged).
    Returns ``(A, S, total)``: A (d, d) where ``gram`` lives (a backend array: on a
    GPU it stays there, the d x d copy to the host is left to whoever needs it), S
    (B, B) numpy.
    """
    p = expit(np.einsum("nb,nb->n", F, W_rows))
    c = s * p * (1.0 - p)
    total = float(c.sum())
    A = gram * gram_scale(s, total)
    S = (W_rows.T @ (c[:, None] * W_rows)) / max(total, 1e-300)
    return A, S, total


def gram_scale(s, total):
    """The factor taking the Gram matrix Z^T diag(s / 4) Z to the curvature A of
    :func:`kron_curvature` (whose total curvature is ``total``)."""
    return total / max(float(np.sum(s)) / 4.0, 1e-300)


def basis_leverage(be, Z, A, S, alpha, eig=None):
    """Leverage of each row on the basis, for leave-one-out logits (numpy out).

    The basis block of the Hessian, sum_i c_i (z_i z_i^T) (x) (w_i w_i^T) + alpha I,
    is taken in its Kronecker form A (x) S + alpha I (:func:`kron_curvature`), whose
    inverse is diagonal in the eigenvectors U of A and Q of S. A row's logit
    gradient with respect to V is z_i w_i^T, so its leverage on the basis is
    ``sum_l R_il (Q^T w_i)_l^2`` with ``R_il = sum_k (U^T z_i)_k^2 / (a_k s_l + alpha)``;
    the same ``R`` gives how much the basis moves any other weighting's logit.
    Returns ``R`` (N, B) and ``Q`` (B, B); one pass over the data and one
    eigen-decomposition of A (on the backend), or none where ``eig``, A's eigenvalues
    and eigenvectors as ``be.eigh`` returns them, is given (A is the fit's Gram matrix
    rescaled, :func:`kron_curvature`: the Gram matrix's decomposition can be computed
    before the fit ends).
    """
    a, U = be.eigh(be.asarray(A)) if eig is None else eig
    a = np.maximum(be.to_numpy(a), 0.0)
    sig, Q = np.linalg.eigh(S)
    denom = np.outer(a, np.maximum(sig, 0.0)) + alpha
    M = 1.0 / np.maximum(denom, 1e-10 * denom.max() + 1e-300)
    R = be.to_numpy(be.row_leverage(Z, U, be.asarray(M)))
    return R, Q


def add_kron_curvature(old, new):
    """Merge two batches' factors: A adds up, S is the curvature-weighted mean (the
    two A of the same kind: numpy, or arrays of one backend)."""
    A0, S0, c0 = old
    A1, S1, c1 = new
    total = c0 + c1
    S = (c0 * S0 + c1 * S1) / max(total, 1e-300)
    return A0 + A1, S, total
