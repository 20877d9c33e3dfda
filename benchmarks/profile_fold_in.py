"""Where a fold-in spends its time, and what the host's projection Z V could cost.

The GPU check's fold-in case (500 new users x 10 pairs, d = 4096, rank 8, float32
rows) on a basis fitted to ``--base-users`` users: the wall time of each step of
``partial_fit_users`` (input checks, the projection Z V, labels, user ids and priors,
the user step, the write-back), medians over ``--repeats`` calls on fresh copies of
the model; then the projection alone by several routes on the same rows (the
estimator's row blocks, one BLAS call, row blocks spread over host threads, and on
a GPU the rows' transfer plus the product there), to say which one the host of a
GPU machine should take.

    python benchmarks/profile_fold_in.py --out benchmarks/results/profile_fold_in
    python benchmarks/profile_fold_in.py --device cuda --out "$OUT/profile_fold_in"
"""

import argparse
import collections
import copy
import functools
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402
from bench_predict_latency import median_call  # noqa: E402

import sklearn_lore.estimator as estimator_module  # noqa: E402
from sklearn_lore import LowRankRewardEstimator, _solver  # noqa: E402
from sklearn_lore._backends._numpy import matmul_rows  # noqa: E402
from sklearn_lore.datasets import make_preference_data  # noqa: E402

STEPS = [(LowRankRewardEstimator, "_validate_X"), (LowRankRewardEstimator, "_project"),
         (LowRankRewardEstimator, "_check_trainable"), (LowRankRewardEstimator, "_validate_y"),
         (LowRankRewardEstimator, "_batch_priors"), (estimator_module, "resolve_backend"),
         (_solver, "make_rows"), (_solver, "user_step"),
         (LowRankRewardEstimator, "_update_users")]


def _sync(device):
    if device and str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _timed_steps(device, seconds):
    """Wrap the steps with timers that synchronize the GPU at their edges."""
    originals = []
    for owner, name in STEPS:
        original = owner.__dict__[name]
        func = original.__func__ if isinstance(original, staticmethod) else original

        @functools.wraps(func)
        def timed(*args, _func=func, _name=name, **kwargs):
            _sync(device)
            t0 = time.perf_counter()
            try:
                return _func(*args, **kwargs)
            finally:
                _sync(device)
                seconds[_name].append(time.perf_counter() - t0)

        setattr(owner, name, staticmethod(timed) if isinstance(original, staticmethod)
                else timed)
        originals.append((owner, name, original))
    return originals


def projection_routes(Z, V, device, repeats):
    """Milliseconds of Z @ V by each route (host rows in, host (n, B) out)."""
    routes = {"row blocks (the estimator's)": lambda: matmul_rows(Z, V),
              "one BLAS call": lambda: Z @ V}
    cpus = os.cpu_count() or 1
    for workers in sorted({2, 4, 8, cpus // 2} - {0, 1}):
        if workers > cpus:
            continue
        pool = ThreadPoolExecutor(workers)

        def threaded(pool=pool, chunk=1024):
            out = np.empty((Z.shape[0], V.shape[1]), dtype=Z.dtype)

            def block(start):
                np.matmul(Z[start:start + chunk], V, out=out[start:start + chunk])

            list(pool.map(block, range(0, Z.shape[0], chunk)))
            return out

        routes[f"row blocks on {workers} host threads"] = threaded
    if device and str(device).startswith("cuda"):
        import torch

        Vd = torch.as_tensor(V, device=device)

        def on_gpu():
            Zd = torch.from_numpy(Z).to(device)
            return (Zd @ Vd).cpu().numpy()

        def on_gpu_pinned():
            Zd = torch.from_numpy(Z).pin_memory().to(device, non_blocking=True)
            return (Zd @ Vd).cpu().numpy()

        routes["to the GPU (pageable) and the product there"] = on_gpu
        routes["to the GPU (pinned first) and the product there"] = on_gpu_pinned
    reference = Z.astype(np.float64) @ V.astype(np.float64)
    rows = []
    for name, fn in routes.items():
        err = float(np.max(np.abs(fn() - reference)))
        rows.append({"route": name, "ms": 1e3 * median_call(fn, repeats),
                     "max abs error": err})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="torch device of the model; default numpy")
    p.add_argument("--base-users", type=int, default=2000)
    p.add_argument("--new-users", type=int, default=500)
    p.add_argument("--shots", type=int, default=10)
    p.add_argument("--n-features", type=int, default=4096)
    p.add_argument("--n-components", type=int, default=8)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", default="benchmarks/results/profile_fold_in")
    args = p.parse_args(argv)

    X, y, users, _ = make_preference_data(
        n_users=args.base_users + args.new_users, n_pairs_per_user=30,
        n_features=args.n_features, n_components=args.n_components, random_state=1)
    X = X.astype(np.float32)
    distinct = pd.unique(users)
    seen = np.isin(users, distinct[:args.base_users])
    rank = pd.Series(users).groupby(users).cumcount().to_numpy()
    shot = ~seen & (rank < args.shots)
    params = {"n_components": args.n_components, "random_state": 0}
    if args.device:
        params.update(backend="torch", device=args.device)
    fitted = LowRankRewardEstimator(**params).fit(X[seen], y[seen], user_ids=users[seen])
    Xs, ys, us = X[shot], y[shot], users[shot]

    def fold_in():
        model = copy.deepcopy(fitted)
        _sync(args.device)
        t0 = time.perf_counter()
        model.partial_fit_users(Xs, ys, user_ids=us)
        _sync(args.device)
        return time.perf_counter() - t0

    fold_in()
    totals = [fold_in() for _ in range(args.repeats)]
    seconds = collections.defaultdict(list)
    originals = _timed_steps(args.device, seconds)
    try:
        timed_totals = [fold_in() for _ in range(args.repeats)]
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
    steps = [{"step": name, "ms": 1e3 * statistics.median(seconds[name])}
             for _, name in STEPS if seconds[name]]
    steps.append({"step": "whole fold-in (timers on)", "ms": 1e3 * statistics.median(timed_totals)})
    steps.append({"step": "whole fold-in (no timers)", "ms": 1e3 * statistics.median(totals)})
    V = fitted.components_.T.astype(np.float32)
    routes = projection_routes(np.ascontiguousarray(Xs), V, args.device, args.repeats)
    gpu = ""
    if args.device and str(args.device).startswith("cuda"):
        import torch

        gpu = f", {torch.cuda.get_device_name(0)}"
    text = (f"fold-in of {args.new_users} users x {args.shots} pairs, d = {args.n_features}, "
            f"rank {args.n_components}, float32 rows; device {args.device or 'numpy'}{gpu}, "
            f"{os.cpu_count()} CPUs; medians of {args.repeats}\n\n"
            + pd.DataFrame(steps).to_markdown(index=False, floatfmt=".2f") + "\n\n"
            + pd.DataFrame(routes).to_markdown(index=False, floatfmt=".3g"))
    write_report(args.out, text, {"device": args.device, "steps": steps, "routes": routes,
                                  "cpus": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
