"""Raw text in, personalized rewards out, on real chat pairs (HH-RLHF harmless-base test).

HH-RLHF has no annotator ids, so users are simulated (``simulate_users_on_pairs``:
each user mixes tastes over measurable response attributes and labels the pairs
assigned to them with Bradley-Terry noise). On the same MiniLM embeddings:

* the text Pipeline (SentencePairEmbedder + LowRankRewardEstimator) against one
  global Bradley-Terry model (logistic regression without intercept, its L2 strength
  chosen by cross-validation on the training pairs, as in ``bench_jester.py``),
  held-out pairs of the same users;
* the cost of a GridSearchCV over the rank with the embedder inside the pipeline,
  from a cold cache, against one cold fit of the pipeline (the shared text cache
  makes every candidate and fold after the first embed nothing).

Runs offline (HF_HUB_OFFLINE=1). Embedding ~4,600 chat texts takes a few minutes on
a 2-core CPU. ``--max-pairs`` subsamples for a quick run.

    python benchmarks/bench_hh_text.py --data ../shared/data/hh_rlhf_harmless_test
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

from sklearn_lore import LowRankRewardEstimator, SentencePairEmbedder  # noqa: E402
from sklearn_lore.datasets import (  # noqa: E402
    load_hh_rlhf,
    pairs_from_chosen_rejected,
    simulate_users_on_pairs,
)
from sklearn_lore.embedding import clear_embedding_cache  # noqa: E402
from _report import write_report  # noqa: E402
from baselines import GlobalBradleyTerry  # noqa: E402


def lore_pipeline():
    return Pipeline([("embed", SentencePairEmbedder()),
                     ("lore", LowRankRewardEstimator(random_state=0))])


def global_pipeline():
    drop_user = ColumnTransformer([("drop", "drop", ["user_id"])], remainder="passthrough")
    return Pipeline([("embed", SentencePairEmbedder()), ("drop_user", drop_user),
                     ("bt", GlobalBradleyTerry())])


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"
                                         / "hh_rlhf_harmless_test"))
    p.add_argument("--max-pairs", type=int, default=None)
    p.add_argument("--n-users", type=int, default=20)
    p.add_argument("--skip-grid", action="store_true", help="accuracy only, no grid search")
    p.add_argument("--out", default="benchmarks/results/hh_text")
    args = p.parse_args(argv)

    hh = load_hh_rlhf(args.data)
    # a few replies are empty strings, which the embedder rejects by design
    hh = hh[(hh.chosen.str.strip() != "") & (hh.rejected.str.strip() != "")]
    if args.max_pairs:
        hh = hh.iloc[: args.max_pairs]
    pairs, _ = pairs_from_chosen_rejected(hh, random_state=0)
    df, y, truth = simulate_users_on_pairs(pairs, n_users=args.n_users, random_state=0)
    rank = df.groupby("user_id").cumcount().to_numpy()
    size = df["user_id"].map(df["user_id"].value_counts()).to_numpy()
    train = rank < 0.7 * size
    frame = df[["user_id", "prompt", "response_a", "response_b"]]

    clear_embedding_cache()
    cold_s, lore = timed(lambda: lore_pipeline().fit(frame[train], y[train]))
    glob = global_pipeline().fit(frame[train], y[train])
    test = (frame[~train], y[~train])
    acc_lore = float(lore.score(*test))
    acc_glob = float(glob.score(*test))
    oracle = float(np.mean((truth.logits[~train] > 0) == y[~train]))

    result = {
        "pairs": int(len(df)), "users": int(df.user_id.nunique()),
        "train_pairs": int(train.sum()), "test_pairs": int((~train).sum()),
        "accuracy": {"sklearn_lore pipeline": acc_lore, "global Bradley-Terry": acc_glob,
                     "oracle (simulated tastes)": oracle},
        "cold_pipeline_fit_s": cold_s,
    }
    lines = [
        f"HH-RLHF harmless-base test: {result['pairs']} pairs, {result['users']} simulated users,"
        f" {result['train_pairs']} train / {result['test_pairs']} test",
        "",
        pd.Series(result["accuracy"], name="held-out accuracy").to_markdown(floatfmt=".3f"),
        "",
        f"one cold pipeline fit: {cold_s:.1f} s",
    ]
    if not args.skip_grid:
        clear_embedding_cache()
        search = GridSearchCV(lore_pipeline(), {"lore__n_components": [1, 2, 4, 8]},
                              scoring="roc_auc", cv=KFold(3, shuffle=True, random_state=0))
        grid_s, search = timed(lambda: search.fit(frame[train], y[train]))
        misses = search.best_estimator_[0].cache_info().misses
        result.update(grid_search_cold_cache_s=grid_s, grid_search_fits=4 * 3 + 1,
                      grid_over_cold_fit=grid_s / cold_s, best_params=search.best_params_,
                      texts_encoded_in_grid_search=misses)
        lines.append(f"GridSearchCV (4 ranks x 3 folds + refit) from a cold cache: {grid_s:.1f} s"
                     f" ({grid_s / cold_s:.2f}x one cold fit); texts encoded during the search:"
                     f" {misses}; best {search.best_params_}")
    text = "\n".join(lines)
    write_report(args.out, text, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
