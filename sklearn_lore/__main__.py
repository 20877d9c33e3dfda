"""The main job: an end-to-end personalized reward model on text, offline.

``python -m sklearn_lore`` generates the package's text preference world (templated
responses that differ in measurable attributes, simulated users who mix tastes),
embeds it with the default sentence model, fits a LowRankRewardEstimator, and
prints held-out accuracy for seen users and few-shot unseen users against one
global Bradley-Terry model on the same embeddings; then shows two users getting
different best-of-N picks.

``--data file.csv`` runs on your own comparisons: a UTF-8, comma-separated file with
the columns user_id, prompt, response_a, response_b and label (1 when response_a is
preferred, 0 when response_b is; true/false, a/b, response_a/response_b and -1 for
response_b are read too). A fifth of the users are held out. Each seen user's first
rows (70 % of the median user's count) train and the rest test; a held-out user adapts
on its first min(10, that many) rows and is tested on the rows after that 70 %, so the
row order within a user matters. ``--synthetic`` skips text and uses
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


def _check_rank(n_components, n_features):
    if n_components > n_features:
        # the basis spans at most the features' dimension; the extra vectors only cost
        # time (100 components on 32 features: 17 s instead of 1.5)
        raise SystemExit(f"--n-components {n_components} exceeds the {n_features} features of "
                         "the comparisons; the basis can use at most that many.")


def _evaluate(Z, y, users, masks, n_components, seed):
    """Fit ours and the global model on the embeddings; return an accuracy table."""
    uid = np.asarray(users, dtype=object)
    _check_rank(n_components, Z.shape[1])
    t0 = time.perf_counter()
    est = LowRankRewardEstimator(n_components, random_state=seed)
    est.fit(Z[masks["train"]], y[masks["train"]], user_ids=uid[masks["train"]])
    fit_s = time.perf_counter() - t0
    glob = LogisticRegression(fit_intercept=False).fit(Z[masks["train"]], y[masks["train"]])
    rows = []
    for group, test in (("seen users", "seen_test"), ("unseen users, 0 shots", "unseen_test")):
        m = masks[test]
        rows.append((group, int(m.sum()), est.score(Z[m], y[m], user_ids=uid[m]),
                     glob.score(Z[m], y[m])))
    if masks["shots"].any():
        est.partial_fit_users(Z[masks["shots"]], y[masks["shots"]],
                              user_ids=uid[masks["shots"]])
        m = masks["unseen_test"]
        n_shots = int(pd.Series(uid[masks["shots"]]).value_counts().max())
        rows.append((f"unseen users, {n_shots} shots", int(m.sum()),
                     est.score(Z[m], y[m], user_ids=uid[m]), glob.score(Z[m], y[m])))
    table = pd.DataFrame(rows, columns=["test set", "test pairs", "LoRe accuracy",
                                        "global accuracy"])
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
    # the first comparison alone gives the width: a rank beyond it is refused before the
    # whole file is embedded (minutes for thousands of texts on a CPU), not after
    _check_rank(args.n_components, embedder.transform(frame.iloc[:1]).shape[1] - 1)
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


# what a label cell may say (case and surrounding spaces aside): 1 when response_a is
# preferred, 0 when response_b is
_LABELS = {"1": 1, "1.0": 1, "true": 1, "a": 1, "response_a": 1,
           "0": 0, "0.0": 0, "-1": 0, "-1.0": 0, "false": 0, "b": 0, "response_b": 0}
_REQUIRED = ("user_id", *_TEXT_COLUMNS, "label")


def _separator_hint(path):
    """Where the header's names are separated by semicolons or tabs, say so."""
    try:
        with open(path, "rb") as file:
            header = file.readline().decode("utf-8", errors="replace").lstrip("\ufeff")
    except OSError:
        return ""
    for separator, name in ((";", "semicolons"), ("\t", "tabs")):
        names = {field.strip().lower() for field in header.split(separator)}
        if "," not in header and set(_REQUIRED) <= names:
            return f"; its header is separated by {name}: save it comma-separated"
    return ""


def _read_error(path, exc):
    """One line on why pandas could not read the file, with the likely fix."""
    text = str(exc).strip()
    if isinstance(exc, UnicodeDecodeError):
        return f"{path}: not UTF-8 text ({text}); save the file as UTF-8"
    return f"{path}: not a readable CSV file ({text}){_separator_hint(path)}"


def _labels(path, column):
    """The labels as 1 (response_a preferred) / 0: numbers 1, 0 and -1 in any
    spelling ("+1", "1.00"), else the words of ``_LABELS``."""
    words = column.astype(str).str.strip().str.lower()
    numbers = pd.to_numeric(words, errors="coerce")
    words = words.where(~numbers.isin([1, 0, -1]), numbers.map({1: "1", 0: "0", -1: "-1"}))
    unknown = sorted(set(words) - set(_LABELS))
    if unknown:
        raise SystemExit(
            f"{path}: label must be 1 (response_a preferred) or 0 (response_b preferred); "
            "also read: true/false, a/b, response_a/response_b, -1 for response_b; found "
            f"{unknown[:5]}")
    y = words.map(_LABELS).to_numpy(dtype=np.int64)
    if len(np.unique(y)) != 2:
        raise SystemExit(f"{path}: label must take two values (1: response_a preferred, "
                         f"0: response_b preferred); every row says {int(y[0])}")
    return y


def _read_comparisons(path):
    """The CSV's comparisons, checked: what is wrong with the file is said in one line
    (SystemExit), not as a traceback from deep inside the fit. Returns the frame and
    the labels (1: response_a preferred)."""
    try:
        # every cell as written: texts such as "NA", "None" or "" are texts, user ids
        # are names ("007" and "7" are two users), labels are read by _labels
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such file") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SystemExit(_read_error(path, exc)) from None
    except OSError as exc:  # a directory, no permission, a URL that does not answer
        raise SystemExit(f"{path}: cannot read it ({exc})") from None
    if not isinstance(df.index, pd.RangeIndex):
        # pandas takes the first fields of rows longer than the header as an index,
        # shifting every column: the users would be the prompts
        hint = _separator_hint(path) or " (a trailing comma, or a column without a name?)"
        raise SystemExit(f"{path}: rows have more fields than the header's {df.shape[1]} "
                         f"names{hint}")
    # " user_id" or "Label": the names meant
    df = df.rename(columns={c: c.strip().lower() for c in df.columns
                            if isinstance(c, str) and c.strip().lower() in _REQUIRED
                            and c not in _REQUIRED})
    missing = set(_REQUIRED) - set(df.columns)
    if missing:
        raise SystemExit(f"{path}: missing columns {sorted(missing)} (comma-separated, with "
                         "columns user_id, prompt, response_a, response_b, label); found "
                         f"{list(df.columns)[:10]}{_separator_hint(path)}")
    # pandas renames a second "label" column "label.1": the first would be used silently
    mangled = [c for c in df.columns
               if isinstance(c, str) and c.rsplit(".", 1)[0] in _REQUIRED and c not in _REQUIRED
               and c.rsplit(".", 1)[-1].isdigit()]
    if df.columns.duplicated().any() or mangled:
        twice = set(df.columns[df.columns.duplicated()]) | {c.rsplit(".", 1)[0] for c in mangled}
        raise SystemExit(f"{path}: columns named twice: {sorted(twice)}")
    if df.empty:
        raise SystemExit(f"{path}: no comparisons (the file has a header only)")
    df.index = pd.RangeIndex(1, len(df) + 1)  # data rows as every message counts them
    for column, missing in (("user_id", {""}), ("label", {"", "na", "nan"})):
        blank = df[column].str.strip().str.lower().isin(missing).to_numpy()
        if blank.any():
            raise SystemExit(f"{path}: row {int(np.argmax(blank)) + 1} has no {column} (data "
                             "rows counted from 1, the header not counted)")
    y = _labels(path, df.pop("label"))
    df["user_id"] = df["user_id"].str.strip()  # " 7" and "7" are one user ("07" another)
    if (df["response_a"] == df["response_b"]).all():
        raise SystemExit(f"{path}: response_a equals response_b in every row: nothing to "
                         "learn a preference from")
    return df, y


def _too_few_users(path, counts, n_train):
    return SystemExit(
        f"{path}: {len(counts)} user(s) with a median of {int(counts.median())} "
        "comparisons each; the evaluation needs at least 2 users with more than "
        f"{n_train} comparisons (the first {n_train} of each train or adapt, the rest "
        "test).")


def _check_split(path, masks, users, y, counts, n_train):
    """Every part of the evaluation has rows, and the training rows both labels."""
    if not masks["train"].any():
        raise _too_few_users(path, counts, n_train)
    seen = masks["train"] | masks["seen_test"]
    for test, who, members, hint in [
            ("seen_test", "seen", seen, ""),
            ("unseen_test", "held-out", ~seen, " (another --seed holds out other users)")]:
        if not masks[test].any():
            group = sorted({str(u) for u in users[members]})
            raise SystemExit(
                f"{path}: the {who} users ({', '.join(group[:5])}"
                f"{', ...' if len(group) > 5 else ''}) have no comparisons beyond their "
                f"first {n_train}, so there is nothing to test them on; the evaluation "
                f"needs at least 2 users with more than {n_train} comparisons{hint}.")
    train_labels = np.unique(y[masks["train"]])
    if len(train_labels) < 2:
        raise SystemExit(
            f"{path}: the training comparisons (each seen user's first {n_train}) all have "
            f"label {int(train_labels[0])}; the model needs both labels to learn from.")


def run_csv(args):
    df, y = _read_comparisons(args.data)
    users = df["user_id"].to_numpy()
    counts = pd.Series(users).value_counts()
    n_train = max(int(counts.median() * 0.7), 1)
    if len(counts) < 2:  # nobody to hold out
        raise _too_few_users(args.data, counts, n_train)
    masks = _split(users, n_train, min(10, n_train), args.seed)
    _check_split(args.data, masks, users, y, counts, n_train)
    try:
        emb = _embed(df, args)
    except ValueError as exc:  # a bad text cell: named by the embedder
        raise SystemExit(f"{args.data}: {exc}") from None
    Z = emb.drop(columns="user_id").to_numpy()
    table, _, fit_s = _evaluate(Z, y, users, masks, args.n_components, args.seed)
    _print_table(table, fit_s, len(y), len(counts))


def _at_least(low, high=None):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{value} is above {high}")
        return value
    return parse


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sklearn_lore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data",
                        help="CSV with user_id, prompt, response_a, response_b, label "
                             "(1: response_a preferred, 0: response_b preferred)")
    source.add_argument("--synthetic", action="store_true",
                        help="numeric synthetic users only (no embedding model)")
    parser.add_argument("--n-components", type=_at_least(1), default=3,
                        help="rank of the reward basis (default 3)")
    parser.add_argument("--seed", type=_at_least(0, 2**32 - 1), default=0,
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
