"""Array backends: the same operations in numpy (CPU) and torch (CPU or CUDA).

The solver in :mod:`sklearn_lore._solver` is written once against these operations;
each backend module implements them with its own arrays (``_numpy.NumpyBackend``,
``_torch.TorchBackend``). Fitted attributes always come back as numpy float64.
"""

import re


_TORCH_FOUND = None


class Later:
    """A side task run where and when its result is asked for (:meth:`result`): the
    sequential form of a backend's ``side_task``, the same operations in the same
    order as calling ``fn`` at that point."""

    def __init__(self, fn):
        self._fn = fn

    def result(self):
        return self._fn()


def torch_available():
    """Whether torch can be imported (without importing it).

    Asked on every fit, fold-in and prediction that resolves a backend: the finder's
    answer is kept (a module search touches the disk), and an imported torch answers
    at once.
    """
    global _TORCH_FOUND
    import sys

    if "torch" in sys.modules:
        # None there blocks the import (a test hiding torch, say): not available
        return sys.modules["torch"] is not None
    if _TORCH_FOUND is None:
        import importlib.util

        _TORCH_FOUND = importlib.util.find_spec("torch") is not None
    return _TORCH_FOUND


def cuda_available():
    """Whether torch is installed and sees a CUDA device.

    Importing torch takes seconds, so it is only imported when an NVIDIA driver is
    present (or torch is already loaded).
    """
    import os
    import sys

    if not torch_available():
        return False
    if "torch" not in sys.modules and not os.path.exists("/proc/driver/nvidia/version"):
        return False
    import torch

    return torch.cuda.is_available()


# an index as torch parses it: no leading zero, and at most 127 (torch keeps it in 8
# bits: "cuda:200" would be its device -56)
_DEVICE = re.compile(r"(cpu|cuda)(:(?:0|[1-9][0-9]?|1[01][0-9]|12[0-7]))?")
_ACCEPTED = ("None, 'auto', 'cpu', 'cpu:N', 'cuda' or 'cuda:N' (N a device index from 0 to "
             "127, without leading zeros)")


def check_device(device):
    """The kind of the estimator's ``device`` parameter: "auto", "cpu" or "cuda".

    None and ``"auto"`` (the best device the backend has: CUDA when torch sees a
    GPU, else the CPU) are "auto"; ``"cpu"``, ``"cpu:N"``, ``"cuda"`` and
    ``"cuda:N"`` name a device. Anything else raises ``ValueError`` naming the
    accepted values (torch's own devices such as "mps" or "meta" are not supported).
    """
    if device is None or device == "auto":
        return "auto"
    match = _DEVICE.fullmatch(device) if isinstance(device, str) else None
    if match is None:
        raise ValueError(f"device must be {_ACCEPTED}; got device={device!r}.")
    return match.group(1)


def resolve_backend(backend, device):
    """Return a backend instance for the estimator's ``backend``/``device`` params.

    ``device`` is checked first (:func:`check_device`). ``"auto"`` picks torch for a
    CUDA device, and for None, ``"auto"`` or a CPU device torch on CUDA when a GPU is
    visible, numpy otherwise. The numpy backend accepts None, ``"auto"`` (the CPU,
    its only device), ``"cpu"`` and ``"cpu:N"``. Raises ``ImportError`` when torch
    is asked for but not installed and ``ValueError`` for an unusable device.
    """
    kind = check_device(device)
    if backend == "auto":
        backend = "torch" if (kind == "cuda" or cuda_available()) else "numpy"
    if backend == "numpy":
        if kind == "cuda":
            raise ValueError(
                f"backend='numpy' runs on the CPU only; got device={device!r}. "
                "Use backend='torch' for a GPU, or device=None, 'auto', 'cpu' or 'cpu:N'."
            )
        from ._numpy import NumpyBackend

        return NumpyBackend()
    if backend == "torch":
        if not torch_available():
            raise ImportError(
                "backend='torch' needs PyTorch, which is not installed. "
                "Install it (pip install 'sklearn_lore[torch]') or use backend='numpy'."
            )
        from ._torch import TorchBackend

        return TorchBackend(device)
    raise ValueError(f"backend must be 'auto', 'numpy' or 'torch'; got {backend!r}.")
