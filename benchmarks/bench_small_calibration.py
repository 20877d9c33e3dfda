"""Seen users' calibration on small real data: the built-in temperature against held-out
calibration, on Jester subsets.

For each subset (``--n-users`` users drawn at random, every seed of ``--seeds``): pairs
from the users' ratings (``pairs_from_ratings``), each user's first ``--n-train-pairs``
pairs train and the rest test (the seen users' held-out pairs). Held-out log-loss of
``LowRankRewardEstimator`` with the default ``calibrate=True`` (its leave-one-out
temperature), with ``calibrate=False``, wrapped uncalibrated in
``CalibratedClassifierCV(cv=WithinUserKFold(5, shuffle=True))`` (sigmoid calibration on
held-out pairs of the fitted users, five models averaged), and after the best single
temperature fitted on the test pairs themselves (a floor for the single model; it peeks at
the labels). Defaults otherwise (rank 8, ``shrinkage="auto"``).

    python benchmarks/bench_small_calibration.py --data ../shared/data
"""

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import log_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402
from bench_jester import code_version, cpu_name  # noqa: E402

from sklearn_lore import LowRankRewardEstimator  # noqa: E402
from sklearn_lore._solver import expit, fit_inverse_temperature  # noqa: E402
from sklearn_lore.datasets import load_jester, pairs_from_ratings  # noqa: E402
from sklearn_lore.model_selection import WithinUserKFold, within_user_position  # noqa: E402


def subset(jester, n_users, seed):
    users = np.sort(jester.ratings["user_id"].unique())
    chosen = np.random.RandomState(seed).choice(users, n_users, replace=False)
    pairs = pairs_from_ratings(jester.ratings[jester.ratings["user_id"].isin(chosen)],
                               item_col="joke_id", random_state=seed)
    emb = jester.embeddings
    Z = emb.loc[pairs["item_a"]].to_numpy() - emb.loc[pairs["item_b"]].to_numpy()
    frame = pd.DataFrame(Z, columns=[f"e{i}" for i in range(Z.shape[1])])
    frame["user_id"] = pairs["user_id"].to_numpy()
    return frame, pairs["label"].to_numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--n-users", type=int, nargs="+", default=[20, 50, 100, 300])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n-train-pairs", type=int, default=28)
    parser.add_argument("--out", default="benchmarks/results/small_calibration")
    args = parser.parse_args(argv)
    jester = load_jester(args.data)
    rows = []
    for n_users in args.n_users:
        for seed in args.seeds:
            frame, y = subset(jester, n_users, seed)
            train = within_user_position(frame["user_id"]) < args.n_train_pairs
            test = ~train
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = LowRankRewardEstimator(random_state=0).fit(frame[train], y[train])
            bound = any("reached its bound" in str(w.message) for w in caught)
            plain = LowRankRewardEstimator(random_state=0, calibrate=False).fit(
                frame[train], y[train])
            wrapped = CalibratedClassifierCV(
                LowRankRewardEstimator(random_state=0, calibrate=False),
                cv=WithinUserKFold(5, shuffle=True, random_state=0)).fit(frame[train], y[train])
            logits = plain.decision_function(frame[test])
            tau = fit_inverse_temperature(logits, y[test].astype(float),
                                          np.ones(test.sum()), bounds=(0.01, 100.0))
            rows.append({
                "users": n_users, "seed": seed, "train_pairs": int(train.sum()),
                "temperature_": round(float(model.temperature_), 2),
                "warned": bound,
                "calibrate=True": log_loss(y[test], model.predict_proba(frame[test])[:, 1]),
                "calibrate=False": log_loss(y[test], plain.predict_proba(frame[test])[:, 1]),
                "CalibratedClassifierCV(WithinUserKFold)": log_loss(
                    y[test], wrapped.predict_proba(frame[test])[:, 1]),
                "best temperature": log_loss(y[test], expit(tau * logits)),
                "best T": round(1.0 / tau, 2),
            })
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f")
    header = (f"machine: {cpu_name()}; commit {code_version()}\n"
              f"Jester subsets; seen users train on their first {args.n_train_pairs} pairs; "
              "held-out log-loss of their later pairs")
    write_report(args.out, header + "\n" + table, rows)


if __name__ == "__main__":
    main()
