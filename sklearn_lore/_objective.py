"""The low-rank Bradley-Terry objective, stated once.

Notation and parameter layout
-----------------------------
Rows ``i = 1..N`` are comparisons: ``z_i`` in R^d is the embedding difference
phi(x, a) - phi(x, b), ``y_i`` in {0, 1} is 1 when response a was preferred,
``s_i >= 0`` is the sample weight and ``g_i`` in {0..G-1} the row's user group.

Parameters:

* ``V`` (d, B): the shared basis; column b is the primitive reward r_b = V[:, b] . phi.
  The estimator exposes it transposed as ``components_`` (B, d), scikit-learn layout.
* ``Theta`` (G, B): one parameter row per user; the user's weights are
  ``w_g = m(theta_g)`` with ``m`` the identity (``user_weights="free"``) or the
  row softmax (``user_weights="simplex"``, weights on the probability simplex).
* ``mu`` (B,): the prior centre of the users' parameters.

Logit of row i: ``t_i = z_i . V w_{g_i}``; P(a preferred) = sigmoid(t_i). There is no
intercept, so swapping a and b negates ``z_i`` and flips the probability exactly.

Objective (minimized)::

    J(V, Theta, mu) = sum_i s_i * [softplus(t_i) - y_i * t_i]
                      + 1/2 * sum_g (theta_g - mu)^T P (theta_g - mu)
                      + 1/2 * lam * ||mu||^2        (free weights only)
                      + 1/2 * alpha * ||V||_F^2

``P`` is the prior precision on user parameters (``lam * I`` during ``fit``), ``alpha``
the L2 strength on the basis. Both are in units of comparisons: a user with n pairs
weighs its data against a prior worth about ``lam`` pairs. The ``||mu||`` term removes
the scale symmetry V -> cV, Theta -> Theta / c that would otherwise let a single user
escape the basis penalty; for free weights mu is optimized jointly (its block optimum is
sum_g theta_g / (G + 1)); for simplex weights mu = 0 (uniform weights) during the fit.
After the alternating fit, with V fixed, the prior (mu, P) is re-estimated by empirical
Bayes (Laplace EM over the users) and the users re-solved under it; streaming updates and
fold-in use per-user Gaussian priors (centre, precision) in place of (mu, lam * I).

Derivatives used by the solvers:

* user block (V fixed): with features ``F_i = V^T z_i`` the problem splits into G
  independent B-dimensional logistic regressions. Gradient in w:
  ``sum_i s_i (p_i - y_i) F_i``, Hessian ``sum_i s_i p_i (1 - p_i) F_i F_i^T``; for the
  simplex the chain rule goes through ``J_g = diag(w_g) - w_g w_g^T`` (Gauss-Newton).
* basis block (Theta fixed): with ``W_i = w_{g_i}``, gradient
  ``Z^T diag(s (p - y)) W + alpha V``: one pass ``Z V`` and one pass ``Z^T R``.

All functions take a backend ``be`` (numpy or torch operations) and its arrays.
"""


def pair_loss(be, t, y, s):
    """Weighted Bradley-Terry negative log-likelihood of logits ``t`` (summed)."""
    return be.sum(s * (be.softplus(t) - y * t))


def row_losses(be, t, y, s):
    """Per-row weighted negative log-likelihood."""
    return s * (be.softplus(t) - y * t)


def user_weights_from_params(be, theta, kind):
    """Map user parameters to user weights (identity or row softmax)."""
    if kind == "simplex":
        return be.softmax(theta)
    return theta


def prior_penalty(be, theta, mu, precision):
    """Per-user prior penalty 1/2 (theta - mu)^T P (theta - mu), shape (G,).

    ``mu`` is (B,) or per user (G, B); ``precision`` is shared (B, B) or per user
    (G, B, B).
    """
    diff = theta - mu
    return 0.5 * be.sum(prior_gradient(be, diff, precision) * diff, axis=1)


def prior_gradient(be, diff, precision):
    """``P (theta - mu)`` for every user, shape (G, B)."""
    if precision.ndim == 2:
        return diff @ precision
    return (precision @ diff[:, :, None])[:, :, 0]  # batched: one product, no einsum path


def row_logits(be, F, W_rows):
    """Logits ``t_i = F_i . W_i`` where ``F = Z V`` and ``W_rows = W[groups]``."""
    return be.sum(F * W_rows, axis=1)
