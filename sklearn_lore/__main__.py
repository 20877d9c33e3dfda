"""The main job: an end-to-end personalized reward model on text, offline.

``python -m sklearn_lore`` generates the package's text preference world (templated
responses that differ in measurable attributes, simulated users who mix tastes),
embeds it with the default sentence model, fits a LowRankRewardEstimator, and
prints held-out accuracy for seen users and few-shot unseen users against one
global Bradley-Terry model on the same embeddings; then shows two users getting
different best-of-N picks.

``--data file.csv`` runs on your own comparisons (columns user_id, prompt,
response_a, response_b, label); ``--synthetic`` skips text and uses
make_preference_data (no model needed).
"""

import argparse
import sys
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from . import LowRankRewardEstimator, SentencePairEmbedder
from .datasets import candidate_responses, make_preference_data, make_text_preference_world
from .model_selection import fewshot_split


def _split(users, n_train, n_shots, seed):
    """Masks of :func:`~sklearn_lore.model_selection.fewshot_split` (a fifth of the
    users unseen): seen users' first n_train pairs (train) / rest (test); unseen
    users' first n_shots (shots) / from n_train on (test)."""
    split = fewshot_split(users, unseen_size=0.2, n_train_pairs=n_train, shots=(n_shots,),
                          random_state=seed)

    def mask(rows):
        m = np.zeros(len(users), dtype=bool)
        m[rows] = True
        return m

    return {"train": mask(split.seen_train), "seen_test": mask(split.seen_test),
            "shots": mask(split.adapt[n_shots]), "unseen_test": mask(split.unseen_test)}


def _evaluate(Z, y, users, masks, n_components, seed):
    """Fit ours and the global model on the embeddings; return an accuracy table."""
    uid = np.asarray(users, dtype=object)
    if n_components > Z.shape[1]:
        # the basis spans at most the features' dimension; the extra vectors only cost
        # time (100 components on 32 features: 17 s instead of 1.5)
        raise SystemExit(f"--n-components {n_components} exceeds the {Z.shape[1]} features of "
                         "the comparisons; the basis can use at most that many.")
    t0 = time.perf_counter()
    est = LowRankRewardEstimator(n_components, random_state=seed)
    est.fit(Z[masks["train"]], y[masks["train"]], user_ids=uid[masks["train"]])
    fit_s = time.perf_counter() - t0
    glob = LogisticRegression(fit_intercept=False).fit(Z[masks["train"]], y[masks["train"]])
    rows = []
    for group, test in (("seen users", "seen_test"), ("unseen users, 0 shots", "unseen_test")):
        m = masks[test]
        rows.append((group, est.score(Z[m], y[m], user_ids=uid[m]), glob.score(Z[m], y[m])))
    if masks["shots"].any():
        est.partial_fit_users(Z[masks["shots"]], y[masks["shots"]],
                              user_ids=uid[masks["shots"]])
        m = masks["unseen_test"]
        n_shots = int(pd.Series(uid[masks["shots"]]).value_counts().max())
        rows.append((f"unseen users, {n_shots} shots", est.score(Z[m], y[m], user_ids=uid[m]),
                     glob.score(Z[m], y[m])))
    table = pd.DataFrame(rows, columns=["test set", "LoRe accuracy", "global accuracy"])
    return table, est, fit_s


def _print_table(table, fit_s, n_rows, n_users):
    print(f"\n{n_rows} comparisons from {n_users} users; LoRe fit in {fit_s:.2f} s\n")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def run_synthetic(args):
    X, y, users, truth = make_preference_data(
        n_users=200, n_pairs_per_user=50, n_features=32, n_components=3,
        random_state=args.seed,
    )
    masks = _split(users, 35, 10, args.seed)
    table, _, fit_s = _evaluate(X, y, users, masks, args.n_components, args.seed)
    _print_table(table, fit_s, len(y), len(np.unique(users)))


def _embed(frame, args):
    embedder = SentencePairEmbedder(show_progress=args.progress)
    t0 = time.perf_counter()
    emb = embedder.transform(frame)
    print(f"embedded {len(frame)} comparisons in {time.perf_counter() - t0:.1f} s "
          f"({embedder.cache_info().misses} distinct texts)")
    return emb


def run_text_world(args):
    df, y, truth = make_text_preference_world(n_users=60, n_pairs_per_user=40,
                                              random_state=args.seed)
    emb = _embed(df, args)
    Z = emb.drop(columns="user_id").to_numpy()
    users = df["user_id"].to_numpy()
    masks = _split(users, 25, 10, args.seed)
    table, est, fit_s = _evaluate(Z, y, users, masks, args.n_components, args.seed)
    _print_table(table, fit_s, len(y), len(np.unique(users)))
    _show_best_of_n(df, y, truth, masks, args)


def _show_best_of_n(df, y, truth, masks, args):
    pipe = Pipeline([("embed", SentencePairEmbedder()),
                     ("lore", LowRankRewardEstimator(args.n_components, random_state=args.seed))])
    pipe.fit(df[masks["train"]], y[masks["train"]])
    est = pipe[-1]
    W = est.user_weights_
    a, b = np.unravel_index(np.argmax(((W[:, None] - W[None]) ** 2).sum(-1)), (len(W),) * 2)
    prompt = truth.candidates and next(iter(truth.candidates))
    candidates = candidate_responses(truth, prompt)
    from .inference import best_of_n

    print(f"\nbest of {len(candidates)} responses to {prompt!r}:")
    for user in (est.users_[a], est.users_[b], None):
        best, _ = best_of_n(pipe, prompt, candidates, user)
        label = f"user {user}" if user is not None else "population"
        print(f"  {label:>12}: {best.replace(chr(10), ' / ')}")


_TEXT_COLUMNS = ("prompt", "response_a", "response_b")


def _read_comparisons(path):
    """The CSV's comparisons, checked: what is wrong with the file is said in one line
    (SystemExit), not as a traceback from deep inside the fit."""
    try:
        # texts such as "NA", "None" or "" are texts, not missing values
        df = pd.read_csv(path, dtype={c: str for c in _TEXT_COLUMNS}, keep_default_na=False,
                         na_values={"label": ["", "NA", "NaN", "nan"], "user_id": [""]})
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such file") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SystemExit(f"{path}: not a readable CSV file ({exc})") from None
    missing = {"user_id", *_TEXT_COLUMNS, "label"} - set(df.columns)
    if missing:
        raise SystemExit(f"{path}: missing columns {sorted(missing)} (comma-separated, with "
                         "columns user_id, prompt, response_a, response_b, label)")
    if df.empty:
        raise SystemExit(f"{path}: no comparisons (the file has a header only)")
    for column in ("user_id", "label"):
        blank = df[column].isna().to_numpy()
        if blank.any():
            raise SystemExit(f"{path}: row {int(np.argmax(blank)) + 1} has no {column}")
    labels = np.unique(df["label"].astype(str))
    if len(labels) != 2:
        raise SystemExit(f"{path}: label must take two values (1: response_a preferred, "
                         f"0: response_b preferred); found {labels.tolist()[:5]}")
    return df


def run_csv(args):
    df = _read_comparisons(args.data)
    y = df.pop("label").to_numpy()
    users = df["user_id"].to_numpy()
    counts = pd.Series(users).value_counts()
    n_train = max(int(counts.median() * 0.7), 1)
    if len(counts) < 2:
        masks = {"train": np.ones(len(users), dtype=bool)}  # no unseen user to hold out
        masks["seen_test"] = masks["unseen_test"] = ~masks["train"]
    else:
        masks = _split(users, n_train, min(10, n_train), args.seed)
    for name, what in [("train", "seen users' training comparisons"),
                       ("seen_test", "seen users' test comparisons"),
                       ("unseen_test", "unseen users' test comparisons")]:
        if not masks[name].any():
            raise SystemExit(
                f"{args.data}: no {what}: {len(counts)} users with a median of "
                f"{int(counts.median())} comparisons each; the evaluation needs at least 2 "
                f"users with more than {n_train} comparisons (the first {n_train} of each "
                "train or adapt, the rest test).")
    try:
        emb = _embed(df, args)
    except ValueError as exc:  # a bad text cell: named by the embedder
        raise SystemExit(f"{args.data}: {exc}") from None
    Z = emb.drop(columns="user_id").to_numpy()
    table, _, fit_s = _evaluate(Z, y, users, masks, args.n_components, args.seed)
    _print_table(table, fit_s, len(y), len(counts))


def _at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value
    return parse


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sklearn_lore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data",
                        help="CSV with user_id, prompt, response_a, response_b, label")
    source.add_argument("--synthetic", action="store_true",
                        help="numeric synthetic users only (no embedding model)")
    parser.add_argument("--n-components", type=_at_least(1), default=3,
                        help="rank of the reward basis (default 3)")
    parser.add_argument("--seed", type=_at_least(0), default=0,
                        help="seed of the data, the user split and the fit (default 0)")
    parser.add_argument("--progress", action="store_true", help="progress bar while embedding")
    args = parser.parse_args(argv)
    if args.data is not None:
        if not args.data.strip():
            parser.error("--data needs a file name")
        run_csv(args)
    elif args.synthetic:
        run_synthetic(args)
    else:
        run_text_world(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
