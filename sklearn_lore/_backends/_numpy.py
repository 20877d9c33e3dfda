"""numpy/scipy backend: the solver's operations on the CPU in float64."""

import numpy as np
import scipy.sparse as sp
from scipy.linalg import blas, cho_factor, lapack
from scipy.special import expit, log_softmax

from . import Later


# From this width on the d^3 and n d^2 steps (a Gram matrix, an inverse) dominate and go
# through scipy's LAPACK. Below it, and in the solver's rounds, only numpy's BLAS runs:
# scipy ships its own OpenBLAS, and alternating between the two thread pools on every
# round made each pass over the data about three times slower on a 2-core machine.
_WIDE = 1024


def matmul_rows(Z, V, chunk=1024):
    """Z @ V for a tall Z and a narrow V, in blocks of rows, in their common dtype.

    A tall, narrow product as one BLAS call ran 1.4 to 1.9 times slower on a 2-core
    machine (same numbers: each row's sum is the same).
    """
    out = np.empty((Z.shape[0], V.shape[1]), dtype=np.result_type(Z.dtype, V.dtype))
    for start in range(0, Z.shape[0], chunk):
        np.matmul(Z[start:start + chunk], V, out=out[start:start + chunk])
    return out


class NumpyBackend:
    """Operations on numpy arrays; segment sums through a sparse indicator matrix."""

    name = "numpy"
    device = "cpu"

    def side_task(self, fn):
        """``fn`` to run later, where its result is asked for (:class:`Later`): on the
        CPU both sides would share the same cores."""
        return Later(fn)

    def asarray(self, a):
        return np.ascontiguousarray(a, dtype=np.float64)

    def as_data(self, Z):
        """The rows matrix used by the passes over the data (no copy if it already is)."""
        return np.ascontiguousarray(Z, dtype=np.float64)

    def all_finite(self, Z):
        """Whether every entry of a data matrix is finite."""
        return bool(np.isfinite(Z).all())

    def take_rows(self, Z, index):
        """The rows ``index`` of a data matrix, as a data matrix."""
        return Z[index]

    def group_sums(self, Z, groups, coef, n_groups, to_host=True):
        """sum_i coef_i z_i per group, (n_groups, d): one pass over the data."""
        n = Z.shape[0]
        indicator = sp.csr_matrix((coef, (groups, np.arange(n))), shape=(n_groups, n))
        return np.asarray(indicator @ Z)

    def orthonormalize(self, Y):
        """An orthonormal basis of Y's columns (reduced QR), (n, k)."""
        return np.linalg.qr(Y)[0]

    def as_index(self, a):
        return np.asarray(a, dtype=np.intp)

    def to_numpy(self, a):
        return np.asarray(a, dtype=np.float64)

    def scalar(self, a):
        return float(a)

    def zeros(self, shape):
        return np.zeros(shape)

    def eye(self, n):
        return np.eye(n)

    def sum(self, a, axis=None):
        return np.sum(a, axis=axis)

    def abs_max(self, a):
        return float(self.abs_max_array(a))

    def abs_max_array(self, a):
        """max |a| (a backend scalar; 0 for an empty array)."""
        return np.max(np.abs(a)) if a.size else 0.0

    def read(self, *arrays):
        """Several arrays (or numbers) flattened into one float64 vector."""
        return np.concatenate([np.ravel(np.asarray(a, dtype=np.float64)) for a in arrays])

    def max_value(self, a):
        """The largest entry as a float (-inf for an empty array)."""
        return float(np.max(a)) if a.size else -np.inf

    def dot(self, a, b):
        """Inner product (a backend scalar: here a float)."""
        return float(np.vdot(a, b))

    vdot = dot  # a float either way here

    def softplus(self, t):
        """log(1 + e^t) as max(t, 0) + log1p(e^-|t|): stable, and about five times
        faster than ``np.logaddexp(0, t)`` (the user step evaluates it on every row at
        every line-search trial); the two agree to a few ulps."""
        return np.log1p(np.exp(-np.abs(t))) + np.maximum(t, 0.0)

    def sigmoid(self, t):
        return expit(t)

    def softmax(self, theta):
        return np.exp(log_softmax(theta, axis=1))

    def where(self, cond, a, b):
        return np.where(cond, a, b)

    def concat_rows(self, a, b):
        return np.vstack([a, b[None, :]])

    def stack(self, arrays):
        return np.stack(arrays)

    def concat(self, arrays):
        """Arrays joined along their first axis."""
        return np.concatenate(arrays)

    def gram(self, Z, c, chunk=2048):
        """Weighted Gram matrix Z^T diag(c) Z, (d, d).

        Wide data with non-negative weights (the solver's): symmetric rank-k updates
        of row chunks scaled by sqrt(c), half the arithmetic of a general product and
        no full-size scaled copy of Z.
        """
        c = np.asarray(c, dtype=np.float64)
        d = Z.shape[1]
        if d < _WIDE or np.any(c < 0):
            return Z.T @ (c[:, None] * Z)
        G = np.zeros((d, d), order="F")
        root = np.sqrt(c)
        for start in range(0, Z.shape[0], chunk):
            part = root[start:start + chunk, None] * Z[start:start + chunk]
            # (Zc^T)(Zc^T)^T on the F-ordered view of the chunk: no copy, upper triangle
            G = blas.dsyrk(1.0, part.T, beta=1.0, c=G, trans=0, overwrite_c=1)
        return np.triu(G) + np.triu(G, 1).T

    def inv(self, A):
        return np.linalg.inv(A)

    def spd_solver(self, A):
        """q -> A^-1 q for a symmetric positive definite A, as one matrix product.

        The inverse of a wide A comes from its Cholesky factor (0.75 + 1.9 s against
        3.4 s for a general inverse at d = 4096 here); an explicit inverse if A is
        not numerically positive definite, or narrow.
        """
        A_inv = None
        if A.shape[0] >= _WIDE:
            try:
                factor, _ = cho_factor(A, lower=True, check_finite=False)
                inverse, info = lapack.dpotri(factor, lower=1)
                if info == 0:
                    A_inv = np.tril(inverse) + np.tril(inverse, -1).T
            except np.linalg.LinAlgError:
                pass
        if A_inv is None:
            A_inv = np.linalg.inv(A)
        return lambda q: A_inv @ q

    def solve(self, H, g):
        """Batched solve of (G, B, B) systems with (G, B) right-hand sides."""
        return np.linalg.solve(H, g[..., None])[..., 0]

    solve_unchecked = solve

    def read_flags(self, *flags):
        return [bool(v) for v in flags]

    def graph(self, body, inputs, nbytes=0):
        """No graphs on the CPU: the caller runs ``body`` eagerly."""
        return None

    def segments(self, groups, n_groups):
        """Segment structure of the rows: a sparse indicator matrix."""
        return _Segments(groups, n_groups)

    def segment_sum(self, seg, values):
        """Sum rows of ``values`` (N, ...) per group -> (n_groups, ...)."""
        shape = values.shape
        out = seg.indicator @ values.reshape(shape[0], -1)
        return np.asarray(out).reshape((seg.n_groups,) + shape[1:])

    def eigh(self, A):
        """Eigenvalues and eigenvectors of a symmetric matrix."""
        return np.linalg.eigh(A)

    def row_leverage(self, Z, U, M, chunk=4096):
        """((Z U) ** 2) @ M in row chunks, (N, B): per-row quadratic forms in U's basis.

        The one pass that costs d^2 per row: for wide data it runs in float32 (2.4
        times faster at d = 4096 here; as on a GPU, where the rows are float32), the
        leverage only setting a temperature.
        """
        wide = Z.shape[1] >= _WIDE
        U = U.astype(np.float32) if wide else U
        out = np.empty((Z.shape[0], M.shape[1]))
        for start in range(0, Z.shape[0], chunk):
            block = Z[start:start + chunk]
            projected = (block.astype(np.float32) if wide else block) @ U
            out[start:start + chunk] = np.square(projected, dtype=np.float64) @ M
        return out

    def matmul_ZV(self, Z, V):
        """First pass over the data: Z @ V, (N, B), float64 (V is)."""
        return matmul_rows(Z, V)

    def matmul_ZtR(self, Z, R):
        """Second pass over the data: Z^T @ R, (d, B), computed as (R^T Z)^T (the
        faster layout for row-major Z)."""
        return (R.T @ Z).T


class _Segments:
    """Rows grouped by user: a sparse indicator (n_groups, N) for segment sums."""

    def __init__(self, groups, n_groups):
        n = groups.shape[0]
        self.n_groups = int(n_groups)
        self.indicator = sp.csr_matrix(
            (np.ones(n), (groups, np.arange(n))), shape=(n_groups, n)
        )
