"""Using a fitted personalized reward model: score responses, pick the best of N.

A reward is defined up to a constant per prompt (only differences are learned), so
the candidates of one prompt are scored against a common reference, the first
candidate: reward_i = r_u(x, y_i) - r_u(x, y_0). Their order is what best-of-N
selection with an LLM needs.
"""

import numpy as np
import pandas as pd

# an id no fitted model knows, so the population model scores it
_POPULATION_ID = "__sklearn_lore_population__"


def _pair_frame(model, prompt, candidates, user_id, user_col):
    """The candidates as rows (user, prompt, candidate, first candidate), in the
    column names the pipeline's embedder reads."""
    embedder = model[0] if hasattr(model, "steps") else None

    def column(name, default):
        return getattr(embedder, name, None) or default

    user_col = user_col if user_col is not None else column("user_col", "user_id")
    n = len(candidates)
    return pd.DataFrame({
        user_col: [user_id if user_id is not None else _POPULATION_ID] * n,
        column("prompt_col", "prompt"): [prompt] * n,
        column("response_a_col", "response_a"): candidates,
        column("response_b_col", "response_b"): [candidates[0]] * n,
    })


def score_responses(model, prompt, candidates, user_id=None, *, user_col=None):
    """Reward of each candidate response for one user, relative to the first candidate.

    Parameters
    ----------
    model : fitted Pipeline
        A pipeline whose first step is a pair embedder (SentencePairEmbedder) and
        whose last step is a LowRankRewardEstimator, as built by the user guide.
    prompt : str
    candidates : sequence of str
        N >= 1 responses to ``prompt``.
    user_id : hashable or None, default=None
        The user to score for; None or an unknown user gets the population model.
    user_col : str or None, default=None
        The user column the pipeline's embedder expects; None reads it from the
        embedder (``user_col``, else "user_id"). The prompt and response columns
        are always the embedder's (``prompt_col``, ``response_a_col``,
        ``response_b_col``).

    Returns
    -------
    ndarray of shape (N,)
        Rewards; the first is 0.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_lore import LowRankRewardEstimator, SentencePairEmbedder
    >>> from sklearn_lore.inference import score_responses
    >>> encode = lambda texts: np.array([[len(t), t.count("!")] for t in texts], float)
    >>> df = __import__("pandas").DataFrame({"user_id": ["a", "a", "b", "b"],
    ...     "prompt": ["hi"] * 4, "response_a": ["yo!", "hello there", "yo!", "hey"],
    ...     "response_b": ["hello there", "yo!", "hey", "yo!"]})
    >>> pipe = make_pipeline(SentencePairEmbedder(encoder=encode),
    ...                      LowRankRewardEstimator(1, random_state=0))
    >>> pipe = pipe.fit(df, [1, 0, 0, 1])
    >>> score_responses(pipe, "hi", ["yo!", "hello there"], "a").shape
    (2,)
    """
    candidates = list(candidates)
    if not candidates:
        raise ValueError("candidates must hold at least one response.")
    frame = _pair_frame(model, prompt, candidates, user_id, user_col)
    return np.asarray(model.decision_function(frame), dtype=np.float64)


def best_of_n(model, prompt, candidates, user_id=None, *, user_col=None):
    """The candidate with the highest reward for ``user_id`` and its index.

    Parameters are those of :func:`score_responses`.

    Returns
    -------
    best : str
    index : int
    """
    rewards = score_responses(model, prompt, candidates, user_id, user_col=user_col)
    index = int(np.argmax(rewards))
    return list(candidates)[index], index
