"""Where one fit spends its time: wall time per solver phase, and torch op counts.

Wraps the solver's phases (row layout and transfer to the device, spectral start,
alternating fit and its L-BFGS basis steps, empirical-Bayes prior, cross-fit, basis
leverage) and the estimator's own steps (input checks, curvature and temperatures)
with timers that synchronize the GPU at their edges, fits ``LowRankRewardEstimator``
once to warm up and once measured, and prints a table.
With ``--count-ops`` (torch backend) a second fit counts the torch operations (views,
which launch nothing, excluded) and host syncs each phase dispatches; the seconds come
from the first fit, which runs without the counter's hook. On a GPU a small operation
costs a kernel launch, so the count bounds the time the solver can take however fast
the card is. Nested phases (the cross-fit runs its own alternating fit) are counted in
both. Side tasks run in turn here (SKLEARN_LORE_OVERLAP=0): ``bench_fit.py`` times the
fit with and without them overlapping.

    python benchmarks/profile_fit.py --n-users 200 --n-features 384     # numpy
    python benchmarks/profile_fit.py --device cuda --n-users 1000 --n-features 4096 \\
        --n-components 8 --out "$OUT/profile_gpu"
"""

import argparse
import collections
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402

from sklearn_lore import LowRankRewardEstimator, _solver  # noqa: E402
from sklearn_lore.datasets import make_preference_data  # noqa: E402

PHASES = ["make_rows", "spectral_init", "fit_alternating", "_kron_preconditioner", "lbfgs",
          "empirical_bayes_prior", "crossfit_refits", "crossfit_shrinkage", "basis_leverage",
          "user_step", "kron_curvature"]
# the estimator's own steps around the solver: input checks (the rows' finiteness scan),
# the side work (the cross-fit's refits and the Gram matrix's eigen-decomposition), and
# the curvature and temperatures fitted after the basis (the leverage inside)
ESTIMATOR_PHASES = ["_validate_X", "_validate_y", "_side_work",
                    "_fit_curvature_and_temperature"]


def _sync(device):
    if device and str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


class _Counter:
    """A torch dispatch mode counting operations (views excluded) and host syncs
    (scalar reads and copies from the GPU to the host)."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                # views (reshape, unsqueeze, transpose) change metadata only: no kernel
                if not getattr(func, "is_view", False):
                    counter.ops += 1
                out = func(*args, **(kwargs or {}))
                if func.__name__.startswith("_local_scalar_dense") or _to_host(func, args, out):
                    counter.syncs += 1
                return out

        self.ops, self.syncs, self.mode = 0, 0, Mode()


def _to_host(func, args, out):
    """Whether an operation copied a GPU tensor into host memory (``.cpu()``,
    ``.numpy()`` after a move, ``tolist``): the host waits for the device there too."""
    import torch

    name = func.__name__
    if name.startswith("_to_copy"):
        source, target = args[0] if args else None, out
    elif name.startswith("copy_"):
        target, source = (args + (None, None))[:2]
    else:
        return False
    return (isinstance(source, torch.Tensor) and isinstance(target, torch.Tensor)
            and source.device.type == "cuda" and target.device.type == "cpu")


def profile(args):
    # phases one after another: a side task on its own thread (SKLEARN_LORE_OVERLAP, on
    # by default on a GPU) would run its phases under the main thread's timers and outside
    # the operation counter (a dispatch mode is per thread); bench_fit.py times both ways
    os.environ["SKLEARN_LORE_OVERLAP"] = "0"
    X, y, users, _ = make_preference_data(
        n_users=args.n_users, n_pairs_per_user=args.n_pairs, n_features=args.n_features,
        n_components=args.n_components, random_state=0,
    )
    X = X.astype(args.dtype)
    backend = "torch" if args.device else "numpy"
    params = dict(backend=backend, device=args.device, random_state=0)
    if args.shrinkage != "auto":
        params["shrinkage"] = float(args.shrinkage)
    LowRankRewardEstimator(args.n_components, **params).fit(X, y, user_ids=users)  # warm-up
    stats, total, est = _one_fit(args, params, X, y, users, None)
    counted = None
    if args.count_ops:
        # a second fit under the counter: its Python hook slows every operation down, so
        # the seconds come from the first fit, the counts from this one
        counter = _Counter()
        counted, _, _ = _one_fit(args, params, X, y, users, counter)
        counted["whole fit"] = [1, 0.0, counter.ops, counter.syncs]
    stats["whole fit"] = [1, total, 0, 0]
    rows = []
    for name, v in stats.items():
        ops = counted.get(name, [0, 0.0, 0, 0]) if counted is not None else [0, 0.0, 0, 0]
        rows.append({"phase": name, "calls": v[0], "seconds": v[1], "torch_ops": ops[2],
                     "host_syncs": ops[3]})
    return rows, est


def _one_fit(args, params, X, y, users, counter):
    """One fit with the solver's phases wrapped: per phase [calls, seconds, ops, syncs]."""
    stats = collections.defaultdict(lambda: [0, 0.0, 0, 0])
    targets = [(_solver, name) for name in PHASES]
    targets += [(LowRankRewardEstimator, name) for name in ESTIMATOR_PHASES]
    originals = {(owner, name): getattr(owner, name) for owner, name in targets
                 if hasattr(owner, name)}

    def wrap(name, fn):
        def timed(*a, **k):
            _sync(args.device)
            ops, syncs = (counter.ops, counter.syncs) if counter else (0, 0)
            t0 = time.perf_counter()
            out = fn(*a, **k)
            _sync(args.device)
            entry = stats[name]
            entry[0] += 1
            entry[1] += time.perf_counter() - t0
            if counter:
                entry[2] += counter.ops - ops
                entry[3] += counter.syncs - syncs
            return out
        return timed

    for (owner, name), fn in originals.items():
        setattr(owner, name, wrap(name.lstrip("_"), fn))
    try:
        with counter.mode if counter else contextlib.nullcontext():
            _sync(args.device)
            t0 = time.perf_counter()
            est = LowRankRewardEstimator(args.n_components, **params).fit(X, y, user_ids=users)
            _sync(args.device)
            total = time.perf_counter() - t0
    finally:
        for (owner, name), fn in originals.items():
            setattr(owner, name, fn)
    return stats, total, est


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-users", type=int, default=200)
    p.add_argument("--n-pairs", type=int, default=40)
    p.add_argument("--n-features", type=int, default=384)
    p.add_argument("--n-components", type=int, default=4)
    p.add_argument("--device", default=None, help="torch device; default numpy on the CPU")
    p.add_argument("--shrinkage", default="auto")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                   help="dtype of the input rows (sentence embeddings are float32)")
    p.add_argument("--count-ops", action="store_true",
                   help="also count torch operations, in a second untimed fit (torch backend)")
    p.add_argument("--out", default="benchmarks/results/profile")
    args = p.parse_args(argv)
    import pandas as pd

    rows, est = profile(args)
    device = args.device or "cpu (numpy)"
    graphs = ""
    if args.device and args.device.startswith("cuda"):
        import torch

        from sklearn_lore._backends._torch import GRAPH_ERRORS

        device += f" ({torch.cuda.get_device_name(0)})"
        graphs = ("; CUDA graphs " + ("off" if os.environ.get("SKLEARN_LORE_CUDA_GRAPHS") == "0"
                                      else "on") + f", capture errors {GRAPH_ERRORS}")
    text = "\n".join([
        f"fit {args.n_users} users x {args.n_pairs} pairs, d = {args.n_features}, rank "
        f"{args.n_components}, device {device}, {args.dtype} inputs; rounds {est.n_iter_}, "
        f"shrinkage_ "
        f"{est.shrinkage_:g}" + ("; ops counted in a second, untimed fit" if args.count_ops
                                  else "") + graphs,
        "",
        pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"),
    ])
    write_report(args.out, text, {"args": vars(args), "rows": rows,
                                  "n_iter": int(est.n_iter_)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
