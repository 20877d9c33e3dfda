"""torch backend: the solver's operations on a torch device (CPU or CUDA).

The data matrix Z is kept in float32 on CUDA (the two passes over it are the
whole cost) and float64 on the CPU; everything else, accumulations and the small
B x B solves included, is float64. When Z does not fit in GPU memory it stays in
(pinned) host memory and the passes stream it through the GPU in row chunks.
"""

import contextlib
import functools
import logging
import os
import threading

import numpy as np
import torch

from . import Later

logger = logging.getLogger(__name__)

# why CUDA graph captures failed in this process (the user step then stays eager)
GRAPH_ERRORS = []
# why side tasks failed on their own thread in this process (each then ran in the caller)
SIDE_TASK_ERRORS = []

# the float32 precision setting is global to the process, and passes may run on two
# threads at once (side tasks): the first to enter sets it, the last to leave restores it
_PRECISION_LOCK = threading.Lock()
_PRECISION = {"depth": 0, "previous": "highest"}


@contextlib.contextmanager
def _ieee_float32():
    """float32 products in full IEEE precision inside: a script that enabled TF32
    (``torch.set_float32_matmul_precision("high")``, common in training code) would
    otherwise round the rows to 10-bit mantissas in every pass, a relative error of
    about 1e-3 in the Gram matrix and the gradients. The setting is restored when the
    last thread inside leaves."""
    with _PRECISION_LOCK:
        if _PRECISION["depth"] == 0:
            _PRECISION["previous"] = torch.get_float32_matmul_precision()
            if _PRECISION["previous"] != "highest":
                torch.set_float32_matmul_precision("highest")
        _PRECISION["depth"] += 1
    try:
        yield
    finally:
        with _PRECISION_LOCK:
            _PRECISION["depth"] -= 1
            if _PRECISION["depth"] == 0 and _PRECISION["previous"] != "highest":
                torch.set_float32_matmul_precision(_PRECISION["previous"])


def _full_precision(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _ieee_float32():
            return method(*args, **kwargs)

    return wrapper


def _resolve_device(device):
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but torch sees no CUDA GPU. "
            "Use device='cpu' (or None to pick automatically)."
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device={device!r} was requested but torch sees {torch.cuda.device_count()} "
            "CUDA GPU(s), numbered from 0. Use device='cuda' for the first one."
        )
    return dev


class TorchBackend:
    """Operations on torch tensors; segment sums with ``index_add_``."""

    name = "torch"

    def __init__(self, device=None, data_dtype=None, max_data_bytes=None):
        self.device_ = _resolve_device(device)
        self.device = str(self.device_)
        on_gpu = self.device_.type == "cuda"
        self.data_dtype = data_dtype or (torch.float32 if on_gpu else torch.float64)
        self.max_data_bytes = max_data_bytes
        # the user step's Newton iteration as one CUDA graph (SKLEARN_LORE_CUDA_GRAPHS=0:
        # eager, for comparisons)
        self.cuda_graphs = on_gpu and os.environ.get("SKLEARN_LORE_CUDA_GRAPHS", "1") != "0"
        # side tasks on their own thread and stream: on a GPU unless SKLEARN_LORE_OVERLAP=0;
        # SKLEARN_LORE_OVERLAP=1 also on the CPU (tests of the threaded path)
        overlap = os.environ.get("SKLEARN_LORE_OVERLAP", "")
        self.overlap = overlap == "1" or (on_gpu and overlap != "0")

    def side_task(self, fn):
        """``fn()`` as a side task: started now on a thread of its own, on a CUDA stream
        of its own, when ``overlap`` is on (a GPU), else run where :meth:`result` asks
        for it (:class:`Later`). The caller's solver steps are small kernels and host
        waits, so independent work (a cross-fit refit, an eigen-decomposition) fills
        the card while they run. ``fn`` must not depend on work the caller queues after
        this call, nor draw from a random state the caller draws from meanwhile."""
        if not self.overlap:
            return Later(fn)
        return _SideTask(fn, self.device_)

    # conversion -----------------------------------------------------------
    def asarray(self, a):
        if isinstance(a, torch.Tensor):  # already a tensor (on the device, say): no host trip
            return a.to(device=self.device_, dtype=torch.float64)
        return torch.as_tensor(np.asarray(a, dtype=np.float64), device=self.device_)

    def _data_budget(self):
        if self.max_data_bytes is not None:
            return self.max_data_bytes
        if self.device_.type != "cuda":
            return float("inf")
        free, _ = torch.cuda.mem_get_info(self.device_)
        return 0.5 * free

    def as_data(self, Z):
        """Z (numpy or a host tensor) on the device when it fits the memory budget,
        else kept in host memory and streamed through the device in chunks.

        To the device it travels in row chunks of its own dtype and is cast there,
        so the host never holds a second, converted copy of the whole matrix.
        Backend data (on this device in its dtype, or host chunks) comes back as is.
        """
        on_device = (isinstance(Z, torch.Tensor) and Z.device == self.device_
                     and Z.dtype == self.data_dtype)
        if on_device or isinstance(Z, _HostChunks):
            return Z
        if not isinstance(Z, torch.Tensor):
            Z = np.ascontiguousarray(Z)
            # torch cannot share read-only memory (a memory-mapped file, say)
            Z = torch.from_numpy(Z if Z.flags.writeable else Z.copy())
        host = Z
        n, d = host.shape
        nbytes = torch.empty((), dtype=self.data_dtype).element_size() * n * d
        if nbytes > self._data_budget():
            return _HostChunks(host.to(self.data_dtype), self)
        if self.device_.type == "cpu":
            return host.to(self.data_dtype)
        out = torch.empty((n, d), dtype=self.data_dtype, device=self.device_)
        step = max(_STAGING_BYTES // max(host.element_size() * d, 1), 1)
        try:
            staging = [torch.empty((min(step, n), d), dtype=host.dtype, pin_memory=True)
                       for _ in range(2)]
        except RuntimeError:  # no page-locked memory to be had: the driver's own staging
            staging = None
        done = [None, None]
        for k, start in enumerate(range(0, n, step)):
            chunk = host[start:start + step]
            if staging is None:
                out[start:start + step] = chunk.to(self.device_).to(self.data_dtype)
                continue
            # two page-locked buffers in turn: the host fills one while the other's
            # copy to the device is in flight (a pageable copy waits for each chunk)
            buffer = staging[k % 2][:chunk.shape[0]]
            if done[k % 2] is not None:
                done[k % 2].synchronize()
            buffer.copy_(chunk)
            out[start:start + step].copy_(buffer, non_blocking=True)  # cast on the device
            done[k % 2] = torch.cuda.Event()
            done[k % 2].record(torch.cuda.current_stream(self.device_))
        return out

    def all_finite(self, Z):
        """Whether every entry of a data matrix is finite (on the device: one reduction
        there instead of a pass over the host's copy)."""
        if isinstance(Z, _HostChunks):
            return all(bool(torch.isfinite(Zc).all()) for _, _, Zc in Z._chunks())
        return bool(torch.isfinite(Z).all())

    def take_rows(self, Z, index):
        """The rows ``index`` of a data matrix, gathered where the matrix lives."""
        if isinstance(Z, _HostChunks):
            return self.as_data(Z.Z[torch.as_tensor(np.asarray(index, dtype=np.int64))])
        return Z[self.as_index(index)]

    @_full_precision
    def group_sums(self, Z, groups, coef, n_groups, to_host=True):
        """sum_i coef_i z_i per group, (n_groups, d), in row chunks on the device;
        numpy unless ``to_host=False`` (then a float64 tensor on the device)."""
        g, c = self.as_index(groups), self.asarray(coef)
        out = torch.zeros((n_groups, Z.shape[1]), dtype=torch.float64, device=self.device_)
        for start, stop, Zc in _row_chunks(Z):
            out.index_add_(0, g[start:stop], c[start:stop, None] * Zc.to(torch.float64))
        return self.to_numpy(out) if to_host else out

    def orthonormalize(self, Y):
        """An orthonormal basis of Y's columns (reduced QR, on the device), (n, k)."""
        return torch.linalg.qr(Y)[0]

    def as_index(self, a):
        return torch.as_tensor(np.asarray(a, dtype=np.int64), device=self.device_)

    def to_numpy(self, a):
        return a.detach().to("cpu", torch.float64).numpy()

    def scalar(self, a):
        return float(a)

    # elementwise and reductions -----------------------------------------
    def zeros(self, shape):
        return torch.zeros(shape, dtype=torch.float64, device=self.device_)

    def eye(self, n):
        return torch.eye(n, dtype=torch.float64, device=self.device_)

    def sum(self, a, axis=None):
        return a.sum() if axis is None else a.sum(dim=axis)

    def abs_max(self, a):
        return float(self.abs_max_array(a))

    def abs_max_array(self, a):
        """max |a| as a 0-d device tensor (no host sync; 0 for an empty tensor)."""
        return a.abs().max() if a.numel() else a.new_zeros(())

    def read(self, *arrays):
        """Several device arrays (or numbers), flattened into one float64 numpy vector:
        one transfer, one wait for the device."""
        parts = [a.reshape(-1).to(torch.float64) if isinstance(a, torch.Tensor)
                 else torch.as_tensor(np.ravel(a), dtype=torch.float64, device=self.device_)
                 for a in arrays]
        return torch.cat(parts).cpu().numpy()

    def max_value(self, a):
        """The largest entry as a float (-inf for an empty tensor)."""
        return float(a.max()) if a.numel() else -float("inf")

    def dot(self, a, b):
        """Inner product as a 0-d device tensor (no host sync)."""
        return torch.dot(a.reshape(-1), b.reshape(-1))

    def vdot(self, a, b):
        return float(self.dot(a, b))

    def softplus(self, t):
        # one kernel; beyond t = 40, log1p(exp(t)) - t = 4e-18 is below float64's
        # resolution at 40, so the linear branch is exact
        return torch.nn.functional.softplus(t, threshold=40.0)

    def sigmoid(self, t):
        return torch.sigmoid(t)

    def softmax(self, theta):
        return torch.softmax(theta, dim=1)

    def where(self, cond, a, b):
        return torch.where(cond, a, b)

    def concat_rows(self, a, b):
        return torch.cat([a, b.unsqueeze(0)], dim=0)

    def stack(self, arrays):
        return torch.stack(arrays)

    def concat(self, arrays):
        """Arrays joined along their first axis."""
        return torch.cat(arrays, dim=0)

    @_full_precision
    def gram(self, Z, c):
        """Weighted Gram matrix Z^T diag(c) Z, (d, d), streamed for host-resident Z.

        Exactly symmetric: in float32 the product's two triangles round differently
        (about 1e-7 relative), so the float64 result is averaged with its transpose.
        """
        if isinstance(Z, _HostChunks):
            G = Z.gram(c)
        else:
            G = (Z.T @ (c.to(Z.dtype)[:, None] * Z)).to(torch.float64)
        return 0.5 * (G + G.T)

    def inv(self, A):
        return torch.linalg.inv(A)

    def spd_solver(self, A):
        """q -> A^-1 q for a symmetric positive definite A: an explicit inverse, so that
        each call is one matrix product (triangular solves with a few right-hand sides
        are latency-bound on a GPU). The inverse comes from the Cholesky factor (half
        the arithmetic of a general inverse, and exactly symmetric); a general inverse
        if A is not numerically positive definite."""
        factor, info = torch.linalg.cholesky_ex(A)
        if int(info) == 0:
            A_inv = torch.cholesky_inverse(factor)
            A_inv = 0.5 * (A_inv + A_inv.T)
        else:
            A_inv = torch.linalg.inv(A)
        return lambda q: A_inv @ q

    def solve(self, H, g):
        return torch.linalg.solve(H, g.unsqueeze(-1)).squeeze(-1)

    def solve_unchecked(self, H, g):
        """:meth:`solve` without the singularity check (a host sync; a singular system
        gives non-finite values instead of an error): capturable in a CUDA graph."""
        return torch.linalg.solve_ex(H, g.unsqueeze(-1), check_errors=False)[0].squeeze(-1)

    def read_flags(self, *flags):
        """Boolean scalars on the device -> Python bools, in one transfer."""
        return [bool(v) for v in torch.stack(flags).tolist()]

    def graph(self, body, inputs, nbytes=0):
        """``body(*inputs)`` captured as a CUDA graph (:class:`_Graph`), or None where
        graphs do not apply (not CUDA, switched off, ``nbytes`` of intermediates more
        than a quarter of the free GPU memory) or the capture failed; the caller then
        runs ``body`` eagerly."""
        if not self.cuda_graphs:
            return None
        if nbytes > 0.25 * torch.cuda.mem_get_info(self.device_)[0]:
            return None
        try:
            return _Graph(body, inputs, self.device_)
        except Exception as exc:  # noqa: BLE001 - any capture failure: stay eager
            message = f"{type(exc).__name__}: {exc}"
            if len(GRAPH_ERRORS) < 20:
                GRAPH_ERRORS.append(message)
            logger.debug("CUDA graph capture failed, running eagerly: %s", message)
            return None

    # segment sums ----------------------------------------------------------
    def segments(self, groups, n_groups):
        return (groups, n_groups)

    def segment_sum(self, seg, values):
        groups, n_groups = seg
        out = torch.zeros((n_groups,) + tuple(values.shape[1:]), dtype=values.dtype,
                          device=values.device)
        return out.index_add_(0, groups, values)

    def eigh(self, A):
        """Eigen-decomposition on the device (in the data's precision on a GPU)."""
        vals, vecs = torch.linalg.eigh(A.to(self.data_dtype))
        return vals.to(torch.float64), vecs.to(torch.float64)

    @_full_precision
    def row_leverage(self, Z, U, M):
        """((Z U) ** 2) @ M in row chunks, (N, B), streamed for host-resident Z."""
        Ud, Md = U.to(self.data_dtype), M.to(self.data_dtype)
        parts = [(torch.square(Zc @ Ud) @ Md).to(torch.float64) for _, _, Zc in _row_chunks(Z)]
        return torch.cat(parts, dim=0)

    # the two passes over the data -------------------------------------------
    @_full_precision
    def matmul_ZV(self, Z, V):
        if isinstance(Z, _HostChunks):
            return Z.matmul_ZV(V)
        return (Z @ V.to(Z.dtype)).to(torch.float64)

    @_full_precision
    def matmul_ZtR(self, Z, R):
        if isinstance(Z, _HostChunks):
            return Z.matmul_ZtR(R)
        if Z.device.type == "cpu":
            # a CPU BLAS reads a row-major Z far faster as (R^T Z)^T than as Z^T R (4x at
            # 20,000 x 384), as the numpy backend does; CUDA takes Z^T R as it is
            return (R.to(Z.dtype).T @ Z).T.to(torch.float64)
        return (Z.T @ R.to(Z.dtype)).to(torch.float64)


_SIDE_STREAMS = {}
_SIDE_STREAMS_LOCK = threading.Lock()


def _side_stream(device):
    """One side stream per GPU for the process: the caching allocator keeps freed memory
    per stream, so a new stream per fit would hold every earlier fit's side memory."""
    device = torch.device(device)
    key = device.index if device.index is not None else torch.cuda.current_device()
    with _SIDE_STREAMS_LOCK:
        if key not in _SIDE_STREAMS:
            _SIDE_STREAMS[key] = torch.cuda.Stream(key)
        return _SIDE_STREAMS[key]


class _SideTask:
    """``fn()`` on a thread of its own (and, on CUDA, a stream of its own that starts
    after everything queued so far on the caller's stream: ``fn``'s inputs are ready,
    and memory the caller freed is reused there only after the caller's last use).
    :meth:`result` joins it and makes the caller's stream wait for its work; if ``fn``
    failed on its thread (a reason is kept in ``SIDE_TASK_ERRORS``) it runs again in
    the caller, which then raises what a sequential run would."""

    def __init__(self, fn, device):
        self._fn, self._device = fn, device
        self._value = self._error = None
        self._stream = None
        if device.type == "cuda":
            if device.index is None:  # "cuda" is the caller's current GPU, not the thread's
                self._device = device = torch.device("cuda", torch.cuda.current_device())
            self._stream = _side_stream(device)
            self._stream.wait_stream(torch.cuda.current_stream(device))
        self._thread = threading.Thread(target=self._run, name="sklearn_lore-side",
                                        daemon=True)
        self._thread.start()

    def _run(self):
        try:
            if self._stream is None:
                self._value = self._fn()
            else:
                with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
                    self._value = self._fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller in result()
            self._error = exc

    def result(self):
        self._thread.join()
        if self._stream is not None:
            torch.cuda.current_stream(self._device).wait_stream(self._stream)
        if self._error is not None:
            message = f"{type(self._error).__name__}: {self._error}"
            SIDE_TASK_ERRORS.append(message)
            logger.debug("side task failed on its thread, running it again: %s", message)
            self._error = None
            return self._fn()
        return self._value


class _Graph:
    """A function of fixed-shape device tensors, captured once, replayed many times.

    ``inputs`` are copied into static buffers (``self.inputs``); calling the graph
    with new tensors copies them in (None keeps a buffer as it is) and replays every
    kernel of the body in one launch. The outputs (``self.outputs``) are the same
    tensors after every replay, overwritten by each: copy what must outlive the next.
    """

    def __init__(self, body, inputs, device):
        self.inputs = [x.clone() for x in inputs]
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up: library handles and workspaces before capture
                body(*self.inputs)
            graph = torch.cuda.CUDAGraph()
            graph.capture_begin(capture_error_mode="thread_local")
            try:
                outputs = body(*self.inputs)
            finally:
                graph.capture_end()
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph, self.outputs, self.device = graph, outputs, device

    def __call__(self, *inputs):
        for static, value in zip(self.inputs, inputs):
            if value is not None and value is not static:
                static.copy_(value)
        with torch.cuda.device(self.device):  # replays on the current stream of its GPU
            self.graph.replay()
        return self.outputs


# rows travel to a GPU in chunks of this size, through two page-locked buffers
_STAGING_BYTES = 32 << 20


def _row_chunks(Z, chunk=8192):
    """(start, stop, rows on the device) over a data matrix, host-resident or not."""
    if isinstance(Z, _HostChunks):
        yield from Z._chunks()
        return
    for start in range(0, Z.shape[0], chunk):
        yield start, min(start + chunk, Z.shape[0]), Z[start:start + chunk]


class _HostChunks:
    """A data matrix kept in host memory and streamed to the device in row chunks."""

    def __init__(self, Z, backend, chunk_bytes=None):
        self.Z = Z.pin_memory() if backend.device_.type == "cuda" else Z
        self.device = backend.device_
        budget = chunk_bytes or max(backend._data_budget() / 4, 1 << 20)
        row_bytes = Z.element_size() * max(Z.shape[1], 1)
        self.chunk = max(int(budget // row_bytes), 1)
        self.shape = Z.shape
        self.dtype = Z.dtype

    def _chunks(self):
        for start in range(0, self.shape[0], self.chunk):
            stop = min(start + self.chunk, self.shape[0])
            yield start, stop, self.Z[start:stop].to(self.device, non_blocking=True)

    def matmul_ZV(self, V):
        Vd = V.to(self.dtype)
        parts = [(Zc @ Vd).to(torch.float64) for _, _, Zc in self._chunks()]
        return torch.cat(parts, dim=0)

    def matmul_ZtR(self, R):
        out = torch.zeros((self.shape[1], R.shape[1]), dtype=torch.float64, device=self.device)
        for start, stop, Zc in self._chunks():
            out += (Zc.T @ R[start:stop].to(self.dtype)).to(torch.float64)
        return out

    def gram(self, c):
        d = self.shape[1]
        out = torch.zeros((d, d), dtype=torch.float64, device=self.device)
        for start, stop, Zc in self._chunks():
            out += (Zc.T @ (c[start:stop].to(self.dtype)[:, None] * Zc)).to(torch.float64)
        return out

    def __getitem__(self, idx):
        return self.Z[idx].to(self.device)
