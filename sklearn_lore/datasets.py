"""Preference data sets: synthetic generators, pair builders and loaders.

Three kinds of helpers live here.

- Generators with a planted low-rank, multi-user reward: :func:`make_preference_data`
  (numeric features, like :func:`sklearn.datasets.make_classification`) and
  :func:`make_text_preference_world` (readable prompts and responses whose attributes
  different simulated users value differently).
- Pair builders that turn other data into the ``user_id, prompt, response_a,
  response_b`` layout: :func:`pairs_from_ratings` (within-user pairs from ratings; the
  Jester benchmark recipe), :func:`pairs_from_chosen_rejected` and
  :func:`split_hh_transcript` (chosen/rejected chat data), and
  :func:`simulate_users_on_pairs` with :func:`response_attributes` (simulated users
  with differing tastes on real pairs that carry no annotator ids).
- Loaders that read the shared data files from a directory given by the caller
  (:func:`load_jester`, :func:`load_hh_rlhf`); no data ship with the package.

Every pairwise label follows the package convention: ``1`` means ``a`` is preferred,
and the Bradley-Terry logit of a pair is ``r_u(a) - r_u(b)``.
"""

import gzip
import json
import re
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from contextlib import closing
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.utils import Bunch, check_random_state

from ._frames import polars_as_pandas

__all__ = [
    "make_preference_data",
    "make_text_preference_world",
    "candidate_responses",
    "pairs_from_ratings",
    "pairs_from_chosen_rejected",
    "split_hh_transcript",
    "response_attributes",
    "simulate_users_on_pairs",
    "load_jester",
    "load_hh_rlhf",
]

JESTER_PROMPT = "Tell me a joke."
_HH_ASSISTANT = "\n\nAssistant:"


# --------------------------------------------------------------------------- validation


def _check_int(name, value, minimum):
    if not isinstance(value, Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_real(name, value, minimum, *, strict=False):
    ok = isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {relation} {minimum}, got {value!r}.")
    return float(value)


def _check_columns(df, columns, argument="the data frame"):
    """``df`` as a pandas DataFrame (a polars one converted) holding ``columns`` once each."""
    df = polars_as_pandas(df)
    if not isinstance(df, pd.DataFrame):
        kind = f"{type(df).__module__}.{type(df).__qualname__}"
        raise TypeError(f"{argument} must be a pandas or polars DataFrame, got {kind}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{argument} lacks the column(s) {missing}; it has {list(df.columns)}.")
    twice = [c for c in columns if np.count_nonzero(df.columns == c) > 1]
    if twice:
        raise ValueError(f"{argument} has several columns named {twice[0]!r}; the column "
                         "must be unique.")
    return df


def _user_names(n_users):
    return np.array([f"u{i}" for i in range(n_users)], dtype=object)


def _bernoulli_labels(logits, noise, rng):
    """Labels and their probabilities under Bradley-Terry with temperature ``noise``."""
    if noise == 0:
        proba = (np.sign(logits) + 1.0) / 2.0
        y = (logits > 0).astype(np.int64)
        tied = logits == 0
        if tied.any():  # probability 1/2: a fair coin, not always "b preferred"
            y[tied] = rng.randint(0, 2, size=int(tied.sum()))
        return y, proba
    proba = expit(logits / noise)
    return (rng.uniform(size=logits.shape[0]) < proba).astype(np.int64), proba


def _draw_simplex_weights(n_users, n_components, concentration, rng):
    W = rng.dirichlet(np.full(n_components, concentration), size=n_users)
    # with a tiny concentration every Gamma draw of a row can underflow to 0 and numpy
    # returns NaN; such a Dirichlet is one vertex of the simplex, uniformly at random
    # (drawn only then, so other draws keep their stream)
    lost = ~np.isfinite(W).all(axis=1)
    if lost.any():
        W[lost] = np.eye(n_components)[rng.randint(n_components, size=int(lost.sum()))]
    return W


# --------------------------------------------------------------------------- numeric generator


def _draw_user_weights(n_users, n_components, weights, concentration, rng):
    if weights == "simplex":
        return _draw_simplex_weights(n_users, n_components, concentration, rng)
    # Same mean and per-coordinate variance as the symmetric Dirichlet, without the
    # constraint: ``concentration`` controls the spread of users in both modes.
    k = n_components
    spread = np.sqrt((k - 1) / (k**2 * (k * concentration + 1)))
    return 1.0 / k + spread * rng.standard_normal((n_users, k))


def make_preference_data(
    n_users=100,
    n_pairs_per_user=50,
    n_features=32,
    n_components=3,
    *,
    weights="simplex",
    concentration=0.5,
    noise=1.0,
    scale=3.0,
    return_frame=False,
    random_state=None,
):
    """Generate pairwise preferences of many users with a planted low-rank reward.

    The generative model is the one :class:`~sklearn_lore.LowRankRewardEstimator` fits.
    A basis ``V`` (``n_features x n_components``) has Gaussian entries, each column
    rescaled so that its reward difference ``z . V[:, b]`` has standard deviation
    ``scale`` over random pairs. Each user ``u`` mixes the columns with weights ``w_u``.
    A pair has item features ``phi_a, phi_b ~ N(0, I / n_features)`` and row
    ``z = phi_a - phi_b``; its noiseless logit is ``z . V w_u`` and its label is
    ``y ~ Bernoulli(sigmoid(logit / noise))`` (``noise=0``: ``y = [logit > 0]``, a
    fair coin where the logit is exactly 0).

    Parameters
    ----------
    n_users : int, default=100
        Number of users.
    n_pairs_per_user : int, default=50
        Number of pairs (rows) per user.
    n_features : int, default=32
        Dimension of the item features.
    n_components : int, default=3
        Rank of the planted reward (number of basis rewards).
    weights : {"simplex", "free"}, default="simplex"
        ``"simplex"``: ``w_u ~ Dirichlet(concentration)``, a convex mix of the basis
        rewards. ``"free"``: ``w_u ~ N(1 / n_components, s^2 I)`` with ``s^2`` the
        marginal variance of that Dirichlet, so weights can be negative.
    concentration : float, default=0.5
        Dirichlet concentration. Small values give extreme users who follow mostly one
        basis reward (strong disagreement); large values give users near the average.
    noise : float, default=1.0
        Bradley-Terry temperature; ``0`` makes labels the deterministic sign of the logit.
    scale : float, default=3.0
        Standard deviation of each basis reward difference over random pairs.
    return_frame : bool, default=False
        If True, ``X`` is a DataFrame with a ``user_id`` column first and feature
        columns ``x0 .. x{n_features - 1}`` (the input layout the estimator accepts).
    random_state : int, RandomState instance or None, default=None
        Seed for reproducible output.

    Returns
    -------
    X : ndarray of shape (n_users * n_pairs_per_user, n_features) or DataFrame
        Feature differences ``z`` (float64), rows ordered by user, then pair.
    y : ndarray of shape (n_samples,)
        Labels in ``{0, 1}`` (int64); ``1`` means item ``a`` is preferred.
    user_ids : ndarray of shape (n_samples,)
        User id of each row, ``"u0" .. "u{n_users - 1}"`` (object array of str).
    truth : :class:`~sklearn.utils.Bunch`
        ``components`` (n_components, n_features) basis in scikit-learn layout;
        ``user_weights`` (n_users, n_components); ``users`` (n_users,) ids in the row
        order of ``user_weights``; ``population_weights`` (n_components,) mean of the
        weight distribution; ``logits`` (n_samples,) noiseless logits;
        ``oracle_proba`` (n_samples,) true probability that ``y = 1``.

    Examples
    --------
    >>> from sklearn_lore.datasets import make_preference_data
    >>> X, y, user_ids, truth = make_preference_data(n_users=5, n_pairs_per_user=4,
    ...                                              n_features=8, random_state=0)
    >>> X.shape, y.shape, user_ids[:5].tolist()
    ((20, 8), (20,), ['u0', 'u0', 'u0', 'u0', 'u1'])
    >>> truth.components.shape, truth.user_weights.shape
    ((3, 8), (5, 3))
    """
    n_users = _check_int("n_users", n_users, 1)
    n_pairs = _check_int("n_pairs_per_user", n_pairs_per_user, 1)
    n_features = _check_int("n_features", n_features, 1)
    n_components = _check_int("n_components", n_components, 1)
    if weights not in ("simplex", "free"):
        raise ValueError(f"weights must be 'simplex' or 'free', got {weights!r}.")
    concentration = _check_real("concentration", concentration, 0.0, strict=True)
    noise = _check_real("noise", noise, 0.0)
    scale = _check_real("scale", scale, 0.0)
    if not isinstance(return_frame, (bool, np.bool_)):
        raise ValueError(f"return_frame must be True or False, got {return_frame!r}.")
    rng = check_random_state(random_state)

    basis = rng.standard_normal((n_features, n_components))
    # Var(z . v) = 2 |v|^2 / n_features for z = phi_a - phi_b.
    with np.errstate(over="ignore", invalid="ignore"):
        basis *= scale / (np.linalg.norm(basis, axis=0) * np.sqrt(2.0 / n_features))
    user_weights = _draw_user_weights(n_users, n_components, weights, concentration, rng)

    n_samples = n_users * n_pairs
    item_std = 1.0 / np.sqrt(n_features)
    phi_a = rng.normal(0.0, item_std, (n_samples, n_features))
    phi_b = rng.normal(0.0, item_std, (n_samples, n_features))
    X = phi_a - phi_b
    user_index = np.repeat(np.arange(n_users), n_pairs)
    with np.errstate(over="ignore", invalid="ignore"):
        logits = np.einsum("nd,nd->n", X, (basis @ user_weights.T).T[user_index])
    if not (np.isfinite(basis).all() and np.isfinite(logits).all()):
        # a NaN logit would be labelled 0 without a word
        raise ValueError(f"scale={scale!r} makes the rewards overflow the float range; "
                         "use a moderate scale (the default is 3).")
    y, proba = _bernoulli_labels(logits, noise, rng)

    users = _user_names(n_users)
    user_ids = users[user_index]
    truth = Bunch(
        components=basis.T.copy(),
        user_weights=user_weights,
        users=users,
        population_weights=np.full(n_components, 1.0 / n_components),
        logits=logits,
        oracle_proba=proba,
    )
    if return_frame:
        X = pd.DataFrame(X, columns=[f"x{j}" for j in range(n_features)])
        X.insert(0, "user_id", user_ids)
    return X, y, user_ids, truth


# --------------------------------------------------------------------------- text world

# Each topic: a prompt, a one-sentence answer, three steps (shown as a bullet list),
# one extra sentence of detail, one sentence of jargon and one light joke. A response
# is assembled from these pieces according to five binary attributes.
_TOPICS = (
    {
        "prompt": "How do I make pancakes?",
        "core": "Whisk flour, milk, an egg and some sugar, then cook small rounds in a hot pan.",
        "steps": ("Whisk the batter", "Heat a buttered pan", "Flip when bubbles form"),
        "detail": "Rest the batter for five minutes so they turn out fluffy.",
        "jargon": "Baking powder releases CO2 and Maillard browning forms the crust.",
        "joke": "The first pancake is always a sacrifice to the pan.",
    },
    {
        "prompt": "Explain photosynthesis.",
        "core": "Plants use sunlight to turn water and carbon dioxide into sugar and oxygen.",
        "steps": ("Leaves catch sunlight", "Water and CO2 combine", "Sugar is made, O2 released"),
        "detail": "It happens in leaves and feeds nearly every food chain.",
        "jargon": "Chlorophyll drives light reactions; the Calvin cycle fixes carbon.",
        "joke": "Plants are basically solar-powered snack factories.",
    },
    {
        "prompt": "How can I sleep better?",
        "core": "Keep a regular bedtime, avoid screens late and keep your room cool and dark.",
        "steps": ("Fixed bedtime", "No screens after 10 pm", "Cool, dark bedroom"),
        "detail": "Skip caffeine after lunch and get daylight in the morning.",
        "jargon": "Blue light suppresses melatonin and delays your circadian rhythm.",
        "joke": "Counting sheep is optional, but the sheep enjoy it.",
    },
    {
        "prompt": "What is a black hole?",
        "core": "It is a region where gravity is so strong that not even light can escape.",
        "steps": ("A huge star burns out", "Its core collapses", "Not even light escapes"),
        "detail": "Some weigh as much as billions of suns.",
        "jargon": "Past the event horizon, escape velocity exceeds light speed.",
        "joke": "The ultimate vacuum cleaner: it never needs emptying.",
    },
    {
        "prompt": "How do I start running?",
        "core": "Begin with short, easy runs mixed with walking, three times a week.",
        "steps": ("Mix running and walking", "Go three times a week", "Add a few minutes weekly"),
        "detail": "Good shoes help, and a slow build-up prevents most injuries.",
        "jargon": "Keep most runs in zone 2 to build your aerobic base.",
        "joke": "Your couch will miss you, but it will cope.",
    },
    {
        "prompt": "How do I save money each month?",
        "core": "Set a budget, move a fixed sum to savings on payday and cut what you don't value.",
        "steps": ("Track spending a month", "Automate a payday transfer", "Cancel unused plans"),
        "detail": "Even ten percent adds up, and a rainy-day fund avoids debt.",
        "jargon": "Try the 50/30/20 rule and a high-yield savings account.",
        "joke": "Your wallet will finally stop filing complaints.",
    },
    {
        "prompt": "Why is the sky blue?",
        "core": "Air scatters blue sunlight more than red light, so blue reaches us from all over.",
        "steps": ("Sunlight holds all colours", "Air scatters blue most", "Blue fills the sky"),
        "detail": "At sunset light crosses more air, so reds and oranges remain.",
        "jargon": "Rayleigh scattering goes as the inverse fourth power of wavelength.",
        "joke": "The sky simply has excellent taste in colour.",
    },
    {
        "prompt": "How do I learn a new language?",
        "core": "Practise a little daily, learn common words first and speak with people early.",
        "steps": ("Learn the top 500 words", "Practise 15 minutes a day", "Talk with natives"),
        "detail": "Shows with subtitles and a small notebook both help a lot.",
        "jargon": "Spaced repetition and comprehensible input drive vocabulary retention.",
        "joke": "Mistakes are free, so make plenty of them.",
    },
    {
        "prompt": "How should I water houseplants?",
        "core": "Water when the top inch of soil feels dry and make sure the pot can drain.",
        "steps": ("Test the soil with a finger", "Water until it drains", "Empty the saucer"),
        "detail": "Most plants need less in winter; too much water kills more.",
        "jargon": "Waterlogged soil starves roots of oxygen and invites root rot.",
        "joke": "Sadly, your fern will not text you when thirsty.",
    },
    {
        "prompt": "What causes inflation?",
        "core": "Prices rise when demand outpaces supply or money grows faster than output.",
        "steps": ("Demand outruns supply", "Costs like energy rise", "Prices climb everywhere"),
        "detail": "Central banks usually respond by raising interest rates.",
        "jargon": "Demand-pull and cost-push shocks interact with monetary expansion.",
        "joke": "It is why your coffee costs more every time you blink.",
    },
    {
        "prompt": "How do I write a good resume?",
        "core": "Keep it to one page, lead with results and tailor it to each job.",
        "steps": ("Put top results first", "Match words from the job ad", "Keep one clean page"),
        "detail": "Use numbers where you can, such as sales grown or hours saved.",
        "jargon": "Use standard headings so applicant tracking systems parse it.",
        "joke": "Sadly, professional napper is not a recognised skill.",
    },
    {
        "prompt": "How do vaccines work?",
        "core": "They train your immune system to recognise a germ without making you sick.",
        "steps": ("You meet a harmless germ part", "You make antibodies", "Memory cells wait"),
        "detail": "If the real germ shows up later, your body fights it off fast.",
        "jargon": "Antigen exposure primes B and T cells and builds immune memory.",
        "joke": "Think of it as a wanted poster for germs.",
    },
)

TEXT_ATTRIBUTES = ("detail", "technical", "bullets", "humor", "polite")

# Named tastes over TEXT_ATTRIBUTES (reward per attribute switched on).
_NAMED_TASTES = (
    ("concise", (-1.5, -0.5, 1.5, -0.5, -1.0)),
    ("expert", (1.0, 2.0, 0.0, -1.5, 0.0)),
    ("friendly", (0.0, -1.5, -0.5, 2.0, 1.0)),
    ("courteous", (0.5, 0.0, -1.0, -1.0, 2.0)),
)


def _compose_response(topic, flags):
    detail, technical, bullets, humor, polite = flags
    parts = ["Happy to help!"] if polite else []
    parts.append("In short:\n- " + "\n- ".join(topic["steps"]) if bullets else topic["core"])
    if detail:
        parts.append(topic["detail"])
    if technical:
        parts.append(topic["jargon"])
    if humor:
        parts.append(topic["joke"] + " \U0001f604")
    if polite:
        parts.append("Good luck!")
    return ("\n" if bullets else " ").join(parts)


def _candidate_flags(topic_index, n_candidates):
    """A fixed set of attribute combinations per topic, independent of any seed.

    The pool is the same for every ``random_state``, so embeddings of the texts can be
    cached once and reused across simulated worlds.
    """
    combos = np.array([[(c >> k) & 1 for k in range(len(TEXT_ATTRIBUTES))] for c in range(32)])
    chosen = np.random.RandomState(7919 + topic_index).permutation(len(combos))[:n_candidates]
    return combos[np.sort(chosen)]


def _text_pool(n_prompts, n_candidates):
    rows = []
    for t, topic in enumerate(_TOPICS[:n_prompts]):
        for flags in _candidate_flags(t, n_candidates):
            response = _compose_response(topic, flags)
            rows.append({"prompt": topic["prompt"], "response": response,
                         **dict(zip(TEXT_ATTRIBUTES, flags.tolist())), "n_chars": len(response)})
    return pd.DataFrame(rows)


def _taste_matrix(named, n_tastes, rng):
    """The first ``n_tastes`` named tastes, then random directions of the same mean norm."""
    names = [name for name, _ in named[:n_tastes]]
    tastes = [np.array(values, dtype=float) for _, values in named[:n_tastes]]
    norm = np.mean([np.linalg.norm(values) for _, values in named])
    for k in range(len(tastes), n_tastes):
        direction = rng.standard_normal(len(named[0][1]))
        tastes.append(norm * direction / np.linalg.norm(direction))
        names.append(f"taste{k}")
    return np.vstack(tastes), names


def make_text_preference_world(
    n_users=60,
    n_pairs_per_user=30,
    *,
    n_prompts=12,
    n_tastes=3,
    n_candidates=10,
    concentration=0.5,
    scale=2.0,
    noise=1.0,
    random_state=None,
):
    """Generate a small world of readable prompts, responses and users with tastes.

    Each of ``n_prompts`` everyday prompts ("How do I make pancakes?", "Why is the sky
    blue?", ...) has a fixed pool of ``n_candidates`` English responses assembled from
    templates. A response switches five binary attributes on or off: ``detail`` (an
    extra explanatory sentence), ``technical`` (a jargon sentence), ``bullets`` (steps
    as a bullet list instead of one sentence), ``humor`` (a joke and an emoji) and
    ``polite`` ("Happy to help!" ... "Good luck!"). The pool does not depend on
    ``random_state`` (120 distinct texts with the defaults, all under 300
    characters), so embeddings can be cached.

    There are ``n_tastes`` taste directions on the attribute vector; the first four
    are named (``concise``, ``expert``, ``friendly``, ``courteous``), further ones are
    random. User ``u`` has simplex weights ``w_u ~ Dirichlet(concentration)`` over the
    tastes and reward ``r_u(response) = scale * w_u . T a(response)``. Each pair picks a prompt
    and two distinct candidates uniformly; ``y ~ Bernoulli(sigmoid((r_u(a) - r_u(b)) /
    noise))``.

    Parameters
    ----------
    n_users : int, default=60
        Number of users.
    n_pairs_per_user : int, default=30
        Number of pairs per user.
    n_prompts : int, default=12
        Number of prompts, at most 12.
    n_tastes : int, default=3
        Number of taste directions users mix.
    n_candidates : int, default=10
        Candidate responses per prompt, between 2 and 32.
    concentration : float, default=0.5
        Dirichlet concentration of the user weights (small: users follow one taste).
    scale : float, default=2.0
        Multiplies every reward (the named tastes have norm about 2.5).
    noise : float, default=1.0
        Bradley-Terry temperature; ``0`` gives deterministic labels.
    random_state : int, RandomState instance or None, default=None
        Seed for tastes beyond the named four, users and pairs.

    Returns
    -------
    df : DataFrame of shape (n_users * n_pairs_per_user, 4)
        Columns ``user_id, prompt, response_a, response_b``; rows ordered by user.
    y : ndarray of shape (n_samples,)
        Labels in ``{0, 1}`` (int64); ``1`` means ``response_a`` is preferred.
    truth : :class:`~sklearn.utils.Bunch`
        ``attributes`` DataFrame, one row per candidate (``prompt, response``, the five
        attribute flags, ``n_chars``); ``attribute_names``; ``tastes`` (n_tastes,
        n_attributes) and ``taste_names``; ``user_weights`` (n_users, n_tastes) and
        ``users``; ``rewards`` (n_users, n_responses) true reward of every user for
        every row of ``attributes``; ``candidates`` dict prompt -> list of responses;
        ``logits`` and ``oracle_proba`` per pair.

    See Also
    --------
    candidate_responses : The candidate pool of one prompt, for best-of-N demos.

    Examples
    --------
    >>> from sklearn_lore.datasets import make_text_preference_world
    >>> df, y, truth = make_text_preference_world(n_users=4, n_pairs_per_user=5,
    ...                                           random_state=0)
    >>> df.columns.tolist()
    ['user_id', 'prompt', 'response_a', 'response_b']
    >>> df.shape, truth.tastes.shape, truth.taste_names
    ((20, 4), (3, 5), ['concise', 'expert', 'friendly'])
    """
    n_users = _check_int("n_users", n_users, 1)
    n_pairs = _check_int("n_pairs_per_user", n_pairs_per_user, 1)
    n_prompts = _check_int("n_prompts", n_prompts, 1)
    if n_prompts > len(_TOPICS):
        raise ValueError(f"n_prompts must be at most {len(_TOPICS)}, got {n_prompts}.")
    n_tastes = _check_int("n_tastes", n_tastes, 1)
    n_candidates = _check_int("n_candidates", n_candidates, 2)
    if n_candidates > 32:
        raise ValueError(f"n_candidates must be at most 32, got {n_candidates}.")
    concentration = _check_real("concentration", concentration, 0.0, strict=True)
    scale = _check_real("scale", scale, 0.0)
    noise = _check_real("noise", noise, 0.0)
    rng = check_random_state(random_state)

    pool = _text_pool(n_prompts, n_candidates)
    tastes, taste_names = _taste_matrix(_NAMED_TASTES, n_tastes, rng)
    user_weights = _draw_simplex_weights(n_users, n_tastes, concentration, rng)
    with np.errstate(over="ignore", invalid="ignore"):
        rewards = scale * user_weights @ tastes @ pool[list(TEXT_ATTRIBUTES)].to_numpy(float).T

    n_samples = n_users * n_pairs
    user_index = np.repeat(np.arange(n_users), n_pairs)
    prompt_index = rng.randint(n_prompts, size=n_samples)
    first = rng.randint(n_candidates, size=n_samples)
    # A second, distinct candidate: shift by 1 .. n_candidates - 1 (uniform, ordered).
    second = (first + 1 + rng.randint(n_candidates - 1, size=n_samples)) % n_candidates
    rows_a = prompt_index * n_candidates + first
    rows_b = prompt_index * n_candidates + second
    with np.errstate(over="ignore", invalid="ignore"):
        logits = rewards[user_index, rows_a] - rewards[user_index, rows_b]
    if not np.isfinite(logits).all():
        # a NaN logit would be labelled 0 without a word
        raise ValueError(f"scale={scale!r} makes the rewards overflow the float range; "
                         "use a moderate scale (the default is 2).")
    y, proba = _bernoulli_labels(logits, noise, rng)

    users = _user_names(n_users)
    responses = pool["response"].to_numpy(dtype=object)
    df = pd.DataFrame({
        "user_id": users[user_index],
        "prompt": pool["prompt"].to_numpy(dtype=object)[rows_a],
        "response_a": responses[rows_a],
        "response_b": responses[rows_b],
    })
    candidates = {p: g["response"].tolist() for p, g in pool.groupby("prompt", sort=False)}
    truth = Bunch(
        attributes=pool,
        attribute_names=list(TEXT_ATTRIBUTES),
        tastes=tastes,
        taste_names=taste_names,
        user_weights=user_weights,
        users=users,
        rewards=rewards,
        candidates=candidates,
        logits=logits,
        oracle_proba=proba,
    )
    return df, y, truth


def candidate_responses(truth, prompt):
    """Return the candidate responses of one prompt of a text preference world.

    Parameters
    ----------
    truth : :class:`~sklearn.utils.Bunch`
        The third value returned by :func:`make_text_preference_world`.
    prompt : str
        One of the world's prompts (the keys of ``truth.candidates``).

    Returns
    -------
    responses : list of str
        The prompt's candidate pool, in the row order of ``truth.attributes``.

    Examples
    --------
    >>> from sklearn_lore.datasets import make_text_preference_world, candidate_responses
    >>> _, _, truth = make_text_preference_world(n_users=2, random_state=0)
    >>> len(candidate_responses(truth, "How do I make pancakes?"))
    10
    """
    candidates = getattr(truth, "candidates", None)
    if not isinstance(candidates, dict):
        raise ValueError("truth must be the Bunch returned by make_text_preference_world.")
    if prompt not in candidates:
        raise ValueError(f"Unknown prompt {prompt!r}; known prompts: {list(candidates)}.")
    return list(candidates[prompt])


# --------------------------------------------------------------------------- pairs from ratings


def _enumerate_pairs(counts):
    """All within-user row pairs ``(i, j)``, ``i < j``, for rows grouped by user.

    ``counts[u]`` rows belong to user ``u`` (rows contiguous, users in order). Pairs
    come out in the order (user, i, j), built with one vectorized step per distinct
    group size instead of a loop over users.
    """
    row_start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    n_pairs = counts * (counts - 1) // 2
    pair_start = np.concatenate(([0], np.cumsum(n_pairs)[:-1]))
    first = np.empty(int(n_pairs.sum()), dtype=np.int64)
    second = np.empty_like(first)
    for m in np.unique(counts[counts >= 2]):
        group = np.flatnonzero(counts == m)
        ti, tj = np.triu_indices(m, 1)
        dest = pair_start[group][:, None] + np.arange(ti.size)
        first[dest] = row_start[group][:, None] + ti
        second[dest] = row_start[group][:, None] + tj
    return first, second


def _first_k_per_group(groups, k):
    """Boolean mask of the first ``k`` entries of each run of equal sorted ``groups``."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    lengths = np.diff(np.r_[starts, groups.size])
    rank = np.arange(groups.size) - np.repeat(starts, lengths)
    return rank < k


# pairs enumerated at once at most (about 100 MB of working arrays)
_PAIR_CHUNK = 1 << 22


def _eligible(first, second, values, margin):
    diff = np.abs(values[first] - values[second])
    keep = (diff >= margin) & (diff > 0)
    return first[keep], second[keep]


def _select_pairs(user_codes, values, counts, margin, k, rng, chunk=_PAIR_CHUNK):
    """Steps 2 and 3 of :func:`pairs_from_ratings`'s recipe in bounded memory.

    Rows are sorted by (user, item). Each user's eligible pairs get one key
    ``rng.randint(2**40)`` in enumeration order (users one after the other; drawn in
    chunks, the stream is that of one draw) and the ``k`` smallest keys are kept, ties
    in enumeration order. Users are taken in groups of at most ``chunk`` pairs; a user
    with more is enumerated in blocks of rows, keeping its best ``k`` so far. Returns
    the kept ``first, second`` row indices, by user, in increasing key order.
    """
    row_start = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    n_pairs = counts.astype(np.int64) * (counts - 1) // 2
    kept_first, kept_second = [], []
    u, n_users = 0, counts.size
    while u < n_users:
        if n_pairs[u] > chunk:  # one user, in blocks of rows
            f, s_ = _one_user_pairs(row_start[u], int(counts[u]), values, margin, k, rng,
                                    chunk)
            kept_first.append(f)
            kept_second.append(s_)
            u += 1
            continue
        v = u + 1  # users u .. v-1 together, at most ``chunk`` pairs
        total = n_pairs[u]
        while v < n_users and n_pairs[v] <= chunk and total + n_pairs[v] <= chunk:
            total += n_pairs[v]
            v += 1
        first, second = _enumerate_pairs(counts[u:v])
        first, second = _eligible(first + row_start[u], second + row_start[u], values, margin)
        keys = rng.randint(2**40, size=first.size, dtype=np.int64)
        pair_users = user_codes[first]
        # by user, then key, ties in enumeration order: the pairs come user after user,
        # so one stable sort of (the user's rank among these, shifted past the 40 bits
        # of a key) + key gives that order (3 times faster than np.lexsort)
        rank = np.zeros(first.size, dtype=np.int64)
        if first.size:
            np.cumsum(pair_users[1:] != pair_users[:-1], out=rank[1:])
        by_key = np.argsort((rank << 40) | keys, kind="stable")
        by_key = by_key[_first_k_per_group(pair_users[by_key], k)]
        kept_first.append(first[by_key])
        kept_second.append(second[by_key])
        u = v
    if not kept_first:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(kept_first), np.concatenate(kept_second)


def _one_user_pairs(start, m, values, margin, k, rng, chunk):
    """One user's ``k`` eligible pairs of smallest key, enumerating its pairs (i, j),
    i < j, in blocks of rows i of at most about ``chunk`` pairs."""
    best_keys = np.zeros(0, dtype=np.int64)
    best_first = best_second = np.zeros(0, dtype=np.int64)
    i = 0
    while i < m - 1:
        rows = max(1, chunk // max(m - 1 - i, 1))
        stop = min(m - 1, i + rows)
        ti = np.repeat(np.arange(i, stop), m - 1 - np.arange(i, stop))
        tj = np.concatenate([np.arange(r + 1, m) for r in range(i, stop)])
        first, second = _eligible(start + ti, start + tj, values, margin)
        keys = rng.randint(2**40, size=first.size, dtype=np.int64)
        # the best so far come first: earlier in enumeration, they win ties
        keys = np.concatenate((best_keys, keys))
        first = np.concatenate((best_first, first))
        second = np.concatenate((best_second, second))
        order = np.argsort(keys, kind="stable")[:k]
        best_keys, best_first, best_second = keys[order], first[order], second[order]
        i = stop
    return best_first, best_second


def _item_texts(text, items):
    if text is None:
        return np.asarray(items, dtype=object)
    mapping = pd.Series(text) if isinstance(text, dict) else text
    if not isinstance(mapping, pd.Series):
        kind = type(text).__name__
        raise ValueError(f"text must be a dict, a pandas Series or None, got {kind}.")
    twice = mapping.index[mapping.index.duplicated() & mapping.index.isin(items)]
    if len(twice):
        raise ValueError(
            f"text has several entries for {len(twice.unique())} item(s), e.g. "
            f"{list(twice.unique()[:5])}; give one text per item.")
    missing = pd.Index(items).difference(mapping.index)
    if len(missing):
        raise ValueError(f"text has no entry for {len(missing)} item(s), e.g. {list(missing[:5])}.")
    texts = mapping.loc[list(items)].to_numpy(dtype=object)
    bad = [item for item, t in zip(items, texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(
            f"text must map every item to a str; {len(bad)} item(s) have another value "
            f"(a missing text?), e.g. {bad[0]!r} -> {mapping.loc[bad[0]]!r}.")
    return texts


def pairs_from_ratings(
    ratings,
    *,
    user_col="user_id",
    item_col="item",
    rating_col="rating",
    text=None,
    n_pairs_per_user=40,
    margin=2.0,
    prompt="",
    random_state=0,
):
    """Build within-user preference pairs from explicit ratings.

    Two items rated by the same user form a pair when their ratings differ by at least
    ``margin``; the better-rated item is the preferred one. Exact ties never form a
    pair. The recipe (it defines the Jester benchmark: 40 pairs per user, margin 2,
    seed 0) is, with ``rng = check_random_state(random_state)``:

    1. Sort the rows by (user, item), users and items in sorted order of their ids.
    2. Enumerate each user's unordered pairs ``(i, j)``, ``i < j`` in that order, users
       one after the other, and keep those with ``|rating_i - rating_j| >= margin``.
    3. Draw one key ``rng.randint(2**40, dtype=np.int64)`` per kept pair, in
       enumeration order, and keep each user's ``n_pairs_per_user`` pairs with the
       smallest keys (stable sort: a random subset without replacement). Users with
       fewer eligible pairs keep all of theirs; users with none contribute no row.
    4. Draw one ``rng.uniform()`` per kept pair (in the order of the output rows);
       below 0.5 the pair is written as ``(j, i)`` instead of ``(i, j)``.

    Output rows are grouped by user (sorted ids) in increasing key order. Ids are
    sorted as values whatever the column's dtype (a categorical column's category order
    is not used).

    Every pair of a user's items is enumerated, in chunks of bounded memory: time grows
    with the square of a user's number of ratings, memory does not (Jester's 100 jokes
    per user: 3 s for 5,000 users; one user with 10,000 ratings: 6 s and a 0.5 GB peak
    on a 2-core CPU, where enumerating every pair at once took 16 s and 3.1 GB).

    Parameters
    ----------
    ratings : pandas or polars DataFrame
        One row per (user, item) with a finite numeric rating; a (user, item) combination
        may appear only once.
    user_col, item_col, rating_col : str, default="user_id", "item", "rating"
        Column names in ``ratings``.
    text : dict, Series or None, default=None
        Maps item id to the text (a str) shown as a response. If None, the response
        columns hold the item ids.
    n_pairs_per_user : int, default=40
        Maximum number of pairs per user.
    margin : float, default=2.0
        Minimum absolute rating difference of a pair.
    prompt : str, default=""
        Constant prompt written to the ``prompt`` column (e.g. "Tell me a joke.").
    random_state : int, RandomState instance or None, default=0
        Seed of the sampling above.

    Returns
    -------
    pairs : DataFrame
        Columns ``user_id, prompt, item_a, item_b, response_a, response_b, label``;
        ``label`` is 1 (int64) when ``item_a`` is rated higher.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_lore.datasets import pairs_from_ratings
    >>> ratings = pd.DataFrame({"user_id": ["a", "a", "a", "b", "b"],
    ...                         "item": ["x", "y", "z", "x", "y"],
    ...                         "rating": [5.0, 1.0, 4.0, 2.0, 2.5]})
    >>> pairs = pairs_from_ratings(ratings, margin=2.0)
    >>> len(pairs), pairs["user_id"].tolist()
    (2, ['a', 'a'])
    >>> bool(((pairs["item_a"] == "x") == (pairs["label"] == 1)).all())
    True
    """
    ratings = _check_columns(ratings, [user_col, item_col, rating_col], "ratings")
    n_pairs_per_user = _check_int("n_pairs_per_user", n_pairs_per_user, 1)
    margin = _check_real("margin", margin, 0.0)
    rng = check_random_state(random_state)
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str (the text written to every pair's prompt), "
                        f"got {type(prompt).__name__}.")
    values = pd.to_numeric(ratings[rating_col], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise ValueError(f"Column {rating_col!r} must hold finite numbers without missing "
                         "values.")
    for column in (user_col, item_col):
        blank = ratings[column].isna().to_numpy()
        if blank.any():
            raise ValueError(f"Column {column!r} has a missing value at row "
                             f"{ratings.index.tolist()[int(np.argmax(blank))]!r}.")
    if ratings.duplicated([user_col, item_col]).any():
        raise ValueError(f"Each ({user_col}, {item_col}) combination may appear only once.")

    # as objects: a categorical column would be sorted by its category order, not its ids
    user_codes, users = pd.factorize(ratings[user_col].to_numpy(dtype=object), sort=True)
    item_codes, items = pd.factorize(ratings[item_col].to_numpy(dtype=object), sort=True)
    order = np.lexsort((item_codes, user_codes))
    user_codes, item_codes, values = user_codes[order], item_codes[order], values[order]

    counts = np.bincount(user_codes, minlength=len(users))
    first, second = _select_pairs(user_codes, values, counts, margin, n_pairs_per_user, rng)

    swap = rng.uniform(size=first.size) < 0.5
    row_a = np.where(swap, second, first)
    row_b = np.where(swap, first, second)
    texts = _item_texts(text, items)
    item_values = np.asarray(items, dtype=object)
    return pd.DataFrame({
        "user_id": np.asarray(users, dtype=object)[user_codes[row_a]],
        "prompt": np.full(row_a.size, prompt, dtype=object),
        "item_a": item_values[item_codes[row_a]],
        "item_b": item_values[item_codes[row_b]],
        "response_a": texts[item_codes[row_a]],
        "response_b": texts[item_codes[row_b]],
        "label": (values[row_a] > values[row_b]).astype(np.int64),
    })


# --------------------------------------------------------------------------- chosen / rejected


def pairs_from_chosen_rejected(
    df,
    *,
    prompt_col="prompt",
    chosen_col="chosen",
    rejected_col="rejected",
    user_col=None,
    random_state=0,
):
    """Turn chosen/rejected rows into randomized a/b pairs with balanced labels.

    A random half of the rows (``floor(n / 2)`` or ``ceil(n / 2)``, chosen by a
    permutation drawn from ``random_state``) puts the chosen response in position a
    (label 1), the others put it in position b (label 0), so a model cannot learn the
    position instead of the content.

    Parameters
    ----------
    df : pandas or polars DataFrame
        One row per comparison; the prompt, chosen and rejected columns hold texts (str).
    prompt_col, chosen_col, rejected_col : str, default="prompt", "chosen", "rejected"
        Column names in ``df``.
    user_col : str or None, default=None
        If given, this column is carried over as ``user_id`` (first column).
    random_state : int, RandomState instance or None, default=0
        Seed of the a/b assignment.

    Returns
    -------
    pairs : DataFrame
        Columns ``prompt, response_a, response_b`` (``user_id`` first if
        ``user_col``), index reset.
    y : ndarray of shape (n_rows,)
        Labels (int64); 1 when ``response_a`` is the chosen response.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_lore.datasets import pairs_from_chosen_rejected
    >>> df = pd.DataFrame({"prompt": ["p1", "p2"], "chosen": ["good1", "good2"],
    ...                    "rejected": ["bad1", "bad2"]})
    >>> pairs, y = pairs_from_chosen_rejected(df, random_state=0)
    >>> pairs.columns.tolist(), int(y.sum())
    (['prompt', 'response_a', 'response_b'], 1)
    """
    columns = [prompt_col, chosen_col, rejected_col] + ([user_col] if user_col is not None else [])
    df = _check_columns(df, columns, "df")
    rng = check_random_state(random_state)
    n = len(df)
    y = rng.permutation(np.arange(n, dtype=np.int64) % 2)
    if n % 2 and rng.uniform() < 0.5:
        y = 1 - y  # the odd row's label a fair coin too: ceil(n / 2) ones half the time
    chosen = df[chosen_col].to_numpy(dtype=object)
    rejected = df[rejected_col].to_numpy(dtype=object)
    prompts = df[prompt_col].to_numpy(dtype=object)
    for column, values in ((prompt_col, prompts), (chosen_col, chosen),
                           (rejected_col, rejected)):
        bad = np.flatnonzero([not isinstance(v, str) for v in values])
        if bad.size:
            raise ValueError(f"Column {column!r} must hold texts; row "
                             f"{df.index[bad[0]]!r} holds {values[bad[0]]!r}.")
    pairs = pd.DataFrame({
        "prompt": prompts,
        "response_a": np.where(y == 1, chosen, rejected),
        "response_b": np.where(y == 1, rejected, chosen),
    })
    if user_col is not None:
        pairs.insert(0, "user_id", df[user_col].to_numpy(dtype=object))
    return pairs, y


def split_hh_transcript(chosen, rejected):
    """Split two HH-RLHF transcripts into a shared prompt and two final replies.

    Transcripts look like ``"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ..."``. The
    prompt is everything before the last ``"\\n\\nAssistant:"``, which must be
    identical in both transcripts; the responses are what follows it.

    Parameters
    ----------
    chosen, rejected : str
        The two transcripts.

    Returns
    -------
    split : tuple of (str, str, str) or None
        ``(prompt, chosen_response, rejected_response)``, each stripped of surrounding
        whitespace, or None when either lacks an assistant turn or the conversations
        differ before their last assistant turn.

    Examples
    --------
    >>> from sklearn_lore.datasets import split_hh_transcript
    >>> split_hh_transcript("\\n\\nHuman: Hi\\n\\nAssistant: Hello!",
    ...                     "\\n\\nHuman: Hi\\n\\nAssistant: Go away.")
    ('Human: Hi', 'Hello!', 'Go away.')
    >>> split_hh_transcript("\\n\\nHuman: Hi\\n\\nAssistant: A",
    ...                     "\\n\\nHuman: Yo\\n\\nAssistant: B") is None
    True
    """
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise ValueError("chosen and rejected must both be strings.")
    cut_c, cut_r = chosen.rfind(_HH_ASSISTANT), rejected.rfind(_HH_ASSISTANT)
    if cut_c < 0 or cut_r < 0 or chosen[:cut_c] != rejected[:cut_r]:
        return None
    start = len(_HH_ASSISTANT)
    return chosen[:cut_c].strip(), chosen[cut_c + start:].strip(), rejected[cut_r + start:].strip()


# --------------------------------------------------------------------------- simulated users

_APOS = "['\u2019]"
_POLITE = re.compile(
    r"\b(?:please|thanks?|thank you|sorry|glad|happy to|appreciate|welcome)\b", re.IGNORECASE
)
_REFUSAL = re.compile(
    rf"\b(?:i can(?:no|{_APOS})t|i won{_APOS}?t|i{_APOS}?m not (?:able|comfortable|going)"
    rf"|i am not (?:able|comfortable)"
    rf"|i don{_APOS}?t (?:think i should|feel comfortable|want to help)"
    rf"|not (?:appropriate|okay|ok|legal)|i{_APOS}?d rather not|illegal|against the law)\b",
    re.IGNORECASE,
)
_LIST_LINE = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+", re.MULTILINE)
_YOU = re.compile(r"\byou(?:r|rs|rself)?\b", re.IGNORECASE)

RESPONSE_ATTRIBUTES = (
    "log_words", "questions", "politeness", "refusal", "listing", "second_person"
)

# Named tastes over RESPONSE_ATTRIBUTES. "brief" and "thorough" oppose each other on
# length, so the population average is weak. The weights favour the attributes that
# MiniLM sentence embeddings of HH-RLHF replies encode best (cross-validated ridge R^2:
# log_words 0.78, second_person 0.49, politeness 0.36, questions 0.19, refusal 0.12,
# listing about 0), so that an embedding-based model can recover the tastes.
_NAMED_RESPONSE_TASTES = (
    ("brief", (-1.0, 0.0, 0.0, 0.0, 0.0, -0.3)),
    ("thorough", (1.0, 0.0, 0.3, 0.0, 0.0, 0.0)),
    ("cautious", (0.0, 0.0, 0.6, 0.4, 0.0, -0.7)),
    ("engaging", (0.0, 0.5, 0.0, 0.0, 0.0, 1.0)),
)


def response_attributes(texts):
    """Measure simple, interpretable attributes of response texts.

    Parameters
    ----------
    texts : iterable of str
        Responses.

    Returns
    -------
    attributes : DataFrame of shape (n_texts, 6)
        Float columns: ``log_words`` (log(1 + number of words)), ``questions`` (number
        of "?"), ``politeness`` (count of words such as please, thanks, sorry, glad),
        ``refusal`` (1 if the text declines or warns: "I can't", "not appropriate",
        "illegal", ...), ``listing`` (number of bullet or numbered lines) and
        ``second_person`` (share of words that are "you", "your", ...).

    Examples
    --------
    >>> from sklearn_lore.datasets import response_attributes
    >>> att = response_attributes(["Sorry, I can't help with that.", "Sure! Do you need more?"])
    >>> att["refusal"].tolist(), att["questions"].tolist()
    ([1.0, 0.0], [0.0, 1.0])
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a sequence of strings, not a single str.")
    if isinstance(texts, (pd.DataFrame, Mapping)) or np.ndim(texts) > 1:
        # iterating a DataFrame or a dict gives its column names or keys, not its texts
        raise TypeError(f"texts must be a 1-d sequence of strings, not a "
                        f"{type(texts).__name__}; pass one column (df['response']).")
    texts = pd.Series(list(texts), dtype=object)
    if not texts.map(lambda t: isinstance(t, str)).all():
        raise ValueError("texts must all be strings.")
    n_words = texts.str.split().str.len().to_numpy(dtype=float)
    return pd.DataFrame({
        "log_words": np.log1p(n_words),
        "questions": texts.str.count(r"\?").to_numpy(dtype=float),
        "politeness": texts.str.count(_POLITE).to_numpy(dtype=float),
        "refusal": texts.str.contains(_REFUSAL).to_numpy(dtype=float),
        "listing": texts.str.count(_LIST_LINE).to_numpy(dtype=float),
        "second_person": texts.str.count(_YOU).to_numpy(dtype=float) / np.maximum(n_words, 1.0),
    })


def simulate_users_on_pairs(
    pairs,
    *,
    n_users=20,
    n_tastes=3,
    concentration=0.3,
    scale=4.0,
    noise=1.0,
    human_labels=None,
    human_weight=0.0,
    response_a_col="response_a",
    response_b_col="response_b",
    random_state=0,
):
    """Simulate users with differing tastes who label real response pairs.

    Real chat preference data such as HH-RLHF have no annotator ids. This function
    makes a personalization benchmark out of them:

    1. ``A = response_attributes(texts)`` for both responses of every pair, each column
       standardized by its mean and standard deviation over all responses.
    2. ``n_tastes`` taste directions ``T`` (n_tastes, n_attributes) of unit norm. The
       first four are named: ``brief`` (short), ``thorough`` (long, polite),
       ``cautious`` (polite, refusing, impersonal) and ``engaging`` (questions,
       addressing the reader); further ones are random. Brief and thorough users
       disagree outright, so a single global reward fits them poorly.
    3. Users ``u0 ..`` get weights ``w_u ~ Dirichlet(concentration)`` over the tastes;
       pairs are dealt to users in equal shares by a random permutation.
    4. The logit of a pair is ``scale * (A_a - A_b) . T^T w_u`` and
       ``P(y = 1) = human_weight * human_label + (1 - human_weight) *
       sigmoid(logit / noise)``: with ``human_weight > 0`` a share of labels is the
       original human judgement.

    Parameters
    ----------
    pairs : pandas or polars DataFrame
        Pairs with response columns, e.g. from :func:`pairs_from_chosen_rejected`.
    n_users : int, default=20
        Number of simulated users. The default gives HH-RLHF's 2,307 pairs about 115
        pairs per user, enough for a 384-dimensional embedding model to tell users apart.
    n_tastes : int, default=3
        Number of taste directions.
    concentration : float, default=0.3
        Dirichlet concentration of user weights (small: users follow one taste).
    scale : float, default=4.0
        Logit scale: the standard deviation of a single taste's logit is about
        ``scale * sqrt(2)`` over pairs of unrelated responses.
    noise : float, default=1.0
        Bradley-Terry temperature; ``0`` gives deterministic labels.
    human_labels : array-like of shape (n_pairs,) or None, default=None
        Original labels (1 when ``response_a`` was chosen); needed if
        ``human_weight > 0``.
    human_weight : float in [0, 1], default=0.0
        Probability that a label is the original human label.
    response_a_col, response_b_col : str, default="response_a", "response_b"
        Column names of the two responses.
    random_state : int, RandomState instance or None, default=0
        Seed for tastes, users, the assignment and the labels.

    Returns
    -------
    df : DataFrame
        ``pairs`` with a ``user_id`` column inserted first (replacing any existing
        one), index reset.
    y : ndarray of shape (n_pairs,)
        Simulated labels (int64); 1 means ``response_a`` is preferred.
    truth : :class:`~sklearn.utils.Bunch`
        ``tastes`` (n_tastes, n_attributes), ``taste_names``, ``attribute_names``,
        ``user_weights``
        (n_users, n_tastes), ``users``, ``attributes_a`` and ``attributes_b``
        (standardized, DataFrames), ``logits`` and ``oracle_proba`` per pair.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_lore.datasets import simulate_users_on_pairs
    >>> pairs = pd.DataFrame({"prompt": ["Help me?"] * 4,
    ...                       "response_a": ["Sure, here you go.", "No.", "Why?", "Yes!"],
    ...                       "response_b": ["I can't do that.", "Please ask again?",
    ...                                      "Thanks, glad to help.", "1. a\\n2. b"]})
    >>> df, y, truth = simulate_users_on_pairs(pairs, n_users=2, random_state=0)
    >>> df.columns.tolist(), sorted(set(df["user_id"]))
    (['user_id', 'prompt', 'response_a', 'response_b'], ['u0', 'u1'])
    """
    pairs = _check_columns(pairs, [response_a_col, response_b_col], "pairs")
    n_users = _check_int("n_users", n_users, 1)
    n_tastes = _check_int("n_tastes", n_tastes, 1)
    concentration = _check_real("concentration", concentration, 0.0, strict=True)
    scale = _check_real("scale", scale, 0.0)
    noise = _check_real("noise", noise, 0.0)
    human_weight = _check_real("human_weight", human_weight, 0.0)
    if human_weight > 1:
        raise ValueError(f"human_weight must be in [0, 1], got {human_weight}.")
    n = len(pairs)
    if human_weight > 0:
        if human_labels is None:
            raise ValueError("human_labels are required when human_weight > 0.")
        human_labels = np.asarray(human_labels)
        if human_labels.shape != (n,) or not np.isin(human_labels, (0, 1)).all():
            raise ValueError(f"human_labels must be {n} values in {{0, 1}}.")
    rng = check_random_state(random_state)

    raw_a = response_attributes(pairs[response_a_col])
    raw_b = response_attributes(pairs[response_b_col])
    both = pd.concat([raw_a, raw_b], ignore_index=True)
    center, spread = both.mean(), both.std(ddof=0).replace(0.0, 1.0)
    att_a, att_b = (raw_a - center) / spread, (raw_b - center) / spread

    tastes, taste_names = _taste_matrix(_NAMED_RESPONSE_TASTES, n_tastes, rng)
    tastes /= np.linalg.norm(tastes, axis=1, keepdims=True)
    user_weights = _draw_simplex_weights(n_users, n_tastes, concentration, rng)
    user_index = rng.permutation(np.arange(n) % n_users)
    directions = user_weights @ tastes
    logits = scale * np.einsum("nd,nd->n", (att_a - att_b).to_numpy(), directions[user_index])
    y, proba = _bernoulli_labels(logits, noise, rng)
    if human_weight > 0:
        keep_human = rng.uniform(size=n) < human_weight
        y = np.where(keep_human, human_labels, y).astype(np.int64)
        proba = human_weight * human_labels + (1 - human_weight) * proba

    users = _user_names(n_users)
    df = pairs.drop(columns=["user_id"], errors="ignore").reset_index(drop=True)
    df.insert(0, "user_id", users[user_index])
    truth = Bunch(
        tastes=tastes,
        taste_names=taste_names,
        attribute_names=list(both.columns),
        user_weights=user_weights,
        users=users,
        attributes_a=att_a,
        attributes_b=att_b,
        logits=logits,
        oracle_proba=proba,
    )
    return df, y, truth


# --------------------------------------------------------------------------- loaders

_JESTER_FILES = ("jester5k_ratings.csv", "jester5k_jokes.csv", "jester5k_jokes_minilm_l6_v2.npz")
_JESTER_RATINGS = {"user_id": object, "joke_id": object, "rating": np.float64}
_JESTER_JOKES = {"joke_id": object, "text": object}
_JESTER_RATING_RANGE = (-10.0, 10.0)
_JESTER_NPZ = "the arrays 'ids' (1-D, the joke ids) and 'emb' (2-D, one embedding row per id)"
_HH_FILE = "harmless-base_test.jsonl.gz"
_HH_EXPECTED = (
    "gzip-compressed UTF-8 JSON lines, each an object with the string values 'chosen' and "
    "'rejected'"
)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive with members, an empty one
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number",
               float: "a number", bool: "a boolean", type(None): "null"}


def _locate(data_dir, subdir, files):
    """The folder holding ``files``: ``data_dir`` itself or ``data_dir / subdir``."""
    root = Path(data_dir)
    folders = (root, root / subdir)
    for folder in folders:
        if all((folder / f).is_file() for f in files):
            return folder
    message = (
        f"Expected the files {list(files)} in {root} or in {root / subdir}. "
        "The data are not bundled with the package; pass the folder that holds them."
    )
    if not root.exists():
        message += f" {root} does not exist."
    elif not root.is_dir():
        message += f" {root} is a file, not a folder."
    else:
        # describe the folder that holds the most of the expected names
        found = [[f for f in files if (folder / f).exists()] for folder in folders]
        best = int(len(found[1]) > len(found[0]))
        folder = folders[best]
        for name in found[best]:
            if (folder / name).is_dir():
                message += f" {folder / name} is a directory, not a file."
            elif not (folder / name).is_file():
                message += f" {folder / name} is not a regular file."
        missing = [f for f in files if f not in found[best]]
        if found[best] and missing:
            message += f" {folder} lacks {missing}."
    raise FileNotFoundError(message)


def _non_numeric_error(path, dtype, expected, err):
    """The error for a CSV file whose numeric column holds text, naming the first such cell."""
    try:
        raw = pd.read_csv(path, dtype=object)
    except ValueError:  # another fault further on; report the first one
        return ValueError(f"{path} could not be read ({err}); expected {expected}.")
    for column, kind in dtype.items():
        if kind is object or column not in raw.columns:
            continue
        values = raw[column]
        bad = np.flatnonzero(values.notna() & pd.to_numeric(values, errors="coerce").isna())
        if bad.size:
            return ValueError(
                f"{path} holds {values.iloc[bad[0]]!r} in column {column!r} at data row "
                f"{bad[0] + 1} (the header not counted); expected numbers in that column."
            )
    return ValueError(f"{path} could not be read ({err}); expected {expected}.")


def _read_csv(path, dtype, complete):
    """Read a UTF-8 CSV file with the columns of ``dtype``; malformed files name themselves.

    Parameters
    ----------
    path : Path
        The file.
    dtype : dict
        Column name to dtype, as for :func:`pandas.read_csv`; every column is required.
    complete : tuple of str
        Columns that may not hold a missing value. Checking an object (text) column of a
        big file costs about a quarter of reading it, so callers list what matters.

    Returns
    -------
    df : DataFrame
        The file as :func:`pandas.read_csv` reads it.

    Raises
    ------
    ValueError
        If the file is empty, is not UTF-8, is not well-formed CSV, has no data rows, lacks
        a column, has a missing value in a ``complete`` one or holds text in a numeric
        column.
    """
    columns = list(dtype)
    expected = f"a UTF-8 CSV file with the header '{','.join(columns)}' and one row per record"
    try:
        with warnings.catch_warnings():
            # rows wider than the header: pandas would drop their extra fields (or,
            # without index_col=False, shift every column by one) with a mere warning
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, dtype=dtype, index_col=False)
    except pd.errors.ParserWarning as err:
        raise ValueError(f"{path} is not well-formed CSV (rows have more fields than its "
                         f"header); expected {expected}.") from err
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{path} is empty; expected {expected}.") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason}); expected {expected}.") from err
    except pd.errors.ParserError as err:
        detail = str(err).strip().removeprefix("Error tokenizing data. C error: ")
        raise ValueError(f"{path} is not well-formed CSV ({detail}); expected {expected}.") from err
    except ValueError as err:
        # with a dtype per column only a numeric column that holds text fails here
        raise _non_numeric_error(path, dtype, expected, err) from err
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path} lacks the column(s) {missing}; expected {expected}, "
            f"but its header has {list(df.columns)}."
        )
    if df.empty:
        raise ValueError(f"{path} has a header but no data rows; expected {expected}.")
    for column in complete:
        blank = df[column].isna().to_numpy()
        if blank.any():
            raise ValueError(
                f"{path} has a missing value in column {column!r} at data row "
                f"{int(np.argmax(blank)) + 1} (the header not counted); every row needs one."
            )
    return df


def _read_npz(path, arrays, expected):
    """The named arrays of an ``.npz`` archive; malformed archives name themselves."""
    # numpy leaks the file it opened when the archive is damaged: hand it ours instead
    with open(path, "rb") as handle:
        head = handle.read(4)
        if not head:
            raise ValueError(f"{path} is empty; expected an .npz archive with {expected}.")
        if head not in _ZIP_MAGIC:
            raise ValueError(
                f"{path} is not an .npz (zip) archive as numpy.savez writes; expected one with "
                f"{expected}."
            )
        handle.seek(0)
        try:
            npz = np.load(handle, allow_pickle=False)
        except zipfile.BadZipFile as err:
            raise ValueError(
                f"{path} is a damaged or truncated .npz archive ({err}); expected one with "
                f"{expected}."
            ) from err
        with npz:
            missing = [name for name in arrays if name not in npz.files]
            if missing:
                raise ValueError(
                    f"{path} lacks the array(s) {missing}; expected {expected}, "
                    f"but it holds {npz.files}."
                )
            loaded = []
            for name in arrays:
                try:
                    loaded.append(npz[name])
                except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
                    raise ValueError(
                        f"The array {name!r} in {path} cannot be read ({err}); "
                        f"expected {expected}."
                    ) from err
    return loaded


def _check_jester_embeddings(path, ids, emb):
    """Refuse ``ids`` and ``emb`` arrays that cannot form the embeddings table."""
    if ids.ndim != 1:
        raise ValueError(
            f"The array 'ids' in {path} has shape {ids.shape}; expected a 1-D array of joke ids."
        )
    if emb.ndim != 2 or emb.dtype.kind not in "fiu":
        raise ValueError(
            f"The array 'emb' in {path} has shape {emb.shape} and dtype {emb.dtype}; expected "
            "a 2-D array of numbers with one row per joke id."
        )
    if emb.shape[0] != ids.shape[0]:
        raise ValueError(
            f"{path} holds {ids.shape[0]} joke ids in 'ids' but {emb.shape[0]} rows in 'emb'; "
            "expected one embedding row per id."
        )
    twice = pd.Index(ids)
    twice = twice[twice.duplicated()].unique()
    if len(twice):
        raise ValueError(
            f"The array 'ids' in {path} repeats {len(twice)} joke id(s), e.g. "
            f"{twice[:5].tolist()}; expected each id once."
        )
    if not np.isfinite(emb).all():
        row = int(np.flatnonzero(~np.isfinite(emb).all(axis=1))[0])
        raise ValueError(f"The array 'emb' in {path} holds NaN or infinity in row {row} "
                         f"(joke id {ids[row].tolist()!r}); expected finite embeddings.")


def _check_jester_ids(npz_path, ids, jokes):
    """The embeddings must be those of the jokes: the same ids (as text, how the CSV
    reads them)."""
    unknown = pd.Index(jokes["joke_id"].astype(str)).difference(pd.Index(ids.astype(str)))
    if len(unknown):
        raise ValueError(
            f"{npz_path} has no embedding for {len(unknown)} joke id(s) of the jokes file, "
            f"e.g. {unknown[:5].tolist()}; its 'ids' must name the jokes.")


def load_jester(data_dir):
    """Load the Jester5k joke ratings, joke texts and their MiniLM embeddings.

    Parameters
    ----------
    data_dir : str or path-like
        Folder holding ``jester5k_ratings.csv``, ``jester5k_jokes.csv`` and
        ``jester5k_jokes_minilm_l6_v2.npz``, or its parent (with a ``jester5k``
        subfolder).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``ratings`` DataFrame ``user_id, joke_id, rating`` (ratings in [-10, 10]);
        ``jokes`` DataFrame ``joke_id, text``; ``embeddings`` DataFrame indexed by
        ``joke_id`` with 384 float32 columns ``e0 .. e383`` (L2-normalised
        all-MiniLM-L6-v2 embeddings; ``embeddings.loc[ids].to_numpy()`` gives a
        matrix); ``prompt``: the constant prompt "Tell me a joke.".

    Raises
    ------
    FileNotFoundError
        If ``data_dir`` does not exist or neither it nor its ``jester5k`` subfolder holds
        the three files as regular files (the message says which are missing or are
        directories).
    ValueError
        If a file is malformed; the message names the file, what is wrong and what was
        expected. The CSV files must be UTF-8, well-formed, non-empty and have their
        columns; ratings must be numbers in [-10, 10] and every joke needs an id and a
        text. The ``.npz`` archive must be readable and hold a 1-D array ``ids`` of
        distinct joke ids, naming every joke of the jokes file, and a 2-D array ``emb``
        of finite numbers with one row per id.

    See Also
    --------
    pairs_from_ratings : Builds the benchmark pairs (40 per user, margin 2, seed 0).

    Examples
    --------
    >>> from sklearn_lore.datasets import load_jester, pairs_from_ratings
    >>> jester = load_jester("../shared/data")  # doctest: +SKIP
    >>> pairs = pairs_from_ratings(jester.ratings, item_col="joke_id",
    ...                            text=jester.jokes.set_index("joke_id")["text"],
    ...                            prompt=jester.prompt)  # doctest: +SKIP
    """
    folder = _locate(data_dir, "jester5k", _JESTER_FILES)
    ratings_path, jokes_path, npz_path = (folder / f for f in _JESTER_FILES)
    # missing ids are left to pairs_from_ratings, which refuses them: checking the two text
    # columns here would add about half to the loading time
    ratings = _read_csv(ratings_path, _JESTER_RATINGS, complete=("rating",))
    values = ratings["rating"].to_numpy()
    low, high = _JESTER_RATING_RANGE
    outside = ~((values >= low) & (values <= high))  # missing ratings were refused already
    if outside.any():
        row = int(np.argmax(outside))
        raise ValueError(
            f"{ratings_path} holds the rating {float(values[row])} at data row {row + 1} (the "
            f"header not counted); expected ratings in [{low:g}, {high:g}]."
        )
    jokes = _read_csv(jokes_path, _JESTER_JOKES, complete=("joke_id", "text"))
    ids, emb = _read_npz(npz_path, ("ids", "emb"), _JESTER_NPZ)
    _check_jester_embeddings(npz_path, ids, emb)
    _check_jester_ids(npz_path, ids, jokes)
    ids = ids.astype(object)
    embeddings = pd.DataFrame(emb, index=pd.Index(ids, name="joke_id"),
                              columns=[f"e{j}" for j in range(emb.shape[1])])
    return Bunch(ratings=ratings, jokes=jokes, embeddings=embeddings, prompt=JESTER_PROMPT)


def _gzip_lines(path, expected):
    """Yield ``(line number, line)`` of a gzip-compressed UTF-8 text file.

    Damaged compression and undecodable text raise a ValueError naming the file.
    """
    number = 0  # the last line read whole
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                yield number, line
    except gzip.BadGzipFile as err:
        raise ValueError(f"{path} is not a valid gzip file ({err}); expected {expected}.") from err
    except EOFError as err:
        raise ValueError(
            f"{path} is truncated: its gzip stream ends at or after line {number + 1}; "
            f"expected {expected}."
        ) from err
    except zlib.error as err:
        raise ValueError(
            f"{path} is a damaged gzip file ({err}) at or after line {number + 1}; "
            f"expected {expected}."
        ) from err
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not UTF-8 text at or after line {number + 1} ({err.reason}); "
            f"expected {expected}."
        ) from err


def _hh_record(path, number, line):
    """The ``chosen`` and ``rejected`` strings of one JSON line of an HH-RLHF file."""
    where = f"Line {number} of {path}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{where} is not valid JSON at column {err.colno} ({err.msg}); "
            "expected one JSON object per line."
        ) from err
    if not isinstance(record, dict):
        kind = _JSON_TYPES.get(type(record), type(record).__name__)
        raise ValueError(f"{where} holds {kind}, not a JSON object; expected {_HH_EXPECTED}.")
    missing = [key for key in ("chosen", "rejected") if key not in record]
    if missing:
        raise ValueError(
            f"{where} lacks the key(s) {missing}; expected {_HH_EXPECTED}, "
            f"but it has {list(record)}."
        )
    for key in ("chosen", "rejected"):
        if not isinstance(record[key], str):
            kind = _JSON_TYPES.get(type(record[key]), type(record[key]).__name__)
            raise ValueError(f"{where} has {kind} as {key!r}; expected a string (a transcript).")
    return record["chosen"], record["rejected"]


def load_hh_rlhf(data_dir):
    """Load the HH-RLHF harmless-base test split as prompt, chosen and rejected replies.

    Each transcript pair is split with :func:`split_hh_transcript`; the 5 of 2,312 pairs
    whose conversations differ before the last assistant turn are dropped, leaving
    2,307 rows. The texts contain offensive content by design.

    Parameters
    ----------
    data_dir : str or path-like
        Folder holding ``harmless-base_test.jsonl.gz``, or its parent (with a
        ``hh_rlhf_harmless_test`` subfolder).

    Returns
    -------
    df : DataFrame
        Columns ``prompt, chosen, rejected`` (the final assistant replies), in file order.

    Raises
    ------
    FileNotFoundError
        If ``data_dir`` does not exist or neither it nor its ``hh_rlhf_harmless_test``
        subfolder holds the file as a regular file.
    ValueError
        If the file is malformed; the message names the file (and the line), what is
        wrong and what was expected. It must be a complete gzip file of UTF-8 text with
        at least one non-blank line, each non-blank line a JSON object whose ``chosen``
        and ``rejected`` values are strings.

    See Also
    --------
    pairs_from_chosen_rejected, simulate_users_on_pairs

    Examples
    --------
    >>> from sklearn_lore.datasets import load_hh_rlhf, pairs_from_chosen_rejected
    >>> hh = load_hh_rlhf("../shared/data")  # doctest: +SKIP
    >>> pairs, y = pairs_from_chosen_rejected(hh)  # doctest: +SKIP
    """
    folder = _locate(data_dir, "hh_rlhf_harmless_test", (_HH_FILE,))
    path = folder / _HH_FILE
    rows = []
    n_records = 0
    with closing(_gzip_lines(path, _HH_EXPECTED)) as lines:
        for number, line in lines:
            if line.strip():
                n_records += 1
                split = split_hh_transcript(*_hh_record(path, number, line))
                if split is not None:
                    rows.append(split)
    if not n_records:
        raise ValueError(f"{path} holds no JSON records; expected {_HH_EXPECTED}.")
    return pd.DataFrame(rows, columns=["prompt", "chosen", "rejected"], dtype=object)
