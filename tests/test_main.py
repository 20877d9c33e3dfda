"""The main job and the inference helpers."""

import zlib

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline

from sklearn_lore import LowRankRewardEstimator, SentencePairEmbedder
from sklearn_lore.__main__ import main
from sklearn_lore.datasets import make_preference_data
from sklearn_lore.inference import best_of_n, score_responses


def test_main_job_synthetic(capsys):
    assert main(["--synthetic"]) == 0
    out = capsys.readouterr().out
    assert "seen users" in out and "unseen users, 10 shots" in out
    table = [line.split() for line in out.splitlines() if line.strip().startswith("seen users")]
    lore, glob = float(table[0][-2]), float(table[0][-1])
    assert lore > glob


def test_main_job_on_a_csv_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    words = ["short", "long answer", "polite reply please", "rude", "funny joke", "dry fact"]
    rows = []
    for u in range(12):
        likes = u % 2
        for _ in range(20):
            a, b = rng.choice(len(words), 2, replace=False)
            label = int((a % 2 == likes) if a % 2 != b % 2 else rng.random() < 0.5)
            rows.append((f"u{u}", "Say something.", words[a], words[b], label))
    path = tmp_path / "mine.csv"
    pd.DataFrame(rows, columns=["user_id", "prompt", "response_a", "response_b",
                                "label"]).to_csv(path, index=False)
    assert main(["--data", str(path)]) == 0
    assert "LoRe accuracy" in capsys.readouterr().out


def test_main_job_reports_missing_columns(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"user_id": ["a"], "prompt": ["p"]}).to_csv(path, index=False)
    with pytest.raises(SystemExit, match="missing columns"):
        main(["--data", str(path)])


def _toy_pipeline(columns=("user_id", "prompt", "response_a", "response_b")):
    def encode(texts):
        return np.array([[len(t) / 10.0, t.count("!"), t.count("?")] for t in texts])

    rows = []
    for user, sign in (("calm", -1.0), ("loud", 1.0)):
        for a, b in [("wow!", "ok"), ("ok", "yes!!"), ("hey!", "fine"), ("no", "great!")]:
            rows.append((user, "hi", a, b, int(sign * (a.count("!") - b.count("!")) > 0)))
    df = pd.DataFrame(rows, columns=[*columns, "y"])
    names = dict(zip(["user_col", "prompt_col", "response_a_col", "response_b_col"], columns))
    pipe = make_pipeline(SentencePairEmbedder(encoder=encode, model="toy-encoder", **names),
                         LowRankRewardEstimator(1, alpha=0.1, prior_strength=0.1,
                                                user_col=columns[0], random_state=0))
    return pipe.fit(df.drop(columns="y"), df.y)


def test_best_of_n_follows_each_users_taste():
    pipe = _toy_pipeline()
    candidates = ["plain", "very excited!!!", "fine"]
    loud, _ = best_of_n(pipe, "hi", candidates, "loud")
    calm, _ = best_of_n(pipe, "hi", candidates, "calm")
    assert loud == "very excited!!!" and calm != loud
    rewards = score_responses(pipe, "hi", candidates, "loud")
    assert rewards[0] == 0.0 and rewards.shape == (3,)


def test_the_population_of_a_pipeline_with_integer_ids_scores_without_a_warning():
    """best_of_n's population rows carry a text sentinel as their id: on a pipeline
    fitted with integer ids the id-type warning (none known, other types) took it for
    ids read back as text."""
    import warnings

    def encode(texts):
        return np.array([[len(t) / 10.0, t.count("!"), t.count("?")] for t in texts])

    rows = [(u, "hi", a, b) for u in (1, 2, 3, 4) for a, b in [("wow!", "ok"), ("ok", "yes!!"),
                                                                  ("hey!", "fine"), ("no", "a!")]]
    df = pd.DataFrame(rows, columns=["user_id", "prompt", "response_a", "response_b"])
    y = np.array([i % 2 for i in range(len(df))])
    pipe = make_pipeline(SentencePairEmbedder(encoder=encode, model="toy-encoder"),
                         LowRankRewardEstimator(1, random_state=0)).fit(df, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        best_of_n(pipe, "hi", ["plain", "very excited!!!"])
        score_responses(pipe, "hi", ["plain", "very excited!!!"])
    with pytest.warns(UserWarning, match="they are text while the fitted users' ids are"):
        best_of_n(pipe, "hi", ["plain", "very excited!!!"], user_id="1")


def test_copies_of_a_response_get_one_reward_and_the_first_wins():
    """Repeated samples: their rows' positions in the matrix products gave copies
    rewards a last digit apart, and best_of_n returned a later copy (12 of 80 cases
    with a 257-wide encoder)."""
    def encode(texts):
        rng = [np.random.default_rng(zlib.crc32(t.encode())) for t in texts]
        return np.array([r.standard_normal(257) for r in rng])

    users = np.repeat(["a", "b"], 40)
    rng = np.random.default_rng(0)
    texts = [f"reply {i}" for i in range(30)]
    df = pd.DataFrame({"user_id": users, "prompt": "p",
                       "response_a": rng.choice(texts, 80), "response_b": rng.choice(texts, 80)})
    pipe = make_pipeline(SentencePairEmbedder(encoder=encode),
                         LowRankRewardEstimator(2, random_state=0, shrinkage=1.0))
    pipe.fit(df, rng.integers(0, 2, 80))
    for i in range(10):
        pool = [texts[i]] + [texts[i + 1]] * 6 + [texts[i + 2]] * 3
        rewards = score_responses(pipe, "p", pool, "a")
        assert len(set(rewards[1:7].tolist())) == 1 and len(set(rewards[7:].tolist())) == 1
        best, index = best_of_n(pipe, "p", pool, "a")
        assert index == pool.index(best)


@pytest.mark.parametrize("bad", [{"x", "y"}, {"x": 1, "y": 2}], ids=["set", "dict"])
def test_candidates_without_an_order_are_refused(bad):
    with pytest.raises(TypeError, match="must be in an order"):
        best_of_n(_toy_pipeline(), "hi", bad, "loud")


def test_a_missing_user_id_is_named():
    with pytest.raises(ValueError, match="user_id=nan is a missing value; pass None"):
        score_responses(_toy_pipeline(), "hi", ["a", "b"], float("nan"))


@pytest.mark.parametrize("candidates, prompt, error, message", [
    (["a", "a", "a", None], "hi", ValueError, r"candidates\[3\] is a missing value"),
    (["a", float("nan")], "hi", ValueError, r"candidates\[1\] is a missing value"),
    (["a", "b", "  "], "hi", ValueError, r"candidates\[2\] is an empty text"),
    (["a", 5], "hi", TypeError, r"candidates\[1\] must be a str; got a int"),
    (["a", "b"], None, ValueError, "prompt is a missing value"),
    (["a", "b"], 5, TypeError, "prompt must be a str; got a int"),
])
def test_a_bad_candidate_or_prompt_is_named_as_the_caller_passed_it(candidates, prompt,
                                                                     error, message):
    """The fourth candidate, None, was reported as "Column 'response_a' has a missing
    value at row 1" (the frame built from the distinct candidates)."""
    for call in (score_responses, best_of_n):
        with pytest.raises(error, match=message):
            call(_toy_pipeline(), prompt, candidates, "loud")


def test_an_empty_prompt_is_scored():
    """The embedder takes an empty prompt (a response without one); so does scoring."""
    rewards = score_responses(_toy_pipeline(), "", ["plain", "wow!!"], "loud")
    assert rewards[0] == 0.0 and np.isfinite(rewards[1])


def test_a_pipeline_fitted_on_embeddings_is_refused_with_the_models_message():
    """A scaler and the estimator fitted on precomputed embeddings passed the model check
    and failed on the population's internal id ("could not convert string to float")."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, _, _ = make_preference_data(n_users=10, n_pairs_per_user=20, n_features=5,
                                      random_state=0)
    pipe = Pipeline([("scale", StandardScaler()),
                     ("lore", LowRankRewardEstimator(2))]).fit(X, y)
    for call in (score_responses, best_of_n):
        with pytest.raises(TypeError, match="Its first step is a .*StandardScaler, not a "
                                            "pair embedder"):
            call(pipe, "p", ["a", "b"])
    # a step with one of the embedder's column names is not a pair embedder either
    pipe.steps[0][1].prompt_col = "prompt"
    with pytest.raises(TypeError, match="not a pair embedder"):
        score_responses(pipe, "p", ["a", "b"])


def test_score_responses_needs_candidates():
    with pytest.raises(ValueError, match="at least one"):
        score_responses(_toy_pipeline(), "hi", [], "loud")


def test_inference_reads_the_embedders_column_names():
    candidates = ["plain", "very excited!!!", "fine"]
    default = score_responses(_toy_pipeline(), "hi", candidates, "loud")
    renamed = _toy_pipeline(("who", "question", "first", "second"))
    np.testing.assert_allclose(score_responses(renamed, "hi", candidates, "loud"), default)
    assert best_of_n(renamed, "hi", candidates, "loud") == ("very excited!!!", 1)
    # the user column may still be named explicitly
    np.testing.assert_allclose(
        score_responses(renamed, "hi", candidates, "loud", user_col="who"), default)
    # falsy names (0, "") are names: they are not replaced by the defaults
    falsy = _toy_pipeline(("", 0, 1, 2))
    np.testing.assert_allclose(score_responses(falsy, "hi", candidates, "loud"), default)


def test_candidates_as_one_string_are_rejected():
    pipe = _toy_pipeline()
    for call in (score_responses, best_of_n):
        with pytest.raises(TypeError, match="candidates must be a sequence of strings, not a str"):
            call(pipe, "hi", "very excited!!!", "loud")


def test_best_of_n_accepts_a_generator_of_candidates():
    pipe = _toy_pipeline()
    candidates = ["plain", "very excited!!!", "fine"]
    expected = best_of_n(pipe, "hi", candidates, "loud")
    assert best_of_n(pipe, "hi", (c for c in candidates), "loud") == expected
    np.testing.assert_allclose(score_responses(pipe, "hi", iter(candidates), "loud"),
                               score_responses(pipe, "hi", candidates, "loud"))


def test_inference_with_a_population_pipeline_fitted_without_user_column():
    pipe = _toy_pipeline()
    embedder, est = pipe[0], pipe[-1]
    rows = pd.DataFrame({"prompt": ["hi"] * 4, "response_a": ["wow!", "ok", "hey!", "no"],
                         "response_b": ["ok", "yes!!", "fine", "great!"]})
    population = make_pipeline(embedder.__class__(**embedder.get_params()),
                               est.__class__(**est.get_params()))
    population.fit(rows, [1, 0, 1, 0])
    assert population[0]._fit_has_user is False
    candidates = ["plain", "very excited!!!", "fine"]
    rewards = score_responses(population, "hi", candidates)
    frame = pd.DataFrame({"prompt": ["hi"] * 3, "response_a": candidates,
                          "response_b": ["plain"] * 3})
    np.testing.assert_allclose(rewards, population.decision_function(frame))
    assert rewards[0] == 0.0 and np.ptp(rewards) > 0
    best, index = best_of_n(population, "hi", candidates)
    assert best == candidates[index] and index == int(np.argmax(rewards))
    with pytest.raises(ValueError, match="the model has no users"):
        score_responses(population, "hi", candidates, "loud")
    with pytest.raises(ValueError, match="the model has no users"):
        best_of_n(population, "hi", candidates, "loud")


def test_inference_with_ids_routed_by_keyword():
    """A pipeline fitted as pipe.fit(X, y, user_ids=...) (no user column, metadata
    routing) scores each user with that user's weights, as the estimator would."""
    import sklearn

    pipe = _toy_pipeline()
    rows = pd.DataFrame({"prompt": ["hi"] * 8,
                         "response_a": ["wow!", "ok", "hey!", "no"] * 2,
                         "response_b": ["ok", "yes!!", "fine", "great!"] * 2})
    users = ["calm"] * 4 + ["loud"] * 4
    y = [0, 1, 0, 1, 1, 0, 1, 0]
    candidates = ["plain", "very excited!!!", "fine"]
    with sklearn.config_context(enable_metadata_routing=True):
        est = pipe[-1].__class__(**pipe[-1].get_params()).set_fit_request(user_ids=True)
        routed = make_pipeline(pipe[0].__class__(**pipe[0].get_params()), est)
        routed.fit(rows, y, user_ids=users)
    assert routed[0]._fit_has_user is False and set(routed[-1].users_) == {"calm", "loud"}
    frame = pd.DataFrame({"prompt": ["hi"] * 3, "response_a": candidates,
                          "response_b": ["plain"] * 3})
    Z = routed[0].transform(frame)
    for user in ("calm", "loud"):
        expected = routed[-1].decision_function(Z, user_ids=[user] * 3)
        np.testing.assert_allclose(score_responses(routed, "hi", candidates, user), expected)
    assert best_of_n(routed, "hi", candidates, "loud")[0] == "very excited!!!"
    assert best_of_n(routed, "hi", candidates, "calm")[0] != "very excited!!!"
    # None and an unknown user both get the population model
    np.testing.assert_allclose(score_responses(routed, "hi", candidates),
                               score_responses(routed, "hi", candidates, "stranger"))


def test_rewards_are_relative_to_the_first_candidate_through_a_scaler():
    """A StandardScaler between the embedder and the estimator shifts the features: the
    reference row's own margin is not 0 (rewards were off by a constant)."""
    from sklearn.preprocessing import StandardScaler

    import sklearn

    pipe = _toy_pipeline()
    rows = pd.DataFrame({"prompt": ["hi"] * 8, "response_a": ["wow!", "ok", "hey!", "no"] * 2,
                         "response_b": ["ok", "yes!!", "fine", "great!"] * 2})
    with sklearn.config_context(enable_metadata_routing=True):
        est = pipe[-1].__class__(**pipe[-1].get_params()).set_fit_request(user_ids=True)
        scaled = make_pipeline(pipe[0].__class__(**pipe[0].get_params()), StandardScaler(),
                               est)
        scaled.fit(rows, [0, 1, 0, 1, 1, 0, 1, 0], user_ids=["calm"] * 4 + ["loud"] * 4)
    candidates = ["plain", "very excited!!!", "fine"]
    rewards = score_responses(scaled, "hi", candidates, "loud")
    frame = pd.DataFrame({"prompt": ["hi"] * 3, "response_a": candidates,
                          "response_b": ["plain"] * 3})
    margins = scaled[-1].decision_function(scaled[:-1].transform(frame), user_ids=["loud"] * 3)
    assert rewards[0] == 0.0 and margins[0] != 0.0
    np.testing.assert_allclose(rewards, margins - margins[0])
    with pytest.raises(TypeError, match="user_id must be one hashable id .* unhashable list"):
        score_responses(scaled, "hi", candidates, ["loud"])


def _csv(tmp_path, rows, name="c.csv"):
    path = tmp_path / name
    pd.DataFrame(rows, columns=["user_id", "prompt", "response_a", "response_b",
                                "label"]).to_csv(path, index=False)
    return path


def _rows(n_users, n_rows, label=lambda u, i: (u + i) % 2):
    return [(f"u{u}", "Q", "a", "b", label(u, i)) for u in range(n_users)
            for i in range(n_rows)]


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("", "not a readable CSV file"),
    ("user_id,prompt,response_a,response_b,label\n", "header only"),
    ("user_id;prompt;response_a;response_b;label\nu1;Q;a;b;1\n", "missing columns"),
    ("user_id,prompt,response_a,response_b,label\nu1,Q,a,b,1\n,Q,a,b,0\n",
     "row 2 has no user_id"),
    ("user_id,prompt,response_a,response_b,label\nu1,Q,a,b,1\nu2,Q,a,b,\n",
     "row 2 has no label"),
    ("user_id,prompt,response_a,response_b,label\nu1,Q,a,b,1\nu2,Q,a,b,1\n",
     "label must take two values"),
    ("user_id,prompt,response_a,response_b,label\nu1,Q,a,b,0.2\nu2,Q,a,b,0.5\nu3,Q,a,b,1\n",
     r"label must be 1 \(response_a preferred\) or 0 .*found \['0.2', '0.5'\]"),
    # two soft labels used to pass the check and fail inside the fit with a traceback
    ("user_id,prompt,response_a,response_b,label\nu1,Q,a,b,0.2\nu2,Q,a,b,0.8\n",
     r"label must be 1 .*found \['0.2', '0.8'\]"),
    ("user_id,prompt,response_a,response_b,label\nu1,Q,a,b,yes\nu2,Q,a,b,no\n",
     r"also read: true/false, a/b.*found \['no', 'yes'\]"),
    # one field more than the header: pandas made the user ids an index and shifted columns
    ("user_id,prompt,response_a,response_b,label\nu1,Q,a,b,1,1\nu2,Q,a,b,0,0\n",
     "rows have more fields than the header's 5 names"),
    ("user_id,prompt,response_a,response_b,label\nu1,Q,a,b,1,\nu2,Q,a,b,0,\n",
     "rows have more fields than the header's 5 names"),
    ("user_id;prompt;response_a;response_b;label\nu0;Q;Paris, France;b;1\nu0;Q;a, b, c;b;0\n",
     "separated by semicolons: save it comma-separated"),
    ("user_id,prompt,response_a,response_b,label\nu1,Q,a,a,1\nu2,Q,b,b,0\n",
     "response_a equals response_b in every row"),
    ("id,prompt,response_a,response_b,label\nu1,Q,a,b,1\n",
     r"missing columns \['user_id'\].*found \['id', 'prompt'"),
])
def test_main_job_says_what_is_wrong_with_a_csv_in_one_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit, match=message):
        main(["--data", str(path)])


def test_main_job_names_a_directory_and_a_latin1_file(tmp_path):
    with pytest.raises(SystemExit, match="cannot read it"):
        main(["--data", str(tmp_path)])
    path = tmp_path / "latin1.csv"
    path.write_bytes("user_id,prompt,response_a,response_b,label\nu1,Q,caf\xe9,b,1\n"
                     .encode("latin-1"))
    with pytest.raises(SystemExit, match="not UTF-8 text .*save the file as UTF-8"):
        main(["--data", str(path)])


def _capture_embed(monkeypatch):
    """Stop the CSV run where it would embed; return what it would have embedded."""
    import sklearn_lore.__main__ as cli

    seen = {}

    def fake_embed(frame, args):
        seen["frame"] = frame.copy()
        raise SystemExit("stop")

    monkeypatch.setattr(cli, "_embed", fake_embed)
    return seen


def test_main_job_reads_ids_as_names_and_headers_loosely(tmp_path, monkeypatch):
    """'007' and '7' are two users (they were read as the number 7); ' User_ID' and
    'Label ' are the columns meant."""
    seen = _capture_embed(monkeypatch)
    ids = ["7", "07", "007", "0007", "8"]
    rows = [(ids[u], "Q", "a", "b", (u + i) % 2) for u in range(5) for i in range(12)]
    path = tmp_path / "ids.csv"
    pd.DataFrame(rows, columns=[" User_ID", "prompt", "response_a", "response_b",
                                "Label "]).to_csv(path, index=False)
    with pytest.raises(SystemExit, match="stop"):
        main(["--data", str(path)])
    assert sorted(seen["frame"]["user_id"].unique()) == sorted(ids)


@pytest.mark.parametrize("labels", [("1", "0"), ("a", "b"), ("True", "False"), ("1", "-1"),
                                    ("response_a", "response_b"), ("1.0", "0.0"),
                                    ("+1", "-1"), ("1.00", "0.00")])
def test_main_job_reads_every_label_form_one_way(labels, tmp_path, monkeypatch):
    """1 means response_a preferred in every form (a/b used to make 'b' the positive
    class, the opposite of the message)."""
    from sklearn_lore.__main__ import _read_comparisons

    path = _csv(tmp_path, [("u1", "Q", "x", "y", labels[0]), ("u2", "Q", "x", "y", labels[1])])
    _, y = _read_comparisons(str(path))
    assert y.tolist() == [1, 0]


def test_main_job_strips_ids_and_refuses_a_column_named_twice(tmp_path, monkeypatch):
    from sklearn_lore.__main__ import _read_comparisons

    path = _csv(tmp_path, [("7", "Q", "x", "y", 1), (" 7", "Q", "x", "y", 0),
                           ("7 ", "Q", "x", "y", 1), ("07", "Q", "x", "y", 0)])
    df, _ = _read_comparisons(str(path))
    assert df["user_id"].tolist() == ["7", "7", "7", "07"]
    twice = tmp_path / "twice.csv"
    twice.write_text("user_id,prompt,response_a,response_b,label,label\nu,Q,x,y,1,0\n")
    with pytest.raises(SystemExit, match=r"columns named twice: \['label'\]"):
        _read_comparisons(str(twice))


def test_main_job_checks_the_training_labels_before_embedding(tmp_path, monkeypatch):
    """Only the last row says 0: the training rows hold one label, which used to end in
    a traceback from the fit after the embedding."""
    _capture_embed(monkeypatch)
    rows = _rows(5, 10, label=lambda u, i: 0 if (u, i) == (4, 9) else 1)
    with pytest.raises(SystemExit, match="training comparisons .* all have label 1"):
        main(["--data", str(_csv(tmp_path, rows))])


def test_main_job_counts_rows_one_way(tmp_path):
    """The embedder's messages name rows as the CLI's own do: data rows from 1 (it said
    'row 0' for the row the CLI calls 'row 1')."""
    rows = _rows(12, 20)
    rows[0] = ("u0", "Q", "   ", "b", 1)
    with pytest.raises(SystemExit, match="'response_a' has an empty text at row 1:"):
        main(["--data", str(_csv(tmp_path, rows))])


def test_main_job_seed_beyond_numpy_range_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--synthetic", "--seed", str(2**32)])
    assert exit_info.value.code == 2 and "is above 4294967295" in capsys.readouterr().err


@pytest.mark.parametrize("n_users, n_rows", [(1, 20), (12, 1)])
def test_main_job_with_too_few_users_or_comparisons_says_so(tmp_path, n_users, n_rows):
    path = _csv(tmp_path, _rows(n_users, n_rows))
    with pytest.raises(SystemExit, match="the evaluation needs at least 2 users with more than"):
        main(["--data", str(path)])


def test_main_job_keeps_texts_that_look_like_missing_values(tmp_path, monkeypatch):
    """'NA', 'None' and an empty prompt are texts (pairs_from_ratings writes prompt='')."""
    import sklearn_lore.__main__ as cli

    seen = {}

    def fake_embed(frame, args):
        seen["frame"] = frame.copy()
        raise SystemExit("stop")

    monkeypatch.setattr(cli, "_embed", fake_embed)
    rows = [(r[0], "", "NA", "None", r[4]) for r in _rows(4, 12)]
    with pytest.raises(SystemExit, match="stop"):
        main(["--data", str(_csv(tmp_path, rows))])
    frame = seen["frame"]
    assert set(frame["prompt"]) == {""} and set(frame["response_a"]) == {"NA"}
    assert set(frame["response_b"]) == {"None"}


@pytest.mark.parametrize("flags", [["--n-components", "0"], ["--seed", "-1"],
                                   ["--n-components", "x"]])
def test_main_job_refuses_bad_flags_with_a_usage_error(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--synthetic", *flags])
    assert exit_info.value.code == 2
    assert f"error: argument {flags[0]}" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--synthetic", "--data", "x.csv"], "not allowed with argument"),
    (["--data", ""], "--data needs a file name"),
])
def test_main_job_refuses_conflicting_data_sources(argv, message, capsys):
    """--data used to win silently over --synthetic, and --data "" ran the text world."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_main_job_refuses_a_rank_beyond_the_embedding_before_embedding_the_file(
        tmp_path, monkeypatch):
    """--n-components beyond the embedding's width was refused after the whole file
    was embedded (minutes for thousands of texts on a CPU); the first comparison
    alone now gives the width."""
    import sklearn_lore.__main__ as cli

    encoded = []

    def encode(texts):
        encoded.extend(texts)
        return np.array([[len(t), t.count("a"), t.count("e"), 1.0] for t in texts])

    monkeypatch.setattr(cli, "SentencePairEmbedder", lambda **kwargs: SentencePairEmbedder(
        encoder=encode, model="toy-encoder-4d", **kwargs))
    rows = [(f"u{u}", f"prompt {i}", f"answer {u} {i}", f"reply {u} {i}", (u + i) % 2)
            for u in range(6) for i in range(20)]
    path = tmp_path / "wide.csv"
    pd.DataFrame(rows, columns=["user_id", "prompt", "response_a", "response_b",
                                "label"]).to_csv(path, index=False)
    with pytest.raises(SystemExit, match="--n-components 5 exceeds the 4 features"):
        main(["--data", str(path), "--n-components", "5"])
    assert len(set(encoded)) <= 3  # one comparison's texts


def test_main_job_takes_a_rank_equal_to_the_embeddings_width(monkeypatch):
    import sklearn_lore.__main__ as cli

    cli._check_rank(32, 32)  # no exit
    with pytest.raises(SystemExit, match="--n-components 33 exceeds the 32 features"):
        cli._check_rank(33, 32)


def test_main_job_refuses_more_components_than_features():
    """The synthetic features are 32: 100 components took 17 s for nothing."""
    with pytest.raises(SystemExit, match="--n-components 33 exceeds the 32 features"):
        main(["--synthetic", "--n-components", "33"])


def test_inference_takes_a_fitted_search_and_refuses_other_models_before_embedding():
    """A fitted GridSearchCV scores with its best pipeline (with non-default column names
    it failed, blaming the data: "X has a 'user_id' column but the data passed to fit had
    none"); a bare estimator or None is refused before the candidates are read."""
    from sklearn.model_selection import GridSearchCV

    columns = ("who", "question", "first", "second")
    pipe = _toy_pipeline(columns)
    search = GridSearchCV(pipe, {"lowrankrewardestimator__alpha": [0.1, 0.2]}, cv=2)
    frame = pd.DataFrame(
        [(u, "hi", a, b) for u in ("calm", "loud")
         for a, b in [("wow!", "ok"), ("ok", "yes!!"), ("hey!", "fine"), ("no", "great!")]],
        columns=list(columns))
    labels = [int(s * (a.count("!") - b.count("!")) > 0)
              for s in (-1.0, 1.0) for a, b in [("wow!", "ok"), ("ok", "yes!!"),
                                                 ("hey!", "fine"), ("no", "great!")]]
    search.fit(frame, labels)
    candidates = ["plain", "wow!!"]
    np.testing.assert_array_equal(score_responses(search, "hi", candidates, "loud"),
                                  score_responses(search.best_estimator_, "hi", candidates,
                                                  "loud"))
    assert best_of_n(search, "hi", candidates, "loud") == ("wow!!", 1)
    calls = []
    unfitted = GridSearchCV(pipe, {"lowrankrewardestimator__alpha": [0.1]}, refit=False)
    X, y, _, _ = make_preference_data(n_users=4, n_pairs_per_user=10, n_features=3,
                                      random_state=0)
    bare = GridSearchCV(LowRankRewardEstimator(1), {"alpha": [0.5, 1.0]}, cv=2).fit(X, y)
    for model, hint in ((unfitted, "GridSearchCV. It has no best_estimator_: fit it first"),
                        (bare, "GridSearchCV. Its best_estimator_ is a "
                               "sklearn_lore.estimator.LowRankRewardEstimator, not a pipeline"),
                        (pipe[-1], None), (None, None)):
        for call in (score_responses, best_of_n):
            with pytest.raises(TypeError, match="model must be a fitted Pipeline") as err:
                call(model, "hi", (calls.append(c) or c for c in ["a", "b"]), "loud")
            assert (hint in str(err.value)) if hint else "best_estimator_" not in str(err.value)
    assert calls == []  # refused before the candidates were read
