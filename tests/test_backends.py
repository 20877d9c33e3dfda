"""Backend and device resolution (sklearn_lore._backends.resolve_backend).

A bad ``device`` raises a ValueError naming the parameter and the accepted values, at fit
time (never at construction), for both backends.
"""

import numpy as np
import pytest

import sklearn_lore._backends as backends
from sklearn_lore import LowRankRewardEstimator as E
from sklearn_lore._backends import (
    check_device,
    cuda_available,
    resolve_backend,
    torch_available,
)
from sklearn_lore.datasets import make_preference_data

needs_torch = pytest.mark.skipif(not torch_available(), reason="needs torch")
BAD_DEVICES = ["gpu", "", "mps", "meta", "CUDA", "cuda:", "cuda:x", "cpu:-1", " cpu", "xla:0",
               # torch refused these with its RuntimeError, or wrapped them to another device
               "cpu:01", "cuda:01", "cpu:" + "9" * 20, "cuda:128", "cuda:200"]


@pytest.fixture(scope="module")
def data():
    X, y, users, _ = make_preference_data(n_users=8, n_pairs_per_user=12, n_features=6,
                                          random_state=0)
    return X, y, users


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(backends, "cuda_available", lambda: False)


@pytest.mark.parametrize("backend", ["torch", "numpy", "auto"])
@pytest.mark.parametrize("device", BAD_DEVICES)
def test_bad_device_raises_a_clear_value_error_at_fit(backend, device, data):
    X, y, users = data
    if backend == "torch" and not torch_available():
        pytest.skip("needs torch")
    est = E(2, backend=backend, device=device)  # construction does not check
    with pytest.raises(ValueError, match=r"device must be None, 'auto', 'cpu', 'cpu:N', "
                                         r"'cuda' or 'cuda:N'.*got device="):
        est.fit(X, y, user_ids=users)
    with pytest.raises(ValueError, match="device must be"):
        E(2, backend=backend, device=device).fit(X, y)  # population model too


def test_the_reported_case(data):
    X, y, users = data
    if not torch_available():
        pytest.skip("needs torch")
    est = E(2, backend="torch", device="gpu")
    with pytest.raises(ValueError, match="device must be .*got device='gpu'"):
        est.fit(X, y, user_ids=users)


@pytest.mark.parametrize("device", [None, "auto", "cpu", "cpu:0"])
def test_numpy_backend_accepts_the_cpu_however_it_is_named(device, data):
    X, y, users = data
    reference = E(2, backend="numpy", random_state=0).fit(X, y, user_ids=users)
    est = E(2, backend="numpy", device=device, random_state=0).fit(X, y, user_ids=users)
    np.testing.assert_array_equal(est.predict_proba(X, user_ids=users),
                                  reference.predict_proba(X, user_ids=users))
    assert resolve_backend("numpy", device).name == "numpy"


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_numpy_backend_refuses_a_gpu(device, data):
    X, y, users = data
    est = E(2, backend="numpy", device=device)
    with pytest.raises(ValueError, match=rf"backend='numpy' runs on the CPU only; "
                                         rf"got device='{device}'.*backend='torch'"):
        est.fit(X, y, user_ids=users)


@pytest.mark.parametrize("device", [None, "auto", "cpu", "cpu:0"])
def test_auto_backend_without_a_gpu_is_numpy(device, no_gpu):
    assert resolve_backend("auto", device).name == "numpy"


@needs_torch
@pytest.mark.parametrize("device", [None, "auto", "cpu:0"])
def test_auto_backend_with_a_gpu_is_torch(device, monkeypatch):
    monkeypatch.setattr(backends, "cuda_available", lambda: True)
    assert resolve_backend("auto", device).name == "torch"


@needs_torch
def test_auto_backend_with_a_cuda_device_is_torch():
    if cuda_available():
        assert resolve_backend("auto", "cuda").name == "torch"
    else:  # the existing clear error for CUDA without a GPU
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            resolve_backend("auto", "cuda")


@needs_torch
@pytest.mark.parametrize("device", ["cpu", "cpu:0", "auto", None])
def test_torch_backend_accepts_cpu_and_auto(device, data):
    X, y, users = data
    est = E(2, backend="torch", device=device, random_state=0).fit(X, y, user_ids=users)
    assert est.predict_proba(X, user_ids=users).shape == (len(y), 2)
    if device in ("cpu", "cpu:0") or not cuda_available():
        assert resolve_backend("torch", device).device_.type == "cpu"


@needs_torch
def test_torch_cuda_index_beyond_the_visible_gpus(monkeypatch):
    import torch

    from sklearn_lore._backends._torch import TorchBackend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"device='cuda:3' .* torch sees 1 CUDA GPU"):
        TorchBackend("cuda:3")


@pytest.mark.parametrize(
    "device, kind",
    [(None, "auto"), ("auto", "auto"), ("cpu", "cpu"), ("cpu:2", "cpu"), ("cuda", "cuda"),
     ("cuda:12", "cuda")],
)
def test_check_device_kinds(device, kind):
    assert check_device(device) == kind


@pytest.mark.parametrize("device", [*BAD_DEVICES, 0, b"cpu"])
def test_check_device_rejects_others(device):
    with pytest.raises(ValueError, match="device must be"):
        check_device(device)


@needs_torch
def test_torch_asarray_takes_tensors_without_a_host_trip():
    """A backend tensor (the fit's Gram matrix, kept on the device) passes through asarray
    as float64 on the backend's device, the same values as from numpy."""
    import torch

    from sklearn_lore._backends._torch import TorchBackend

    be = TorchBackend("cpu")
    a = np.arange(6.0).reshape(2, 3) / 7.0
    from_tensor = be.asarray(torch.as_tensor(a, dtype=torch.float64))
    assert from_tensor.dtype == torch.float64 and from_tensor.device == be.device_
    assert torch.equal(from_tensor, be.asarray(a))
    assert be.asarray(torch.ones(2, dtype=torch.float32)).dtype == torch.float64


def test_torch_available_asks_the_module_finder_once(monkeypatch):
    """Every fit and fold-in resolves a backend: the finder (a disk search) is asked
    once per process, and an imported torch answers without it."""
    import importlib.util
    import sys
    import types

    monkeypatch.setattr(backends, "_TORCH_FOUND", None)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    asked = []
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: asked.append(name) or None)
    assert backends.torch_available() is False
    assert backends.torch_available() is False
    assert asked == ["torch"]
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    assert backends.torch_available() is True
    # None in sys.modules blocks the import: fit with "auto" went on to import torch
    monkeypatch.setitem(sys.modules, "torch", None)
    assert backends.torch_available() is False
    assert backends.cuda_available() is False
    assert asked == ["torch"]


@pytest.mark.parametrize("name", ["numpy", pytest.param("torch", marks=needs_torch)])
def test_softplus_matches_an_exact_reference_over_the_whole_range(name):
    """softplus(t) = log(1 + e^t), the objective's per-row term: against math's own
    log1p(exp(t)) (or t + log1p(exp(-t)) where e^t overflows), to a few ulps, with the
    infinities' limits, on a matrix and on a 0-d value, without a floating-point
    warning."""
    import math
    import warnings

    be = resolve_backend(name, "cpu")
    t = np.concatenate([np.linspace(-745.0, 745.0, 4001), np.geomspace(1e-300, 40.0, 500),
                        -np.geomspace(1e-300, 40.0, 500), [0.0, -0.0]])

    def exact(v):
        return v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v))

    ref = np.array([exact(v) for v in t])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = be.to_numpy(be.softplus(be.asarray(t.reshape(-1, 1)))).ravel()
        limits = be.to_numpy(be.softplus(be.asarray(np.array([np.inf, -np.inf]))))
        scalar = be.to_numpy(be.softplus(be.asarray(np.array(2.0))))
    np.testing.assert_allclose(got, ref, rtol=4e-16, atol=1e-300)  # denormals aside
    np.testing.assert_array_equal(limits, [np.inf, 0.0])
    assert float(np.ravel(scalar)[0]) == pytest.approx(math.log1p(math.exp(2.0)), rel=1e-15)
