"""Calibration of predicted probabilities for seen users and new users, one run.

Planted users (make_preference_data) in two regimes: few users for a basis in many
dimensions (the basis overfits its training pairs) and many users (the basis is
learned). The few-shot protocol of ``fewshot_split``: seen users train on their first
``--n-train-pairs`` pairs and are tested on the rest; unseen users adapt on k pairs
(``partial_fit_users``) and are tested on their pairs from ``--n-train-pairs`` on.

For every line: held-out log-loss and ECE of ``LowRankRewardEstimator`` with the
default ``calibrate=True`` and with ``calibrate=False``, and the log-loss after the
best single temperature fitted on the test pairs themselves (a floor that no
temperature can beat; it peeks at the labels). Temperatures never change predicted
labels, so accuracy is the same in all three columns.

    python benchmarks/bench_calibration.py
"""

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402
from bench_jester import code_version, cpu_name  # noqa: E402

from sklearn_lore import LowRankRewardEstimator  # noqa: E402
from sklearn_lore._solver import expit, fit_inverse_temperature  # noqa: E402
from sklearn_lore.datasets import make_preference_data  # noqa: E402
from sklearn_lore.model_selection import expected_calibration_error, fewshot_split  # noqa: E402

REGIMES = {
    "few users, d=384 (basis overfits)": dict(n_users=250, n_features=384, n_components=4),
    "many users, d=64 (basis learned)": dict(n_users=1000, n_features=64, n_components=4),
}
SHOTS = (0, 5, 10)


def log_loss(t, y01):
    q = np.clip(expit(t), 1e-12, 1 - 1e-12)
    return float(-np.mean(y01 * np.log(q) + (1 - y01) * np.log1p(-q)))


def lines(est, X, y, users, split):
    """(line, logits, labels in {0, 1}) for the seen users and each shot count."""
    y01 = (y == est.classes_[1]).astype(float)
    test = split.seen_test
    yield "seen users", est.decision_function(X[test], user_ids=users[test]), y01[test]
    test = split.unseen_test
    for k in SHOTS:
        adapted = est
        if k:
            rows = split.adapt[k]
            adapted = copy.deepcopy(est).partial_fit_users(X[rows], y[rows], user_ids=users[rows])
        yield (f"unseen, k={k}", adapted.decision_function(X[test], user_ids=users[test]),
               y01[test])


def run_regime(name, params, args):
    X, y, users, _ = make_preference_data(n_pairs_per_user=args.n_pairs, random_state=0,
                                          **params)
    split = fewshot_split(users, unseen_size=0.2, n_train_pairs=args.n_train_pairs,
                          shots=SHOTS, random_state=0)
    fit = {cal: LowRankRewardEstimator(params["n_components"], random_state=0,
                                       calibrate=cal).fit(X[split.seen_train],
                                                          y[split.seen_train],
                                                          user_ids=users[split.seen_train])
           for cal in (True, False)}
    rows = []
    raw = {line: (t, yy) for line, t, yy in lines(fit[False], X, y, users, split)}
    for line, t, yy in lines(fit[True], X, y, users, split):
        t_raw = raw[line][0]
        tau = fit_inverse_temperature(t_raw, yy, np.ones_like(t_raw), bounds=(0.01, 100.0))
        rows.append({
            "regime": name, "line": line, "accuracy": float(np.mean((t > 0) == yy)),
            "log_loss": log_loss(t, yy), "ece": expected_calibration_error(yy, expit(t)),
            "log_loss_uncalibrated": log_loss(t_raw, yy),
            "ece_uncalibrated": expected_calibration_error(yy, expit(t_raw)),
            "log_loss_best_temperature": log_loss(tau * t_raw, yy),
        })
    est = fit[True]
    temps = {"temperature_": est.temperature_, "fold_in_temperature_": est.fold_in_temperature_,
             "population_temperature_": est.population_temperature_,
             "shrinkage_": est.shrinkage_}
    return rows, temps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-pairs", type=int, default=50)
    p.add_argument("--n-train-pairs", type=int, default=30)
    p.add_argument("--out", default="benchmarks/results/calibration")
    args = p.parse_args(argv)
    all_rows, temps = [], {}
    for name, params in REGIMES.items():
        rows, temps[name] = run_regime(name, params, args)
        all_rows += rows
    table = pd.DataFrame(all_rows)
    info = {"cpu": cpu_name(), **code_version()}
    text = "\n".join([
        f"machine: {info['cpu']}; commit {info['commit']}",
        "",
        f"planted users x {args.n_pairs} pairs, rank 4; seen users train on "
        f"{args.n_train_pairs} pairs; unseen users adapt on k pairs",
        "",
        table.to_markdown(index=False, floatfmt=".4f"),
        "",
        "fitted temperatures: " + "; ".join(
            f"{name}: " + ", ".join(f"{k} {v:.3g}" for k, v in t.items())
            for name, t in temps.items()),
    ])
    write_report(args.out, text, {"machine": info, "rows": all_rows, "temperatures": temps})
    return 0


if __name__ == "__main__":
    sys.exit(main())
