"""
=================================================
Calibration: when the basis itself overfits
=================================================

A rank-4 basis in 384 dimensions learned from 200 users fits its training pairs far
better than it predicts new ones: the logits are too large, and the raw probabilities
are overconfident for the users it was fitted on and for new users adapted on a few
pairs. ``LowRankRewardEstimator(calibrate=True)`` (the default) divides the logits by
temperatures fitted on rows held out of the cross-fit's refit of the basis (no validation
split of your own):

- users of the fit: pairs of the refit's users it left out, each user refitted on all its
  pairs and corrected for leaving the pair out (``temperature_``);
- users added by ``partial_fit_users``: the cross-fit's held-out users adapted from a few
  pairs (``fold_in_temperature_``).

This example draws reliability diagrams (observed frequency against predicted
probability, 10 bins; the diagonal is perfect calibration) of held-out pairs, with and
without calibration. Predicted labels, hence accuracy, are the same in both.

Run ``python examples/plot_calibration.py calibration.png`` to save the figure (about
10 seconds on 2 cores); ``benchmarks/bench_calibration.py`` prints the numbers.
"""

import argparse
import copy

import matplotlib
import numpy as np
from sklearn.calibration import calibration_curve

from sklearn_lore import LowRankRewardEstimator
from sklearn_lore.datasets import make_preference_data
from sklearn_lore.model_selection import expected_calibration_error, fewshot_split


def held_out_probabilities(calibrate, X, y, users, split, shots=5):
    """Held-out P(a preferred) of seen users and of new users adapted on ``shots`` pairs."""
    est = LowRankRewardEstimator(4, random_state=0, calibrate=calibrate).fit(
        X[split.seen_train], y[split.seen_train], user_ids=users[split.seen_train])
    seen = est.predict_proba(X[split.seen_test], user_ids=users[split.seen_test])[:, 1]
    rows = split.adapt[shots]
    adapted = copy.deepcopy(est).partial_fit_users(X[rows], y[rows], user_ids=users[rows])
    new = adapted.predict_proba(X[split.unseen_test], user_ids=users[split.unseen_test])[:, 1]
    return {"seen users (30 training pairs)": seen,
            f"new users ({shots} pairs, fold-in)": new}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Reliability diagrams with and without calibration.")
    parser.add_argument("png", nargs="?", help="save the figure here instead of showing it")
    args = parser.parse_args(argv)
    if args.png:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, y, users, _ = make_preference_data(n_users=250, n_pairs_per_user=50, n_features=384,
                                          n_components=4, random_state=0)
    split = fewshot_split(users, unseen_size=0.2, n_train_pairs=30, shots=(5,),
                          random_state=0)
    truth = {"seen users (30 training pairs)": y[split.seen_test],
             "new users (5 pairs, fold-in)": y[split.unseen_test]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
    for calibrate, style in [(False, "o--"), (True, "s-")]:
        probs = held_out_probabilities(calibrate, X, y, users, split)
        for ax, (line, p) in zip(axes, probs.items()):
            freq, mean = calibration_curve(truth[line], p, n_bins=10)
            ece = expected_calibration_error(truth[line], p)
            label = f"calibrate={calibrate} (ECE {ece:.3f})"
            ax.plot(mean, freq, style, label=label)
            ax.set_title(line)
    for ax in axes:
        ax.plot([0, 1], [0, 1], color="gray", lw=1)
        ax.set_xlabel("predicted probability that a is preferred")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    axes[0].set_ylabel("observed frequency")
    fig.suptitle("250 planted users, rank 4, d = 384: held-out pairs")
    fig.tight_layout()
    if args.png:
        fig.savefig(args.png, dpi=120)
        print(f"saved {args.png}")
    else:
        plt.show()


if __name__ == "__main__":
    main()
