"""Tests of sklearn_lore.datasets: generators, pair builders and loaders."""

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from sklearn_lore.datasets import (
    candidate_responses,
    load_hh_rlhf,
    load_jester,
    make_preference_data,
    make_text_preference_world,
    pairs_from_chosen_rejected,
    pairs_from_ratings,
    response_attributes,
    simulate_users_on_pairs,
    split_hh_transcript,
)

DATA_DIR = Path(__file__).parents[1].parent / "shared" / "data"
needs_jester = pytest.mark.skipif(
    not (DATA_DIR / "jester5k").is_dir(), reason="Jester5k data absent"
)
needs_hh = pytest.mark.skipif(
    not (DATA_DIR / "hh_rlhf_harmless_test").is_dir(), reason="HH-RLHF data absent"
)


def _held_out_gap(Z, y, logits):
    """Oracle accuracy minus a global no-intercept logistic model's, on alternate rows."""
    train = np.arange(len(y)) % 2 == 0
    model = LogisticRegression(fit_intercept=False).fit(Z[train], y[train])
    global_acc = np.mean(model.predict(Z[~train]) == y[~train])
    oracle_acc = np.mean((logits[~train] > 0) == y[~train])
    return oracle_acc - global_acc


# --------------------------------------------------------------------------- make_preference_data


def test_make_preference_data_shapes_and_types():
    X, y, user_ids, truth = make_preference_data(
        n_users=7, n_pairs_per_user=5, n_features=6, n_components=2, random_state=0
    )
    assert X.shape == (35, 6) and X.dtype == np.float64
    assert y.shape == (35,) and y.dtype == np.int64 and set(np.unique(y)) <= {0, 1}
    assert user_ids.tolist() == [f"u{i}" for i in range(7) for _ in range(5)]
    assert truth.components.shape == (2, 6)
    assert truth.user_weights.shape == (7, 2)
    assert truth.users.tolist() == [f"u{i}" for i in range(7)]
    assert truth.logits.shape == truth.oracle_proba.shape == (35,)
    np.testing.assert_allclose(truth.user_weights.sum(axis=1), 1.0)
    assert (truth.user_weights >= 0).all()


def test_make_preference_data_logits_follow_the_planted_model():
    X, _, user_ids, truth = make_preference_data(n_users=12, n_pairs_per_user=6, random_state=1)
    index = pd.Index(truth.users).get_indexer(user_ids)
    directions = truth.user_weights @ truth.components
    np.testing.assert_allclose(truth.logits, np.sum(X * directions[index], axis=1))


def test_make_preference_data_is_deterministic():
    first = make_preference_data(n_users=5, random_state=3)
    second = make_preference_data(n_users=5, random_state=3)
    other = make_preference_data(n_users=5, random_state=4)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    np.testing.assert_array_equal(first[3].user_weights, second[3].user_weights)
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("weights", ["simplex", "free"])
def test_make_preference_data_users_disagree(weights):
    X, y, _, truth = make_preference_data(weights=weights, random_state=0)
    assert 0.4 < y.mean() < 0.6
    assert _held_out_gap(X, y, truth.logits) > 0.04


def test_make_preference_data_scale_sets_the_spread():
    _, _, _, truth = make_preference_data(
        n_users=50, n_features=64, n_components=1, scale=2.0, random_state=0
    )
    assert truth.logits.std() == pytest.approx(2.0, rel=0.15)


def test_make_preference_data_noise_zero_is_the_sign():
    _, y, _, truth = make_preference_data(n_users=5, noise=0.0, random_state=0)
    np.testing.assert_array_equal(y, (truth.logits > 0).astype(int))
    assert set(np.unique(truth.oracle_proba)) <= {0.0, 0.5, 1.0}


def test_make_preference_data_free_weights_leave_the_simplex():
    _, _, _, truth = make_preference_data(weights="free", random_state=0)
    assert (truth.user_weights < 0).any()
    np.testing.assert_allclose(truth.user_weights.mean(axis=0), 1 / 3, atol=0.1)


def test_make_preference_data_frame():
    X, _, user_ids, _ = make_preference_data(
        n_users=3, n_pairs_per_user=2, n_features=4, return_frame=True, random_state=0
    )
    assert isinstance(X, pd.DataFrame)
    assert X.columns.tolist() == ["user_id", "x0", "x1", "x2", "x3"]
    assert X["user_id"].tolist() == user_ids.tolist()
    plain, *_ = make_preference_data(n_users=3, n_pairs_per_user=2, n_features=4, random_state=0)
    np.testing.assert_array_equal(X.iloc[:, 1:].to_numpy(), plain)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_users": 0}, "n_users"),
        ({"n_pairs_per_user": 1.5}, "n_pairs_per_user"),
        ({"n_features": -1}, "n_features"),
        ({"n_components": 0}, "n_components"),
        ({"weights": "gaussian"}, "weights"),
        ({"concentration": 0.0}, "concentration"),
        ({"noise": -1.0}, "noise"),
        ({"scale": float("nan")}, "scale"),
    ],
)
def test_make_preference_data_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_preference_data(**kwargs)


# --------------------------------------------------------------------------- text world


def test_text_world_layout():
    df, y, truth = make_text_preference_world(n_users=6, n_pairs_per_user=7, random_state=0)
    assert df.columns.tolist() == ["user_id", "prompt", "response_a", "response_b"]
    assert len(df) == len(y) == 42 and y.dtype == np.int64
    assert df["user_id"].tolist() == [f"u{i}" for i in range(6) for _ in range(7)]
    assert (df["response_a"] != df["response_b"]).all()
    pool = truth.attributes.set_index("response")["prompt"]
    assert (pool.loc[df["response_a"]].to_numpy() == df["prompt"].to_numpy()).all()
    assert (pool.loc[df["response_b"]].to_numpy() == df["prompt"].to_numpy()).all()
    assert truth.tastes.shape == (3, 5) and truth.user_weights.shape == (6, 3)
    assert truth.rewards.shape == (6, len(truth.attributes))


def test_text_world_pool_is_small_readable_and_fixed():
    _, _, truth = make_text_preference_world(random_state=0)
    _, _, other = make_text_preference_world(random_state=1)
    pool = truth.attributes
    assert pool["response"].nunique() == len(pool) == 120
    assert pool["prompt"].nunique() == 12
    assert pool["n_chars"].max() < 300
    assert pool["response"].str.contains(r"^[A-Z]").all()
    pd.testing.assert_frame_equal(pool, other.attributes)
    varies = pool.groupby("prompt")[truth.attribute_names].nunique()
    assert (varies == 2).all().all()


def test_text_world_all_combinations_stay_short():
    _, _, truth = make_text_preference_world(n_users=1, n_candidates=32, random_state=0)
    assert truth.attributes["n_chars"].max() < 300
    assert truth.attributes["response"].nunique() == 12 * 32


def test_text_world_users_disagree():
    df, y, truth = make_text_preference_world(n_users=200, random_state=0)
    assert 0.4 < y.mean() < 0.6
    attributes = truth.attributes.set_index("response")[truth.attribute_names]
    Z = attributes.loc[df["response_a"]].to_numpy() - attributes.loc[df["response_b"]].to_numpy()
    assert _held_out_gap(Z.astype(float), y, truth.logits) > 0.1


def test_text_world_is_deterministic_and_rewards_match_logits():
    df, y, truth = make_text_preference_world(n_users=12, random_state=2)
    df2, y2, _ = make_text_preference_world(n_users=12, random_state=2)
    pd.testing.assert_frame_equal(df, df2)
    np.testing.assert_array_equal(y, y2)
    row = pd.Series(np.arange(len(truth.attributes)), index=truth.attributes["response"])
    users = pd.Index(truth.users).get_indexer(df["user_id"])
    expected = (truth.rewards[users, row.loc[df["response_a"]].to_numpy()]
                - truth.rewards[users, row.loc[df["response_b"]].to_numpy()])
    np.testing.assert_allclose(truth.logits, expected)


def test_text_world_extra_tastes_and_candidates():
    _, _, truth = make_text_preference_world(n_users=3, n_tastes=6, random_state=0)
    assert truth.taste_names[:4] == ["concise", "expert", "friendly", "courteous"]
    assert truth.taste_names[4:] == ["taste4", "taste5"]
    responses = candidate_responses(truth, "Why is the sky blue?")
    assert len(responses) == 10 and responses == truth.candidates["Why is the sky blue?"]
    with pytest.raises(ValueError, match="Unknown prompt"):
        candidate_responses(truth, "What is love?")
    with pytest.raises(ValueError, match="make_text_preference_world"):
        candidate_responses(object(), "Why is the sky blue?")


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n_prompts": 13}, "n_prompts"), ({"n_tastes": 0}, "n_tastes"),
     ({"n_candidates": 1}, "n_candidates"), ({"n_candidates": 33}, "n_candidates"),
     ({"noise": -0.1}, "noise")],
)
def test_text_world_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_text_preference_world(**kwargs)


# --------------------------------------------------------------------------- pairs_from_ratings


def _random_ratings(seed, n_users=30, n_items=15):
    rng = np.random.default_rng(seed)
    rows = [(f"user{u}", f"item{i}", float(rng.integers(-10, 11)))
            for u in range(n_users) for i in range(n_items) if rng.uniform() < 0.7]
    return pd.DataFrame(rows, columns=["user_id", "item", "rating"])


def _check_pairs(ratings, pairs, n_max, margin):
    lookup = ratings.set_index(["user_id", "item"])["rating"]
    rating_a = lookup.loc[list(zip(pairs["user_id"], pairs["item_a"]))].to_numpy()
    rating_b = lookup.loc[list(zip(pairs["user_id"], pairs["item_b"]))].to_numpy()
    assert (np.abs(rating_a - rating_b) >= margin).all() and (rating_a != rating_b).all()
    np.testing.assert_array_equal(pairs["label"].to_numpy(), (rating_a > rating_b).astype(int))
    assert pairs.groupby("user_id").size().max() <= n_max
    unordered = pd.DataFrame(np.sort(pairs[["item_a", "item_b"]].to_numpy(), axis=1))
    unordered["user_id"] = pairs["user_id"].to_numpy()
    assert not unordered.duplicated().any()


def _eligible_counts(ratings, margin):
    merged = ratings.merge(ratings, on="user_id")
    merged = merged[merged["item_x"] < merged["item_y"]]
    diff = (merged["rating_x"] - merged["rating_y"]).abs()
    return merged[(diff >= margin) & (diff > 0)].groupby("user_id").size()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_max=st.integers(1, 30),
    margin=st.sampled_from([0.0, 1.0, 3.0]),
)
def test_pairs_from_ratings_properties(seed, n_max, margin):
    ratings = _random_ratings(seed)
    pairs = pairs_from_ratings(ratings, n_pairs_per_user=n_max, margin=margin, random_state=seed)
    _check_pairs(ratings, pairs, n_max, margin)
    expected = _eligible_counts(ratings, margin).clip(upper=n_max)
    counts = pairs.groupby("user_id").size()
    pd.testing.assert_series_equal(counts.sort_index(), expected.sort_index(), check_names=False)


def test_pairs_from_ratings_layout_text_and_determinism():
    ratings = _random_ratings(0)
    text = {f"item{i}": f"Text of item {i}." for i in range(15)}
    pairs = pairs_from_ratings(ratings, text=text, prompt="Rate this.", random_state=5)
    assert pairs.columns.tolist() == [
        "user_id", "prompt", "item_a", "item_b", "response_a", "response_b", "label"]
    assert (pairs["prompt"] == "Rate this.").all()
    assert (pairs["response_a"] == pairs["item_a"].map(text)).all()
    assert pairs["label"].dtype == np.int64
    pd.testing.assert_frame_equal(pairs, pairs_from_ratings(ratings, text=pd.Series(text),
                                                            prompt="Rate this.", random_state=5))
    no_text = pairs_from_ratings(ratings, random_state=5)
    assert (no_text["response_a"] == no_text["item_a"]).all()
    assert not pairs.equals(pairs_from_ratings(ratings, text=text, prompt="Rate this.",
                                               random_state=6))


def test_pairs_from_ratings_randomizes_sides():
    ratings = _random_ratings(1, n_users=100, n_items=20)
    pairs = pairs_from_ratings(ratings, n_pairs_per_user=10, random_state=0)
    assert 0.45 < pairs["label"].mean() < 0.55
    first_sorted = (pairs["item_a"] < pairs["item_b"]).mean()
    assert 0.45 < first_sorted < 0.55


def test_pairs_from_ratings_validates():
    ratings = _random_ratings(0)
    with pytest.raises(ValueError, match="lacks the column"):
        pairs_from_ratings(ratings, item_col="joke_id")
    with pytest.raises(ValueError, match="margin"):
        pairs_from_ratings(ratings, margin=-1)
    with pytest.raises(ValueError, match="n_pairs_per_user"):
        pairs_from_ratings(ratings, n_pairs_per_user=0)
    with pytest.raises(ValueError, match="only once"):
        pairs_from_ratings(pd.concat([ratings, ratings.iloc[:1]]))
    with pytest.raises(ValueError, match="no entry"):
        pairs_from_ratings(ratings, text={"item0": "only one"})
    with pytest.raises(ValueError, match="numbers"):
        pairs_from_ratings(ratings.assign(rating=np.nan))


# --------------------------------------------------------------------------- chosen / rejected


def test_pairs_from_chosen_rejected_balance_and_content():
    df = pd.DataFrame({"prompt": [f"p{i}" for i in range(101)],
                       "chosen": [f"good{i}" for i in range(101)],
                       "rejected": [f"bad{i}" for i in range(101)],
                       "who": ["x"] * 101})
    pairs, y = pairs_from_chosen_rejected(df, random_state=0)
    assert pairs.columns.tolist() == ["prompt", "response_a", "response_b"]
    assert y.dtype == np.int64 and y.sum() in (50, 51)  # floor or ceil of n / 2
    chosen_is_a = pairs["response_a"].str.startswith("good").to_numpy()
    np.testing.assert_array_equal(chosen_is_a, y == 1)
    assert (pairs["prompt"] == df["prompt"]).all()
    again, y_again = pairs_from_chosen_rejected(df, random_state=0)
    pd.testing.assert_frame_equal(pairs, again)
    np.testing.assert_array_equal(y, y_again)
    with_user, _ = pairs_from_chosen_rejected(df, user_col="who")
    assert with_user.columns[0] == "user_id"
    with pytest.raises(ValueError, match="lacks the column"):
        pairs_from_chosen_rejected(df, chosen_col="better")


def test_pairs_from_chosen_rejected_keeps_the_users_of_a_filtered_frame():
    """The pairs' index is reset: the users come by position, not aligned by index (a
    filtered frame's user column aligned to 0, 1, 2 gave NaN users)."""
    df = pd.DataFrame({"prompt": ["p0", "p1", "p2", "p3"], "chosen": ["c0", "c1", "c2", "c3"],
                       "rejected": ["r0", "r1", "r2", "r3"], "who": ["ann", "bob", "cat", "dan"]},
                      index=[10, 11, 12, 13])
    pairs, _ = pairs_from_chosen_rejected(df.iloc[1:], user_col="who", random_state=0)
    assert pairs.index.tolist() == [0, 1, 2]
    assert pairs["user_id"].tolist() == ["bob", "cat", "dan"]
    assert pairs["prompt"].tolist() == ["p1", "p2", "p3"]


def test_split_hh_transcript():
    shared = "\n\nHuman: Hi there\n\nAssistant: Hello.\n\nHuman: Tell me a secret."
    split = split_hh_transcript(
        shared + "\n\nAssistant: No.", shared + "\n\nAssistant:  Fine, here."
    )
    assert split == ("Human: Hi there\n\nAssistant: Hello.\n\nHuman: Tell me a secret.", "No.",
                     "Fine, here.")
    differ = ("\n\nHuman: A\n\nAssistant: x", "\n\nHuman: B\n\nAssistant: x")
    assert split_hh_transcript(*differ) is None
    assert split_hh_transcript("\n\nHuman: A", "\n\nHuman: A") is None
    with pytest.raises(ValueError, match="strings"):
        split_hh_transcript(None, "x")


# --------------------------------------------------------------------------- simulated users


def test_response_attributes():
    texts = ["Sorry, I can\u2019t help with that.", "Sure! Do you want more? Or less?",
             "Here:\n1. one\n2. two\n- three", ""]
    att = response_attributes(texts)
    assert att.shape == (4, 6) and (att.dtypes == np.float64).all()
    assert att["refusal"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert att["questions"].tolist() == [0.0, 2.0, 0.0, 0.0]
    assert att["listing"].tolist() == [0.0, 0.0, 3.0, 0.0]
    assert att["politeness"].iloc[0] == 1.0 and att["log_words"].iloc[3] == 0.0
    with pytest.raises(ValueError, match="strings"):
        response_attributes(["ok", None])


def _toy_pairs(n=400, seed=0):
    rng = np.random.default_rng(seed)
    pieces = ["Sure.", "I can't help with that, sorry.", "Do you mean the red one?",
              "Here are the steps:\n1. Open it\n2. Close it",
              "Thanks for asking! You could try a long walk and a warm bath before bed."]
    a, b = rng.integers(len(pieces), size=(2, n))
    return pd.DataFrame({"prompt": "Help?", "response_a": np.array(pieces)[a],
                         "response_b": np.array(pieces)[b]})


def test_simulate_users_on_pairs_layout():
    pairs = _toy_pairs()
    df, y, truth = simulate_users_on_pairs(pairs, n_users=8, random_state=0)
    assert df.columns.tolist() == ["user_id", "prompt", "response_a", "response_b"]
    assert len(df) == len(y) == 400 and y.dtype == np.int64
    assert df["user_id"].value_counts().tolist() == [50] * 8
    assert truth.tastes.shape == (3, 6) and truth.taste_names == ["brief", "thorough", "cautious"]
    np.testing.assert_allclose(np.linalg.norm(truth.tastes, axis=1), 1.0)
    index = pd.Index(truth.users).get_indexer(df["user_id"])
    directions = 4.0 * truth.user_weights @ truth.tastes
    diff = (truth.attributes_a - truth.attributes_b).to_numpy()
    np.testing.assert_allclose(truth.logits, np.sum(diff * directions[index], axis=1))
    again = simulate_users_on_pairs(pairs, n_users=8, random_state=0)
    pd.testing.assert_frame_equal(df, again[0])
    np.testing.assert_array_equal(y, again[1])


def test_simulate_users_on_pairs_human_mix():
    pairs = _toy_pairs()
    human = np.arange(400) % 2
    _, y, truth = simulate_users_on_pairs(pairs, human_labels=human, human_weight=1.0)
    np.testing.assert_array_equal(y, human)
    np.testing.assert_array_equal(truth.oracle_proba, human)
    with pytest.raises(ValueError, match="human_labels are required"):
        simulate_users_on_pairs(pairs, human_weight=0.5)
    with pytest.raises(ValueError, match="human_weight"):
        simulate_users_on_pairs(pairs, human_labels=human, human_weight=1.5)
    with pytest.raises(ValueError, match="human_labels must be"):
        simulate_users_on_pairs(pairs, human_labels=human[:10], human_weight=0.5)


# --------------------------------------------------------------------------- loaders


def test_loaders_name_the_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="jester5k_ratings.csv"):
        load_jester(tmp_path)
    with pytest.raises(FileNotFoundError, match="harmless-base_test.jsonl.gz"):
        load_hh_rlhf(tmp_path)


@pytest.fixture(scope="module")
def jester():
    return load_jester(DATA_DIR)


@needs_jester
def test_load_jester_counts(jester):
    ratings = jester.ratings
    assert ratings.columns.tolist() == ["user_id", "joke_id", "rating"]
    assert len(ratings) == 363_209
    assert ratings["user_id"].nunique() == 5_000 and ratings["joke_id"].nunique() == 100
    assert ratings["rating"].between(-10, 10).all()
    assert jester.jokes.shape == (100, 2) and jester.embeddings.shape == (100, 384)
    assert set(jester.embeddings.index) == set(jester.jokes["joke_id"])
    np.testing.assert_allclose(np.linalg.norm(jester.embeddings.to_numpy(), axis=1), 1.0, atol=1e-4)
    direct = load_jester(DATA_DIR / "jester5k")
    assert len(direct.ratings) == len(ratings)


@needs_jester
def test_jester_benchmark_pairs(jester):
    text = jester.jokes.set_index("joke_id")["text"]
    pairs = pairs_from_ratings(jester.ratings, item_col="joke_id", text=text,
                               prompt=jester.prompt, n_pairs_per_user=40, margin=2.0,
                               random_state=0)
    assert 198_000 < len(pairs) < 200_000
    assert pairs["user_id"].nunique() > 4_900
    assert pairs.groupby("user_id").size().max() == 40
    assert 0.48 < pairs["label"].mean() < 0.52
    assert (pairs["prompt"] == "Tell me a joke.").all()
    sample = pairs.sample(2_000, random_state=0)
    _check_pairs(jester.ratings.rename(columns={"joke_id": "item"}),
                 sample.reset_index(drop=True), 40, 2.0)


@needs_hh
def test_load_hh_rlhf_and_simulated_users():
    hh = load_hh_rlhf(DATA_DIR)
    assert hh.columns.tolist() == ["prompt", "chosen", "rejected"]
    assert len(hh) == 2_307
    assert hh["prompt"].str.startswith("Human:").all()
    assert not hh["chosen"].str.contains("\n\nAssistant:").any()
    pairs, human = pairs_from_chosen_rejected(hh)
    assert abs(human.mean() - 0.5) < 0.01
    _, y, truth = simulate_users_on_pairs(pairs, human_labels=human, random_state=0)
    assert 0.4 < y.mean() < 0.6
    diff = (truth.attributes_a - truth.attributes_b).to_numpy()
    assert _held_out_gap(diff, y, truth.logits) > 0.1


def test_response_attributes_of_a_single_string_is_refused():
    from sklearn_lore.datasets import response_attributes

    with pytest.raises(TypeError, match="not a single str"):
        response_attributes("hello")


@pytest.mark.parametrize("concentration", [1e-3, 1e-10])
def test_tiny_concentration_gives_users_on_vertices_not_nan(concentration):
    """numpy's Dirichlet returns NaN when every Gamma draw of a row underflows; such a
    user is one vertex of the simplex (one taste alone), drawn uniformly."""
    _, y, _, truth = make_preference_data(n_users=300, n_pairs_per_user=4, n_features=6,
                                          n_components=3, concentration=concentration,
                                          random_state=0)
    W = truth.user_weights
    assert np.isfinite(W).all() and np.isfinite(truth.logits).all()
    np.testing.assert_allclose(W.sum(axis=1), 1.0)
    assert (W.max(axis=1) > 0.99).mean() > 0.95  # users follow one taste
    assert len(np.unique(W.argmax(axis=1))) == 3
    _, _, world = make_text_preference_world(n_users=40, n_pairs_per_user=3,
                                             concentration=concentration, random_state=0)
    assert np.isfinite(world.user_weights).all()
    np.testing.assert_allclose(world.user_weights.sum(axis=1), 1.0)


def test_ordinary_concentrations_draw_the_same_users_as_before():
    """The repair draws nothing unless a row was lost: ordinary data do not change, and
    the draws after the users' weights neither."""
    from sklearn_lore.datasets import _draw_simplex_weights

    plain, ours = np.random.RandomState(5), np.random.RandomState(5)
    expected = plain.dirichlet(np.full(4, 0.5), size=50)
    np.testing.assert_array_equal(_draw_simplex_weights(50, 4, 0.5, ours), expected)
    np.testing.assert_array_equal(ours.uniform(size=3), plain.uniform(size=3))


@pytest.mark.parametrize("column", ["user_id", "item"])
def test_pairs_from_ratings_refuses_missing_users_and_items(column):
    ratings = pd.DataFrame({"user_id": ["a"] * 3, "item": ["x", "y", "z"],
                            "rating": [5.0, 1.0, 4.0]}, index=[7, 8, 9])
    ratings.loc[8, column] = None
    with pytest.raises(ValueError, match=f"Column '{column}' has a missing value at row 8"):
        pairs_from_ratings(ratings, margin=2)


def test_pairs_from_ratings_refuses_several_texts_for_one_item():
    ratings = pd.DataFrame({"user_id": ["a"] * 3, "item": ["x", "y", "z"],
                            "rating": [5.0, 1.0, 3.0]})
    text = pd.Series(["joke X", "joke X again", "joke Y", "joke Z"], index=["x", "x", "y", "z"])
    with pytest.raises(ValueError, match=r"several entries for 1 item\(s\), e.g. \['x'\]"):
        pairs_from_ratings(ratings, text=text, margin=2)
    # duplicates among items nobody rated do not matter
    extra = pd.concat([text.iloc[[0, 2, 3]], pd.Series(["w", "w2"], index=["w", "w"])])
    pairs = pairs_from_ratings(ratings, text=extra, margin=2)
    assert set(pairs["response_a"]) | set(pairs["response_b"]) <= {"joke X", "joke Y", "joke Z"}


# --------------------------------------------------------------------------- malformed files

_RATINGS_CSV = b"user_id,joke_id,rating\nu1,j1,1.5\nu1,j2,-2\nu2,j1,3\n"
_JOKES_CSV = b'joke_id,text\nj1,"A joke"\nj2,"Another, joke"\n'
_JESTER_NAMES = {"ratings": "jester5k_ratings.csv", "jokes": "jester5k_jokes.csv",
                 "npz": "jester5k_jokes_minilm_l6_v2.npz"}
_HH_NAME = "harmless-base_test.jsonl.gz"
_HH_RECORD = json.dumps({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello",
                         "rejected": "\n\nHuman: Hi\n\nAssistant: Go away"})


def _npz(**arrays):
    """A writer of an ``.npz`` archive holding ``arrays``."""
    def write(path):
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
    return write


def _good_npz_bytes(tmp_path):
    _npz(ids=np.array(["j1", "j2"]), emb=np.full((2, 4), 0.5, dtype=np.float32))(tmp_path / "x")
    return (tmp_path / "x").read_bytes()


def _write_jester(folder, **replace):
    """Write a small well-formed Jester folder, with some files replaced.

    Parameters
    ----------
    folder : Path
        Folder to create.
    **replace : bytes, callable, "DIR" or None
        Keyed by "ratings", "jokes" or "npz": the file's new content, a function that
        writes it given its path, "DIR" for a directory in its place, None to leave it out.

    Returns
    -------
    folder : Path
    """
    folder.mkdir()
    contents = {"ratings": _RATINGS_CSV, "jokes": _JOKES_CSV,
                "npz": _npz(ids=np.array(["j1", "j2"]), emb=np.full((2, 4), 0.5, np.float32))}
    contents.update(replace)
    for key, content in contents.items():
        path = folder / _JESTER_NAMES[key]
        if content == "DIR":
            path.mkdir()
        elif callable(content):
            content(path)
        elif content is not None:
            path.write_bytes(content)
    return folder


def _npy(path):
    """Write a single ``.npy`` array, not an archive, to ``path``."""
    with open(path, "wb") as handle:
        np.save(handle, np.ones(3))


def _fragment(text):
    """A regular expression matching ``text`` literally, except that ``.*`` matches anything."""
    return ".*".join(re.escape(part) for part in text.split(".*"))


def _gz(text):
    data = text.encode("utf-8") if isinstance(text, str) else text
    return gzip.compress(data, mtime=0)


def test_load_jester_reads_a_small_well_formed_folder(tmp_path):
    data = load_jester(_write_jester(tmp_path / "jester5k"))
    assert data.ratings["rating"].tolist() == [1.5, -2.0, 3.0]
    assert data.jokes["text"].tolist() == ["A joke", "Another, joke"]
    assert data.embeddings.shape == (2, 4) and data.embeddings.index.tolist() == ["j1", "j2"]


@pytest.mark.parametrize("key, content, match", [
    pytest.param("ratings", b"", "jester5k_ratings.csv is empty; expected a UTF-8 CSV file with "
                 "the header 'user_id,joke_id,rating'", id="ratings-empty"),
    pytest.param("ratings", b"user_id,joke_id,rating\n",
                 "jester5k_ratings.csv has a header but no data rows", id="ratings-header-only"),
    pytest.param("ratings", b"user,joke_id,rating\nu1,j1,1\n",
                 "jester5k_ratings.csv lacks the column(s) ['user_id']", id="ratings-no-user-id"),
    pytest.param("ratings", b"user_id;joke_id;rating\nu1;j1;1\n",
                 "lacks the column(s) ['user_id', 'joke_id', 'rating']", id="ratings-semicolons"),
    pytest.param("ratings", b"user_id,joke_id,rating\nu1,j1,1\nu1,j2,funny\n",
                 "jester5k_ratings.csv holds 'funny' in column 'rating' at data row 2",
                 id="ratings-not-a-number"),
    pytest.param("ratings", b"user_id,joke_id,rating\nu1,j1,1\nu1,j2",
                 "jester5k_ratings.csv has a missing value in column 'rating' at data row 2",
                 id="ratings-truncated-row"),
    pytest.param("ratings", b"user_id,joke_id,rating\nu1,j1,1\nu1,j2,3,4\n",
                 "jester5k_ratings.csv is not well-formed CSV (Expected 3 fields in line 3, saw 4)",
                 id="ratings-extra-field"),
    pytest.param("ratings", b"user_id,joke_id,rating\nu1,j1,1.5,0\nu2,j2,-3.0,0\n",
                 "jester5k_ratings.csv is not well-formed CSV (rows have more fields than its "
                 "header)", id="ratings-every-row-one-field-more"),
    pytest.param("jokes", b"joke_id,text\nj1,A joke,x\nj2,Another,y\n",
                 "jester5k_jokes.csv is not well-formed CSV (rows have more fields than its "
                 "header)", id="jokes-every-row-one-field-more"),
    pytest.param("ratings", "user_id,joke_id,rating\nu\xe9,j1,1\n".encode("latin-1"),
                 "jester5k_ratings.csv is not UTF-8 text", id="ratings-latin-1"),
    pytest.param("ratings", gzip.compress(_RATINGS_CSV),
                 "jester5k_ratings.csv is not UTF-8 text", id="ratings-gzipped"),
    pytest.param("ratings", b"user_id,joke_id,rating\nu1,j1,1\nu1,j2,99\n",
                 "holds the rating 99.0 at data row 2 (the header not counted); expected ratings "
                 "in [-10, 10]", id="ratings-out-of-range"),
    pytest.param("ratings", b"user_id,joke_id,rating\nu1,j1,1\nu1,j2,-10.5\n",
                 "holds the rating -10.5 at data row 2 (the header not counted); expected "
                 "ratings in [-10, 10]", id="ratings-below-range"),
    pytest.param("ratings", b"user_id,joke_id,rating\nu1,j1,inf\n",
                 "holds the rating inf at data row 1", id="ratings-infinite"),
    pytest.param("jokes", b"", "jester5k_jokes.csv is empty; expected a UTF-8 CSV file with the "
                 "header 'joke_id,text'", id="jokes-empty"),
    pytest.param("jokes", b"id,text\nj1,a\n", "jester5k_jokes.csv lacks the column(s) ['joke_id']",
                 id="jokes-no-joke-id"),
    pytest.param("jokes", b'joke_id,text\nj1,"A joke\n',
                 "jester5k_jokes.csv is not well-formed CSV (EOF inside string",
                 id="jokes-unterminated-quote"),
    pytest.param("jokes", "joke_id,text\nj1,caf\xe9\n".encode("latin-1"),
                 "jester5k_jokes.csv is not UTF-8 text", id="jokes-latin-1"),
    pytest.param("jokes", b"joke_id,text\nj1,\nj2,b\n",
                 "jester5k_jokes.csv has a missing value in column 'text' at data row 1",
                 id="jokes-no-text"),
    pytest.param("npz", b"", "jester5k_jokes_minilm_l6_v2.npz is empty; expected an .npz archive",
                 id="npz-empty"),
    pytest.param("npz", b"ids,emb\nj1,0.5\n",
                 "jester5k_jokes_minilm_l6_v2.npz is not an .npz (zip) archive", id="npz-text"),
    pytest.param("npz", _npy,
                 "jester5k_jokes_minilm_l6_v2.npz is not an .npz (zip) archive", id="npz-is-npy"),
    pytest.param("npz", _npz(emb=np.ones((2, 4))),
                 "jester5k_jokes_minilm_l6_v2.npz lacks the array(s) ['ids']; expected the arrays "
                 "'ids' (1-D, the joke ids) and 'emb'", id="npz-no-ids"),
    pytest.param("npz", _npz(ids=np.array(["j1", "j2"])), "lacks the array(s) ['emb']",
                 id="npz-no-emb"),
    pytest.param("npz", _npz(ids=np.array(["j1"]), emb=np.ones(4)),
                 "The array 'emb' in .* has shape (4,) and dtype float64; expected a 2-D array",
                 id="npz-emb-1d"),
    pytest.param("npz", _npz(ids=np.array(["j1", "j2"]), emb=np.ones((2, 4, 1))),
                 "has shape (2, 4, 1) and dtype float64; expected a 2-D array", id="npz-emb-3d"),
    pytest.param("npz", _npz(ids=np.array(["j1", "j2"]), emb=np.array([["a"], ["b"]])),
                 "dtype <U1; expected a 2-D array of numbers", id="npz-emb-text"),
    pytest.param("npz", _npz(ids=np.array(["j1", "j2", "j3"]), emb=np.ones((2, 4))),
                 "holds 3 joke ids in 'ids' but 2 rows in 'emb'; expected one embedding row per id",
                 id="npz-length-mismatch"),
    pytest.param("npz", _npz(ids=np.array([["j1"], ["j2"]]), emb=np.ones((2, 4))),
                 "The array 'ids' in .* has shape (2, 1); expected a 1-D array of joke ids",
                 id="npz-ids-2d"),
    pytest.param("npz", _npz(ids=np.array(["j1", "j2"], dtype=object), emb=np.ones((2, 4))),
                 "The array 'ids' in .* cannot be read (Object arrays cannot be loaded",
                 id="npz-object-ids"),
    pytest.param("npz", _npz(ids=np.array(["j1", "j1"]), emb=np.ones((2, 4))),
                 "repeats 1 joke id(s), e.g. ['j1']; expected each id once", id="npz-repeated-ids"),
    pytest.param("npz", _npz(ids=np.array(["j1", "j2"]), emb=np.array([[0.0] * 4, [np.nan] * 4])),
                 "holds NaN or infinity in row 1 (joke id 'j2')", id="npz-nan"),
    pytest.param("npz", _npz(ids=np.array([1, 2]), emb=np.ones((2, 4))),
                 "has no embedding for 2 joke id(s) of the jokes file, e.g. ['j1', 'j2']",
                 id="npz-other-ids"),
])
def test_load_jester_names_the_malformed_file(tmp_path, key, content, match):
    _write_jester(tmp_path / "jester5k", **{key: content})
    with pytest.raises(ValueError, match=_fragment(match)):
        load_jester(tmp_path)


@pytest.mark.parametrize("cut", ["truncated", "bad-crc"])
def test_load_jester_refuses_a_damaged_npz(tmp_path, cut):
    good = _good_npz_bytes(tmp_path)
    if cut == "truncated":
        content, match = good[: len(good) // 2], "is a damaged or truncated .npz archive"
    else:  # change one stored float of 'emb': the archive's checksum no longer fits
        row = np.full(4, 0.5, np.float32).tobytes()
        content = good.replace(row, np.array([0.5, 0.5, 0.5, 0.25], np.float32).tobytes(), 1)
        assert content != good
        match = "The array 'emb' in .* cannot be read (Bad CRC-32"
    _write_jester(tmp_path / "jester5k", npz=content)
    with pytest.raises(ValueError, match=_fragment(match)):
        load_jester(tmp_path)


@pytest.mark.parametrize("key", ["ratings", "npz"])
def test_load_jester_says_which_file_is_a_directory(tmp_path, key):
    folder = _write_jester(tmp_path / "jester5k", **{key: "DIR"})
    path = folder / _JESTER_NAMES[key]
    with pytest.raises(FileNotFoundError, match=re.escape(f"{path} is a directory, not a file.")):
        load_jester(tmp_path)


def test_load_jester_says_which_file_is_missing(tmp_path):
    folder = _write_jester(tmp_path / "jester5k", jokes=None)
    with pytest.raises(FileNotFoundError,
                       match=re.escape(f"{folder} lacks ['jester5k_jokes.csv']")):
        load_jester(folder)


@pytest.mark.parametrize("loader", [load_jester, load_hh_rlhf])
def test_loaders_say_when_data_dir_is_absent_or_a_file(tmp_path, loader):
    absent = tmp_path / "absent"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{absent} does not exist.")):
        loader(absent)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    with pytest.raises(FileNotFoundError, match=re.escape(f"{a_file} is a file, not a folder.")):
        loader(a_file)


def _hh_crc_broken():
    data = bytearray(_gz(_HH_RECORD + "\n"))
    data[-8] ^= 0xFF  # the trailer's CRC-32
    return bytes(data)


@pytest.mark.parametrize("content, match", [
    pytest.param(b"", "harmless-base_test.jsonl.gz holds no JSON records; expected "
                 "gzip-compressed UTF-8 JSON lines", id="empty-file"),
    pytest.param(_gz(""), "holds no JSON records", id="gzip-of-nothing"),
    pytest.param(_gz("\n\n"), "holds no JSON records", id="blank-lines-only"),
    pytest.param((_HH_RECORD + "\n").encode(),
                 "harmless-base_test.jsonl.gz is not a valid gzip file (Not a gzipped file",
                 id="not-gzipped"),
    pytest.param(_gz(_HH_RECORD + "\n" + _HH_RECORD + "\n")[:-12],
                 "harmless-base_test.jsonl.gz is truncated: its gzip stream ends at or after "
                 "line 2", id="truncated-gzip"),
    pytest.param(_hh_crc_broken(), "harmless-base_test.jsonl.gz is not a valid gzip file (CRC",
                 id="bad-crc"),
    pytest.param(_gz(_HH_RECORD + "\n{not json\n"),
                 "Line 2 of .*harmless-base_test.jsonl.gz is not valid JSON at column 2",
                 id="bad-json"),
    pytest.param(_gz(_HH_RECORD + "\n" + _HH_RECORD[:30]),
                 "Line 2 of .* is not valid JSON at column 12 (Unterminated string",
                 id="truncated-json-line"),
    pytest.param(_gz("[1, 2]\n"), "Line 1 of .* holds an array, not a JSON object",
                 id="json-array"),
    pytest.param(_gz(json.dumps({"chosen": "x"}) + "\n"),
                 "Line 1 of .* lacks the key(s) ['rejected']; expected", id="missing-key"),
    pytest.param(_gz(json.dumps({"chosen": None, "rejected": "x"}) + "\n"),
                 "Line 1 of .* has null as 'chosen'; expected a string", id="null-value"),
    pytest.param(_gz(json.dumps({"chosen": "x", "rejected": 3}) + "\n"),
                 "Line 1 of .* has a number as 'rejected'; expected a string", id="number-value"),
    pytest.param(_gz('{"chosen": "caf\xe9", "rejected": "x"}\n'.encode("latin-1")),
                 "harmless-base_test.jsonl.gz is not UTF-8 text at or after line 1",
                 id="latin-1"),
])
def test_load_hh_rlhf_names_the_malformed_file(tmp_path, content, match):
    (tmp_path / _HH_NAME).write_bytes(content)
    with pytest.raises(ValueError, match=_fragment(match)):
        load_hh_rlhf(tmp_path)


def test_load_hh_rlhf_refuses_a_damaged_deflate_stream(tmp_path):
    data = bytearray(_gz((_HH_RECORD + "\n") * 50))
    data[30:40] = b"\x00" * 10
    (tmp_path / _HH_NAME).write_bytes(bytes(data))
    # zlib builds differ in which check trips first: the stream itself or the checksum
    with pytest.raises(ValueError,
                       match=r"harmless-base_test\.jsonl\.gz is (a damaged|not a valid) gzip file"):
        load_hh_rlhf(tmp_path)


def test_load_hh_rlhf_says_the_file_is_a_directory(tmp_path):
    (tmp_path / _HH_NAME).mkdir()
    path = tmp_path / _HH_NAME
    with pytest.raises(FileNotFoundError, match=re.escape(f"{path} is a directory, not a file.")):
        load_hh_rlhf(tmp_path)


def test_load_hh_rlhf_reads_a_small_well_formed_file(tmp_path):
    (tmp_path / _HH_NAME).write_bytes(_gz("\n" + _HH_RECORD + "\n\n" + _HH_RECORD))
    hh = load_hh_rlhf(tmp_path)
    assert hh.values.tolist() == [["Human: Hi", "Hello", "Go away"]] * 2


def test_noiseless_ties_are_a_fair_coin():
    """With noise=0 a pair of logit exactly 0 has probability 1/2 (oracle_proba says so)
    but was always labelled 0: position a lost every tie."""
    _, y, truth = make_text_preference_world(n_users=50, n_pairs_per_user=50, noise=0,
                                             n_tastes=1, random_state=0)
    tied = truth.logits == 0
    assert tied.sum() > 100
    np.testing.assert_array_equal(truth.oracle_proba[tied], 0.5)
    assert 0.35 < y[tied].mean() < 0.65
    np.testing.assert_array_equal(y[~tied], (truth.logits[~tied] > 0).astype(int))


def test_pairs_from_ratings_orders_past_two_to_the_23_users():
    """The pairs' order key packed the user code into bits 40+ of an int64: past 2**23
    users the order broke (and past 2**24 codes collided: more pairs than asked)."""
    n = 2**23 + 1
    users = np.r_[np.arange(n), [0, 0, 0, n - 1, n - 1, n - 1]]
    ratings = pd.DataFrame({"user_id": users, "item": np.r_[np.zeros(n, int), [1, 2, 3, 1, 2, 3]],
                            "rating": np.r_[np.zeros(n), [5.0, 9.0, 1.0, 5.0, 9.0, 1.0]]})
    pairs = pairs_from_ratings(ratings, n_pairs_per_user=1, margin=1.0)
    assert pairs["user_id"].tolist() == [0, n - 1]


def test_pairs_from_ratings_checks_texts_columns_and_categories():
    ratings = pd.DataFrame({"user_id": pd.Categorical(["b", "b", "a", "a"],
                                                      categories=["b", "a"]),
                            "item": ["x", "y", "x", "y"], "rating": [1.0, 5.0, 5.0, 1.0]})
    plain = ratings.assign(user_id=ratings["user_id"].astype(str))
    # ids sorted as values, whatever the category order
    pd.testing.assert_frame_equal(pairs_from_ratings(ratings), pairs_from_ratings(plain))
    assert pairs_from_ratings(ratings)["user_id"].tolist() == ["a", "b"]
    with pytest.raises(ValueError, match="every item to a str; 1 item.*'y' -> nan"):
        pairs_from_ratings(plain, text={"x": "Joke X", "y": None})
    twice = pd.concat([plain, plain[["rating"]]], axis=1)
    with pytest.raises(ValueError, match="several columns named 'rating'"):
        pairs_from_ratings(twice)


def test_builders_refuse_frames_and_missing_texts():
    frame = pd.DataFrame({"response": ["Sure!", "No."]})
    with pytest.raises(TypeError, match="1-d sequence of strings, not a DataFrame"):
        response_attributes(frame)
    assert response_attributes(frame["response"]).shape[0] == 2
    df = pd.DataFrame({"prompt": ["p", "q"], "chosen": ["good", None], "rejected": ["bad", "b"]})
    with pytest.raises(ValueError, match="Column 'chosen' must hold texts; row 1 holds nan"):
        pairs_from_chosen_rejected(df, random_state=0)


def test_generators_refuse_overflow_and_non_bool_flags():
    with pytest.raises(ValueError, match="rewards overflow the float range"):
        make_text_preference_world(n_users=3, n_pairs_per_user=4, scale=1e308, random_state=0)
    with pytest.raises(ValueError, match="return_frame must be True or False"):
        make_preference_data(n_users=2, n_pairs_per_user=2, return_frame="no")


def _recipe_pairs(user_codes, values, counts, margin, k, rng):
    """Steps 2 and 3 of pairs_from_ratings's recipe, all pairs at once (the reference)."""
    from sklearn_lore.datasets import _enumerate_pairs, _first_k_per_group

    first, second = _enumerate_pairs(counts)
    diff = np.abs(values[first] - values[second])
    keep = (diff >= margin) & (diff > 0)
    first, second = first[keep], second[keep]
    keys = rng.randint(2**40, size=first.size, dtype=np.int64)
    by_key = np.lexsort((keys, user_codes[first]))
    by_key = by_key[_first_k_per_group(user_codes[first][by_key], k)]
    return first[by_key], second[by_key]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(counts=st.lists(st.integers(0, 30), min_size=1, max_size=6),
       k=st.integers(1, 12), chunk=st.sampled_from([1, 2, 7, 50, 1 << 22]),
       seed=st.integers(0, 2**16), coarse=st.booleans())
def test_pair_selection_in_chunks_is_the_recipe(counts, k, chunk, seed, coarse):
    """Users grouped in chunks, a large user in blocks of rows: the same pairs, keys and
    order as enumerating every pair at once, and the random stream left where it was."""
    from sklearn_lore.datasets import _select_pairs

    counts = np.asarray(counts, dtype=np.int64)
    user_codes = np.repeat(np.arange(counts.size), counts)
    values = np.random.default_rng(seed).integers(-3, 4, size=user_codes.size).astype(float)
    if not coarse:
        values += np.random.default_rng(seed + 1).uniform(size=values.size)
    rng_a, rng_b = np.random.RandomState(seed), np.random.RandomState(seed)
    got = _select_pairs(user_codes, values, counts, 1.0, k, rng_a, chunk=chunk)
    want = _recipe_pairs(user_codes, values, counts, 1.0, k, rng_b)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert rng_a.uniform() == rng_b.uniform()


def test_make_preference_data_refuses_a_scale_that_overflows():
    """A scale whose rewards overflow made NaN logits, each labelled 0 silently."""
    with pytest.raises(ValueError, match=r"scale=1e\+308 makes the rewards overflow the "
                                         r"float range.*default is 3"):
        make_preference_data(scale=1e308, random_state=0)


def test_make_text_preference_world_names_its_own_default_scale():
    with pytest.raises(ValueError, match=r"scale=1e\+308 .*\(the default is 2\)"):
        make_text_preference_world(scale=1e308, random_state=0)


def test_pairs_from_chosen_rejected_odd_rows_get_either_count_of_ones():
    """The docstring's floor(n / 2) or ceil(n / 2): with one row, its label was 0 for
    every seed (the chosen reply always in position b)."""
    one = pd.DataFrame({"prompt": ["p"], "chosen": ["good"], "rejected": ["bad"]})
    assert {int(pairs_from_chosen_rejected(one, random_state=s)[1][0])
            for s in range(40)} == {0, 1}
    three = pd.concat([one] * 3, ignore_index=True)
    assert {int(pairs_from_chosen_rejected(three, random_state=s)[1].sum())
            for s in range(40)} == {1, 2}
    four = pd.concat([one] * 4, ignore_index=True)
    assert {int(pairs_from_chosen_rejected(four, random_state=s)[1].sum())
            for s in range(10)} == {2}
    pairs, y = pairs_from_chosen_rejected(three, random_state=3)
    assert ((pairs["response_a"] == "good") == (y == 1)).all()


def test_pairs_from_chosen_rejected_refuses_a_prompt_that_is_not_text():
    df = pd.DataFrame({"prompt": ["p", None], "chosen": ["a", "b"], "rejected": ["c", "d"]})
    with pytest.raises(ValueError, match=r"Column 'prompt' must hold texts; row 1 holds "
                                         r"(None|nan)"):
        pairs_from_chosen_rejected(df)


def test_pairs_from_ratings_refuses_infinite_ratings_and_a_prompt_that_is_not_text():
    ratings = pd.DataFrame({"user_id": ["a"] * 3, "item": ["x", "y", "z"],
                            "rating": [np.inf, np.inf, 1.0]})
    with pytest.raises(ValueError, match="'rating' must hold finite numbers"):
        pairs_from_ratings(ratings)
    ratings["rating"] = [5.0, 1.0, 3.0]
    with pytest.raises(TypeError, match="prompt must be a str .* got NoneType"):
        pairs_from_ratings(ratings, prompt=None)


def test_frame_functions_read_polars_and_refuse_other_types():
    pl = pytest.importorskip("polars")
    ratings = {"user_id": ["a", "a", "b", "b"], "item": ["x", "y", "x", "y"],
               "rating": [5.0, 1.0, 0.0, 4.0]}
    expected = pairs_from_ratings(pd.DataFrame(ratings))
    pd.testing.assert_frame_equal(pairs_from_ratings(pl.DataFrame(ratings)), expected)
    rows = {"prompt": ["p", "q"], "chosen": ["a", "b"], "rejected": ["c", "d"]}
    pairs, y = pairs_from_chosen_rejected(pl.DataFrame(rows), random_state=1)
    pairs_pd, y_pd = pairs_from_chosen_rejected(pd.DataFrame(rows), random_state=1)
    pd.testing.assert_frame_equal(pairs, pairs_pd)
    np.testing.assert_array_equal(y, y_pd)
    as_polars = pl.DataFrame({c: pairs_pd[c].tolist() for c in pairs_pd.columns})
    simulated = simulate_users_on_pairs(as_polars, n_users=2, random_state=0)
    pd.testing.assert_frame_equal(
        simulated[0], simulate_users_on_pairs(pairs_pd, n_users=2, random_state=0)[0])
    with pytest.raises(TypeError, match=r"ratings must be a pandas or polars DataFrame, got "
                                        r"builtins\.dict"):
        pairs_from_ratings(ratings)
    with pytest.raises(TypeError, match=r"df must be a pandas or polars DataFrame, got "
                                        r"numpy\.ndarray"):
        pairs_from_chosen_rejected(np.array([["p", "a", "b"]]))
