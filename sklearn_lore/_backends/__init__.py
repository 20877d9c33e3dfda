"""Array backends: the same operations in numpy (CPU) and torch (CPU or CUDA).

The solver in :mod:`sklearn_lore._solver` is written once against these operations;
each backend module implements them with its own arrays (``_numpy.NumpyBackend``,
``_torch.TorchBackend``). Fitted attributes always come back as numpy float64.
"""


def torch_available():
    """Whether torch can be imported (without importing it twice)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


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


def resolve_backend(backend, device):
    """Return a backend instance for the estimator's ``backend``/``device`` params.

    ``"auto"`` picks torch on CUDA when a GPU is visible, numpy otherwise.
    Raises ``ImportError`` when torch is asked for but not installed and
    ``ValueError`` for an unusable device.
    """
    if backend == "auto":
        backend = "torch" if (device not in (None, "cpu") or cuda_available()) else "numpy"
    if backend == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(
                f"backend='numpy' runs on the CPU only; got device={device!r}. "
                "Use backend='torch' for a GPU."
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
