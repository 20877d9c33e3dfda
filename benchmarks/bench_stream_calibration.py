"""Calibration of a memory-free stream: temperatures refitted on the batches' logits from
before each update, against temperatures frozen at the first call.

A memory-free stream (``stream_memory=0``) used to keep the temperatures its first call
fitted, however small that call: 10 rows gave the leave-one-out temperature's bound, 20,
for the rest of the stream. Now each call scores its batch before learning from it and
refits ``temperature_`` (known users' rows under their weights) and
``population_temperature_`` (every row under the population's weights) on the last
1,000 such rows. This script streams the training rows of the seen users, shuffled, as a
first call of ``--first`` rows and ``--calls`` equal calls after it, and reports held-out
log-loss on the seen users' later pairs and on the rows of users held out of the stream
(unknown users, the population model), for: the stream as it is, the same stream with
the temperatures frozen at the first call (the previous behaviour, by replacing the
refit with one that keeps them; same run), one ``fit`` on all the training rows, and the
stream's own logits after the best single temperature fitted on the test rows themselves
(a floor; it peeks at the labels).

Data: planted (``make_preference_data``: 200 users, 40 pairs, d = 32, rank 4) and, with
``--data``, a Jester subset of 300 users (d = 384, rank 8; pairs as in
``bench_small_calibration.py``). 20 % of the users are held out of the stream; each seen
user's first two thirds of pairs train, the rest test.

    python benchmarks/bench_stream_calibration.py --data ../shared/data
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402
from bench_jester import code_version, cpu_name  # noqa: E402

from sklearn_lore import LowRankRewardEstimator  # noqa: E402
from sklearn_lore._solver import expit, fit_inverse_temperature  # noqa: E402
from sklearn_lore.datasets import make_preference_data  # noqa: E402
from sklearn_lore.model_selection import within_user_position  # noqa: E402


def planted():
    X, y, users, _ = make_preference_data(n_users=200, n_pairs_per_user=40, n_features=32,
                                          n_components=4, random_state=1)
    return "planted 200 users, d=32", X, y, users, 4


def jester_subset(data):
    from bench_small_calibration import subset

    from sklearn_lore.datasets import load_jester

    frame, y = subset(load_jester(data), 300, 0)
    return ("Jester 300 users, d=384", frame.drop(columns="user_id").to_numpy(), y,
            frame["user_id"].to_numpy(), 8)


def frozen(self, before, sw):
    """The previous behaviour: the temperatures of the first call, kept."""
    return None, self.temperature_, self.population_temperature_


def stream(X, y, users, rank, first, calls, freeze):
    est = LowRankRewardEstimator(rank, random_state=0, stream_memory=0)
    original = LowRankRewardEstimator._stream_temperatures
    if freeze:
        LowRankRewardEstimator._stream_temperatures = frozen
    try:
        order = np.random.default_rng(0).permutation(len(y))
        batches = [order[:first]] + np.array_split(order[first:], calls)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for rows in batches:
                est.partial_fit(X[rows], y[rows], classes=[0, 1], user_ids=users[rows])
    finally:
        LowRankRewardEstimator._stream_temperatures = original
    return est


def losses(est, X, y, users, seen_test, unseen):
    out = {}
    for name, rows, ids in (("seen", seen_test, users[seen_test]),
                            ("unknown", unseen, None)):
        out[name] = log_loss(y[rows], est.predict_proba(X[rows], user_ids=ids)[:, 1])
    return out


def floor(est, X, y, users, seen_test, unseen):
    """Log-loss after the best single temperature on the test rows (uncalibrated logits)."""
    out = {}
    for name, rows, ids in (("seen", seen_test, users[seen_test]),
                            ("unknown", unseen, None)):
        logits = est.decision_function(X[rows], user_ids=ids)
        T = est._row_weights(ids, len(logits))[1]
        t, yy = logits * T, y[rows].astype(float)
        tau = fit_inverse_temperature(t, yy, np.ones(len(t)), bounds=(0.01, 100.0))
        out[name] = log_loss(yy, np.clip(expit(tau * t), 1e-12, 1 - 1e-12))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="../shared/data for the Jester subset")
    parser.add_argument("--first", type=int, nargs="+", default=[10, 200, 1000])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/stream_calibration")
    args = parser.parse_args(argv)
    cases = [planted()] + ([jester_subset(args.data)] if args.data else [])
    rows = []
    for label, X, y, users, rank in cases:
        ids = np.unique(users)
        unseen_users = np.random.RandomState(0).choice(ids, len(ids) // 5, replace=False)
        unseen = np.isin(users, unseen_users)
        position = within_user_position(users)
        counts = pd.Series(users).map(pd.Series(users).value_counts()).to_numpy()
        train = ~unseen & (position < 2 * counts // 3)
        seen_test = ~unseen & ~train
        Xt, yt, ut = X[train], y[train], users[train]
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = LowRankRewardEstimator(rank, random_state=0).fit(Xt, yt, user_ids=ut)
        fit_s = time.perf_counter() - start
        one_fit = losses(fitted, X, y, users, seen_test, unseen)
        for first in args.first:
            now = stream(Xt, yt, ut, rank, first, args.calls, freeze=False)
            before = stream(Xt, yt, ut, rank, first, args.calls, freeze=True)
            a = losses(now, X, y, users, seen_test, unseen)
            b = losses(before, X, y, users, seen_test, unseen)
            best = floor(now, X, y, users, seen_test, unseen)
            for group in ("seen", "unknown"):
                rows.append({
                    "data": label, "first call rows": first, "group": group,
                    "refitted": round(a[group], 4), "frozen": round(b[group], 4),
                    "best T (floor)": round(best[group], 4),
                    "one fit": round(one_fit[group], 4),
                    "T refitted": round(now.temperature_ if group == "seen"
                                        else now.population_temperature_, 2),
                    "T frozen": round(before.temperature_ if group == "seen"
                                      else before.population_temperature_, 2),
                })
        print(f"{label}: one fit {fit_s:.1f} s", flush=True)
    header = (f"machine: {cpu_name()}; commit {code_version()}\n"
              f"memory-free streams: a first call, then {args.calls} equal calls; held-out "
              "log-loss")
    write_report(args.out, header + "\n" + pd.DataFrame(rows).to_markdown(index=False), rows)


if __name__ == "__main__":
    main()
