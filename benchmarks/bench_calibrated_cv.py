"""The estimator's own calibration against wrapping it in CalibratedClassifierCV.

Planted users (make_preference_data: 30 users x 40 pairs, 8 features, rank 3, users who
disagree), rows ordered by user as the generators and most exports write them; every
fourth pair of each user is held out. Held-out log-loss of:

- ``LowRankRewardEstimator`` alone (``calibrate=True``, the default);
- ``CalibratedClassifierCV`` around it with its default folds (unshuffled: each fold
  holds out whole users, so the calibrator is fitted on the population model's outputs);
- the same with shuffled folds (``KFold(5, shuffle=True)``).

The user id is a DataFrame column, so every fold's fit and prediction see it.

    python benchmarks/bench_calibrated_cv.py
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import log_loss
from sklearn.model_selection import KFold

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402
from bench_jester import code_version, cpu_name  # noqa: E402

from sklearn_lore import LowRankRewardEstimator  # noqa: E402
from sklearn_lore.datasets import make_preference_data  # noqa: E402


def one_seed(seed):
    X, y, users, _ = make_preference_data(n_users=30, n_pairs_per_user=40, n_features=8,
                                          n_components=3, concentration=0.2, noise=0.5,
                                          random_state=seed)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
    frame.insert(0, "user_id", users)
    train = np.arange(len(y)) % 4 != 0
    test = ~train

    def estimator():
        return LowRankRewardEstimator(3, random_state=0, shrinkage=1.0)

    def loss(model):
        return log_loss(y[test], model.fit(frame[train], y[train]).predict_proba(frame[test]))

    return {
        "seed": seed,
        "estimator alone": loss(estimator()),
        "CalibratedClassifierCV, default folds": loss(CalibratedClassifierCV(estimator())),
        "CalibratedClassifierCV, shuffled folds": loss(CalibratedClassifierCV(
            estimator(), cv=KFold(5, shuffle=True, random_state=0))),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="benchmarks/results/calibrated_cv")
    args = p.parse_args(argv)
    table = pd.DataFrame([one_seed(seed) for seed in args.seeds]).astype({"seed": str})
    text = (f"held-out log-loss ({cpu_name()}, commit {code_version()['commit']})\n\n"
            + table.to_markdown(index=False, floatfmt=".3f"))
    write_report(args.out, text, {"rows": table.to_dict(orient="records")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
