"""Free against simplex user weights, same data, one run (decides the default).

Planted data of both kinds (make_preference_data with simplex or free ground-truth
weights) and a Jester subsample (shipped MiniLM joke embeddings, the issue-5 pair
recipe): held-out accuracy for seen users' new pairs and fit time.

    python benchmarks/bench_variants.py --jester ../shared/data/jester5k
"""

import argparse
import sys
import time

import pandas as pd

from sklearn_lore import LowRankRewardEstimator
from sklearn_lore.datasets import load_jester, make_preference_data, pairs_from_ratings
from _report import write_report  # noqa: E402


def first_pairs(users, n_train):
    return pd.Series(users).groupby(users).cumcount().to_numpy() < n_train


def jester_subsample(data_dir, n_users):
    jester = load_jester(data_dir)
    pairs = pairs_from_ratings(jester.ratings, item_col="joke_id", n_pairs_per_user=40,
                               margin=2.0, random_state=0)
    keep = pd.unique(pairs.user_id)[:n_users]
    pairs = pairs[pairs.user_id.isin(keep)]
    emb = jester.embeddings
    X = emb.loc[pairs.item_a].to_numpy(float) - emb.loc[pairs.item_b].to_numpy(float)
    return X, pairs.label.to_numpy(), pairs.user_id.to_numpy()


def run(name, X, y, users, n_train, rows):
    train = first_pairs(users, n_train)
    for kind in ("free", "simplex"):
        t0 = time.perf_counter()
        est = LowRankRewardEstimator(user_weights=kind, random_state=0)
        est.fit(X[train], y[train], user_ids=users[train])
        seconds = time.perf_counter() - t0
        acc = est.score(X[~train], y[~train], user_ids=users[~train])
        rows.append({"data": name, "user_weights": kind, "held_out_accuracy": acc,
                     "fit_s": seconds, "rounds": est.n_iter_})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jester", default=None)
    p.add_argument("--jester-users", type=int, default=1000)
    p.add_argument("--out", default="benchmarks/results/variants")
    args = p.parse_args(argv)
    rows = []
    for truth in ("simplex", "free"):
        X, y, users, _ = make_preference_data(n_users=200, n_pairs_per_user=50, n_features=64,
                                              n_components=4, weights=truth, random_state=0)
        run(f"planted {truth} weights (200 users, d=64, planted rank 4)", X, y, users, 40, rows)
    if args.jester:
        X, y, users = jester_subsample(args.jester, args.jester_users)
        run(f"Jester, first {args.jester_users} users (28 train pairs each)", X, y, users, 28,
            rows)
    table = pd.DataFrame(rows)
    text = table.to_markdown(index=False, floatfmt=".3f")
    write_report(args.out, text, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
