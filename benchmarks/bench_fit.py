"""Fit and fold-in speed against the re-implemented published procedure, same data, one run.

Cases (the project's speed targets against the published procedure):

* ``fit``: planted users (make_preference_data), n_users x n_pairs comparisons with
  d features and rank B; the first 80% of each user's pairs train, the rest test.
  Ours (LowRankRewardEstimator, defaults) against PublishedLoRe (joint Adam, lr 0.5,
  1000 full-batch steps, /100 logits, softmax weights), and optionally against a
  per-user-loop variant of the same procedure (the published scripts loop over users
  in Python; ``--loop``).
* ``fold_in``: new users adapted from a few pairs with the basis frozen: ours
  (partial_fit_users) against PublishedLoRe's 500 Adam steps.

Prints a markdown table and writes it with a JSON copy under ``--out``.

    python benchmarks/bench_fit.py                       # the CPU case of issue 2
    python benchmarks/bench_fit.py --device cuda --n-users 1000 --n-features 4096 \\
        --n-components 8                                 # the GPU case of issue 4
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import PublishedLoRe  # noqa: E402
from bench_jester import cpu_name  # noqa: E402

from sklearn_lore import LowRankRewardEstimator  # noqa: E402
from sklearn_lore.datasets import make_preference_data  # noqa: E402
from _report import environment, write_report  # noqa: E402


def machine(device):
    info = {"cpu": cpu_name(), "cores": os.cpu_count()}
    if device and device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def sync(device):
    if device and device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn, device, repeats, setup=None):
    """Median wall time of ``repeats`` calls (after the first, which also warms up).

    With ``setup``, each call is ``fn(setup())`` and only ``fn`` is timed.
    """
    _, out = _once(fn, device, setup)
    times = []
    for _ in range(repeats):
        seconds, out = _once(fn, device, setup)
        times.append(seconds)
    return statistics.median(times), out


def _once(fn, device, setup=None):
    """Wall time of one call ``fn()`` (or ``fn(setup())``, setup untimed) and its result."""
    arg = setup() if setup is not None else None
    sync(device)
    t0 = time.perf_counter()
    out = fn(arg) if setup is not None else fn()
    sync(device)
    return time.perf_counter() - t0, out


def per_user_split(users, fraction):
    rank = pd.Series(users).groupby(users).cumcount().to_numpy()
    counts = pd.Series(users).map(pd.Series(users).value_counts()).to_numpy()
    return rank < np.floor(fraction * counts)


def ours(args, **kw):
    backend = "torch" if args.device else "numpy"
    return LowRankRewardEstimator(args.n_components, backend=backend, device=args.device,
                                  random_state=0, **kw)


def _with_env(name, value, fit):
    """``fit()`` with the environment variable ``name`` set to ``value`` (the comparison
    lines: SKLEARN_LORE_CUDA_GRAPHS=0 for eager user steps, SKLEARN_LORE_OVERLAP=0 for
    side tasks run in turn)."""
    with environment(name, value):
        return fit()


def published(args):
    return PublishedLoRe(args.n_components, device=args.device or "cpu", random_state=0)


def bench_fit(args):
    X, y, users, truth = make_preference_data(
        n_users=args.n_users, n_pairs_per_user=args.n_pairs, n_features=args.n_features,
        n_components=args.n_components, random_state=0,
    )
    X = X.astype(args.dtype)
    train = per_user_split(users, 0.8)
    Xtr, ytr, utr = X[train], y[train], users[train]
    test = (X[~train], y[~train])
    rows = []
    oracle = float(np.mean((truth.logits[~train] > 0) == y[~train]))
    models = [("sklearn_lore", lambda: ours(args).fit(Xtr, ytr, user_ids=utr)),
              ("sklearn_lore, shrinkage=1.0 (no cross-fit)",
               lambda: ours(args, shrinkage=1.0).fit(Xtr, ytr, user_ids=utr)),
              ("sklearn_lore, shrinkage=1.0, calibrate=False (the solver alone)",
               lambda: ours(args, shrinkage=1.0, calibrate=False).fit(Xtr, ytr, user_ids=utr)),
              ("published (vectorized Adam)", lambda: published(args).fit(Xtr, ytr, user_ids=utr))]
    if args.device and str(args.device).startswith("cuda"):
        models[1:1] = [
            ("sklearn_lore, eager user steps (no CUDA graphs)",
             lambda: _with_env("SKLEARN_LORE_CUDA_GRAPHS", "0",
                               lambda: ours(args).fit(Xtr, ytr, user_ids=utr))),
            ("sklearn_lore, side tasks in turn (no overlap)",
             lambda: _with_env("SKLEARN_LORE_OVERLAP", "0",
                               lambda: ours(args).fit(Xtr, ytr, user_ids=utr))),
        ]
    if args.loop:
        models.append(("published (per-user loop)",
                       lambda: published(args).set_params(per_user_loop=True).fit(
                           Xtr, ytr, user_ids=utr)))
    for name, fit in models:
        repeats = args.repeats if name.startswith("sklearn_lore") else 1
        seconds, est = timed(fit, args.device, repeats) if repeats > 1 else _once(fit, args.device)
        acc = float(np.mean(est.predict(test[0], user_ids=users[~train]) == test[1]))
        rows.append({"model": name, "fit_s": seconds, "held_out_accuracy": acc})
    rows.append({"model": "oracle (planted model)", "fit_s": float("nan"),
                 "held_out_accuracy": oracle})
    return rows


def on_the_card(fold):
    """``fold`` with every fold-in's user step on the model's device, however small."""
    import sklearn_lore.estimator as estimator_module

    def call(model):
        limit = estimator_module._HOST_FOLD_IN_ROWS
        estimator_module._HOST_FOLD_IN_ROWS = -1
        try:
            return fold(model)
        finally:
            estimator_module._HOST_FOLD_IN_ROWS = limit

    return call


def bench_fold_in(args):
    n_new, shots = args.fold_in_users, args.fold_in_shots
    base = args.fold_in_base_users
    X, y, users, _ = make_preference_data(
        n_users=base + n_new, n_pairs_per_user=max(args.n_pairs, shots + 20),
        n_features=args.n_features, n_components=args.fold_in_rank, random_state=1,
    )
    X = X.astype(args.dtype)
    distinct = pd.unique(users)
    seen = np.isin(users, distinct[:base])
    rank = pd.Series(users).groupby(users).cumcount().to_numpy()
    shot, test = ~seen & (rank < shots), ~seen & (rank >= shots)
    X_shot, y_shot, users_shot = X[shot], y[shot], users[shot]
    rows = []
    for name, make in [("sklearn_lore", lambda: ours(args).set_params(
                            n_components=args.fold_in_rank)),
                       ("published (vectorized Adam)", lambda: published(args).set_params(
                            n_components=args.fold_in_rank))]:
        fitted = make().fit(X[seen], y[seen], user_ids=users[seen])
        population = float(np.mean(fitted.predict(X[test], user_ids=users[test]) == y[test]))

        def fold(model):
            return model.partial_fit_users(X_shot, y_shot, user_ids=users_shot)

        def fresh(fitted=fitted):  # a copy per call, made outside the timed region
            import copy

            return copy.deepcopy(fitted)

        variants = [(name, fresh, fold)]
        if name == "sklearn_lore" and args.device and str(args.device).startswith("cuda"):
            # the same model's fold-in with the user step on the card (a fold-in this small
            # runs it on the host by default: estimator._HOST_FOLD_IN_ROWS)
            variants.append(("sklearn_lore, user step on the card", fresh, on_the_card(fold)))
        for label, setup, call in variants:
            repeats = args.fold_in_repeats if label.startswith("sklearn_lore") else 1
            seconds, est = (timed(call, args.device, repeats, setup=setup) if repeats > 1
                            else _once(call, args.device, setup=setup))
            acc = float(np.mean(est.predict(X[test], user_ids=users[test]) == y[test]))
            rows.append({"model": label, "fold_in_s": seconds, "population_accuracy": population,
                         "fold_in_accuracy": acc,
                         "shrinkage_": getattr(fitted, "shrinkage_", float("nan"))})
    return rows


def to_markdown(fit_rows, fold_rows, args, info):
    fit = pd.DataFrame(fit_rows)
    ref = fit.loc[fit.model == "sklearn_lore", "fit_s"].iloc[0]
    fit["speed-up of sklearn_lore"] = fit["fit_s"] / ref
    fold = pd.DataFrame(fold_rows)
    lines = [
        f"machine: {json.dumps(info)}",
        "",
        f"fit: {args.n_users} users x {args.n_pairs} pairs (80% train), d = {args.n_features}, "
        f"rank {args.n_components}, device {args.device or 'cpu (numpy backend)'}, "
        f"{args.dtype} inputs",
        "",
        fit.to_markdown(index=False, floatfmt=".3f"),
        "",
        f"fold-in: {args.fold_in_users} new users x {args.fold_in_shots} pairs, "
        f"rank {args.fold_in_rank}, basis fitted on {args.fold_in_base_users} users x "
        f"{args.n_pairs} pairs",
        "",
        fold.to_markdown(index=False, floatfmt=".4f"),
    ]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-users", type=int, default=200)
    p.add_argument("--n-pairs", type=int, default=50)
    p.add_argument("--n-features", type=int, default=384)
    p.add_argument("--n-components", type=int, default=4)
    p.add_argument("--fold-in-users", type=int, default=500)
    p.add_argument("--fold-in-shots", type=int, default=10)
    p.add_argument("--fold-in-rank", type=int, default=8)
    p.add_argument("--fold-in-repeats", type=int, default=15,
                   help="timed fold-ins of ours (median; a fold-in takes milliseconds, "
                        "so a median of a few moves with the machine's noise)")
    p.add_argument("--fold-in-base-users", type=int, default=2000,
                   help="users whose pairs fit the basis before the fold-in (a rank-8 basis "
                        "in d=384 is not learnable from a few hundred users)")
    p.add_argument("--device", default=None, help="torch device (cuda); default numpy on CPU")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                   help="dtype of the embedding differences given to every model (sentence "
                        "embeddings are float32)")
    p.add_argument("--loop", action="store_true", help="also time the per-user-loop variant")
    p.add_argument("--out", default="benchmarks/results/fit")
    args = p.parse_args(argv)
    info = machine(args.device)
    fit_rows = bench_fit(args)
    fold_rows = bench_fold_in(args)
    if args.device and args.device.startswith("cuda"):
        from sklearn_lore._backends._torch import GRAPH_ERRORS, SIDE_TASK_ERRORS

        # what fell back: a failed capture runs eagerly, a failed side task in turn
        info.update(graph_errors=list(GRAPH_ERRORS), side_task_errors=list(SIDE_TASK_ERRORS))
    text = to_markdown(fit_rows, fold_rows, args, info)
    write_report(args.out, text,
                 {"machine": info, "args": vars(args), "fit": fit_rows, "fold_in": fold_rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
