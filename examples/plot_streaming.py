"""
=================================================
Streaming: learning one mini-batch at a time
=================================================

Preference data often arrives in batches (a day of comparisons, a shard of a file too
large for memory). ``LowRankRewardEstimator.partial_fit`` learns from one batch at a time,
in one of two regimes:

- **with a memory of rows** (``stream_memory``, default 20,000 rows): every call refits
  on all the rows seen so far, warm-started from the current basis, so the stream ends
  where one ``fit`` on the same rows ends;
- **memory-free** (``stream_memory=0``): every call refits the batch's users and the
  basis on the batch alone, with Gaussian priors carrying what earlier batches taught
  (each user's weights and precision, a Kronecker-factored curvature of the basis).
  Memory grows with the number of users, not with the rows seen.

This example streams planted users' training pairs, shuffled, in 40 calls of about one
pair per user each, and draws held-out accuracy and log-loss after every call for both
regimes, against one ``fit`` on all the training rows and against the population model
(every user treated as unknown). The log-loss panel shows the calibration along the way:
with memory every call fits the temperatures again on the remembered rows; memory-free,
every call refits them on its batch's logits from before the update (rows the model had
not seen), so the first calls' unreliable temperatures do not stay.

Run ``python examples/plot_streaming.py streaming.png`` to save the figure (about 10
seconds on 2 cores); ``benchmarks/bench_streaming.py`` prints the numbers over seeds.
"""

import argparse
import warnings

import matplotlib
import numpy as np
import pandas as pd
from sklearn.metrics import log_loss

from sklearn_lore import LowRankRewardEstimator
from sklearn_lore.datasets import make_preference_data


def stream_scores(X, y, users, test, n_calls, memory):
    """Held-out accuracy and log-loss after each of ``n_calls`` partial_fit calls over
    (X, y, users), shuffled; ``test`` is (X, y, user ids) of the held-out pairs."""
    est = LowRankRewardEstimator(3, random_state=0, stream_memory=memory)
    order = np.random.default_rng(0).permutation(len(y))
    accuracy, loss = [], []
    for rows in np.array_split(order, n_calls):
        with warnings.catch_warnings():
            # the first calls' few rows put the leave-one-out temperature at its bound;
            # later calls fit it again (the log-loss panel shows it)
            warnings.simplefilter("ignore", UserWarning)
            est.partial_fit(X[rows], y[rows], classes=[0, 1], user_ids=users[rows])
        accuracy.append(est.score(test[0], test[1], user_ids=test[2]))
        loss.append(log_loss(test[1], est.predict_proba(test[0], user_ids=test[2])[:, 1]))
    return accuracy, loss


def main(argv=None):
    parser = argparse.ArgumentParser(description="Held-out accuracy along a partial_fit stream.")
    parser.add_argument("png", nargs="?", help="save the figure here instead of showing it")
    parser.add_argument("--calls", type=int, default=40, help="partial_fit calls (default 40)")
    args = parser.parse_args(argv)
    if args.png:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, y, users, _ = make_preference_data(n_users=40, n_pairs_per_user=100, n_features=16,
                                          n_components=3, random_state=0)
    train = pd.Series(users).groupby(users).cumcount().to_numpy() < 40
    Xt, yt, ut = X[train], y[train], users[train]
    test = (X[~train], y[~train], users[~train])

    one_fit = LowRankRewardEstimator(3, random_state=0).fit(Xt, yt, user_ids=ut)
    fit_score = one_fit.score(*test[:2], user_ids=test[2])
    fit_loss = log_loss(test[1], one_fit.predict_proba(test[0], user_ids=test[2])[:, 1])
    population = one_fit.score(*test[:2])  # no ids: every user gets the population weights

    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5))
    calls = np.arange(1, args.calls + 1)
    finals = {}
    for memory, style in [(20000, "o-"), (0, "s--")]:
        scores, losses = stream_scores(Xt, yt, ut, test, args.calls, memory)
        finals[f"stream_memory={memory}"] = scores[-1]
        finals[f"log-loss, stream_memory={memory}"] = losses[-1]
        name = f"stream_memory={memory}" + (" (memory-free)" if memory == 0 else "")
        ax.plot(calls, scores, style, markersize=3, label=f"{name}: {scores[-1]:.3f} at the end")
        ax_loss.plot(calls, losses, style, markersize=3,
                     label=f"{name}: {losses[-1]:.3f} at the end")
    ax.axhline(fit_score, color="black", lw=1, label=f"one fit on all the rows: {fit_score:.3f}")
    ax.axhline(population, color="gray", lw=1, ls=":",
               label=f"population model (unknown users): {population:.3f}")
    ax_loss.axhline(fit_loss, color="black", lw=1, label=f"one fit on all the rows: {fit_loss:.3f}")
    for axis, name in [(ax, "held-out accuracy"), (ax_loss, "held-out log-loss")]:
        axis.set_xlabel(f"partial_fit calls (about {len(yt) // args.calls} pairs each)")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
    ax.set_title("40 planted users, rank 3: the training pairs as a stream")
    ax_loss.set_title("calibration along the stream (lower is better)")
    ax.legend(loc="lower right")
    ax_loss.legend(loc="upper right")
    fig.tight_layout()
    if args.png:
        fig.savefig(args.png, dpi=120)
        print(f"saved {args.png}")
    else:
        plt.show()
    return {"one fit": fit_score, "population": population, "log-loss, one fit": fit_loss,
            **finals}


if __name__ == "__main__":
    main()
