"""Using a fitted personalized reward model: score responses, pick the best of N.

A reward is defined up to a constant per prompt (only differences are learned), so
the candidates of one prompt are scored against a common reference, the first
candidate: reward_i = (r_u(x, y_i) - r_u(x, y_0)) / T_u, with T_u the user's
temperature (the model's calibration; 1 with ``calibrate=False``), the logit of
``predict_proba`` for the pair (y_i, y_0). Their order is what best-of-N selection
with an LLM needs; their size is on each user's own scale.
"""

from collections.abc import Mapping, Set

import numpy as np
import pandas as pd

from ._ids import POPULATION_ID
from .estimator import _holds_missing


def _check_candidates(candidates):
    """The candidates as a list, read once (a generator is consumed here)."""
    if isinstance(candidates, (str, bytes)):
        raise TypeError(
            f"candidates must be a sequence of strings, not a {type(candidates).__name__}."
        )
    if isinstance(candidates, (Set, Mapping)):
        raise TypeError(
            f"candidates must be in an order (a list, say): best_of_n's index refers to it; "
            f"got a {type(candidates).__name__}, whose order is arbitrary.")
    candidates = list(candidates)
    if not candidates:
        raise ValueError("candidates must hold at least one response.")
    for i, text in enumerate(candidates):
        _check_text(text, f"candidates[{i}]")
    return candidates


def _check_text(text, name):
    """A response or prompt the embedder can take, named as the caller passed it (the
    embedder named the column and row of the frame built here: 'response_a' at row 1
    for the fourth candidate)."""
    if isinstance(text, str):
        if name != "prompt" and not text.strip():
            raise ValueError(f"{name} is an empty text; every candidate must be a non-empty "
                             "response.")
        return
    if text is None or _holds_missing(text):
        raise ValueError(f"{name} is a missing value ({text!r}); pass a text.")
    raise TypeError(f"{name} must be a str; got a {type(text).__name__} ({text!r:.40}).")


def _check_model(model):
    """The pipeline to score with (a fitted search's best one), named before any text is
    embedded: the frame built for it follows its first step's column names."""
    def kind(obj):
        return f"{type(obj).__module__}.{type(obj).__qualname__}"

    def embeds_pairs(obj):
        # a pair embedder's column names build the frame of the candidates
        return (hasattr(obj, "steps") and len(obj.steps) >= 1
                and all(hasattr(obj.steps[0][1], name)
                        for name in ("prompt_col", "response_a_col", "response_b_col")))

    if embeds_pairs(model):
        return model
    best = getattr(model, "best_estimator_", None)
    if best is not None and embeds_pairs(best):
        return best  # a fitted search (refit=True) scores with its best pipeline
    if hasattr(model, "steps") and len(model.steps) >= 1:
        hint = (f" Its first step is a {kind(model.steps[0][1])}, not a pair embedder: the "
                "candidates are texts.")
    elif best is not None:
        hint = (f" Its best_estimator_ is a {kind(best)}, not a pipeline that starts with a "
                "pair embedder.")
    elif hasattr(model, "estimator") and (hasattr(model, "param_grid")
                                          or hasattr(model, "param_distributions")):
        hint = (" It has no best_estimator_: fit it first, with refit=True (the default), "
                "so that its best pipeline scores.")
    else:
        hint = ""
    raise TypeError(
        f"model must be a fitted Pipeline whose first step embeds the pairs "
        f"(SentencePairEmbedder) and whose last step is a LowRankRewardEstimator, or a "
        f"fitted search over one; got {kind(model)}.{hint}")


def _ids_by_keyword(model):
    """Whether a pipeline's embedder had no user column but its estimator knows
    users: fitted with ``user_ids=`` passed by keyword (metadata routing)."""
    if not hasattr(model, "steps") or len(model.steps) < 2:
        return False
    if getattr(model[0], "_fit_has_user", None) is not False:
        return False
    return len(getattr(model[-1], "users_", ())) > 0


def _pair_frame(model, prompt, candidates, user_id, user_col):
    """The candidates as rows (user, prompt, candidate, first candidate), in the
    column names the pipeline's embedder reads.

    The user column is left out when the embedder was fitted without one (a
    population model, which has no users)."""
    embedder = model[0] if hasattr(model, "steps") else None

    def column(name, default):
        value = getattr(embedder, name, None)
        return default if value is None else value  # 0 and "" are column names too

    n = len(candidates)
    frame = {}
    if getattr(embedder, "_fit_has_user", None) is False:
        if user_id is not None:
            raise ValueError(
                f"user_id={user_id!r} was given, but the model has no users: its data had "
                "no user column at fit and no user_ids were passed (a population model). "
                "Pass user_id=None."
            )
    else:
        user_col = user_col if user_col is not None else column("user_col", "user_id")
        frame[user_col] = [user_id if user_id is not None else POPULATION_ID] * n
    frame[column("prompt_col", "prompt")] = [prompt] * n
    frame[column("response_a_col", "response_a")] = candidates
    frame[column("response_b_col", "response_b")] = [candidates[0]] * n
    return pd.DataFrame(frame)


def score_responses(model, prompt, candidates, user_id=None, *, user_col=None):
    """Reward of each candidate response for one user, relative to the first candidate.

    Parameters
    ----------
    model : fitted Pipeline or search
        A pipeline whose first step is a pair embedder (SentencePairEmbedder) and
        whose last step is a LowRankRewardEstimator, as built by the user guide, or a
        fitted search over one (GridSearchCV, refit=True: its ``best_estimator_``).
    prompt : str
    candidates : iterable of str
        N >= 1 responses to ``prompt`` (a list, or any iterable such as a generator,
        read once); a single str is rejected.
    user_id : hashable or None, default=None
        The user to score for; None or an unknown user gets the population model.
        Must be None for a pipeline fitted without users (a population model).
        A pipeline fitted with ``user_ids=`` passed by keyword (metadata routing,
        no user column in the data) is scored for ``user_id`` too: the ids go
        straight to the estimator.
    user_col : str or None, default=None
        The user column the pipeline's embedder expects; None reads it from the
        embedder (``user_col``, else "user_id"). The prompt and response columns
        are always the embedder's (``prompt_col``, ``response_a_col``,
        ``response_b_col``). No user column is passed when the embedder was
        fitted without one.

    Returns
    -------
    ndarray of shape (N,)
        Rewards; the first is 0.

    Raises
    ------
    TypeError
        If ``model`` is not a pipeline that starts with a pair embedder or a fitted
        search over one (a bare estimator, a pipeline fitted on embeddings), or
        ``candidates`` is a str (it would be scored character by character) or a set
        or dict (no order), a candidate or the prompt is not a str, or ``user_id`` is
        not one hashable id (a list, say).
    ValueError
        If ``candidates`` is empty, a candidate is missing (None, NaN) or blank, the
        prompt is missing, ``user_id`` is NaN (None is the population), or ``user_id``
        is given for a pipeline fitted without users.

    Notes
    -----
    Each distinct response is embedded and scored once: copies of a response get
    exactly one reward. The rewards are calibrated margins, divided by the user's
    temperature (``user_temperature_``, or ``population_temperature_`` for the
    population), as :meth:`LowRankRewardEstimator.decision_function` of the pairs
    (candidate, first candidate) for a pipeline of the embedder and the estimator (a
    step between them that shifts the features gives the pair (first, first) a margin
    of its own, subtracted here): rankings do not depend on the temperature, sizes
    compared across users do (``calibrate=False`` gives the raw margins).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_lore import LowRankRewardEstimator, SentencePairEmbedder
    >>> from sklearn_lore.inference import score_responses
    >>> encode = lambda texts: np.array([[len(t) / 10, t.count("!")] for t in texts])
    >>> df = __import__("pandas").DataFrame({"user_id": ["a"] * 4 + ["b"] * 4,
    ...     "prompt": ["hi"] * 8,
    ...     "response_a": ["yo!", "hello there", "hey!", "good day to you"] * 2,
    ...     "response_b": ["hello there", "yo!", "good day to you", "hey!"] * 2})
    >>> pipe = make_pipeline(SentencePairEmbedder(encoder=encode),
    ...                      LowRankRewardEstimator(1, random_state=0))
    >>> pipe = pipe.fit(df, [1, 0, 1, 0, 0, 1, 0, 1])  # a likes short, b long replies
    >>> rewards = score_responses(pipe, "hi", ["yo!", "hello there"], "a")
    >>> rewards.shape, float(rewards[0]), bool(rewards[1] < 0)
    ((2,), 0.0, True)
    """
    model = _check_model(model)
    candidates = _check_candidates(candidates)
    _check_text(prompt, "prompt")
    try:
        hash(user_id)
    except TypeError:
        raise TypeError(
            f"user_id must be one hashable id (a str, an int, a tuple of such ...); got an "
            f"unhashable {type(user_id).__name__}. Score one user per call.") from None
    if user_id is not None and not isinstance(user_id, tuple) and _holds_missing(user_id):
        raise ValueError(
            f"user_id={user_id!r} is a missing value; pass None for the population model.")
    # each distinct response scored once: copies of one response (repeated samples)
    # get the same reward, which the rounding of their rows' positions in the matrix
    # products did not ensure, so best_of_n's first-on-ties held
    distinct, position = _distinct(candidates)
    if _ids_by_keyword(model) and user_id is not None:
        # fitted as pipe.fit(X, y, user_ids=...) with routing: the embedder has no
        # user column, so the ids go to the estimator beside the embedded rows
        from .model_selection import _WithUsers

        frame = _pair_frame(model, prompt, distinct, None, user_col)
        margins = _WithUsers(model, [user_id] * len(distinct)).decision_function(frame)
    else:
        frame = _pair_frame(model, prompt, distinct, user_id, user_col)
        margins = model.decision_function(frame)
    margins = np.asarray(margins, dtype=np.float64)
    # exactly relative to the first candidate: a step before the estimator that shifts
    # the features (a StandardScaler) gives the reference row a margin of its own
    return (margins - margins[0])[position]


def _distinct(candidates):
    """The distinct candidates in first-appearance order and each one's position among
    them (all of them as given when one is unhashable: the embedder names it)."""
    first = {}
    try:
        position = np.fromiter((first.setdefault(c, len(first)) for c in candidates),
                               dtype=np.intp, count=len(candidates))
    except TypeError:
        return candidates, np.arange(len(candidates))
    return list(first), position



def best_of_n(model, prompt, candidates, user_id=None, *, user_col=None):
    """The candidate with the highest reward for ``user_id`` and its index.

    Parameters
    ----------
    model : fitted Pipeline or search
        A pair embedder followed by a LowRankRewardEstimator (see
        :func:`score_responses`).
    prompt : str
    candidates : iterable of str
        N >= 1 responses to ``prompt``; any iterable, a generator included (read once).
    user_id : hashable or None, default=None
        The user to choose for; None or an unknown user gets the population model.
    user_col : str or None, default=None
        As in :func:`score_responses`.

    Returns
    -------
    best : str
    index : int
        Position of ``best`` among the candidates (the first one on ties).

    Raises
    ------
    TypeError, ValueError
        As :func:`score_responses`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_lore import LowRankRewardEstimator, SentencePairEmbedder
    >>> from sklearn_lore.inference import best_of_n
    >>> encode = lambda texts: np.array([[len(t) / 10, t.count("!")] for t in texts])
    >>> df = pd.DataFrame({"user_id": ["a"] * 4 + ["b"] * 4, "prompt": ["hi"] * 8,
    ...     "response_a": ["yo!", "hello there", "hey!", "good day to you"] * 2,
    ...     "response_b": ["hello there", "yo!", "good day to you", "hey!"] * 2})
    >>> pipe = make_pipeline(SentencePairEmbedder(encoder=encode),
    ...                      LowRankRewardEstimator(1, random_state=0))
    >>> pipe = pipe.fit(df, [1, 0, 1, 0, 0, 1, 0, 1])  # a likes short, b long replies
    >>> best_of_n(pipe, "hi", ["yo!", "hello there"], "a")
    ('yo!', 0)
    >>> best_of_n(pipe, "hi", ["yo!", "hello there"], "b")
    ('hello there', 1)
    """
    model = _check_model(model)
    candidates = _check_candidates(candidates)
    rewards = score_responses(model, prompt, candidates, user_id, user_col=user_col)
    index = int(np.argmax(rewards))
    return candidates[index], index
