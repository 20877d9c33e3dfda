"""
==========================================
Few-shot curve: how fast do new users pay?
==========================================

A personalized reward model earns its keep on users it has never seen: with no
comparison of theirs (0 shots) it must be as good as one global reward model, and
every comparison they add should make it better. This example runs the Jester
protocol of ``benchmarks/bench_jester.py`` (quick version: 1,000 users; 80 % of them
train the models, the others arrive later with k = 0, 5, 10 or 20 comparisons) and
draws held-out accuracy against k for four models:

- ``LowRankRewardEstimator`` with its default parameters, adapted by
  ``partial_fit_users`` (basis frozen, shrinkage toward the population prior);
- one global Bradley-Terry model (it ignores who is judging: a flat line);
- one logistic regression per user, no sharing (a coin flip at 0 shots);
- the published LoRe training procedure, re-implemented.

Run ``python examples/plot_fewshot_curve.py curve.png`` to save the figure, or add
``--results benchmarks/results/jester.json`` to draw a finished benchmark run instead
of computing the quick one (about 2 minutes on 2 cores).
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def quick_table():
    """Run the quick Jester protocol and return its tidy result table."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_jester import jester_pairs, run

    Z, y, users = jester_pairs(REPO.parent / "shared" / "data", quick_users=1000)
    table, _ = run(Z, y, users)
    return table


def plot(table, ax):
    """Unseen users' accuracy against shots, one line per model, seen users as dots."""
    for name, curve in table.groupby("model", sort=False):
        unseen = curve[curve["group"] == "unseen"]
        line, = ax.plot(unseen["shots"], 100 * unseen["accuracy"], marker="o", label=name)
        seen = curve[curve["group"] == "seen"]
        ax.scatter(seen["shots"], 100 * seen["accuracy"], marker="*", s=120,
                   color=line.get_color())
    ax.set_xlabel("comparisons of the new user (k shots); star: seen users (28 pairs)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("Jester: accuracy of new users against shots")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Accuracy against shots on Jester.")
    parser.add_argument("png", nargs="?", help="save the figure here instead of showing it")
    parser.add_argument("--results", help="a bench_jester.py JSON file to draw")
    args = parser.parse_args(argv)
    if args.png:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if args.results:
        table = pd.DataFrame(json.loads(Path(args.results).read_text())["results"])
    else:
        table = quick_table()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot(table, ax)
    fig.tight_layout()
    if args.png:
        fig.savefig(args.png, dpi=120)
        print(f"saved {args.png}")
    else:
        plt.show()


if __name__ == "__main__":
    main()
