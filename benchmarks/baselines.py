"""Baselines for personalized preference models, with the estimator's user contract.

Each class takes ``user_ids=`` in ``fit``, ``predict_proba`` and ``partial_fit_users``
like :class:`sklearn_lore.LowRankRewardEstimator`, so that
:func:`sklearn_lore.model_selection.fewshot_curve` scores all models on identical rows.

- :class:`GlobalBradleyTerry`: one reward for everybody, a logistic regression without
  intercept on the embedding differences (C chosen by cross-validation). Users are
  ignored; few-shot adaptation is a no-op.
- :class:`PerUserLogistic`: one L2 logistic regression per user, no sharing. A user
  with k pairs is fitted on those k pairs only; a user with no pair (k = 0, or
  unknown) gets probability 0.5 (a coin flip: without sharing there is nothing to
  predict from).
- :class:`PublishedLoRe`: the published LoRe training procedure re-implemented from
  a written description of the published scripts (the code was not consulted):
  joint full-batch Adam on basis and user logits, lr 0.5, 1000 iterations, logits
  divided by 100, softmax (simplex) user weights; few-shot: 500 Adam steps, lr 0.1, on
  the new users' logits with the basis frozen.
"""

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegressionCV


def _labels01(y, classes):
    return (np.asarray(y) == classes[1]).astype(np.float64)


def _proba_columns(p):
    return np.column_stack([1.0 - p, p])


def _user_codes(user_ids, users):
    """Index of each id in ``users`` (-1 when unknown)."""
    index = pd.Index(pd.Series(users, dtype=object))
    return index.get_indexer(pd.Series(np.asarray(user_ids, dtype=object), dtype=object))


class GlobalBradleyTerry(ClassifierMixin, BaseEstimator):
    """One Bradley-Terry reward for all users: logistic regression without intercept.

    Parameters
    ----------
    Cs : array-like, default=np.logspace(-3, 3, 7)
        Inverse L2 strengths tried by 5-fold cross-validation on log-loss.
    cv : int, default=5
        Folds of the cross-validation.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        The reward direction.
    C_ : float
        The selected inverse regularization strength.
    classes_ : ndarray of shape (2,)
    """

    def __init__(self, Cs=None, cv=5):
        self.Cs = Cs
        self.cv = cv

    def fit(self, X, y, user_ids=None):
        Cs = np.logspace(-3, 3, 7) if self.Cs is None else self.Cs
        model = LogisticRegressionCV(
            Cs=Cs, cv=self.cv, fit_intercept=False, scoring="neg_log_loss",
            l1_ratios=(0,), use_legacy_attributes=False, max_iter=1000,
        ).fit(X, y)
        self.classes_ = model.classes_
        self.coef_ = model.coef_.ravel()
        self.C_ = float(np.ravel(model.C_)[0])
        return self

    def decision_function(self, X, user_ids=None):
        return np.asarray(X, dtype=np.float64) @ self.coef_

    def predict_proba(self, X, user_ids=None):
        return _proba_columns(expit(self.decision_function(X)))

    def predict(self, X, user_ids=None):
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    def partial_fit_users(self, X, y, user_ids=None):
        """No-op: the global model has no per-user parameters."""
        return self


def _dual_newton(K, y, mask, C, n_iter=30, tol=1e-8):
    """L2 logistic regressions of many users at once, in the dual (representer) form.

    Each user's weight is ``w_u = Z_u^T a_u``, so logits are ``K_u a_u`` with the
    user's Gram matrix ``K_u`` (padded to a common size; ``mask`` marks real rows).
    Minimizes ``sum softplus(K a) - y . K a + a^T K a / (2 C)`` by Newton steps
    ``(D K + I / C) s = p - y + a / C`` with step halving, all users batched.
    """
    G, n, _ = K.shape
    a = np.zeros((G, n))
    eye = np.eye(n)

    def objective(a):
        t = np.einsum("gij,gj->gi", K, a)
        data = (np.logaddexp(0.0, t) - y * t) * mask
        return data.sum(axis=1) + np.einsum("gi,gi->g", a, t) / (2.0 * C), t

    f, t = objective(a)
    for _ in range(n_iter):
        p = expit(t)
        r = (p - y + a / C) * mask
        D = p * (1.0 - p) * mask
        s = np.linalg.solve(D[:, :, None] * K + eye / C, r[:, :, None])[:, :, 0]
        step = np.ones(G)
        for _ in range(20):
            f_new, _ = objective(a - step[:, None] * s)
            better = f_new <= f + 1e-12 * np.abs(f)
            if better.all():
                break
            step = np.where(better, step, 0.5 * step)
        step = np.where(better, step, 0.0)
        a = a - step[:, None] * s
        f_old, (f, t) = f, objective(a)
        if np.max(f_old - f) <= tol:
            break
    return a


def _padded_users(Z, y01, codes, n_users):
    """Per-user blocks of rows: features (G, n, d), labels and mask (G, n)."""
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=n_users)
    n = max(int(counts.max()) if counts.size else 0, 1)
    slot = np.arange(len(codes)) - np.repeat(np.cumsum(counts) - counts, counts)
    Zp = np.zeros((n_users, n, Z.shape[1]))
    yp = np.zeros((n_users, n))
    mask = np.zeros((n_users, n))
    Zp[codes[order], slot] = Z[order]
    yp[codes[order], slot] = y01[order]
    mask[codes[order], slot] = 1.0
    return Zp, yp, mask


def fit_user_logistic(Z, y01, codes, n_users, C):
    """Primal weights (n_users, d) of one L2 logistic regression per user."""
    Zp, yp, mask = _padded_users(Z, y01, codes, n_users)
    K = np.einsum("gid,gjd->gij", Zp, Zp)
    a = _dual_newton(K, yp, mask, C)
    return np.einsum("gi,gid->gd", a, Zp)


class PerUserLogistic(ClassifierMixin, BaseEstimator):
    """One L2 logistic regression per user (no intercept, no sharing between users).

    Users without pairs, unknown users and rows without ids get probability 0.5.

    Parameters
    ----------
    Cs : array-like, default=np.logspace(-2, 2, 9)
        Inverse L2 strengths; one value shared by all users is chosen by
        cross-validation over each user's pairs (fold = position mod ``cv``), pooled
        log-loss.
    cv : int, default=5
        Folds of that cross-validation.

    Attributes
    ----------
    coef_ : ndarray of shape (n_users, n_features)
    users_ : ndarray of shape (n_users,)
    C_ : float
    classes_ : ndarray of shape (2,)
    """

    def __init__(self, Cs=None, cv=5):
        self.Cs = Cs
        self.cv = cv

    def fit(self, X, y, user_ids=None):
        Z = np.asarray(X, dtype=np.float64)
        self.classes_ = np.unique(y)
        y01 = _labels01(y, self.classes_)
        codes, users = pd.factorize(pd.Series(np.asarray(user_ids, dtype=object)), sort=True)
        self.C_ = self._select_C(Z, y01, codes, len(users))
        self.users_ = np.asarray(users, dtype=object)
        self.coef_ = fit_user_logistic(Z, y01, codes, len(users), self.C_)
        return self

    def _select_C(self, Z, y01, codes, n_users):
        Cs = np.logspace(-2, 2, 9) if self.Cs is None else np.asarray(self.Cs, dtype=float)
        fold = pd.Series(codes).groupby(codes).cumcount().to_numpy() % self.cv
        losses = []
        for C in Cs:
            loss = 0.0
            for f in range(self.cv):
                tr, te = fold != f, fold == f
                W = fit_user_logistic(Z[tr], y01[tr], codes[tr], n_users, C)
                t = np.einsum("nd,nd->n", Z[te], W[codes[te]])
                loss += np.sum(np.logaddexp(0.0, t) - y01[te] * t)
            losses.append(loss)
        return float(Cs[int(np.argmin(losses))])

    def decision_function(self, X, user_ids=None):
        Z = np.asarray(X, dtype=np.float64)
        if user_ids is None:
            return np.zeros(Z.shape[0])
        idx = _user_codes(user_ids, self.users_)
        t = np.zeros(Z.shape[0])
        known = idx >= 0
        t[known] = np.einsum("nd,nd->n", Z[known], self.coef_[idx[known]])
        return t

    def predict_proba(self, X, user_ids=None):
        return _proba_columns(expit(self.decision_function(X, user_ids)))

    def predict(self, X, user_ids=None):
        return self.classes_[(self.decision_function(X, user_ids) > 0).astype(int)]

    def partial_fit_users(self, X, y, user_ids=None):
        """Fit the given users on these pairs only (with ``C_``); replaces known users."""
        Z = np.asarray(X, dtype=np.float64)
        codes, users = pd.factorize(pd.Series(np.asarray(user_ids, dtype=object)), sort=True)
        W = fit_user_logistic(Z, _labels01(y, self.classes_), codes, len(users), self.C_)
        idx = _user_codes(users, self.users_)
        coef = self.coef_.copy()
        coef[idx[idx >= 0]] = W[idx >= 0]
        self.coef_ = np.vstack([coef, W[idx < 0]])
        self.users_ = np.concatenate([self.users_, np.asarray(users, dtype=object)[idx < 0]])
        return self


class PublishedLoRe(ClassifierMixin, BaseEstimator):
    """The published LoRe procedure, re-implemented from its written description.

    Model: ``P(a preferred | u) = sigmoid(z . V w_u / logit_scale)`` with
    ``w_u = softmax(theta_u)`` on the simplex. Training: full-batch Adam on ``V`` and
    all ``theta`` jointly, mean binary cross-entropy, no explicit regularization.
    Few-shot (``partial_fit_users``): Adam on the batch users' ``theta`` only, basis
    frozen. Unknown users get the population weights (mean of the known users'
    weights).

    Choices the description leaves open, stated here: basis ``V`` and user logits
    ``theta`` start from standard normal draws (seeded by ``random_state``; the
    original runs have no seed); a new user's logits start at the log of the
    population weights, so that it starts from the 0-shot model; the loss is the
    numerically stable BCE-with-logits (no ``log(sigmoid(.))``); computations are
    vectorized over users (one gather and one scatter-add per step) in torch on CPU.

    Parameters
    ----------
    n_components : int, default=4
        Rank B of the basis.
    lr : float, default=0.5
        Adam learning rate of the joint fit.
    n_iter : int, default=1000
        Full-batch Adam steps of the joint fit.
    logit_scale : float, default=100.0
        Logits are divided by this constant.
    fewshot_lr : float, default=0.1
        Adam learning rate of the few-shot fit.
    fewshot_iter : int, default=500
        Adam steps of the few-shot fit.
    dtype : {"float32", "float64"}, default="float32"
    device : str, default="cpu"
        Torch device of the Adam loops (``"cuda"`` for the GPU benchmark).
    per_user_loop : bool, default=False
        Compute the loss with a Python loop over users, as the published scripts
        do, instead of one gather and one scatter (same math, slower).
    random_state : int, default=0
        Seed of the initial draws.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
    user_weights_ : ndarray of shape (n_users, n_components)
    users_ : ndarray of shape (n_users,)
    population_weights_ : ndarray of shape (n_components,)
    classes_ : ndarray of shape (2,)
    """

    def __init__(self, n_components=4, *, lr=0.5, n_iter=1000, logit_scale=100.0,
                 fewshot_lr=0.1, fewshot_iter=500, dtype="float32", device="cpu",
                 per_user_loop=False, random_state=0):
        self.n_components = n_components
        self.lr = lr
        self.n_iter = n_iter
        self.logit_scale = logit_scale
        self.fewshot_lr = fewshot_lr
        self.fewshot_iter = fewshot_iter
        self.dtype = dtype
        self.device = device
        self.per_user_loop = per_user_loop
        self.random_state = random_state

    def _torch(self, a):
        import torch

        return torch.as_tensor(np.asarray(a), dtype=getattr(torch, self.dtype),
                               device=self.device)

    def _adam(self, params, loss_fn, lr, n_iter):
        import torch

        opt = torch.optim.Adam(params, lr=lr)
        for _ in range(n_iter):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward()
            opt.step()

    def _loss_fn(self, Z, y, groups, V, theta):
        import torch

        project = _project_function()

        def loss():
            F = project(Z, V)
            t = (F * torch.softmax(theta, dim=1)[groups]).sum(dim=1) / self.logit_scale
            return torch.nn.functional.binary_cross_entropy_with_logits(t, y)

        if not self.per_user_loop:
            return loss
        members = [torch.nonzero(groups == g).flatten() for g in range(theta.shape[0])]

        def loop_loss():
            total = 0.0
            for g, rows in enumerate(members):
                t = Z[rows] @ (V @ torch.softmax(theta[g], dim=0)) / self.logit_scale
                total = total + torch.nn.functional.binary_cross_entropy_with_logits(
                    t, y[rows], reduction="sum")
            return total / y.shape[0]

        return loop_loss

    def fit(self, X, y, user_ids=None):
        import torch

        self.classes_ = np.unique(y)
        codes, users = pd.factorize(pd.Series(np.asarray(user_ids, dtype=object)), sort=True)
        gen = torch.Generator().manual_seed(int(self.random_state))
        Z = self._torch(np.asarray(X))
        dt = Z.dtype
        V = torch.randn(Z.shape[1], self.n_components, generator=gen, dtype=dt)
        V = V.to(self.device).requires_grad_()
        theta = torch.randn(len(users), self.n_components, generator=gen, dtype=dt)
        theta = theta.to(self.device).requires_grad_()
        y01 = self._torch(_labels01(y, self.classes_))
        groups = torch.as_tensor(codes, dtype=torch.long, device=self.device)
        self._adam([V, theta], self._loss_fn(Z, y01, groups, V, theta), self.lr, self.n_iter)
        self.components_ = V.detach().double().cpu().numpy().T.copy()
        self._theta = theta.detach().double().cpu().numpy()
        self.users_ = np.asarray(users, dtype=object)
        self.user_weights_ = _softmax(self._theta)
        self.population_weights_ = self.user_weights_.mean(axis=0)
        return self

    def partial_fit_users(self, X, y, user_ids=None):
        """Adam on the batch users' logits (new ones from the population), basis frozen."""
        import torch

        codes, users = pd.factorize(pd.Series(np.asarray(user_ids, dtype=object)), sort=True)
        idx = _user_codes(users, self.users_)
        start = np.tile(np.log(self.population_weights_), (len(users), 1))
        start[idx >= 0] = self._theta[idx[idx >= 0]]
        theta = self._torch(start).requires_grad_()
        V = self._torch(self.components_.T)
        Z = self._torch(np.asarray(X))
        y01 = self._torch(_labels01(y, self.classes_))
        groups = torch.as_tensor(codes, dtype=torch.long, device=self.device)
        loss = self._loss_fn(Z, y01, groups, V, theta)
        self._adam([theta], loss, self.fewshot_lr, self.fewshot_iter)
        new = theta.detach().double().cpu().numpy()
        self._theta = self._theta.copy()
        self._theta[idx[idx >= 0]] = new[idx >= 0]
        self._theta = np.vstack([self._theta, new[idx < 0]])
        self.users_ = np.concatenate([self.users_, np.asarray(users, dtype=object)[idx < 0]])
        self.user_weights_ = _softmax(self._theta)
        return self

    def decision_function(self, X, user_ids=None):
        Z = np.asarray(X, dtype=np.float64)
        W = np.tile(self.population_weights_, (Z.shape[0], 1))
        if user_ids is not None:
            idx = _user_codes(user_ids, self.users_)
            W[idx >= 0] = self.user_weights_[idx[idx >= 0]]
        return np.einsum("nb,nb->n", Z @ self.components_.T, W) / self.logit_scale

    def predict_proba(self, X, user_ids=None):
        return _proba_columns(expit(self.decision_function(X, user_ids)))

    def predict(self, X, user_ids=None):
        return self.classes_[(self.decision_function(X, user_ids) > 0).astype(int)]


def _project_function():
    """``Z @ V`` whose backward computes ``(G^T Z)^T``: torch's CPU kernel for
    ``Z^T G`` with a tall Z is several times slower than that product."""
    import torch

    class Project(torch.autograd.Function):
        @staticmethod
        def forward(ctx, Z, V):
            ctx.save_for_backward(Z)
            return Z @ V

        @staticmethod
        def backward(ctx, grad):
            (Z,) = ctx.saved_tensors
            return None, (grad.T @ Z).T

    return Project.apply


def _softmax(theta):
    e = np.exp(theta - theta.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)

