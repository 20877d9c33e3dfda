"""The main job and the inference helpers."""

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline

from sklearn_lore import LowRankRewardEstimator, SentencePairEmbedder
from sklearn_lore.__main__ import main
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
