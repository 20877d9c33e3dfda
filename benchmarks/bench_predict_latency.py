"""Latency of serving calls when the model knows many users.

A model is fitted on planted users, then widened to ``--n-users`` users by tiling the
fitted users' weights, precisions and temperatures under new ids (the id lookup and
the bookkeeping do not depend on the values). Times, median of ``--repeats`` calls:

- ``predict_proba`` of ``--n-rows`` rows of known users, with the cached id index (the
  estimator's behaviour) and with the index rebuilt on every call (as before the cache);
- ``partial_fit_users`` of one new user with 10 pairs, and of 10 more pairs of a known
  user, after a first fold-in (which sets up the buffers behind the per-user arrays).

    python benchmarks/bench_predict_latency.py --n-users 1000000
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402
from bench_jester import code_version, cpu_name  # noqa: E402

from sklearn_lore import LowRankRewardEstimator  # noqa: E402
from sklearn_lore.datasets import make_preference_data  # noqa: E402


def widened_model(n_users, n_features, n_components):
    X, y, users, _ = make_preference_data(n_users=50, n_pairs_per_user=20,
                                          n_features=n_features,
                                          n_components=n_components, random_state=0)
    est = LowRankRewardEstimator(n_components, random_state=0).fit(X, y, user_ids=users)
    reps = -(-n_users // len(est.users_))
    est.users_ = np.array([f"user-{i}" for i in range(n_users)])
    est.user_weights_ = np.tile(est.user_weights_, (reps, 1))[:n_users]
    est.user_precision_ = np.tile(est.user_precision_, (reps, 1, 1))[:n_users]
    est.user_temperature_ = np.tile(est.user_temperature_, reps)[:n_users]
    return est, X


def median_call(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-users", type=int, default=1_000_000)
    p.add_argument("--n-rows", type=int, default=10)
    p.add_argument("--n-features", type=int, default=384)
    p.add_argument("--n-components", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", default="benchmarks/results/predict_latency")
    args = p.parse_args(argv)
    est, X = widened_model(args.n_users, args.n_features, args.n_components)
    rng = np.random.RandomState(0)
    rows = X[rng.randint(0, len(X), args.n_rows)]
    ids = est.users_[rng.randint(0, args.n_users, args.n_rows)]

    def cached():
        return est.predict_proba(rows, user_ids=ids)

    def rebuilt():
        est.__dict__.pop("_loaded_user_index", None)
        return est.predict_proba(rows, user_ids=ids)

    np.testing.assert_array_equal(cached(), rebuilt())
    t_cached = median_call(cached, args.repeats)
    t_rebuilt = median_call(rebuilt, args.repeats)
    pairs, labels = X[:10], np.arange(10) % 2
    counter = iter(range(10 ** 9))

    def fold_in_new():
        return est.partial_fit_users(pairs, labels, user_ids=[f"new-{next(counter)}"] * 10)

    def update_known():
        return est.partial_fit_users(pairs, labels, user_ids=[ids[0]] * 10)

    t_new = median_call(fold_in_new, args.repeats)
    t_known = median_call(update_known, args.repeats)
    info = {"cpu": cpu_name(), **code_version()}
    text = "\n".join([
        f"machine: {info['cpu']}; commit {info['commit']}",
        "",
        f"predict_proba of {args.n_rows} rows of known users, model with {args.n_users:,} users "
        f"(median of {args.repeats} calls)",
        "",
        "| id index | seconds per call |",
        "| --- | --- |",
        f"| cached (built once per users_) | {t_cached:.5f} |",
        f"| rebuilt on every call (before) | {t_rebuilt:.5f} |",
        "",
        "| partial_fit_users, 10 pairs | seconds per call |",
        "| --- | --- |",
        f"| a new user | {t_new:.5f} |",
        f"| a known user | {t_known:.5f} |",
    ])
    write_report(args.out, text, {"machine": info, "cached_s": t_cached,
                                  "rebuilt_s": t_rebuilt, "fold_in_new_s": t_new,
                                  "fold_in_known_s": t_known, "args": vars(args)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
