"""Streaming against one fit: held-out accuracy after many partial_fit calls.

Planted data (make_preference_data: 40 users, 16 features, rank 3; 40 training and 60
held-out pairs per user); the training rows, shuffled, are streamed in 4, 10 or 40
equal partial_fit calls (40 calls: about one pair per user per call), once with the
default memory of rows (``stream_memory=20000``: the stream fits in it) and once
memory-free (``stream_memory=0``). Reports held-out accuracy and the stream's total
time against one fit and the population model.

    python benchmarks/bench_streaming.py
"""

import argparse
import time

import numpy as np
import pandas as pd

from sklearn_lore import LowRankRewardEstimator
from sklearn_lore.datasets import make_preference_data
from _report import write_report  # noqa: E402

CALLS = (4, 10, 40)
MEMORIES = (20000, 0)


def one_seed(seed):
    X, y, users, _ = make_preference_data(n_users=40, n_pairs_per_user=100, n_features=16,
                                          n_components=3, random_state=seed)
    train = pd.Series(users).groupby(users).cumcount().to_numpy() < 40
    Xt, yt, ut = X[train], y[train], users[train]
    test = (X[~train], y[~train])

    def score(est, ids=users[~train]):
        return est.score(*test, user_ids=ids)

    start = time.perf_counter()
    fitted = LowRankRewardEstimator(3, random_state=0).fit(Xt, yt, user_ids=ut)
    row = {"seed": seed, "one fit": score(fitted), "fit_s": time.perf_counter() - start,
           "population only": score(fitted, None)}
    for memory in MEMORIES:
        for n_calls in CALLS:
            start = time.perf_counter()
            est = LowRankRewardEstimator(3, random_state=0, stream_memory=memory)
            for rows in np.array_split(np.random.default_rng(0).permutation(len(yt)), n_calls):
                est.partial_fit(Xt[rows], yt[rows], classes=[0, 1], user_ids=ut[rows])
            label = f"{n_calls} calls, memory {memory}"
            row[label] = score(est)
            row[label + " (s)"] = time.perf_counter() - start
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="benchmarks/results/streaming")
    args = p.parse_args(argv)
    table = pd.DataFrame([one_seed(seed) for seed in args.seeds]).astype({"seed": str})
    accuracy = table[[c for c in table.columns if not c.endswith("(s)") and c != "fit_s"]]
    seconds = table[["seed", "fit_s"] + [c for c in table.columns if c.endswith("(s)")]]
    text = "\n\n".join([
        "held-out accuracy",
        accuracy.to_markdown(index=False, floatfmt=".3f"),
        "wall time (s)",
        seconds.to_markdown(index=False, floatfmt=".2f"),
    ])
    write_report(args.out, text, table.to_dict(orient="records"))


if __name__ == "__main__":
    main()
