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
