"""User-aware evaluation: splits, few-shot curves and per-user metrics.

A personalized preference model is judged on two kinds of users:

- **seen users**, present in ``fit``, on their held-out comparisons;
- **unseen users**, absent from ``fit``, adapted with their first ``k`` comparisons
  (``k = 0, 5, 10, 20``: few-shot fold-in with the basis frozen) and tested on their
  later comparisons.

:func:`fewshot_split` builds that protocol from the user id of every row, and
:func:`fewshot_curve` runs it for one estimator: it fits once on the seen users'
training pairs and returns a tidy table with pooled accuracy, per-user (macro)
accuracy, log-loss and expected calibration error (:func:`expected_calibration_error`)
for every group and number of shots. Within a user, "first" means row order: rows are
expected in the order the user's comparisons should be consumed (a random order,
e.g. the key order of :func:`~sklearn_lore.datasets.pairs_from_ratings`).

The helpers work with any estimator that follows the package contract:
``fit(X, y, user_ids=...)``, ``predict_proba(X, user_ids=...)`` and, for few-shot
adaptation, ``partial_fit_users(X, y, user_ids=...)`` (or an ``adapt`` callable).
"""

import copy
import inspect
import time
import warnings
from collections.abc import Iterable, Mapping, Set
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import Bunch, check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import _num_samples

from ._ids import require_hashable
from .estimator import _check_label_values, _ids_array

__all__ = [
    "within_user_position",
    "split_users",
    "fewshot_split",
    "fewshot_curve",
    "WithinUserKFold",
    "expected_calibration_error",
    "per_user_accuracy",
    "macro_accuracy",
    "preference_metrics",
    "make_user_scorer",
]

CURVE_COLUMNS = [
    "group", "shots", "n_users", "n_pairs", "accuracy", "macro_accuracy",
    "log_loss", "ece", "fit_time", "adapt_time",
]


# --------------------------------------------------------------------------- checks


def _as_ids(user_ids, n_samples=None, name="user_ids"):
    """User ids as a 1-d array, built as the estimator builds them (``_ids_array``).

    A list of tuples stays a list of tuple ids (numpy alone would read tuples of one
    length as the rows of a 2-d array). Unordered collections (sets, dicts) and single
    values are refused: they give no id per row. A numpy array is used as it is (a
    ``datetime64`` array keeps its dtype, so splits return ids of that dtype).
    """
    if (isinstance(user_ids, (str, bytes, Set, Mapping))
            or (isinstance(user_ids, np.ndarray) and user_ids.ndim == 0)
            or not isinstance(user_ids, Iterable)):
        raise ValueError(
            f"{name} must be a 1-d sequence of ids in row order, one per row; got a "
            f"value of type {type(user_ids).__name__}.")
    ids = user_ids if isinstance(user_ids, np.ndarray) else _ids_array(user_ids)
    if ids.ndim != 1:
        raise ValueError(f"{name} must be 1-d; got an array of shape {ids.shape}.")
    if n_samples is not None and ids.shape[0] != n_samples:
        raise ValueError(f"{name} has {ids.shape[0]} entries for {n_samples} rows.")
    if pd.isna(pd.Series(ids, dtype=object)).any():
        raise ValueError(f"{name} contains missing values; every row needs a user id.")
    return require_hashable(ids, name=name)


def _check_fraction(name, value):
    if not isinstance(value, Real) or isinstance(value, bool) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}.")
    return float(value)


def _check_positive_int(name, value):
    """``value`` if it is a positive integer; a bool (an int to Python) is refused."""
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def _check_shots(shots, n_train_pairs):
    # numpy reads [0, True] as the integers [0, 1]: look for booleans before converting
    if isinstance(shots, (list, tuple)) and any(
            isinstance(k, (bool, np.bool_)) for k in shots):
        raise ValueError(
            f"shots must be integers in [0, n_train_pairs={n_train_pairs}], not booleans; "
            f"got {list(shots)!r}.")
    shots = np.asarray(shots)
    valid = shots.ndim == 1 and shots.size > 0 and shots.dtype.kind in "iu"
    if not valid or (shots < 0).any() or (shots > n_train_pairs).any():
        raise ValueError(
            f"shots must be a non-empty list of integers in [0, n_train_pairs={n_train_pairs}] "
            f"(adaptation pairs come before the test pairs), got {shots.tolist()!r}."
        )
    return sorted({int(k) for k in shots})


def _positive_proba(proba):
    if np.iscomplexobj(proba):
        raise ValueError("proba must hold real probabilities; got complex values.")
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim == 2:
        if proba.shape[1] != 2:
            raise ValueError(f"proba must have 2 columns for a binary task, got {proba.shape[1]}.")
        proba = proba[:, 1]
    if proba.ndim != 1:
        raise ValueError(f"proba must be 1-d or (n, 2); got shape {proba.shape}.")
    if not np.all((proba >= 0) & (proba <= 1)):
        raise ValueError("proba must hold probabilities in [0, 1].")
    return proba


def _binary_truth(y_true, pos_label=1):
    """1.0 where ``y_true`` is ``pos_label``, else 0.0.

    As in scikit-learn's binary metrics, ``pos_label`` must be one of the labels when
    ``y_true`` holds both classes; with a single class it is taken as given.
    """
    y_true = np.asarray(y_true)
    _check_present_labels("y_true", y_true)
    labels = np.unique(y_true)
    if labels.size > 2:
        raise ValueError(f"y_true must be binary; got labels {labels.tolist()[:5]}.")
    if labels.size == 2 and not any(label == pos_label for label in labels.tolist()):
        raise ValueError(
            f"pos_label={pos_label} is not a valid label: {labels}. "
            "Pass pos_label= one of the labels of y_true."
        )
    return (y_true == pos_label).astype(np.float64)


def _type_name(value):
    """A numpy scalar's type named as the Python scalar it equals (1 and np.int64(1)
    are one id, whichever form a row order keeps)."""
    if isinstance(value, (np.number, np.bool_, np.str_, np.bytes_)):
        value = value.item()
    return type(value).__name__


def _type_then_value(value):
    return _type_name(value), value


def _type_then_repr(value):
    return _type_name(value), repr(value)


def _strictly_increasing(values, key):
    """Whether each value's key is below the next one's (a total order on them)."""
    keys = values if key is None else [key(v) for v in values]
    return all(bool(a < b) for a, b in zip(keys, keys[1:]))


def _sorted_ids(ids):
    """The distinct ids in an order that does not depend on row order.

    Sorted by value when the ids compare with each other; otherwise (ids of mixed
    types, such as ints and strings) by type name, then value (then ``repr``, for
    values of one type that do not compare).
    """
    users = pd.unique(pd.Series(ids, dtype=object)).tolist()
    for key in (None, _type_then_value, _type_then_repr):
        try:
            ordered = sorted(users, key=key)
            if _strictly_increasing(ordered, key):
                return ordered
        except TypeError:
            continue
        # a partial order (sets compare by inclusion): the sort depended on row order
    raise ValueError("user ids could not be ordered; use ids of one sortable type.")

# --------------------------------------------------------------------------- metrics


def expected_calibration_error(y_true, proba, *, n_bins=10, strategy="uniform", pos_label=1):
    """Expected calibration error of binary probabilities.

    The predicted probabilities of the positive class are grouped into ``n_bins``
    bins; ECE is the mean absolute gap between the observed frequency of the positive
    class and the mean predicted probability in each bin, weighted by the bin's
    share of samples::

        ECE = sum_b (n_b / n) * |mean(y_i, i in b) - mean(p_i, i in b)|

    These are the bins of a reliability diagram
    (:func:`sklearn.calibration.calibration_curve`). 0 is perfect calibration; a
    constant prediction of 0.5 on balanced labels also scores 0, so read ECE next to
    accuracy or log-loss.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True binary labels.
    proba : array-like of shape (n_samples,) or (n_samples, 2)
        Predicted probability of the positive class, or ``predict_proba`` output
        (column 1 is used: the probability of ``classes_[1]``, so ``pos_label`` must be
        ``classes_[1]`` then; for ``classes_[0]`` pass column 0).
    n_bins : int, default=10
        Number of bins, a positive integer (not a bool).
    strategy : {"uniform", "quantile"}, default="uniform"
        ``"uniform"``: bins of equal width on [0, 1], ``[0, 1/n], (1/n, 2/n], ...``
        (a probability on an edge falls in the bin below it, as in
        ``calibration_curve``). ``"quantile"``: bins holding equal numbers of samples.
    pos_label : int or str, default=1
        Label of the positive class in ``y_true``. When ``y_true`` holds two classes
        it must be one of them; when it holds one, it is taken as given (every row
        negative if that class is not ``pos_label``).

    Returns
    -------
    ece : float
        In [0, 1].

    Raises
    ------
    ValueError
        If ``y_true`` has more than two classes, or two classes neither of which is
        ``pos_label``; if ``n_bins`` is not a positive integer (``True`` and ``False``
        are refused); if ``strategy`` is unknown.

    Examples
    --------
    >>> from sklearn_lore.model_selection import expected_calibration_error
    >>> ece = expected_calibration_error([0, 1, 1, 1], [0.2, 0.8, 0.8, 0.8], n_bins=5)
    >>> round(ece, 6)  # bin [0, 0.2]: |0 - 0.2|; bin (0.6, 0.8]: |1 - 0.8|
    0.2
    """
    y01 = _binary_truth(y_true, pos_label)
    p = _positive_proba(proba)
    if p.shape[0] != y01.shape[0]:
        raise ValueError(f"y_true has {y01.shape[0]} entries but proba has {p.shape[0]}.")
    _check_positive_int("n_bins", n_bins)
    if p.shape[0] == 0:
        raise ValueError("expected_calibration_error needs at least one sample.")
    # the edges and the side of calibration_curve: a probability on an edge belongs to
    # the bin below it ((a, b], the first [0, b])
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.percentile(p, np.linspace(0, 1, n_bins + 1) * 100)
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}.")
    bins = np.searchsorted(edges[1:-1], p)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.bincount(bins, weights=y01 - p, minlength=n_bins)
    return float(np.abs(gap).sum() / count.sum())


def per_user_accuracy(y_true, y_pred, user_ids):
    """Accuracy of each user's predictions.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        True and predicted labels.
    user_ids : array-like of shape (n_samples,)
        User id of each row, any hashable type (tuples of any lengths included).

    Returns
    -------
    accuracy : Series
        Indexed by user id (sorted), one accuracy per user.

    Raises
    ------
    ValueError
        If ``user_ids`` is not a 1-d sequence (a DataFrame, a set, a single value),
        does not have one id per row of ``y_true``, or holds a missing value; if
        ``y_pred`` and ``y_true`` differ in shape, are not 1-d, hold a missing value
        or fractional values (probabilities instead of labels).
    TypeError
        If an id is unhashable (a list, a dict, an array).

    Examples
    --------
    >>> from sklearn_lore.model_selection import per_user_accuracy
    >>> per_user_accuracy([1, 0, 1, 1], [1, 1, 1, 1], ["a", "a", "b", "b"]).tolist()
    [0.5, 1.0]
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        _check_labels(name, labels)
    ids = _as_ids(user_ids, y_true.shape[0])
    if y_pred.shape != y_true.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape.")
    # text against numbers never matches: an error, as scikit-learn's "Mix of label
    # input types", instead of an accuracy of 0, silently
    kinds = (_label_kind(y_true), _label_kind(y_pred))
    if None in kinds:
        unique_labels(y_true, y_pred)  # other labels: scikit-learn's judgement (it sorts)
    elif kinds[0] != kinds[1]:
        raise ValueError(
            f"Mix of label input types: y_true holds {kinds[0]} and y_pred {kinds[1]}, "
            "which never match.")
    hit = pd.Series((y_true == y_pred).astype(np.float64))
    return hit.groupby(pd.Series(ids, dtype=object).to_numpy(), sort=True).mean()


def _label_kind(labels):
    """"text", "bytes" or "numbers", judged at C speed (scikit-learn's unique_labels
    sorted a million object labels to say it: 3 to 4 times the metric); None for
    anything else (mixed types, dates), left to scikit-learn."""
    if labels.dtype.kind == "U":
        return "text"
    if labels.dtype.kind == "S":
        return "bytes"
    if labels.dtype.kind in "biuf":
        return "numbers"
    kind = pd.api.types.infer_dtype(labels, skipna=True)
    if kind == "string":
        return "text"
    if kind == "bytes":
        return "bytes"
    if kind in ("integer", "floating", "boolean", "mixed-integer-float", "decimal"):
        return "numbers"
    return None


def _check_present_labels(name, labels):
    """Labels, 1-d, none missing."""
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-d; got shape {labels.shape}.")
    missing = pd.isna(labels)
    if np.any(missing):
        raise ValueError(f"{name} contains missing values (NaN or None) at row "
                         f"{int(np.argmax(missing))}; every pair needs a label.")


def _check_labels(name, labels):
    """Class labels, 1-d, none missing, not probabilities (which never equal a label:
    an accuracy of 0, silently)."""
    _check_present_labels(name, labels)
    if labels.dtype == object and pd.api.types.infer_dtype(labels) in (
            "floating", "mixed-integer-float", "decimal"):
        labels = labels.astype(np.float64)  # probabilities in an object array too
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        example = float(labels[labels != np.round(labels)][0])
        raise ValueError(f"{name} holds fractional values such as {example!r}: pass "
                         "predicted labels (predict), not probabilities.")


def macro_accuracy(y_true, y_pred, user_ids):
    """Mean over users of each user's accuracy (every user counts once).

    Pooled accuracy weights users by their number of test pairs; the macro
    average asks how well the model serves a typical user.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    user_ids : array-like of shape (n_samples,)
        User id of each row, any hashable type (tuples of any lengths included).

    Returns
    -------
    float

    Raises
    ------
    ValueError, TypeError
        As :func:`per_user_accuracy`.

    Examples
    --------
    >>> from sklearn_lore.model_selection import macro_accuracy
    >>> macro_accuracy([1, 0, 1, 1, 0], [1, 1, 1, 1, 0], ["a", "a", "b", "b", "b"])
    0.75
    """
    accuracies = per_user_accuracy(y_true, y_pred, user_ids)
    if accuracies.empty:
        raise ValueError("macro_accuracy needs at least one pair.")
    return float(accuracies.mean())


def preference_metrics(y_true, proba, user_ids, *, n_bins=10, pos_label=1):
    """All evaluation numbers of one set of predictions.

    The predicted label is the positive class when its probability exceeds 0.5
    (a probability of exactly 0.5 predicts the negative class).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    proba : array-like of shape (n_samples,) or (n_samples, 2)
        Probability of the positive class (or ``predict_proba`` output, whose column 1,
        the probability of ``classes_[1]``, is used: ``pos_label`` must then be
        ``classes_[1]``).
    user_ids : array-like of shape (n_samples,)
        User id of each row, any hashable type (tuples of any lengths included).
    n_bins : int, default=10
        Bins of :func:`expected_calibration_error`, a positive integer (not a bool).
    pos_label : int or str, default=1
        Label of the positive class in ``y_true``; as in
        :func:`expected_calibration_error`, it must be one of the labels when
        ``y_true`` holds two classes.

    Returns
    -------
    metrics : dict
        ``n_users``, ``n_pairs``, ``accuracy`` (pooled), ``macro_accuracy``,
        ``log_loss`` and ``ece``.

    Raises
    ------
    ValueError
        If ``y_true`` has more than two classes, or two classes neither of which is
        ``pos_label``; if ``n_bins`` is not a positive integer (``True`` and ``False``
        are refused); if ``user_ids`` is not a 1-d sequence with one id per row of
        ``y_true``, or holds a missing value.
    TypeError
        If an id is unhashable (a list, a dict, an array).

    Examples
    --------
    >>> from sklearn_lore.model_selection import preference_metrics
    >>> m = preference_metrics([1, 0, 1], [0.9, 0.2, 0.4], ["a", "a", "b"])
    >>> m["accuracy"], m["macro_accuracy"], m["n_users"]
    (0.6666666666666666, 0.5, 2)
    """
    y01 = _binary_truth(y_true, pos_label)
    p = _positive_proba(proba)
    if p.shape[0] != y01.shape[0]:
        raise ValueError(f"y_true has {y01.shape[0]} entries but proba has {p.shape[0]}.")
    if p.shape[0] == 0:
        raise ValueError("preference_metrics needs at least one pair.")
    ids = _as_ids(user_ids, y01.shape[0])
    _check_positive_int("n_bins", n_bins)
    pred = (p > 0.5).astype(np.float64)
    return {
        "n_users": int(pd.unique(pd.Series(ids, dtype=object)).shape[0]),
        "n_pairs": int(y01.shape[0]),
        "accuracy": float(np.mean(pred == y01)),
        "macro_accuracy": macro_accuracy(y01, pred, ids),
        "log_loss": float(log_loss(y01, p, labels=[0.0, 1.0])),
        "ece": expected_calibration_error(y01, p, n_bins=n_bins),
    }


# --------------------------------------------------------------------------- scorers


def _final_step(estimator, X=None):
    """The estimator that predicts (the last step of nested pipelines, a fitted
    search's best estimator) and, when X is given, X as it reaches it (the other
    steps' transform)."""
    while True:
        if hasattr(estimator, "steps"):
            if X is not None and len(estimator.steps) > 1:
                X = estimator[:-1].transform(X)
            estimator = estimator[-1]
        elif hasattr(estimator, "best_estimator_"):
            estimator = estimator.best_estimator_
        else:
            return estimator, X


def _final_estimator(estimator):
    return _final_step(estimator)[0]


def _takes_user_ids(estimator, method):
    parameters = inspect.signature(getattr(estimator, method)).parameters
    if "user_ids" in parameters:
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        # a meta-estimator that routes metadata (BaggingClassifier.predict(X, **params)):
        # it hands the ids to the estimators that requested them, or says why not
        return
    raise TypeError(
        f"{type(estimator).__name__}.{method} takes no user_ids, neither as a parameter "
        "nor as routed metadata: make_user_scorer scores estimators whose predictions do "
        "(LowRankRewardEstimator, or a meta-estimator that routes them).")


def _final_has(method):
    return lambda self: hasattr(_final_estimator(self._estimator), method)


class _WithUsers:
    """An estimator seen through a scorer: its prediction methods (and ``score``) get
    ``user_ids``. Pipelines' other steps transform X; the last step predicts with the
    ids (a pipeline's own methods would need a request per method). It has the
    prediction methods its final estimator has, so a scorer picks the one that exists."""

    def __init__(self, estimator, user_ids):
        self._estimator = estimator
        self._user_ids = user_ids

    def __sklearn_tags__(self):
        return self._estimator.__sklearn_tags__()

    @property
    def classes_(self):
        return self._estimator.classes_

    def _call(self, method, X, *args, **kwargs):
        """The final estimator's ``method`` on X as it reaches it, with the ids."""
        estimator, X = _final_step(self._estimator, X)
        _takes_user_ids(estimator, method)
        return getattr(estimator, method)(X, *args, user_ids=self._user_ids, **kwargs)

    def _predict(self, method, X):
        return self._call(method, X)

    @available_if(_final_has("predict"))
    def predict(self, X):
        return self._predict("predict", X)

    @available_if(_final_has("predict_proba"))
    def predict_proba(self, X):
        return self._predict("predict_proba", X)

    @available_if(_final_has("predict_log_proba"))
    def predict_log_proba(self, X):
        return self._predict("predict_log_proba", X)

    @available_if(_final_has("decision_function"))
    def decision_function(self, X):
        return self._predict("decision_function", X)

    @available_if(_final_has("score"))
    def score(self, X, y, sample_weight=None):
        weights = {} if sample_weight is None else {"sample_weight": sample_weight}
        return self._call("score", X, y, **weights)

    def __getattr__(self, name):  # other attributes (n_features_in_, ...) as the estimator's
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._estimator, name)


def _warn_without_ids(estimator, X):
    """A model fitted with users, scored on rows that carry no ids: every row is an
    unknown user. Say so (the silent case make_user_scorer exists to prevent)."""
    final = _final_estimator(estimator)
    user_col = getattr(final, "user_col", None)
    if len(getattr(final, "users_", ())) == 0:
        return
    if user_col is not None and user_col in getattr(X, "columns", ()):
        return
    warnings.warn(
        "make_user_scorer got no user_ids for a model fitted with users: every row is "
        "scored as an unknown user (the population model). Enable metadata routing "
        "(sklearn.set_config(enable_metadata_routing=True)) and pass the ids, e.g. "
        "params={'user_ids': ids} or search.fit(X, y, user_ids=ids).", UserWarning,
        stacklevel=3)


def _scorer_takes_ids(scorer):
    """A callable of ours (not a scikit-learn scorer) that takes user_ids itself."""
    if hasattr(scorer, "_score_func"):
        return False
    try:
        return "user_ids" in inspect.signature(scorer).parameters
    except (TypeError, ValueError):
        return False


class _UserScorer:
    """A scorer that requests ``user_ids`` and passes them to the predictions."""

    def __init__(self, scorer, name):
        self._scorer = scorer
        self._name = name
        self._takes_ids = _scorer_takes_ids(scorer)

    def __call__(self, estimator, X, y_true, sample_weight=None, user_ids=None):
        weights = {} if sample_weight is None else {"sample_weight": sample_weight}
        if user_ids is None:
            _warn_without_ids(estimator, X)
        if self._takes_ids:
            return self._scorer(estimator, X, y_true, user_ids=user_ids, **weights)
        target = estimator if user_ids is None else _WithUsers(estimator, user_ids)
        return self._scorer(target, X, y_true, **weights)

    def get_metadata_routing(self):
        """The wrapped scorer's requests (``sample_weight`` when it was set), and
        ``user_ids``."""
        from sklearn.utils.metadata_routing import MetadataRequest

        request = MetadataRequest(owner=type(self).__name__)
        inner = getattr(self._scorer, "get_metadata_routing", None)
        # a scorer's own request (a pipeline's default scorer returns a router: none)
        requested = getattr(inner(), "score", None) if inner is not None else None
        if requested is not None:
            for param, alias in requested.requests.items():
                request.score.add_request(param=param, alias=alias)
        request.score.add_request(param="user_ids", alias=True)
        return request

    def set_score_request(self, **requests):
        """Request metadata for the wrapped scorer (``sample_weight=True``), as
        scikit-learn's scorers do; returns self."""
        if not hasattr(self._scorer, "set_score_request"):
            raise TypeError(
                f"{self._name} takes no metadata requests: a metric given to "
                "make_user_scorer is computed without sample weights (weigh inside a "
                "scorer callable scorer(estimator, X, y, user_ids=None) of your own).")
        self._scorer.set_score_request(**requests)
        return self

    def __repr__(self):
        return f"make_user_scorer({self._name})"


def make_user_scorer(scoring):
    """A scorer whose predictions see the user ids that metadata routing carries.

    scikit-learn's scorers call ``predict_proba`` (or ``predict``,
    ``decision_function``) with X alone: with the ids routed as ``user_ids=`` rather
    than held in a ``user_id`` column, every held-out row of a seen user would be
    scored as an unknown user (the population model), silently. This scorer requests
    ``user_ids`` for scoring and passes the rows' ids to the estimator's predictions
    (for a Pipeline: its last step's, after the other steps' ``transform``; for a
    fitted search: its best estimator's).

    Parameters
    ----------
    scoring : str or callable
        A scorer name of :func:`sklearn.metrics.get_scorer` (``"roc_auc"``,
        ``"neg_log_loss"``, ``"accuracy"`` ...) or a scorer callable
        ``scorer(estimator, X, y)`` (e.g. from :func:`sklearn.metrics.make_scorer`;
        its metadata requests, such as ``set_score_request(sample_weight=True)``, are
        kept). A scorer callable of your own that takes a ``user_ids`` keyword gets the
        ids and the estimator as they are. A metric ``metric(y_true, y_pred, ...)``
        (its first two parameters so named, e.g. the per-user :func:`macro_accuracy`)
        is computed on the labels that ``predict`` gives with the ids, and gets
        ``user_ids=`` when it takes them (the routed ids, or the user column of X when
        X holds it); such a metric must be one where higher is
        better (a name ending in ``_loss`` or ``_error`` is refused), and takes no
        sample weights.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y, sample_weight=None, user_ids=None)``, for the
        ``scoring=`` of ``cross_validate``, ``cross_val_score``, ``GridSearchCV`` ...
        (alone or as values of a dict), with metadata routing enabled and the ids
        passed as ``params={"user_ids": ids}`` (or ``fit(X, y, user_ids=ids)`` for a
        search). ``scorer.set_score_request(sample_weight=True)`` requests the sample
        weights too, as for scikit-learn's scorers. Called without ids on a model
        fitted with users (routing off, say), it scores every row as an unknown user
        and warns (a UserWarning), unless X holds the user column.

    Raises
    ------
    ValueError
        If ``scoring`` is not a scorer name known to scikit-learn, is a loss metric
        (its name ends in ``_loss`` or ``_error``), or a metric of probabilities or
        decision values ``metric(y_true, y_score)`` such as ``roc_auc_score`` (pass
        its scorer name, ``"roc_auc"``, or ``make_scorer(metric,
        response_method="predict_proba")``).
    TypeError
        If ``scoring`` is neither a str nor callable.

    See Also
    --------
    sklearn.metrics.get_scorer : The scorers by name.

    Examples
    --------
    >>> import sklearn
    >>> from sklearn.model_selection import KFold, cross_val_score
    >>> from sklearn_lore import LowRankRewardEstimator
    >>> from sklearn_lore.datasets import make_preference_data
    >>> from sklearn_lore.model_selection import make_user_scorer
    >>> X, y, users, _ = make_preference_data(n_users=20, n_pairs_per_user=30,
    ...                                       n_features=6, random_state=0)
    >>> cv = KFold(3, shuffle=True, random_state=0)
    >>> with sklearn.config_context(enable_metadata_routing=True):
    ...     est = LowRankRewardEstimator(2, random_state=0).set_fit_request(user_ids=True)
    ...     auc = cross_val_score(est, X, y, cv=cv, scoring=make_user_scorer("roc_auc"),
    ...                           params={"user_ids": users})
    ...     blind = cross_val_score(est, X, y, cv=cv, scoring="roc_auc",
    ...                             params={"user_ids": users})
    >>> bool(auc.mean() > blind.mean())  # the plain scorer saw unknown users only
    True
    """
    from sklearn.metrics import get_scorer

    if isinstance(scoring, str):
        return _UserScorer(get_scorer(scoring), repr(scoring))
    if isinstance(scoring, _UserScorer):
        return scoring
    if not callable(scoring):
        raise TypeError(
            "scoring must be a scorer name (str) or a scorer callable "
            f"scorer(estimator, X, y); got {type(scoring).__name__}.")
    kind, response = _metric_kind(scoring)
    if kind is None:
        return _UserScorer(scoring, repr(scoring))
    name = getattr(scoring, "__name__", repr(scoring))
    base = getattr(getattr(scoring, "func", scoring), "__name__", name)  # a partial's
    if name.endswith(("_loss", "_error")) or base.endswith(("_loss", "_error")):
        # a scorer is maximized: a loss returned as it is would pick the worst model
        raise ValueError(
            f"{name} is a loss, and a scorer is maximized: "
            + (f"wrap it as lambda y_true, y_pred, user_ids: -{name}(y_true, y_pred), "
               "or score with a metric where higher is better." if kind == "labels" else
               f"pass its scorer name (such as 'neg_log_loss'), or make_scorer({name}, "
               f"greater_is_better=False, response_method={response!r})."))
    if kind == "scores":
        # scikit-learn's scorer callables take (estimator, X, y): the metric itself
        # would be called with those, and fail at every fold
        raise ValueError(
            f"{name} scores probabilities or decision values, not labels: pass its "
            "scorer name (such as 'roc_auc'), or "
            f"make_scorer({name}, response_method={response!r}).")
    return _UserScorer(_scorer_of_metric(scoring), name)


# scikit-learn's metrics of probabilities or decision values, with the response their
# scorers use: found by name as well, since before 1.9 some named that input y_pred
_SCORE_METRICS = {
    "log_loss": "predict_proba", "brier_score_loss": "predict_proba",
    "d2_log_loss_score": "predict_proba", "d2_brier_score": "predict_proba",
    "hinge_loss": "decision_function",
    "roc_auc_score": ("decision_function", "predict_proba"),
    "average_precision_score": ("decision_function", "predict_proba"),
    "top_k_accuracy_score": ("decision_function", "predict_proba"),
    "roc_curve": ("decision_function", "predict_proba"),
    "det_curve": ("decision_function", "predict_proba"),
    "precision_recall_curve": ("decision_function", "predict_proba"),
}


# the second parameter of metrics that score probabilities or decision values
_SCORE_PARAMETERS = ("y_score", "y_proba", "y_prob", "probas_pred", "y_probas",
                     "pred_decision")


def _metric_kind(func):
    """What ``func`` is, with the response its scorer would use: ``("labels", None)``
    for a metric ``func(y_true, y_pred, ...)``, ``("scores", response)`` for one of
    probabilities or decision values (``func(y_true, y_score, ...)``, or one of
    scikit-learn's by name: before 1.9 some named that input y_pred), ``(None, None)``
    for a scorer ``(estimator, X, y)``."""
    try:
        names = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return None, None
    if names[:1] != ["y_true"] or len(names) < 2:
        return None, None
    function = getattr(func, "func", func)  # a partial's function
    if getattr(function, "__module__", "").startswith("sklearn."):
        response = _SCORE_METRICS.get(getattr(function, "__name__", ""))
        if response is not None:
            return "scores", response
    if names[1] == "y_pred":
        return "labels", None
    if names[1] in _SCORE_PARAMETERS:
        return "scores", "predict_proba"
    return None, None


def _scorer_of_metric(metric):
    """A scorer computing ``metric`` on the labels predicted with the rows' user ids
    (and passing the ids and sample weights where the metric takes them)."""
    takes = inspect.signature(metric).parameters

    def scorer(estimator, X, y_true, user_ids=None, sample_weight=None):
        target = estimator if user_ids is None else _WithUsers(estimator, user_ids)
        if user_ids is None:
            # ids in the user column reach the predictions with X, and the metric too
            column = getattr(_final_estimator(estimator), "user_col", "user_id")
            if hasattr(X, "columns") and column in X.columns:
                user_ids = X[column].to_numpy()
        kwargs = {}
        if "user_ids" in takes:
            if user_ids is None:
                raise ValueError(
                    f"{metric.__name__} needs the rows' user ids, and none reached the "
                    "scorer: enable metadata routing and pass params={'user_ids': ids}.")
            kwargs["user_ids"] = user_ids
        if sample_weight is not None:
            if "sample_weight" not in takes:
                raise TypeError(f"{metric.__name__} takes no sample_weight.")
            kwargs["sample_weight"] = sample_weight
        return metric(y_true, target.predict(X), **kwargs)

    return scorer


# --------------------------------------------------------------------------- splits


def within_user_position(user_ids):
    """Position of each row among its user's rows, in row order (0, 1, 2, ...).

    Parameters
    ----------
    user_ids : array-like of shape (n_samples,)
        User id of each row, any hashable type (tuples of any lengths included).

    Returns
    -------
    ndarray of shape (n_samples,), int

    Raises
    ------
    ValueError
        If ``user_ids`` is not a 1-d sequence with one id per row (a DataFrame, a set,
        a single value), or holds a missing value.
    TypeError
        If an id is unhashable (a list, a dict, an array).

    Examples
    --------
    >>> from sklearn_lore.model_selection import within_user_position
    >>> within_user_position(["a", "b", "a", "a", "b"]).tolist()
    [0, 0, 1, 2, 1]
    """
    ids = _as_ids(user_ids)
    return pd.Series(ids, dtype=object).groupby(ids, sort=False).cumcount().to_numpy(np.intp)


def split_users(user_ids, *, unseen_size=0.2, random_state=None):
    """Split the users (not the rows) into seen and unseen users.

    The distinct ids, in sorted order, are shuffled with ``random_state``; the last
    ``round(unseen_size * n_users)`` of the shuffled order, kept between 1 and
    ``n_users - 1`` (both groups have a user), are the unseen users. The
    split depends on the set of ids only, not on the order of the rows. Ids of mixed
    types that do not compare with each other (ints and strings, say) are sorted by
    type name, then value.

    Parameters
    ----------
    user_ids : array-like of shape (n_samples,)
        User id of each row, any hashable type (tuples of any lengths included).
    unseen_size : float in (0, 1), default=0.2
        Share of users held out of ``fit``.
    random_state : int, RandomState instance or None, default=None
        Seed of the shuffle (not a bool).

    Returns
    -------
    seen_users, unseen_users : ndarray
        Disjoint arrays of ids, in shuffled order.

    Raises
    ------
    ValueError
        If ``user_ids`` is not a 1-d sequence of ids (a DataFrame, a set, a single
        value), holds a missing value or fewer than 2 distinct users; if
        ``unseen_size`` is not strictly between 0 and 1; if ``random_state`` is a bool
        or cannot seed a RandomState.
    TypeError
        If an id is unhashable (a list, a dict, an array).

    Examples
    --------
    >>> from sklearn_lore.model_selection import split_users
    >>> seen, unseen = split_users(["a", "b", "c", "d", "e"], unseen_size=0.4,
    ...                            random_state=0)
    >>> len(seen), len(unseen), sorted([*seen, *unseen])
    (3, 2, ['a', 'b', 'c', 'd', 'e'])
    """
    ids = _as_ids(user_ids)
    unseen_size = _check_fraction("unseen_size", unseen_size)
    if isinstance(random_state, (bool, np.bool_)):
        # check_random_state would take True as the seed 1
        raise ValueError(
            "random_state must be an int, a RandomState instance or None, got "
            f"{random_state!r}.")
    sorted_ids = _sorted_ids(ids)
    if ids.dtype == object:  # each id keeps its type (and a tuple id stays one id)
        users = np.fromiter(sorted_ids, dtype=object, count=len(sorted_ids))
    else:
        users = np.asarray(sorted_ids, dtype=ids.dtype)
    if users.shape[0] < 2:
        raise ValueError("split_users needs at least 2 distinct users.")
    shuffled = users[check_random_state(random_state).permutation(users.shape[0])]
    n_unseen = min(max(round(unseen_size * users.shape[0]), 1), users.shape[0] - 1)
    n_seen = users.shape[0] - n_unseen
    return shuffled[:n_seen], shuffled[n_seen:]


def fewshot_split(user_ids, *, unseen_size=0.2, n_train_pairs=28, shots=(0, 5, 10, 20),
                  random_state=None):
    """Row indices of the seen / unseen, train / test / few-shot protocol.

    Users are split by :func:`split_users`. Rows are numbered within each user by
    :func:`within_user_position`:

    - a seen user's first ``n_train_pairs`` rows train the model (``seen_train``),
      its later rows test it (``seen_test``);
    - an unseen user's first ``k`` rows adapt the model (``adapt[k]``), its rows from
      position ``n_train_pairs`` on test it (``unseen_test``), whatever ``k``: every
      number of shots is scored on the same pairs.

    Parameters
    ----------
    user_ids : array-like of shape (n_samples,)
        User id of each row, any hashable type (tuples of any lengths included).
    unseen_size : float in (0, 1), default=0.2
        Share of users held out of ``fit``.
    n_train_pairs : int, default=28
        Training pairs per seen user; also where unseen users' test pairs start. A
        positive integer (not a bool).
    shots : sequence of int, default=(0, 5, 10, 20)
        Numbers of adaptation pairs, each an integer (not a bool) in
        ``[0, n_train_pairs]``.
    random_state : int, RandomState instance or None, default=None
        Seed of the user shuffle (not a bool).

    Returns
    -------
    split : :class:`~sklearn.utils.Bunch`
        ``seen_train``, ``seen_test``, ``unseen_test`` (index arrays, increasing);
        ``adapt`` (dict: k -> index array, empty for k = 0); ``seen_users``,
        ``unseen_users``; ``position`` (within-user position of every row);
        ``shots`` (sorted list) and ``n_train_pairs``.

    Raises
    ------
    ValueError
        If ``n_train_pairs`` is not a positive integer, or ``shots`` is not a non-empty
        sequence of integers in ``[0, n_train_pairs]`` (booleans are refused in both);
        for the user ids, ``unseen_size`` and ``random_state``, as :func:`split_users`.
    TypeError
        If an id is unhashable (a list, a dict, an array).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_lore.model_selection import fewshot_split
    >>> ids = np.repeat(["a", "b", "c", "d", "e"], 6)
    >>> s = fewshot_split(ids, unseen_size=0.2, n_train_pairs=4, shots=(0, 2),
    ...                   random_state=0)
    >>> len(s.seen_train), len(s.seen_test), len(s.unseen_test), len(s.adapt[2])
    (16, 8, 2, 2)
    """
    ids = _as_ids(user_ids)
    _check_positive_int("n_train_pairs", n_train_pairs)
    shots = _check_shots(shots, n_train_pairs)
    seen_users, unseen_users = split_users(ids, unseen_size=unseen_size,
                                           random_state=random_state)
    position = within_user_position(ids)
    return Bunch(
        **_split_rows(ids, seen_users, position, n_train_pairs, shots),
        seen_users=seen_users,
        unseen_users=unseen_users,
        position=position,
        shots=shots,
        n_train_pairs=int(n_train_pairs),
    )


class WithinUserKFold(BaseCrossValidator):
    """K folds dealt within every user: each user's pairs spread over the test folds.

    A personalized model is tuned on held-out pairs of the users it was fitted on
    (:func:`fewshot_split`'s ``seen_test``). scikit-learn's default folds do not give
    that: ``StratifiedKFold`` without shuffling cuts rows grouped by user into blocks of
    whole users, so the search scores users the model never saw (the population model),
    and ``GroupKFold`` holds users out on purpose. Here each user's rows are dealt
    round-robin over the folds, one after another, continuing from where the previous
    user stopped: a user's rows are spread over the folds as evenly as they can be
    (counts differ by at most one) and the folds' sizes differ by at most one. A user
    with fewer rows than ``n_splits`` is missing from some test folds, and a user with a
    single row is scored as an unknown user in the fold that holds it.

    Parameters
    ----------
    n_splits : int, default=5
        Number of folds, at least 2 (not a bool).
    shuffle : bool, default=False
        Deal each user's rows, and the users, in a random order instead of row order.
    random_state : int, RandomState instance or None, default=None
        Seed of the shuffle; only with ``shuffle=True`` (as ``KFold``).
    user_col : str, default="user_id"
        Column of a DataFrame ``X`` holding the user ids, read when ``groups`` is not
        given.

    Raises
    ------
    ValueError
        From the constructor if ``n_splits`` is not an integer of at least 2, or
        ``random_state`` is given without ``shuffle``. From :meth:`split` if the ids are
        missing (neither ``groups`` nor a ``user_col`` column), given twice and
        different, of another length than X, hold a missing value, or if there are
        fewer rows than folds.
    TypeError
        From the constructor if ``shuffle`` is not a bool (as ``KFold``); from
        :meth:`split` if an id is unhashable (a list, say).

    See Also
    --------
    fewshot_split : one split into seen and unseen users with few-shot rows.
    make_user_scorer : scorers that pass the ids to the predictions.

    Notes
    -----
    The ids reach :meth:`split` as the ``user_col`` column of a DataFrame ``X``, the
    column the estimator reads too, or as ``groups`` (``GridSearchCV.fit(X, y,
    groups=ids)``, or routed as metadata: the splitter requests ``groups``). ``groups``
    feeds the splitter only: with a numpy ``X`` the estimator then sees no ids, fits
    and is scored as the population model, silently. Prefer the column (the fit, the
    scorer and the predictions all get the ids); with a numpy ``X`` route the ids to the
    estimator's fit as ``user_ids`` too and score with :func:`make_user_scorer`
    (docs/user_guide.md, "Where routed ids stop"). Given both, the column and
    ``groups`` must hold the same ids (an outer ``GroupKFold``'s groups reach an inner
    search's splitter when metadata is routed).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_lore.model_selection import WithinUserKFold
    >>> ids = np.array(["a"] * 4 + ["b"] * 3)
    >>> for train, test in WithinUserKFold(n_splits=2).split(np.zeros((7, 1)),
    ...                                                        groups=ids):
    ...     print(test, ids[test])
    [0 2 4 6] ['a' 'a' 'b' 'b']
    [1 3 5] ['a' 'a' 'b']
    """

    __metadata_request__split = {"groups": True}

    def __init__(self, n_splits=5, *, shuffle=False, random_state=None, user_col="user_id"):
        if (not isinstance(n_splits, Integral) or isinstance(n_splits, (bool, np.bool_))
                or n_splits < 2):
            raise ValueError(
                f"n_splits must be an integer of at least 2, got {n_splits!r}.")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}.")
        if not shuffle and random_state is not None:
            raise ValueError(
                "Setting a random_state has no effect since shuffle is False. Leave "
                "random_state to its default (None), or set shuffle=True.")
        self.n_splits = int(n_splits)
        self.shuffle = bool(shuffle)
        self.random_state = random_state
        self.user_col = user_col

    def get_n_splits(self, X=None, y=None, groups=None):
        """The number of folds, ``n_splits``."""
        return self.n_splits

    def _ids(self, X, groups):
        n = _num_samples(X)
        in_column = hasattr(X, "columns") and self.user_col in X.columns
        if in_column:
            column = X[self.user_col]
            column = column.to_numpy() if hasattr(column, "to_numpy") else np.asarray(column)
            ids = _as_ids(column, n, name=f"X[{self.user_col!r}]")
            # the same ids twice are no conflict: an outer GroupKFold's groups reach an
            # inner search's splitter too when metadata is routed
            if groups is not None and not np.array_equal(
                    _as_objects(_as_ids(groups, n, name="groups")), _as_objects(ids)):
                raise ValueError(
                    f"User ids were given twice and differ: X has a {self.user_col!r} "
                    "column and groups= holds other ids. Pass one of them.")
            return ids
        if groups is None:
            raise ValueError(
                "WithinUserKFold needs the user ids: pass groups=user_ids to split (to a "
                "search's fit, or params={'groups': user_ids} with metadata routing on), "
                f"or a DataFrame X with a {self.user_col!r} column.")
        return _as_ids(groups, n, name="groups")

    def _iter_test_indices(self, X=None, y=None, groups=None):
        ids = self._ids(X, groups)
        n = ids.shape[0]
        if n < self.n_splits:
            raise ValueError(
                f"Cannot split {n} rows into n_splits={self.n_splits} folds: lower n_splits.")
        order = np.arange(n)
        if self.shuffle:
            order = check_random_state(self.random_state).permutation(n)
        # users numbered by first appearance in the (shuffled) order; rows dealt user
        # after user, each user's in that order
        codes = pd.factorize(pd.Series(_as_objects(ids[order]), dtype=object))[0]
        dealt = order[np.argsort(codes, kind="stable")]
        fold = np.empty(n, dtype=np.intp)
        fold[dealt] = np.arange(n) % self.n_splits
        for k in range(self.n_splits):
            yield np.flatnonzero(fold == k)


def _as_objects(ids):
    """Ids as Python objects that compare as the estimator compares them: dates and
    durations as pandas Timestamps and Timedeltas (pandas' ``isin`` of numpy datetime64
    objects missed day and nanosecond units: every row fell in the unseen group)."""
    return _ids_array(np.asarray(ids)).astype(object, copy=False)


def _member(ids, users):
    """Boolean mask of the rows whose id is one of ``users``."""
    return pd.Series(_as_objects(ids), dtype=object).isin(
        set(_as_objects(users).tolist())).to_numpy()


def _split_rows(ids, seen_users, position, n_train_pairs, shots):
    """The row groups of a few-shot split: seen users' first ``n_train_pairs`` rows
    train, their later rows test; unseen users' rows from ``n_train_pairs`` on test and
    their first k rows adapt."""
    is_seen = _member(ids, seen_users)
    early = position < n_train_pairs
    unseen = ~is_seen
    return {
        "seen_train": np.flatnonzero(is_seen & early),
        "seen_test": np.flatnonzero(is_seen & ~early),
        "unseen_test": np.flatnonzero(unseen & ~early),
        "adapt": {k: np.flatnonzero(unseen & (position < k)) for k in shots},
    }


# --------------------------------------------------------------------------- few-shot curve


def _take(X, index):
    if hasattr(X, "iloc"):
        return X.iloc[index]
    # a list (of rows) is indexed as the array it reads as
    return (X if hasattr(X, "shape") else np.asarray(X))[index]


def _require_partial_fit_users(model):
    if not hasattr(model, "partial_fit_users"):
        raise TypeError(
            f"{type(model).__name__} has no partial_fit_users method; pass "
            "adapt=callable(fitted, X, y, user_ids) -> adapted model to fewshot_curve."
        )


def _default_adapt(fitted, X, y, user_ids):
    _require_partial_fit_users(fitted)
    return copy.deepcopy(fitted).partial_fit_users(X, y, user_ids=user_ids)


def _ids_from(X, user_ids, user_col):
    """User ids and whether they travel as a column of X (then not as a keyword)."""
    in_column = hasattr(X, "columns") and user_col in X.columns
    if in_column and user_ids is not None:
        raise ValueError(f"User ids were given twice: X has a {user_col!r} column and user_ids=.")
    if in_column:
        return X[user_col].to_numpy(), True
    if user_ids is None:
        raise ValueError(f"fewshot_curve needs user ids: pass user_ids= or a {user_col!r} column.")
    return user_ids, False


def _check_split(split, ids):
    """A precomputed split is one of these rows: a :func:`fewshot_split` of these ids."""
    fields = ("position", "seen_users", "unseen_users", "seen_train", "seen_test",
              "unseen_test", "adapt", "shots", "n_train_pairs")
    if not all(hasattr(split, name) for name in fields):
        raise TypeError(
            f"split must be a fewshot_split result (a Bunch with {', '.join(fields)}); got "
            f"{type(split).__name__}.")
    position = within_user_position(ids)
    same = (len(split.position) == len(ids) and np.array_equal(split.position, position)
            and set(_as_objects(ids).tolist()) == (set(_as_objects(split.seen_users).tolist())
                                                   | set(_as_objects(split.unseen_users).tolist())))
    if same:
        # every row group as fewshot_split makes it from these users and positions
        expected = _split_rows(ids, split.seen_users, position, split.n_train_pairs,
                               split.shots)
        same = (all(np.array_equal(np.asarray(getattr(split, name)), expected[name])
                    for name in ("seen_train", "seen_test", "unseen_test"))
                and set(split.adapt) == set(expected["adapt"])
                and all(np.array_equal(np.asarray(split.adapt[k]), rows)
                        for k, rows in expected["adapt"].items()))
    if not same:
        raise ValueError(
            "split was made for other rows: its users or their rows' positions are not "
            "those of user_ids. Make it with fewshot_split on these user ids.")


def _check_test_pairs(split, ids):
    """Both groups have test pairs; else say which users are too short and what to change."""
    n_train_pairs = split.n_train_pairs
    position = within_user_position(ids)
    for group, test, users in [("seen", split.seen_test, split.seen_users),
                               ("unseen", split.unseen_test, split.unseen_users)]:
        if len(test):
            continue
        rows = _member(ids, users)
        most = int(position[rows].max()) + 1 if rows.any() else 0
        why = ("the first n_train_pairs rows of each seen user train the model and its "
               "later rows test it" if group == "seen" else
               "unseen users are tested from position n_train_pairs on, whatever the "
               "number of shots")
        raise ValueError(
            f"No {group} user has more than n_train_pairs={n_train_pairs} rows (the most "
            f"any has is {most}), so there are no {group} test pairs: {why}. Lower "
            f"n_train_pairs below {most} (shots must stay <= n_train_pairs), or give the "
            "users more comparisons."
        )


def _positive_class(estimator, y):
    classes = getattr(estimator, "classes_", None)
    return (classes if classes is not None else np.unique(y))[-1]


def fewshot_curve(estimator, X, y, user_ids=None, *, shots=(0, 5, 10, 20), unseen_size=0.2,
                  n_train_pairs=28, random_state=0, split=None, adapt=None, n_bins=10,
                  user_col="user_id"):
    """Fit once on seen users, adapt unseen users with k pairs, score every group.

    The protocol is :func:`fewshot_split`. ``estimator`` is fitted on the seen
    users' training pairs and scored on their test pairs (group ``"seen"``). For
    every ``k`` in ``shots``, a copy of the fitted model is adapted with each unseen
    user's first ``k`` pairs (``copy.deepcopy(fitted).partial_fit_users(...)``:
    basis frozen, the fitted model is never modified) and scored on the unseen
    users' test pairs (group ``"unseen"``). At ``k = 0`` there is no adaptation: the
    unseen users get the fitted model's population prediction.

    Parameters
    ----------
    estimator : estimator
        Unfitted (it is fitted in place) estimator with ``fit(X, y, user_ids=)``,
        ``predict_proba(X, user_ids=)`` and ``partial_fit_users(X, y, user_ids=)``,
        or ``adapt``.
    X : array-like of shape (n_samples, n_features) or DataFrame
        Comparison features; a DataFrame may carry the user ids in ``user_col``,
        in which case they are passed to the estimator through X.
    y : array-like of shape (n_samples,)
        Binary labels.
    user_ids : array-like of shape (n_samples,), default=None
        User ids, unless X has the ``user_col`` column; any hashable type (tuples of
        any lengths included).
    shots : sequence of int, default=(0, 5, 10, 20)
        Numbers of adaptation pairs per unseen user (integers, not bools).
    unseen_size : float, default=0.2
        Share of users held out of the fit.
    n_train_pairs : int, default=28
        Training pairs per seen user; unseen users are tested from this position on (a
        positive integer, not a bool).
    random_state : int, RandomState instance or None, default=0
        Seed of the user shuffle (not of the estimator).
    split : Bunch, default=None
        A precomputed :func:`fewshot_split` result (then ``shots``, ``unseen_size``,
        ``n_train_pairs`` and ``random_state`` are taken from it), so that several
        estimators are scored on identical rows.
    adapt : callable, default=None
        ``adapt(fitted, X_k, y_k, user_ids_k) -> model`` returns a model adapted to
        the unseen users' k pairs without modifying ``fitted``; for estimators
        without ``partial_fit_users``. ``user_ids_k`` is None when the ids travel in X.
    n_bins : int, default=10
        Bins of :func:`expected_calibration_error`, a positive integer (not a bool).
    user_col : str, default="user_id"
        Column of a DataFrame X that holds the ids.

    Returns
    -------
    curve : DataFrame
        One row per (group, shots): ``group`` ("seen" or "unseen"), ``shots`` (pairs
        of the user the model used: ``n_train_pairs`` for seen users, k for unseen
        ones), ``n_users``, ``n_pairs`` (test pairs), ``accuracy`` (pooled),
        ``macro_accuracy`` (mean of per-user accuracies), ``log_loss``, ``ece``,
        ``fit_time`` (seconds of ``fit``, on the seen row) and ``adapt_time``
        (seconds of the adaptation, on unseen rows).

    Raises
    ------
    ValueError
        If no seen user, or no unseen user, has more than ``n_train_pairs`` rows:
        that group would have no test pairs; if ``n_bins`` is not a positive integer;
        if y is not 1-d or holds a missing or infinite label (the row named); if X and
        y differ in length, the user ids are given twice or not at all, or ``split``
        was made for other rows; for ``shots``, ``unseen_size``,
        ``n_train_pairs``, ``random_state`` and the user ids, as
        :func:`fewshot_split`. All checked before fitting.
    TypeError
        If ``adapt`` is neither None nor callable; if ``adapt`` is None, some number of
        shots is above 0 and ``estimator`` has no ``partial_fit_users`` method; if
        ``split`` is not a :func:`fewshot_split` result; if an id is unhashable; if the
        labels mix types that do not compare. All checked before fitting.

    Examples
    --------
    >>> from sklearn_lore import LowRankRewardEstimator
    >>> from sklearn_lore.datasets import make_preference_data
    >>> from sklearn_lore.model_selection import fewshot_curve
    >>> X, y, users, _ = make_preference_data(n_users=40, n_pairs_per_user=30,
    ...                                       n_features=8, random_state=0)
    >>> curve = fewshot_curve(LowRankRewardEstimator(n_components=3, random_state=0),
    ...                       X, y, users, shots=(0, 5), n_train_pairs=20)
    >>> print(curve[["group", "shots", "n_users", "n_pairs"]].to_string(index=False))
     group  shots  n_users  n_pairs
      seen     20       32      320
    unseen      0        8       80
    unseen      5        8       80
    """
    # the checks of every argument come before the fit, the expensive step
    _check_positive_int("n_bins", n_bins)
    if adapt is not None and not callable(adapt):
        raise TypeError(
            "adapt must be None or a callable adapt(fitted, X, y, user_ids) -> adapted "
            f"model; got a value of type {type(adapt).__name__}.")
    ids, in_column = _ids_from(X, user_ids, user_col)
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"y must be a 1-d array-like with one label per row of X; got a "
                         f"{type(y).__name__} of shape {labels.shape}.")
    y = labels
    # every label before the fit, each refusal naming the caller's row (the estimator's
    # own check named the row within the seen users' training rows, and the test rows'
    # labels were checked only after the fit)
    _check_label_values(y)
    n = y.shape[0]
    ids = _as_ids(ids, n)
    if _num_samples(X) != n:
        raise ValueError(f"X has {_num_samples(X)} rows but y has {n}; give one label per row.")
    if split is None:
        split = fewshot_split(ids, unseen_size=unseen_size, n_train_pairs=n_train_pairs,
                              shots=shots, random_state=random_state)
    else:
        _check_split(split, ids)
    _check_test_pairs(split, ids)
    if adapt is None and any(k > 0 for k in split.shots):
        _require_partial_fit_users(estimator)
    adapt = _default_adapt if adapt is None else adapt

    def kw(index):
        return {} if in_column else {"user_ids": ids[index]}

    start = time.perf_counter()
    fitted = estimator.fit(_take(X, split.seen_train), y[split.seen_train], **kw(split.seen_train))
    fit_time = time.perf_counter() - start
    pos_label = _positive_class(fitted, y)

    def score(model, index):
        proba = model.predict_proba(_take(X, index), **kw(index))
        return preference_metrics(y[index], proba, ids[index], n_bins=n_bins,
                                  pos_label=pos_label)

    rows = [dict(group="seen", shots=split.n_train_pairs, **score(fitted, split.seen_test),
                 fit_time=fit_time, adapt_time=np.nan)]
    for k in split.shots:
        index = split.adapt[k]
        start = time.perf_counter()
        model = fitted
        if k > 0:
            user_kw = kw(index).get("user_ids")
            model = adapt(fitted, _take(X, index), y[index], user_kw)
        adapt_time = time.perf_counter() - start
        rows.append(dict(group="unseen", shots=k, **score(model, split.unseen_test),
                         fit_time=np.nan, adapt_time=adapt_time))
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)
