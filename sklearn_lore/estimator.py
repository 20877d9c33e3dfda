"""LowRankRewardEstimator: the public API, input validation and user bookkeeping.

The math lives in :mod:`sklearn_lore._objective`, the solver in
:mod:`sklearn_lore._solver` and the array operations in :mod:`sklearn_lore._backends`.
"""

import datetime
import functools
import itertools
import logging
import numbers
import os
import sys
import threading
import warnings
from collections.abc import Mapping, Set
from contextlib import contextmanager

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils import assert_all_finite
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _solver
from ._frames import is_polars
from ._ids import POPULATION_ID, require_hashable
from ._backends import resolve_backend
from ._backends._numpy import NumpyBackend, matmul_rows

# the seen users' temperature softens at most this much (1 / 0.05 = 20)
_MIN_INVERSE_TEMPERATURE = 0.05

# features beyond this magnitude overflow the float64 curvature (squares summed over rows)
_MAX_FEATURE = 1e100
# beyond this magnitude the solver's steps lose precision: features of 1e9 stopped a fit
# after four rounds of tiny steps, far from its optimum and without a word (docs/user_guide.md)
_LARGE_FEATURE = 1e8

# A fold-in of at most this many rows runs its user step on the host whatever the backend:
# on an H200 machine 500 users x 10 pairs took 26 ms through the GPU (laying out and
# moving the few rows dominates) and 7.8 ms on the host (docs/benchmarks.md, GPU run 4).
_HOST_FOLD_IN_ROWS = 65536

# training logits all below this: the penalties won and the model collapsed to zero
_COLLAPSED_LOGIT = 1e-8

# what to do when the leave-one-out temperature reaches its bound, after a fit and in a
# stream (where the next calls fit it again, and CalibratedClassifierCV cannot stream)
_FIT_BOUND_ADVICE = (
    "Calibrate on held-out pairs instead: CalibratedClassifierCV(LowRankRewardEstimator("
    "calibrate=False), cv=WithinUserKFold(5, shuffle=True)) (sklearn_lore.model_selection) "
    "on a DataFrame with the user column (its predictions pass on no other ids), or set "
    "calibrate=False.")
_STREAM_BOUND_ADVICE = (
    "In a stream the next partial_fit calls fit it again on more rows (all the remembered "
    "rows, or memory-free the batches' logits from before each update); to calibrate a "
    "short stream, feed a larger first batch, or set calibrate=False.")

# a memory-free stream refits its temperatures on the batches' logits from before each
# update, the last this many rows of seen users and of unknown ones (a window: older
# logits are those of an older model; docs/user_guide.md, "Streaming")
_STREAM_CALIBRATION_ROWS = 1000


def _is_number_like(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _magnitude(Z):
    """Largest absolute feature value, without an |Z| copy of the data."""
    return max(abs(float(Z.max(initial=0.0))), abs(float(Z.min(initial=0.0))))


# sample weights past this make the penalties (alpha, prior_strength) negligible
_LARGE_WEIGHT = 1e6
# and past this they are refused
_MAX_WEIGHT = 1e15


def _scale_advice(Z, sw=None):
    """What to change when the solver fails on the input's numbers. Scaling every
    sample weight by c is dividing alpha and prior_strength by c: very large weights
    leave the problem unregularized, whatever the features' scale."""
    top = float(np.max(sw, initial=0.0)) if sw is not None else 0.0
    if top >= _LARGE_WEIGHT:
        return (f"The sample weights reach {top:.1e}: multiplying them all by c acts as "
                "dividing alpha and prior_strength by c, so weights this large leave the "
                "fit unregularized; rescale them (to a mean of 1, say). The features "
                f"reach magnitude {_magnitude(Z):.1e}.")
    return (f"The features reach magnitude {_magnitude(Z):.1e}; "
            "the solver expects embedding differences of moderate scale: standardize or "
            "normalize them (e.g. sklearn.preprocessing.StandardScaler, or "
            "SentencePairEmbedder(normalize=True)).")


@contextmanager
def _numerical_failure_as_value_error(Z, sw=None):
    """A linear solve that fails on the data's numbers is a problem with the input's
    scale (features, or sample weights ``sw``), reported as such (not as a LAPACK
    error from deep inside the solver). numpy's overflow and invalid-value warnings on
    the way are not shown: the result is checked for finiteness, and a failure is this
    ValueError (the torch backend warns nothing either)."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            yield
    except np.linalg.LinAlgError as exc:
        raise ValueError(
            f"The solver failed numerically ({exc}). {_scale_advice(Z, sw)}") from exc
    except RuntimeError as exc:
        if "LinAlgError" not in type(exc).__name__:  # torch.linalg's errors
            raise
        raise ValueError(
            f"The solver failed numerically ({exc}). {_scale_advice(Z, sw)}") from exc


def _require_finite(Z, *arrays, sw=None):
    """Refuse a solver result that overflowed, before it enters the model."""
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise ValueError("The solver produced non-finite values; the model is unchanged. "
                         + _scale_advice(Z, sw))


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _id_type(value):
    """A user id's kind for the mismatch warning, as the estimator compares ids: numbers
    across types (1 == 1.0 == np.int64(1) == True is one user), dates across types (a
    datetime, a date and a Timestamp of one day are one user), durations likewise, text,
    and everything else by type."""
    if isinstance(value, (numbers.Number, np.number, np.bool_)):
        return "numbers"
    if isinstance(value, (str, np.str_)):
        return "text"
    if isinstance(value, (datetime.date, np.datetime64)):
        return "dates"
    if isinstance(value, (datetime.timedelta, np.timedelta64)):
        return "durations"
    return type(value).__name__


def _all_held_out(held_out):
    """Whether the cross-fit gave held-out temperatures (or will give them: booleans)
    for both seen and unknown users, so no leave-one-out one is needed."""
    return bool(held_out) and all(held_out.get(k) not in (None, False)
                                  for k in ("seen", "unknown"))


def _warn_caller(message, category):
    """Warn at the first frame outside this package: the user's call, however many of
    the package's frames (helpers, the wrappers of the fitting methods) lie between."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


_MISSING = object()

# the L-BFGS iterations of a fit without user ids (one convex model; max_iter and tol
# are the alternating fit's)
_SINGLE_MODEL_ITERATIONS = 1000

# guards the creation of each estimator's own lock (:meth:`_state_lock`)
_STATE_LOCKS_GUARD = threading.Lock()


def _exclusive(method):
    """A method that changes the fitted state runs holding the estimator's lock:
    predictions, copies and saves from other threads wait for it and then see the
    state after it, never a mix (users_ of one state, user_weights_ of another)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._state_lock():
            return method(self, *args, **kwargs)

    return wrapper


def _unchanged_on_failure(method):
    """A training method that raises leaves the estimator's attributes as they were
    before the call: no half-set state, such as the refused data's ``n_features_in_``
    beside the previous fit's components (a crash deep in numpy at the next predict),
    or ``classes_`` on a model whose first fit failed (fitted to check_is_fitted).
    It runs holding the estimator's lock (:func:`_exclusive`)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        before = dict(vars(self))  # the lock is in it: it stays
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            state = vars(self)
            # only what the call changed is set back; the caches (an id index, the
            # user buffers) are dropped, not restored: the call may have grown them in
            # place, and they are rebuilt on demand
            for key in [key for key in state if key not in before]:
                del state[key]
            for key, value in before.items():
                if key.startswith("_loaded"):
                    state.pop(key, None)
                elif state.get(key, _MISSING) is not value:
                    state[key] = value
            raise

    return _exclusive(wrapper)


def _host_curvature(curvature):
    """``(A, S, total)`` with A in numpy float64 (A may be a torch tensor on a device)."""
    A, S, total = curvature
    if not isinstance(A, np.ndarray):
        A = np.asarray(A.detach().to("cpu").numpy(), dtype=np.float64)
    return A, S, total


def _ids_array(ids):
    """User ids as a numpy array, each id as it will be compared: tuples (of any
    lengths, mixed with other ids) stay tuples, dates and durations become pandas
    Timestamps and Timedeltas (numpy's datetime64 scalars do not compare equal to what
    an object array holds, so a date seen in fit was unknown at predict). A DataFrame
    or a string is refused: iterating one yields column labels or characters."""
    if isinstance(ids, pd.DataFrame):
        raise ValueError(
            f"user_ids must be 1-d; got a DataFrame with {ids.shape[1]} column(s). Pass "
            "one column (df['user_id'], not df[['user_id']]).")
    if isinstance(ids, (str, bytes)) or (isinstance(ids, np.ndarray) and ids.ndim == 0):
        raise ValueError("user_ids must be a 1-d sequence of ids, one per row of X.")
    if type(ids).__module__.split(".")[0] == "torch" and hasattr(ids, "detach"):
        # iterating a tensor gives 0-d tensors, which hash by identity: every row would
        # be a user of its own, known to no later call
        ids = ids.detach().cpu().numpy()
    if not isinstance(ids, np.ndarray):
        try:
            values = list(ids)
        except TypeError:
            raise ValueError(
                "user_ids must be a 1-d sequence of ids, one per row of X; got a "
                f"{type(ids).__name__}.") from None
        # one id per item: numpy would read tuples (hashable ids) or lists (unhashable,
        # refused as such) of equal lengths as a 2-d array
        ids = np.fromiter(values, dtype=object, count=len(values))
    if ids.dtype.kind in "mM" and ids.ndim == 1:
        ids = pd.Series(ids).to_numpy(dtype=object)
    elif (ids.dtype == object and ids.ndim == 1
          and pd.api.types.infer_dtype(ids, skipna=False) in _SCANNED_KINDS):
        ids = _normalized_ids(ids)
    return ids


def _normalized_ids(ids):
    """:func:`_id_value` of every id, computed once per distinct id (hashed at C speed;
    a million rows of a thousand tuple ids cost a thousand Python calls), and a missing
    value inside a tuple refused."""
    try:
        codes, distinct = pd.factorize(ids, use_na_sentinel=False)
    except TypeError:  # an unhashable id: require_hashable names it
        return ids
    distinct = np.asarray(distinct, dtype=object)
    values = np.fromiter(map(_id_value, distinct), dtype=object, count=len(distinct))
    for k, value in enumerate(values):
        if type(value) is tuple and _holds_missing(value):
            row = int(np.argmax(codes == k))
            raise ValueError(
                f"user_ids holds a missing value (None or NaN) inside the tuple at "
                f"row {row}: {value!r:.60}; every part of a composite id must be "
                "known (NaN equals nothing, so the user would be unknown later).")
    return values[codes]


# what pandas' infer_dtype calls an object array that may hold numpy dates, durations or
# scalars among other ids, or tuples: all-str, all-int, ... arrays are not scanned in Python
_SCANNED_KINDS = {"mixed", "mixed-integer", "datetime64", "timedelta64", "timedelta",
                  "date", "unknown-array"}


def _id_value(value):
    """One id as it will be compared: numpy dates and durations as pandas Timestamps and
    Timedeltas (a datetime64 scalar does not equal the same date in an object array),
    ``datetime.date`` days as Timestamps too (what ``Series.dt.date`` gives does not
    equal the same day as a Timestamp), numpy scalars as Python's, tuples part by part."""
    if isinstance(value, tuple):
        return tuple(_id_value(part) for part in value)
    if type(value) is datetime.date:
        return pd.Timestamp(value)
    if isinstance(value, (np.datetime64, np.timedelta64)):
        try:
            return (pd.Timestamp if isinstance(value, np.datetime64) else pd.Timedelta)(value)
        except (ValueError, OverflowError):  # outside pandas' range: compared as given
            return value
    if isinstance(value, (np.number, np.bool_, np.str_, np.bytes_)):
        # 1 and np.int64(1) are one user; as Python scalars they also sort as one type
        return value.item()
    return value


def _dates_as_timestamps(ids, unique):
    """Object ids with every ``datetime.date`` (alone or inside a tuple) as that day's
    Timestamp, as :func:`_id_value` reads them; the same array when there is none, or
    when ``unique`` ids would become duplicates (a date beside its own Timestamp: those
    users stay as they were). Never raises: it reads what an older version pickled."""
    kind = pd.api.types.infer_dtype(ids, skipna=True)
    if kind not in ("date", "mixed"):
        return ids

    def has_date(value):
        return type(value) is datetime.date or (
            type(value) is tuple and any(has_date(part) for part in value))

    if kind == "mixed" and not any(map(has_date, ids)):
        return ids
    # the ids were read by _id_value when fitted: only the dates change
    converted = np.fromiter(map(_id_value, ids), dtype=object, count=len(ids))
    if unique and len(set(converted.tolist())) < len(converted):
        return ids
    return converted


def _holds_missing(value):
    """Whether a (nested) tuple id holds None, NaN, NaT or pd.NA."""
    if isinstance(value, tuple):
        return any(_holds_missing(part) for part in value)
    try:
        missing = pd.isna(value)
    except (TypeError, ValueError):
        return False
    return isinstance(missing, (bool, np.bool_)) and bool(missing)


def _check_object_labels(y):
    """Labels in an object array: none missing, and of types that sort together (numpy's
    unique raised "'<' not supported between 'str' and 'int'" from deep inside)."""
    missing = pd.isna(y)
    if missing.any():
        raise ValueError(
            f"y contains a missing label (None or NaN) at row {int(np.argmax(missing))}; "
            "every comparison needs its label.")
    try:
        np.unique(y)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in y})
        raise TypeError(
            f"y mixes labels of types that do not compare ({', '.join(kinds)}); give "
            "labels of one type, such as 0/1 or 'a'/'b'.") from None


def _check_label_values(y):
    """Labels none of which is missing (None, NaN; an infinite float too) and whose
    types sort together, each refusal naming a row."""
    if y.dtype == object:
        _check_object_labels(y)
    elif y.dtype.kind in "fc" and not np.isfinite(y).all():
        # scikit-learn's check casts first (a RuntimeWarning) and names no row
        row = int(np.flatnonzero(~np.isfinite(y.ravel()))[0])
        raise ValueError(
            f"y contains a missing or infinite label ({y.ravel()[row]}) at row {row}; "
            "every comparison needs its label.")


# rows per chunk of the users' leverage in the calibration (B^2 doubles a row)
# rows from which a hash index of ``users_`` is built for the lookup (a dict lookup per
# row costs about 0.2 us in Python; building the index about 0.05 us per known user)
_TYPED_LOOKUP_ROWS = 65536


def _drop_unweighted(Z, y01, sw, ids, checked=True):
    """The rows of weight 0 removed when the rows have user ids.

    A row of weight 0 adds nothing to the objective, but a user whose rows all weigh
    0 would still become a known user (the prior's weights with the fitted users'
    temperature): fitting without those rows keeps such a user unknown, as
    :meth:`LowRankRewardEstimator.partial_fit_users` does. The removed rows are still
    checked to be finite (X with a NaN is refused whatever its weights) unless
    ``checked`` says the caller's validation did it already. Without zero weights
    nothing is copied.
    """
    if ids is None or sw.all():
        return Z, y01, sw, ids
    keep = sw != 0
    if not checked:
        assert_all_finite(Z[~keep], input_name="X", estimator_name="LowRankRewardEstimator")
    return Z[keep], y01[keep], sw[keep], ids[keep]


def _classes_argument(classes):
    """partial_fit's ``classes`` as an array of two distinct, present labels."""
    def refuse(why):
        return ValueError(f"classes must list the two labels, as classes=[0, 1]; {why}")
    if isinstance(classes, (str, bytes, Set, Mapping)) or not (
            hasattr(classes, "__len__") or hasattr(classes, "__array__")):
        raise refuse(f"got a {type(classes).__name__} ({classes!r:.60}), which is not an "
                     "ordered array-like.")
    values = np.asarray(classes)
    if values.ndim != 1:
        raise refuse(f"got an array of shape {values.shape}.")
    if values.shape[0] != 2:
        raise refuse(f"got {values.shape[0]} labels {values.tolist()[:5]}. Only binary "
                     "classification is supported (a preferred or b preferred).")
    if pd.isna(values).any():
        raise refuse(f"got a missing label in {values.tolist()}.")
    try:
        np.unique(values)
    except TypeError:
        raise TypeError(f"classes mixes labels of types that do not compare "
                        f"({values.tolist()}); give labels of one type.") from None
    if values[0] == values[1]:
        raise refuse(f"got the label {values.tolist()[0]!r} twice.")
    return values


def _non_numeric_columns(X):
    """Columns of a pandas or polars frame that do not hold numbers or booleans (none
    for other inputs: scikit-learn's conversion judges those)."""
    if isinstance(X, pd.DataFrame):
        types = pd.api.types
        return [c for c, t in X.dtypes.items()
                if not (types.is_numeric_dtype(t) or types.is_bool_dtype(t))]
    if is_polars(X):
        return [c for c, t in X.schema.items()
                if not (t.is_numeric() or type(t).__name__ == "Boolean")]
    return []


def _merged_ids_dtype(old, new):
    """The dtype that holds ids of both dtypes as they are: one of them when it holds
    the other (text up to _WIDEST_TEXT_ID characters wide), else object (ints beside
    text stay ints; one long id does not make every user's slot that wide)."""
    if old.kind == "O":
        return old
    if old.kind == new.kind == "U":
        wider = old if old.itemsize >= new.itemsize else new
        return wider if wider.itemsize <= 4 * _WIDEST_TEXT_ID else np.dtype(object)
    return old if old == new else np.dtype(object)


# the widest text id kept in a fixed-width array (4 bytes a character, every user)
_WIDEST_TEXT_ID = 64


def _concat_ids(old, new):
    """Remembered ids and a batch's ids, each id keeping its type (numpy would turn
    ints into strings next to strings)."""
    if old.dtype != new.dtype:
        old, new = old.astype(object), new.astype(object)
    return np.concatenate([old, new])

logger = logging.getLogger(__name__)


class LowRankRewardEstimator(ClassifierMixin, BaseEstimator):
    """Personalized Bradley-Terry reward model with a shared low-rank basis (LoRe).

    Each comparison row holds ``z = phi(x, a) - phi(x, b)``, the difference of the
    embeddings of two responses to one prompt, and the id of the user who judged it.
    The model learns a basis ``V`` of ``n_components`` primitive reward functions
    and one weighting ``w_u`` per user::

        P(a preferred to b | user u) = sigmoid(z . V w_u)

    There is no intercept, so swapping a and b flips the probability exactly.
    Users absent from training get the population weights (those of the prior's
    mean); :meth:`partial_fit_users` adapts new users from a few comparisons
    with the basis frozen, shrinking them toward the population.

    Parameters
    ----------
    n_components : int, default=8
        Rank B of the shared reward basis. 8 is the default: on Jester it was 1.4
        points more accurate on seen users than rank 4 (docs/evaluation.md); search
        it with GridSearchCV for your data.
    user_weights : {"free", "simplex"}, default="free"
        ``"free"``: weights in R^B with a Gaussian prior around the population
        weights. ``"simplex"``: weights on the probability simplex (a convex mix of
        the basis rewards, as in the paper), parametrized by a softmax.
    alpha : float, default=1.0
        L2 strength on the basis, in units of comparisons.
    prior_strength : float, default=1.0
        Precision of the prior that shrinks each user's parameters toward the
        population, in units of comparisons: a user with n pairs weighs them
        against a prior worth about ``prior_strength`` pairs. This is the prior of
        the fit itself and of users new to a :meth:`partial_fit` stream; new users
        of :meth:`partial_fit_users` get the empirical-Bayes prior (see
        ``shrinkage``).
    shrinkage : "auto" or float, default="auto"
        Scale of the precision of the prior of new users folded in with
        :meth:`partial_fit_users`: ``prior_precision_`` is ``shrinkage_`` times the
        empirical-Bayes precision estimated from the fitted users. The spread of
        fitted users' weights overstates how far a new user may safely move when the
        basis itself is poorly determined (few users for a large rank), so
        ``"auto"`` chooses the scale among 1, 2, 4, ..., 1024 by cross-fitting:
        folds of users are held out (as many as hold out about 60 users), the basis
        is refitted without them (from its own spectral start, loose tolerance), and
        the held-out users are adapted on 5, 10 and 20 of their pairs and scored on
        the others. It costs up to five refits (one per fold): about two or three
        fits' time on 30 to 100 users, half a fit's at 1,000 users (one fold);
        a float fixes the scale (1.0: the empirical-Bayes prior as estimated).
    stream_memory : int, default=20000
        Rows that :meth:`partial_fit` remembers. While all the rows streamed since
        the first :meth:`partial_fit` call fit in it, every call refits the model on
        all of them (warm-started from the current basis), so many small calls give
        what one :meth:`fit` on the same rows gives. The first call that would exceed
        it drops the memory, and from then on each call updates the model from its
        own batch with Laplace priors (memory-free). 0 never remembers rows.
        Remembered rows are part of the model's state: they are pickled and saved
        with it, and :meth:`forget_users` deletes a user's rows from them. A
        memory-free call scores its batch before learning from it and refits the
        seen users' and the population's temperatures on the last 1,000 such
        logits of each (docs/user_guide.md, "Streaming").
    user_col : str, default="user_id"
        Column of a DataFrame ``X`` that holds the user ids.
    backend : {"auto", "numpy", "torch"}, default="auto"
        Array backend of the solver. ``"auto"`` picks torch on a CUDA GPU when one
        is visible, numpy otherwise. Fitted attributes are numpy either way. A
        :meth:`partial_fit_users` call of at most 65,536 rows runs on the host with
        either backend: for a few comparisons per user, moving them to a GPU costs
        more than the step itself.
    device : str or None, default=None
        None or ``"auto"`` (CUDA when torch sees a GPU, else the CPU), ``"cpu"``,
        ``"cpu:N"``, ``"cuda"`` or ``"cuda:N"``; the numpy backend takes the CPU
        ones only. Checked at fit time (``ValueError`` for anything else or a GPU
        that is not there).
    max_iter : int, default=300
        Maximum number of outer rounds (one user step and one basis step each); a fit
        that reaches it warns (``ConvergenceWarning``). A fit without user ids is one
        convex model solved to a gradient of 1e-10 instead (up to 1,000 L-BFGS
        iterations, warning at that cap): ``max_iter`` and ``tol`` do not apply to it.
    tol : float, default=1e-4
        Stop when the relative change of the objective stays below ``tol`` for
        three rounds. Tighter values fit the training pairs more closely without
        predicting held-out pairs better (measured on Jester and planted data, see
        docs/benchmarks.md) and take several times more rounds; on small, nearly
        separable problems, where the objective creeps for hundreds of rounds, the
        default stops short of the minimum: lower it there. :meth:`partial_fit`
        solves its first call and its memory-free updates to ``tol / 10``: a stream
        keeps each call's error.
    random_state : int, RandomState instance or None, default=None
        Seeds the spectral initialization (the fill of basis columns beyond the
        data's rank, and the randomized SVD used when there are more than 512 users
        and more than 512 features) and the cross-fit's refits. The solver itself is
        deterministic.
    calibrate : bool, default=True
        Learn temperatures that calibrate the probabilities (the logits are divided
        by them; predicted labels do not change), each on rows the model it stands
        for did not see. With ``shrinkage="auto"`` they come from the cross-fit,
        whose refit leaves out a fifth of the users and every fifth distinct pair of
        the other users: users of the fit get ``temperature_``, fitted on those
        held-out pairs (the users refitted on all their pairs and the exact one-step
        correction for leaving each pair out; below 1 only on 500 pairs or more);
        users added by :meth:`partial_fit_users` get ``fold_in_temperature_``,
        fitted on the held-out users adapted from a few of their pairs; unknown
        users get ``population_temperature_``, fitted on the held-out users under
        the population weights. Each needs 50 distinct held-out rows of its own (pairs of
        seen users: users with fewer than five distinct pairs hold out none; rows of
        held-out users for the other two). Without them, or where the cross-fit does
        not run (a float ``shrinkage``, fewer than ten users or than five with two
        pairs), ``temperature_`` and ``population_temperature_`` each come from
        approximate leave-one-out logits of the training rows (the user's weights
        and the basis without that row, a Newton step away; ``temperature_`` never
        below 1), which overstate the basis's overfit where it has many parameters
        for its rows (a ``UserWarning`` when ``temperature_`` reaches its bound,
        20), and ``fold_in_temperature_`` is ``temperature_``.
    verbose : int, default=0
        Log the objective every round at INFO level when > 0.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        Labels; the second class means "response a preferred".
    components_ : ndarray of shape (n_components, n_features)
        The basis, one primitive reward direction per row.
    users_ : ndarray of shape (n_users,)
        User ids, the row order of ``user_weights_``.
    user_weights_ : ndarray of shape (n_users, n_components)
        Each user's weights on the basis.
    user_precision_ : ndarray of shape (n_users, n_components, n_components)
        Posterior precision of each user's parameters (prior plus data curvature);
        later updates of a known user start from it.
    population_weights_ : ndarray of shape (n_components,)
        Weights used for unknown users and for rows without a user id.
    prior_mean_ : ndarray of shape (n_components,)
        Prior centre of a new user's parameters (the population, in parameter space).
    prior_precision_ : ndarray of shape (n_components, n_components)
        Prior precision of a new user's parameters: ``shrinkage_`` times the
        empirical-Bayes precision.
    shrinkage_ : float
        The scale applied (chosen by cross-fitting when ``shrinkage="auto"``).
    n_iter_ : int
        Outer rounds run by the last fit (without user ids: the iterations of the
        single model's L-BFGS).
    objective_ : float
        The objective, divided by the total sample weight, where the alternating
        minimization stopped: before the users are solved again under the
        empirical-Bayes prior, so the stored ``user_weights_`` give a slightly
        different value (without user ids: the single model's objective).
    temperature_ : float
        The logits of the users of the fit are divided by it (1.0 when
        ``calibrate=False``): fitted on the cross-fit's held-out pairs of seen users,
        or on leave-one-out logits without a cross-fit (``calibrate``); a memory-free
        :meth:`partial_fit` refits it on its batches' known users' rows as the model
        predicted them before each update (``stream_memory``).
    fold_in_temperature_ : float
        The same for users first seen by :meth:`partial_fit_users` (new users
        adapted from a few pairs): the temperature of the cross-fit's held-out users
        under the chosen ``shrinkage_``; ``temperature_`` when no cross-fit ran.
    user_temperature_ : ndarray of shape (n_users,)
        Each known user's temperature (``temperature_`` or ``fold_in_temperature_``).
    population_temperature_ : float
        The same for unknown users and rows without ids (the population model):
        fitted on the cross-fit's held-out users under the population weights, or on
        leave-one-out logits without a cross-fit; a memory-free :meth:`partial_fit`
        refits it on its batches' rows under the population weights before each
        update.
    n_features_in_ : int
        Number of embedding features (the user column excluded).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when X was a DataFrame with string column names.

    Examples
    --------
    >>> from sklearn_lore import LowRankRewardEstimator
    >>> from sklearn_lore.datasets import make_preference_data
    >>> X, y, users, truth = make_preference_data(n_users=30, n_pairs_per_user=40,
    ...                                           n_features=16, random_state=0)
    >>> est = LowRankRewardEstimator(n_components=3, random_state=0)
    >>> est = est.fit(X, y, user_ids=users)
    >>> est.components_.shape, est.user_weights_.shape
    ((3, 16), (30, 3))
    >>> proba = est.predict_proba(X[:2], user_ids=users[:2])
    >>> proba.shape
    (2, 2)
    """

    _parameter_constraints = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "user_weights": [StrOptions({"free", "simplex"})],
        "alpha": [Interval(numbers.Real, 0, None, closed="neither")],
        "prior_strength": [Interval(numbers.Real, 0, None, closed="neither")],
        "shrinkage": [StrOptions({"auto"}), Interval(numbers.Real, 0, None, closed="neither")],
        "stream_memory": [Interval(numbers.Integral, 0, None, closed="left")],
        "user_col": [str],
        "backend": [StrOptions({"auto", "numpy", "torch"})],
        "device": [str, None],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "calibrate": ["boolean"],
        "verbose": ["verbose"],
    }

    def _validate_params(self):
        """scikit-learn's check of the constraints, and no bool where an integer is
        expected (``True`` is an ``Integral`` to Python: ``n_components=True`` failed
        deep in the solver, ``max_iter=True`` ran one round)."""
        super()._validate_params()
        for name in ("n_components", "stream_memory", "max_iter", "random_state"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)):
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be an int, "
                    f"not a bool; got {value!r}.")

    def __init__(
        self,
        n_components=8,
        *,
        user_weights="free",
        alpha=1.0,
        prior_strength=1.0,
        shrinkage="auto",
        stream_memory=20000,
        user_col="user_id",
        backend="auto",
        device=None,
        max_iter=300,
        tol=1e-4,
        random_state=None,
        calibrate=True,
        verbose=0,
    ):
        self.n_components = n_components
        self.user_weights = user_weights
        self.alpha = alpha
        self.prior_strength = prior_strength
        self.shrinkage = shrinkage
        self.stream_memory = stream_memory
        self.user_col = user_col
        self.backend = backend
        self.device = device
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.calibrate = calibrate
        self.verbose = verbose

    # ------------------------------------------------------------------
    # validation at the boundary

    def _split_users(self, X, user_ids, reads_ids=True):
        """Separate the user ids (column or keyword) from the numeric features.

        ``reads_ids``: False for a model fitted without ids, which predicts the same
        for every row (a frame indexed by user is then no mistake)."""
        ids = None
        if hasattr(X, "columns") and self.user_col in X.columns:
            if user_ids is not None:
                raise ValueError(
                    f"User ids were given twice: X has a {self.user_col!r} column and "
                    "user_ids= was passed. Use one route."
                )
            column = X[self.user_col]
            if getattr(column, "ndim", 1) != 1:
                raise ValueError(
                    f"X has {column.shape[1]} columns named {self.user_col!r}; the user id "
                    "column must be unique."
                )
            ids = column.to_numpy()
            # a polars frame drops a column by name (its columns are unique)
            X = (X.drop(columns=[self.user_col]) if isinstance(X, pd.DataFrame)
                 else X.drop(self.user_col))
        elif user_ids is not None:
            ids = user_ids
        elif (hasattr(X, "columns") and isinstance(getattr(X, "index", None), pd.Index)
              and self.user_col in [name for name in X.index.names if name is not None]
              and reads_ids):
            # scikit-learn ignores the index: the rows would silently go without users
            raise ValueError(
                f"X holds the user ids in its index ({self.user_col!r}), not in a column; "
                "an index is not read. Use X.reset_index() to make it a column, or pass "
                f"user_ids=X.index.get_level_values({self.user_col!r}).")
        return X, ids

    def _check_ids(self, ids, n_samples):
        if ids is None:
            return None
        if isinstance(ids, (Set, Mapping)):
            # one id per row, in row order: a set or a dict has no row order
            raise ValueError(
                f"user_ids must be a sequence with one id per row of X, in row order; got "
                f"a {type(ids).__name__}, which has no order.")
        ids = _ids_array(ids)
        if ids.ndim != 1:
            raise ValueError(f"user_ids must be 1-d; got an array of shape {ids.shape}.")
        if ids.shape[0] != n_samples:
            raise ValueError(
                f"user_ids has {ids.shape[0]} entries but X has {n_samples} rows; "
                "give one user id per row."
            )
        missing = pd.isna(ids)
        if missing.any():
            raise ValueError(
                f"user_ids contains missing values (None or NaN) at row {int(np.argmax(missing))}; "
                "every comparison needs a user id."
            )
        return require_hashable(ids)

    def _check_embedder_layout(self, X):
        """Refuse an embedder's output whose user column is named otherwise than
        ``user_col``: its numeric ids would silently be fitted as a feature (one that
        does not flip sign when a and b swap)."""
        columns = getattr(X, "columns", None)
        if columns is None or len(columns) < 2 or self.user_col in columns:
            return
        first, rest = columns[0], list(columns[1:])
        if (isinstance(first, str) and not first.startswith("emb_")
                and rest == [f"emb_{i}" for i in range(len(rest))]):
            raise ValueError(
                f"X looks like an embedder's output with the user column {first!r}, but "
                f"user_col is {self.user_col!r}: the ids would be fitted as a feature. Give "
                "the embedder and the estimator the same user_col.")

    def _check_prefixed_user_column(self, X):
        """Refuse a frame whose user column was renamed with a prefix (a ColumnTransformer's
        ``remainder__user_id``), or that holds a second, prefixed copy of the ids beside
        the user column (a FeatureUnion of two embedders: ``a__user_id``,
        ``b__user_id``): numeric ids would silently be fitted as a feature."""
        columns = getattr(X, "columns", None)
        if columns is None or not isinstance(self.user_col, str):
            return
        base = self.user_col.rsplit("__", 1)[-1]
        copies = [c for c in columns if isinstance(c, str) and c != self.user_col
                  and (c == base or c.endswith("__" + base))]
        if not copies:
            return
        if self.user_col in columns:
            raise ValueError(
                f"X has the user column {self.user_col!r} and another copy of the ids, "
                f"{copies[0]!r}, which would be fitted as a feature (a FeatureUnion of "
                "embedders gives each its own copy). Keep one: give the other embedders a "
                "user_col the data lacks (SentencePairEmbedder(user_col='-'), say), so that "
                "they leave the ids out.")
        raise ValueError(
            f"X has no {self.user_col!r} column but has {copies[0]!r}: the user ids under a "
            "prefixed name (a ColumnTransformer with verbose_feature_names_out=True, or a "
            "FeatureUnion, names its outputs '<step>__<column>') would be fitted as a "
            f"feature. Set user_col={copies[0]!r} (and keep no other copy of the ids), or "
            "build the ColumnTransformer with verbose_feature_names_out=False.")

    @staticmethod
    def _text_column_error(X, user_col):
        """The error for an array X holding text: which column, and the likely cause
        (a user id column that lost its name when a meta-estimator made X an array)."""
        values = np.asarray(X, dtype=object)
        where = ""
        if values.ndim == 2:  # the first cell that is not a number, column by column
            for j in range(values.shape[1]):
                try:  # a column of numbers at C speed (cell by cell: 4 s for 40,000 x 385)
                    values[:, j].astype(np.float64)
                    continue
                except (TypeError, ValueError):
                    pass
                i = next((i for i in range(values.shape[0])
                          if not _is_number_like(values[i, j])), None)
                if i is not None:
                    where = f" in column {j} (row {i} holds {values[i, j]!r})"
                    break
        return ValueError(
            f"X must hold numbers, but it holds text{where}. If that column is the user "
            "ids, it lost its name: a meta-estimator (BaggingClassifier, say) or "
            "np.asarray turned the DataFrame into an array. Pass the ids as user_ids= "
            "(with metadata routing through meta-estimators) or keep X a DataFrame with "
            f"a {user_col!r} column. Texts must be embedded first (SentencePairEmbedder).")

    def _validate_X(self, X, user_ids, reset, finite=True):
        """Validated rows and ids. ``finite=False`` skips the finiteness pass over X: the
        caller then checks its product with the basis (:meth:`_project`)."""
        self._check_embedder_layout(X)
        self._check_prefixed_user_column(X)
        X, ids = self._split_users(X, user_ids, reads_ids=reset or len(
            getattr(self, "users_", [None])) > 0)
        if hasattr(X, "columns") and X.shape[1] == 0:
            raise ValueError(
                f"X has no feature columns besides the user column {self.user_col!r}; "
                "pass the embedding differences as the other columns."
            )
        bad = _non_numeric_columns(X)
        if bad:
            raise ValueError(
                f"X must be numeric apart from the user column {self.user_col!r}; "
                f"non-numeric columns: {bad[:5]}. Embed texts first "
                "(SentencePairEmbedder), set user_col, or convert columns of numbers "
                "held as objects or text with X.astype(float)."
            )
        try:
            Z = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32],
                              ensure_min_samples=1, ensure_all_finite=finite)
        except ValueError as exc:
            if "could not convert" not in str(exc) or hasattr(X, "columns"):
                raise
            raise self._text_column_error(X, self.user_col) from exc
        return Z, self._check_ids(ids, Z.shape[0])

    def _project(self, Z, components=None):
        """``Z V`` (n, B) in Z's dtype, checking X's finiteness on the product
        (``components``: the basis read earlier, else ``components_``).

        A NaN or inf anywhere in a row makes every entry of that row's product
        non-finite (``inf * 0`` and ``NaN * 0`` are NaN), so checking the B values of
        each row replaces a pass over its d features; only when the product is not
        finite is X itself examined, for scikit-learn's own message. Features that no
        basis vector uses (all-zero columns of ``components_``) are checked directly:
        a BLAS may skip a zero multiplier instead of multiplying NaN by it.
        """
        V = (self.components_ if components is None else components).T
        if V.dtype != Z.dtype:
            V = V.astype(Z.dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            F = matmul_rows(Z, V)  # in row blocks, as the solver's pass
        ignored = None
        if np.count_nonzero(V) < V.size:
            ignored = ~np.any(V != 0, axis=1)
        if not np.isfinite(F).all() or (ignored is not None and ignored.any()
                                        and not np.isfinite(Z[:, ignored]).all()):
            assert_all_finite(Z, input_name="X", estimator_name=type(self).__name__)
            raise ValueError(
                "The product of X with the basis overflowed although X is finite. "
                + _scale_advice(Z))
        return F

    def _check_trainable(self, Z, continuing=True):
        """Training input the solver can take: a moderate scale, and (for an update
        of a fitted model) the fitted shapes still those of the parameters
        (``set_params`` after fitting)."""
        # finite float32 values stay below 3.4e38: only wider dtypes need the two passes
        # (float32 rows, sentence embeddings, skip the large-scale warning too: a fold-in
        # of a few thousand rows at d = 4096 would pay a few milliseconds for it)
        if float(np.finfo(Z.dtype).max) <= _MAX_FEATURE:
            return self._check_fitted_shapes(continuing)
        top = _magnitude(Z)
        if top > _MAX_FEATURE:
            raise ValueError(f"Features larger than {_MAX_FEATURE:.0e} overflow the solver. "
                             + _scale_advice(Z))
        if top > _LARGE_FEATURE:
            _warn_caller(
                f"Features beyond {_LARGE_FEATURE:.0e} make the solver's steps lose "
                "precision: it may stop early, short of its optimum (at 1e9 it stopped "
                "after four rounds of tiny steps). " + _scale_advice(Z), UserWarning)
        self._check_fitted_shapes(continuing)

    def _check_fitted_shapes(self, continuing):
        """An update of a fitted model needs the fitted shapes still those of the
        parameters (``set_params`` after fitting)."""
        fitted = getattr(self, "components_", None) if continuing else None
        if fitted is not None and fitted.shape[0] != self.n_components:
            raise ValueError(
                f"n_components is {self.n_components} but the fitted basis has "
                f"{fitted.shape[0]} components (changed with set_params after fitting); "
                "call fit to start over, or set it back."
            )
        kind = getattr(self, "_fitted_kind", None) if fitted is not None else None
        if kind is not None and kind != self._kind:
            raise ValueError(
                f"user_weights is {self._kind!r} but the model was fitted with {kind!r} "
                "user weights (changed with set_params after fitting); call fit to start "
                "over, or set it back."
            )

    def _validate_y(self, y, n_samples, sample_weight, Z):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            from sklearn.exceptions import DataConversionWarning

            _warn_caller("A column-vector y was passed when a 1d array was expected.",
                         DataConversionWarning)
            y = y.ravel()
        if y.ndim != 1 or y.shape[0] != n_samples:
            raise ValueError(
                f"y must be 1-d with one label per row of X ({n_samples}); got shape {y.shape}."
            )
        _check_label_values(y)
        if y.dtype.kind not in "biu":  # integer labels are always class labels
            check_classification_targets(y)
        sw = _check_sample_weight(sample_weight, Z, dtype=np.float64, ensure_non_negative=True)
        if not np.isfinite(sw).all():
            # scikit-learn checks an array's values but broadcasts a scalar unchecked
            raise ValueError(f"sample_weight must be finite; got {sample_weight!r}.")
        if sw.size and float(sw.max()) > _MAX_WEIGHT:
            # the penalties vanish beside them: whether a solve fails then depends on the
            # LAPACK library's round-off (numpy and torch disagreed)
            raise ValueError(f"Sample weights above {_MAX_WEIGHT:.0e} are refused. "
                             + _scale_advice(Z, sw))
        return y, sw

    def _binary_labels(self, y):
        known = np.isin(y, self.classes_)
        if not known.all():
            raise ValueError(
                f"y contains labels {np.unique(y[~known])[:5].tolist()} unseen in the "
                f"classes {self.classes_.tolist()}; the model is binary."
            )
        return (y == self.classes_[1]).astype(np.float64)

    @staticmethod
    def _set_classes(y):
        classes = np.unique(y)
        if classes.shape[0] == 1:
            raise ValueError(
                f"Only one class ({classes[0]!r}) is present in y; a preference model "
                "needs comparisons with both outcomes (2 classes)."
            )
        if classes.shape[0] > 2:
            raise ValueError(
                "Only binary classification is supported. The type of the target is "
                f"multiclass: y has {classes.shape[0]} classes, and LowRankRewardEstimator "
                "is a binary preference model (a preferred or b preferred)."
            )
        return classes

    # ------------------------------------------------------------------
    # user bookkeeping

    @staticmethod
    def _factorize(ids):
        """Group index of each row and the sorted distinct ids (appearance order if unsortable).

        Ids of one Python type come back as a typed numpy array (int or str);
        mixed types stay an object array so that 1 and "1" remain different users.
        """
        ids = np.asarray(ids, dtype=object)
        try:
            codes, uniques = pd.factorize(ids, sort=True)
        except TypeError:
            codes, uniques = pd.factorize(ids, sort=False)
        values = list(uniques)
        kinds = {type(v) for v in values}
        users = np.fromiter(values, dtype=object, count=len(values))
        if len(kinds) == 1 and kinds <= {int, str, np.int64, np.int32, np.str_}:
            typed = np.asarray(values)
            # numpy strings drop trailing NUL characters, and ints on both sides of 2**63
            # become float64: such ids stay objects
            if typed.dtype.kind in "iu" or (typed.dtype.kind == "U" and typed.tolist() == values
                                            and typed.itemsize <= 4 * _WIDEST_TEXT_ID):
                users = typed
        return codes.astype(np.intp), users

    def _user_index(self, ids):
        """Row index of each id in ``users_``; -1 for unknown users.

        The hash index of ``users_`` is built once per ``users_`` array and kept
        (``_loaded_user_index``, neither pickled nor saved): with a million users,
        building it costs 0.1 to 0.3 s, more than predicting a few rows. Every
        change of the users assigns a new ``users_`` array, which drops the index
        (appending users extends it instead).
        """
        if len(self.users_) == 0:
            return np.full(len(ids), -1, dtype=np.intp)
        lookup = self._typed_lookup(ids)
        if lookup is not None:
            return lookup.get_indexer(ids).astype(np.intp, copy=False)
        positions = self._id_positions()
        # map with a constant default: no generator frame per id (52 against 78 us for
        # 500 ids here)
        return np.fromiter(map(positions.get, ids, itertools.repeat(-1)), dtype=np.intp,
                           count=len(ids))

    def _drop_caches(self):
        """Forget the per-process caches (id index, user buffers), rebuilt on demand."""
        for key in [key for key in vars(self) if key.startswith("_loaded")]:
            delattr(self, key)

    def _typed_lookup(self, ids):
        """A pandas index of ``users_`` for ids whose equality is the dict's (ints of
        one dtype against ints of that dtype, text against text), where it pays: many
        rows, or an index already built for this ``users_``. None otherwise."""
        users = self.users_
        if not isinstance(ids, np.ndarray):
            return None
        if users.dtype.kind in "iu":
            typed = ids.dtype == users.dtype
        elif users.dtype.kind == "U":
            typed = ids.dtype.kind == "U" or (
                ids.dtype == object and len(ids) >= _TYPED_LOOKUP_ROWS
                and pd.api.types.infer_dtype(ids, skipna=False) == "string")
        else:
            typed = False
        if not typed:
            return None
        cached = getattr(self, "_loaded_user_lookup", None)
        if cached is None or cached[0] is not users:
            if len(ids) < _TYPED_LOOKUP_ROWS:
                return None
            cached = (users, pd.Index(users))
            self._loaded_user_lookup = cached
        return cached[1]

    def _id_positions(self):
        """dict id -> row of ``users_`` (ids compare by value: 1, 1.0 and True are one id,
        1 and "1" are two), cached with the ``users_`` array it indexes."""
        cached = getattr(self, "_loaded_user_index", None)
        if cached is None or cached[0] is not self.users_:
            cached = (self.users_, {u: i for i, u in enumerate(self.users_.tolist())})
            self._loaded_user_index = cached
        return cached[1]

    def _state_lock(self):
        """This estimator's lock (re-entrant), made on first use and never pickled,
        saved or copied: the methods that change the fitted state hold it throughout,
        predictions while they read the state (not while they multiply), and pickling
        and saving while they copy it."""
        lock = self.__dict__.get("_mutex")
        if lock is None:
            with _STATE_LOCKS_GUARD:
                lock = self.__dict__.get("_mutex")
                if lock is None:
                    lock = self.__dict__["_mutex"] = threading.RLock()
        return lock

    def __getstate__(self):
        with self._state_lock():  # the state of one moment, not one torn by an update
            state = super().__getstate__()
            state = {k: v for k, v in state.items()
                     if not k.startswith("_loaded") and k != "_mutex"}
            if "_stream_curvature" in state:
                state["_stream_curvature"] = _host_curvature(state["_stream_curvature"])
            # a fold-in writes known users' rows in place into the buffers these are
            # views of: copied here, not when pickle gets to them after the lock
            for key in ("users_", "user_weights_", "user_precision_", "user_temperature_"):
                if isinstance(state.get(key), np.ndarray):
                    state[key] = state[key].copy()
        return state

    def __setstate__(self, state):
        # ids pickled before datetime.date ids were read as Timestamps: as they are read
        # now, or those users would never be found again (the population, silently)
        for key in ("users_", "_stream_memory"):
            value = state.get(key)
            ids = value[3] if key == "_stream_memory" and value is not None else value
            if isinstance(ids, np.ndarray) and ids.dtype == object and ids.ndim == 1:
                ids = _dates_as_timestamps(ids, unique=key == "users_")
                state[key] = ids if key == "users_" else value[:3] + (ids,)
        super().__setstate__(state)
        self._state_lock()  # before any thread can share the copy

    def _curvature_on(self, be):
        """The streaming curvature ``(A, S, total)`` with A in ``be``'s arrays.

        A fit on a GPU leaves the d x d factor A where it was computed (copying it
        to the host took about 0.1 s of a one-second fit with d = 4096); a stream
        continued with the same backend uses it there, and pickling, saving or a
        numpy backend copy it to the host (:meth:`_state_to_host`).
        """
        A, S, total = self._stream_curvature
        if be.name == "numpy":
            return self._state_to_host()._stream_curvature
        return be.asarray(A), S, total

    def _state_to_host(self):
        """Fitted state held on a device copied to numpy in place (before saving)."""
        curvature = getattr(self, "_stream_curvature", None)
        if curvature is not None:
            self._stream_curvature = _host_curvature(curvature)
        return self

    def _row_weights(self, ids, n_samples):
        """Weights and logit temperature of each row (the population's for unknown users)."""
        W = np.tile(self.population_weights_, (n_samples, 1))
        T = np.full(n_samples, self.population_temperature_)
        if ids is not None:
            idx = self._user_index(ids)
            known = idx >= 0
            W[known] = self.user_weights_[idx[known]]
            T[known] = self._user_temperatures()[idx[known]]
            if not known.any():
                self._warn_if_ids_of_another_type(ids)
        return W, T

    def _warn_if_ids_of_another_type(self, ids):
        """No row's user is known, and the ids are of other types than the fitted
        ones (ints read back as text from a CSV, say): every row silently got the
        population's weights."""
        fitted = {_id_type(u) for u in self.users_[:1000]}
        given = {_id_type(u) for u in np.asarray(ids, dtype=object)[:1000]
                 if not (isinstance(u, str) and u == POPULATION_ID)}
        if fitted and given and not fitted & given:
            _warn_caller(
                f"None of the {len(set(ids.tolist()))} user ids given is a fitted user, and "
                f"they are {' and '.join(sorted(given))} while the fitted users' ids are "
                f"{' and '.join(sorted(fitted))} ('1' and 1 are different users): every row "
                "got the population's weights. Pass the ids as the fit had them.",
                UserWarning)

    @property
    def _kind(self):
        return self.user_weights

    def _weights_from_params(self, theta):
        if self._kind == "simplex":
            e = np.exp(theta - theta.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return theta.copy()

    def _params_from_weights(self, W):
        if self._kind == "simplex":
            logw = np.log(np.maximum(W, 1e-300))
            return logw - logw.mean(axis=1, keepdims=True)
        return W.copy()

    def _update_population(self, F, y01, sw):
        """Streaming update of the population: a pseudo-user that sees every row.

        One weighting of the basis, fitted to the batch's rows pooled (``F = Z V``)
        with the population's current weights and precision as its prior, so it
        accumulates over batches like any known user. Returns its parameters and
        posterior precision.
        """
        be = resolve_backend("numpy", None)
        rows = _solver.make_rows(be, F, y01, sw, np.zeros(F.shape[0], dtype=np.intp), 1)
        centre, precision = self.prior_mean_, self._population_precision
        theta, hess = _solver.user_step(
            be, rows, F, centre[None, :].copy(), centre, precision, self._kind
        )
        return theta[0], precision + hess[0]

    @staticmethod
    def _warn_if_user_steps_exhausted(exhausted, Z, sw):
        """The users' Newton iterations ran out at the fitted basis: their weights are
        not the exact minimizers the basis step assumed (it was silent)."""
        if exhausted:
            _warn_caller(
                "The users' Newton iterations ran out before every user's weights converged "
                "at the fitted basis. " + _scale_advice(Z, sw), ConvergenceWarning)

    @staticmethod
    def _warn_if_line_search_failed(res, Z, sw):
        """The basis step found no decrease along its direction before the stopping
        rule held: the fit ended there, short of tol (it was silent)."""
        if res.line_search_failed:
            _warn_caller(
                f"The basis step's line search found no decrease after {res.n_iter} rounds, "
                "before the objective settled by tol: the fit stopped there. "
                + _scale_advice(Z, sw), ConvergenceWarning)

    def _fit_curvature_and_temperature(self, be, Z, F, y01, sw, W_rows, precisions, gram,
                                       gram_eig=None, held_out=None, stream=False):
        """The basis curvature of the fitted rows (streaming prior and calibration),
        then the temperatures: the cross-fit's held-out ones (``held_out``), or from
        leave-one-out logits with the basis leverage where there are none.

        ``gram``: the rows' Gram matrix where the data live (on a GPU the curvature is
        scaled there, the leverage's decomposition starts there, and the streaming
        state keeps it there: :meth:`_curvature_on`). ``gram_eig``: its eigenvalues and
        eigenvectors (``be.eigh``) if already computed; the curvature's are the same,
        rescaled."""
        self._stream_curvature = _solver.kron_curvature(F, sw, W_rows, gram)
        basis = None
        if self.calibrate and not _all_held_out(held_out):
            A, S, total = self._stream_curvature
            eig = None
            if gram_eig is not None:
                eig = (gram_eig[0] * _solver.gram_scale(sw, total), gram_eig[1])
            basis = _solver.basis_leverage(be, Z, A, S, self.alpha, eig=eig)
        self._fit_temperature(F, y01, sw, W_rows, precisions, basis, held_out, stream=stream)

    def _fit_temperature(self, F, y01, sw, W_rows, precisions, basis=None, held_out=None,
                         stream=False):
        """Temperatures of the users of the fit and of unknown users.

        ``held_out``: the temperatures the cross-fit fitted on held-out rows
        (:func:`_solver.crossfit_shrinkage`), used where there is one. Otherwise
        (no cross-fit: a float ``shrinkage``, too few users) from approximate
        leave-one-out logits of the training rows: the user's part is one Newton
        step (:func:`_solver.user_leave_one_out_shift`); ``basis = (R, Q)``
        (:func:`_solver.basis_leverage`) adds the same for the basis, which was fitted
        on that row too, in its Kronecker form (with few users in many dimensions it
        is the larger part of the overfit, and the form's estimate of it the least
        reliable). The inverse temperature is the 1-d logistic regression of y on
        those logits. ``precisions = (P, groups)``: the users' precisions P_u (G, B,
        B) and each row's user; rows without a user (``precisions`` None) count the
        basis part alone. ``stream``: a partial_fit call (its warning at the bound
        says that later calls fit the temperature again).
        """
        self.temperature_ = self.population_temperature_ = 1.0
        self._seen_temperature_held_out = self._unknown_temperature_held_out = False
        if not self.calibrate:
            return
        held_out = held_out or {}
        if _all_held_out(held_out):
            self._set_held_out_temperatures(held_out)
            return
        t = np.einsum("nb,nb->n", F, W_rows)
        p = _solver.expit(t)
        # one unit of weight left out (a row of weight 2 counts as two rows)
        c = p * (1.0 - p)
        residual = p - y01
        shift = np.zeros_like(t)
        if precisions is not None:
            P, groups = precisions
            shift += _solver.user_leave_one_out_shift(F, W_rows, y01, P, groups, self._kind)
        t_pop = F @ self.population_weights_
        pop_shift = 0.0
        if basis is not None:
            R, Q = basis
            WQ = W_rows @ Q
            h_basis = np.einsum("nl,nl->n", R, WQ * WQ)
            # the Kronecker form may overstate a row's leverage: at most 20-fold
            scale = residual / np.maximum(1.0 - c * h_basis, _solver.LEVERAGE_FLOOR)
            shift += scale * h_basis
            pop_shift = scale * ((R * WQ) @ (Q.T @ self.population_weights_))
        # leave-one-out sees overfitting but not the shift between a user's
        # training pairs and new ones, so it may only soften (on Jester it asked to
        # sharpen by 25% where held-out pairs wanted 4%)
        inverse = _solver.fit_inverse_temperature(t + shift, y01, sw,
                                                  bounds=(_MIN_INVERSE_TEMPERATURE, 1.0))
        self.temperature_ = 1.0 / inverse
        if (basis is not None and precisions is not None and held_out.get("seen") is None
                and inverse <= _MIN_INVERSE_TEMPERATURE):
            B, d = self.components_.shape
            _warn_caller(
                f"The seen users' temperature reached its bound "
                f"({1.0 / _MIN_INVERSE_TEMPERATURE:g}): the leave-one-out estimate behind it "
                "is unreliable where the basis has many parameters for its rows "
                f"(n_components x n_features = {B * d} for {len(t)} rows here), and it can "
                "soften the probabilities far more than held-out pairs want. "
                + (_STREAM_BOUND_ADVICE if stream else _FIT_BOUND_ADVICE), UserWarning)
        # unknown users: the population's own temperature on the pooled rows, with
        # the basis left out of each row (the B population weights are not fitted
        # to any single user)
        self.population_temperature_ = 1.0 / _solver.fit_inverse_temperature(
            t_pop + pop_shift, y01, sw)
        self._set_held_out_temperatures(held_out)

    def _set_held_out_temperatures(self, held_out):
        """The temperatures the cross-fit fitted on held-out rows replace the
        leave-one-out ones (each where there is one)."""
        if held_out.get("seen") is not None:
            self.temperature_ = float(held_out["seen"])
            self._seen_temperature_held_out = True
        if held_out.get("unknown") is not None:
            self.population_temperature_ = float(held_out["unknown"])
            self._unknown_temperature_held_out = True

    def _set_population(self, theta_pop, precision_pop, prior_precision=None):
        """Population weights, the prior centre for new users and its precision.

        ``prior_precision`` (the prior of new users' parameters) is kept from the
        last fit when not given; without one yet it is ``prior_strength * I``.
        """
        self._population_precision = precision_pop
        self.population_weights_ = self._weights_from_params(theta_pop[None, :])[0]
        self.prior_mean_ = theta_pop
        if prior_precision is None:
            prior_precision = getattr(self, "prior_precision_", None)
        if prior_precision is None:
            prior_precision = self.prior_strength * np.eye(self.n_components)
        self.prior_precision_ = prior_precision

    # ------------------------------------------------------------------
    # fitting

    def _log(self, n_iter, value):
        if self.verbose:
            logger.info("round %d: objective %.12g", n_iter, value)

    @_unchanged_on_failure
    def fit(self, X, y, sample_weight=None, *, user_ids=None):
        """Fit the basis and every user's weights by alternating minimization.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DataFrame
            Embedding differences phi(x, a) - phi(x, b). A DataFrame may carry the
            user ids in its ``user_col`` column.
        y : array-like of shape (n_samples,)
            Binary labels; the second of ``np.unique(y)`` means "a preferred".
        sample_weight : array-like of shape (n_samples,), default=None
            Per-comparison weights.
        user_ids : array-like of shape (n_samples,), default=None
            User id of each row, any hashable type. Without ids (and without a user
            column) the model is a single population model.

        Returns
        -------
        self : LowRankRewardEstimator
        """
        self._validate_params()
        gpu = self._gpu_backend()
        # on a GPU the rows' finiteness is checked where they land (_to_gpu), not by a
        # pass over the host's copy
        Z, ids = self._validate_X(X, user_ids, reset=True, finite=gpu is None)
        y, sw = self._validate_y(y, Z.shape[0], sample_weight, Z)
        classes = self._set_classes(y)
        y01 = (y == classes[1]).astype(np.float64)
        # on a GPU the kept rows are checked where they land, the dropped ones here
        Z, y01, sw, ids = _drop_unweighted(Z, y01, sw, ids, checked=gpu is None)
        data = None
        if gpu is None:
            self._check_trainable(Z, continuing=False)
        else:
            data = self._to_gpu(gpu, Z)
        self.classes_ = classes
        self._stream_memory = None
        with _numerical_failure_as_value_error(Z, sw):
            return self._fit_first_batch(Z, y01, sw, ids, data=data)

    def _gpu_backend(self):
        """The torch backend when the fit will run on a CUDA device, else None."""
        be = resolve_backend(self.backend, self.device)
        on_cuda = getattr(be, "device_", None) is not None and be.device_.type == "cuda"
        return be if on_cuda else None

    def _to_gpu(self, be, Z):
        """Training rows on the device, checked there: finite, and within the range of
        the device's data type (float32: values past 3.4e38 become inf on the way). Only
        rows that fail are examined on the host, for the message."""
        data = be.as_data(Z)
        if not be.all_finite(data):
            assert_all_finite(Z, input_name="X", estimator_name=type(self).__name__)
            self._check_trainable(Z, continuing=False)
            raise ValueError(
                f"X is finite but overflows {str(be.data_dtype).replace('torch.', '')}, "
                "the data type of the rows on the GPU. " + _scale_advice(Z))
        return data

    def _fit_first_batch(self, Z, y01, sw, ids, V0=None, shrinkage=None, tol=None,
                         data=None, held_out=None, stream=False):
        """Alternating minimization from a spectral start, or from ``V0`` (d, B).

        ``tol`` replaces ``self.tol`` when given. ``shrinkage``, when given, replaces
        ``self.shrinkage`` (a refit that keeps the scale chosen earlier); ``held_out``
        then holds the temperatures the cross-fit that chose it fitted on held-out rows
        (``{"seen": ..., "unknown": ...}``, None where it fitted none), kept likewise.
        ``data``: the rows ``Z`` already moved to the backend's device, when they were.
        """
        self._fitted_kind = self._kind  # partial fits refuse another kind (set_params)
        self._drop_caches()  # the users they index are about to go
        self._stream_calibration = None  # a memory-free stream's held-out logits
        if ids is None:
            return self._fit_without_users(Z, y01, sw, data)
        groups, users = self._factorize(ids)
        be = resolve_backend(self.backend, self.device)
        rows = _solver.make_rows(be, Z if data is None else data, y01, sw, groups, len(users))
        shrinkage = self.shrinkage if shrinkage is None else shrinkage
        gram = be.gram(rows.Z, rows.s / 4.0)
        if V0 is None:
            V0 = _solver.spectral_init(be, rows.Z, y01, sw, groups, len(users),
                                       self.n_components, self.random_state)
        # the cross-fit's refits and the Gram matrix's decomposition need neither the
        # basis nor the users: on a GPU they run beside the fit (a side task), elsewhere
        # after it. Started after the spectral start, so random draws keep their order.
        side = None
        if shrinkage == "auto" or self.calibrate:
            side = be.side_task(lambda: self._side_work(be, rows, y01, sw, groups,
                                                        V0.shape[1], shrinkage, gram,
                                                        held_out))
        res = _solver.fit_alternating(
            be, rows, V0, self._kind, self.alpha, self.prior_strength,
            self.max_iter, self.tol if tol is None else tol, gram=gram, log=self._log,
        )
        _require_finite(Z, res.V, res.theta, sw=sw)
        self._warn_if_line_search_failed(res, Z, sw)
        if res.n_iter >= self.max_iter:
            _warn_caller(
                f"The alternating minimization stopped at max_iter={self.max_iter} rounds "
                f"before its objective settled (tol={self.tol if tol is None else tol:g}); "
                "raise max_iter, or loosen tol.", ConvergenceWarning)
        self.components_ = res.V.T.copy()
        self.users_ = users
        self._fit_with_users = True
        self.n_iter_ = res.n_iter
        self.objective_ = res.objective
        status = []
        theta, hess, mu, P, _ = _solver.empirical_bayes_prior(
            be, rows, res.F, res.theta, self._kind, self.prior_strength, status=status
        )
        # at the fitted basis, or in the step that gave the stored weights: one warning
        self._warn_if_user_steps_exhausted(res.user_steps_exhausted or bool(status), Z, sw)
        self.user_weights_ = self._weights_from_params(theta)
        self.user_precision_ = hess + P
        F, W_rows = be.to_numpy(res.F), self.user_weights_[groups]
        self._warn_if_collapsed(F, W_rows)
        refits, gram_eig = side.result() if side is not None else (None, None)
        fold_in_temperature = None
        if shrinkage == "auto":
            self.shrinkage_, _, fold_in_temperature, held_out = _solver.crossfit_shrinkage(
                be, rows.Z, y01, sw, groups, len(users), res.V, P, self._kind, self.alpha,
                self.prior_strength, random_state=self.random_state, gram=res.gram_be,
                refits=refits,
            )
            self._shrinkage_rows = len(y01)
            # its temperature for new users is kept with the scale only while calibrate is
            self._shrinkage_calibrated = bool(self.calibrate)
        else:
            self.shrinkage_ = float(shrinkage)
            if self.shrinkage != "auto":  # a later "auto" chooses the scale again
                self._shrinkage_rows = 0
        self._set_population(mu, len(users) * P, prior_precision=self.shrinkage_ * P)
        self._fit_curvature_and_temperature(be, rows.Z, F, y01, sw, W_rows,
                                            (self.user_precision_, groups), res.gram_be,
                                            gram_eig, held_out, stream=stream)
        self.user_temperature_ = np.full(len(users), self.temperature_)
        self.fold_in_temperature_ = (
            fold_in_temperature if fold_in_temperature is not None and self.calibrate
            else self.temperature_
        )
        return self

    def _side_work(self, be, rows, y01, sw, groups, rank, shrinkage, gram, held_out):
        """What a first fit needs besides the basis (:meth:`_fit_first_batch`): the
        cross-fit's refitted folds when ``shrinkage="auto"`` and the Gram matrix's
        eigen-decomposition for the leverage when calibrating without held-out
        temperatures for both seen and unknown users (None where not needed)."""
        refits = gram_eig = None
        if shrinkage == "auto":
            refits = _solver.crossfit_refits(
                be, rows.Z, y01, sw, groups, rows.n_groups, rank, self._kind, self.alpha,
                self.prior_strength, random_state=self.random_state, gram=gram,
                seen_logits=bool(self.calibrate))
            held_out = refits.enough
        if self.calibrate and not _all_held_out(held_out):
            gram_eig = be.eigh(gram)
        return refits, gram_eig

    def _warn_if_collapsed(self, F, W_rows):
        """The basis times the weights is a product: where the penalties outweigh
        the data it collapses to zero, and what is left of the logits is round-off."""
        t = np.einsum("nb,nb->n", F, W_rows)
        if t.size and np.max(np.abs(t)) <= _COLLAPSED_LOGIT:
            _warn_caller(
                "The fitted model collapsed to zero: every training logit is below "
                f"{_COLLAPSED_LOGIT:.0e}, so probabilities are 0.5 and predicted labels are "
                "round-off. alpha and prior_strength outweigh the data at this feature "
                "scale: standardize the features or lower alpha and prior_strength.",
                ConvergenceWarning,
            )

    def _fit_without_users(self, Z, y01, sw, data=None):
        """The population model alone: one ridge Bradley-Terry direction.

        Without user ids every row belongs to one group and only ``V w`` matters, so
        the model is fitted as its convex equivalent (logistic regression without
        intercept, L2 strength ``alpha``): ``components_[0]`` holds that direction,
        the other rows are zero and the population weights are (1, 0, ..., 0).
        """
        B, d = self.n_components, Z.shape[1]
        be = resolve_backend(self.backend, self.device)
        rows = _solver.make_rows(be, Z if data is None else data, y01, sw,
                                 np.zeros(Z.shape[0], dtype=np.intp), 1)
        u, objective, n_iter, gram = _solver.fit_single_model(
            be, rows, self.alpha, max_iter=_SINGLE_MODEL_ITERATIONS)
        if n_iter >= _SINGLE_MODEL_ITERATIONS:
            _warn_caller(
                f"The model without users stopped at {_SINGLE_MODEL_ITERATIONS} L-BFGS "
                "iterations before its gradient fell below 1e-10 (nearly separable "
                "data, say); raise alpha, or standardize the features.", ConvergenceWarning)
        self.components_ = np.zeros((B, d))
        self.components_[0] = u
        self.users_ = np.asarray([], dtype=object)
        self._fit_with_users = False
        self.user_weights_ = np.zeros((0, B))
        self.user_precision_ = np.zeros((0, B, B))
        self.n_iter_ = n_iter
        self.objective_ = objective
        self.shrinkage_ = 1.0 if self.shrinkage == "auto" else float(self.shrinkage)
        weights = np.eye(B)[0]
        F = Z @ self.components_.T
        self._warn_if_collapsed(F[:, :1], np.ones((len(F), 1)))
        p = _solver.expit(F[:, 0])
        hess = F.T @ ((sw * p * (1 - p))[:, None] * F)
        self._set_population(self._params_from_weights(weights[None])[0],
                             hess + self.prior_strength * np.eye(B),
                             prior_precision=self.prior_strength * np.eye(B))
        # the fitted model is the direction u alone (the weights are fixed): its
        # leave-one-out logits come from the basis part (no user precisions)
        self._fit_curvature_and_temperature(be, rows.Z, F, y01, sw,
                                            np.tile(weights, (Z.shape[0], 1)), None, gram)
        # here the population is the fitted model itself: use its leave-one-out temperature
        self.population_temperature_ = self.temperature_
        self.user_temperature_ = np.zeros(0)
        self.fold_in_temperature_ = self.temperature_
        return self

    # ------------------------------------------------------------------
    # prediction

    def decision_function(self, X, *, user_ids=None):
        """Calibrated reward margin (r_u(x, a) - r_u(x, b)) / T_u of each comparison.

        The logit of :meth:`predict_proba`: the margin ``z . V w_u`` divided by the
        row's temperature T_u (``user_temperature_`` for known users,
        ``population_temperature_`` otherwise; 1 with ``calibrate=False``).
        Rankings and labels do not depend on the temperature.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DataFrame
        user_ids : array-like of shape (n_samples,), default=None
            Unknown users and rows without ids get the population weights.

        Returns
        -------
        ndarray of shape (n_samples,)

        Raises
        ------
        ValueError
            If X holds NaN or infinity, or a margin overflows to NaN (features or a
            loaded model's numbers far too large: terms of opposite sign beyond the
            float range): never a silent NaN. A margin that overflows to +-inf alone
            is kept (probability 1 or 0).
        """
        return self._margins(X, user_ids)[0]

    def _margins(self, X, user_ids):
        """:meth:`decision_function` and the ``classes_`` of the same moment (a refit in
        another thread may change both)."""
        # the fitted state is read at one moment (an update in another thread changes
        # it as a whole, holding the lock); the product with the basis runs outside
        with self._state_lock():
            check_is_fitted(self)
            Z, ids = self._validate_X(X, user_ids, reset=False, finite=False)
            components, classes = self.components_, self.classes_
            W, T = self._row_weights(ids, Z.shape[0])
        F = self._project(Z, components)
        with np.errstate(invalid="ignore", over="ignore"):
            margins = np.einsum("nb,nb->n", F, W).astype(np.float64) / T
        if np.isnan(margins).any():
            # +inf and -inf terms cancelled: a silent NaN would be predicted class 0
            row = int(np.flatnonzero(np.isnan(margins))[0])
            raise ValueError(
                f"The reward margin of row {row} overflowed (terms of opposite sign beyond "
                "the float range cancelled). The model's numbers are too large: basis "
                f"entries up to {_magnitude(components):.1e}, user weights up to "
                f"{_magnitude(W):.1e}, features up to {_magnitude(Z):.1e}. Refit it on "
                "features of moderate scale (a loaded model with such values is damaged)."
            )
        return margins, classes

    def predict_proba(self, X, *, user_ids=None):
        """Probabilities of the two classes; column 1 is P(a preferred).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DataFrame
            Embedding differences (a DataFrame may hold the ``user_col`` column).
        user_ids : array-like of shape (n_samples,), default=None
            Unknown users and rows without ids get the population weights.

        Returns
        -------
        ndarray of shape (n_samples, 2)
            ``expit`` of :meth:`decision_function` in column 1, its complement in 0.
        """
        from scipy.special import expit

        p = expit(self.decision_function(X, user_ids=user_ids))
        return np.column_stack([1.0 - p, p])

    def predict_log_proba(self, X, *, user_ids=None):
        """Log of :meth:`predict_proba`, computed stably from the logits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DataFrame
            Embedding differences (a DataFrame may hold the ``user_col`` column).
        user_ids : array-like of shape (n_samples,), default=None
            Unknown users and rows without ids get the population weights.

        Returns
        -------
        ndarray of shape (n_samples, 2)
        """
        t = self.decision_function(X, user_ids=user_ids)
        return np.column_stack([-np.logaddexp(0.0, t), -np.logaddexp(0.0, -t)])

    def predict(self, X, *, user_ids=None):
        """Predicted label: ``classes_[1]`` when a is preferred.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DataFrame
            Embedding differences (a DataFrame may hold the ``user_col`` column).
        user_ids : array-like of shape (n_samples,), default=None
            Unknown users and rows without ids get the population weights.

        Returns
        -------
        ndarray of shape (n_samples,)
            ``classes_[1]`` where :meth:`decision_function` is positive, else
            ``classes_[0]``.
        """
        margins, classes = self._margins(X, user_ids)
        return classes[(margins > 0).astype(int)]

    def score(self, X, y, sample_weight=None, *, user_ids=None):
        """Mean accuracy of :meth:`predict` on (X, y).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DataFrame
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None
        user_ids : array-like of shape (n_samples,), default=None
            Unknown users and rows without ids get the population weights.

        Returns
        -------
        float
        """
        from sklearn.metrics import accuracy_score

        if y is not None:
            _check_label_values(np.asarray(y))
        return accuracy_score(y, self.predict(X, user_ids=user_ids), sample_weight=sample_weight)

    def reward(self, X, *, user_ids=None):
        """Calibrated reward w_u . V^T phi(x, y) / T_u of single embeddings.

        Same as :meth:`decision_function`, read for embeddings of single responses
        rather than differences; rewards are defined up to a per-prompt constant, and
        each user's are divided by that user's temperature T_u (so different users'
        rewards are on their own calibrated scales; ``calibrate=False`` gives the raw
        w_u . V^T phi).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DataFrame
            Embeddings phi(x, y) of single responses.
        user_ids : array-like of shape (n_samples,), default=None
            Unknown users and rows without ids get the population weights.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.decision_function(X, user_ids=user_ids)

    # ------------------------------------------------------------------
    # streaming and fold-in

    @_unchanged_on_failure
    def partial_fit(self, X, y, classes=None, sample_weight=None, *, user_ids=None):
        """Update the model with one mini-batch of comparisons (streaming).

        The first call fits the batch like :meth:`fit` (``classes`` is then
        required). While every row streamed so far fits in ``stream_memory`` rows,
        each later call refits the model on all of them, warm-started from the
        current basis: many small calls reach what one fit on the same rows reaches.
        After that (or with ``stream_memory=0``, after :meth:`fit`, or from the first
        batch holding a user the memory lacks, one folded in with
        :meth:`partial_fit_users`, whose pairs a refit would drop; a fold-in of a user
        the memory holds ends it at once) each call
        refits the batch's users and the basis on the batch only, with priors that
        carry what earlier batches taught: each known user starts from its weights
        and precision (``user_precision_``), the basis from its current value with a
        Kronecker-factored curvature of all earlier batches (a Laplace
        approximation); users absent from the batch keep their weights exactly, and
        memory does not grow with the number of rows seen.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DataFrame
            Embedding differences of the batch's comparisons, as in :meth:`fit`.
        y : array-like of shape (n_samples,)
            Labels of the batch, among ``classes``.
        classes : array-like of shape (2,), default=None
            Both labels; required on the first call, checked on later ones (equal by
            value is enough; ``classes_`` keeps the first call's).
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each comparison.
        user_ids : array-like of shape (n_samples,), default=None
            The user of each row; give them in every call or in none.

        Returns
        -------
        self : LowRankRewardEstimator

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_lore import LowRankRewardEstimator
        >>> from sklearn_lore.datasets import make_preference_data
        >>> X, y, users, _ = make_preference_data(n_users=20, n_pairs_per_user=30,
        ...                                       n_features=8, random_state=0)
        >>> est = LowRankRewardEstimator(n_components=2, random_state=0)
        >>> for batch in np.array_split(np.arange(len(y)), 4):  # four mini-batches
        ...     est = est.partial_fit(X[batch], y[batch], classes=[0, 1],
        ...                           user_ids=users[batch])
        >>> len(est.users_), est.components_.shape
        (20, (2, 8))
        >>> bool(est.score(X, y, user_ids=users) > 0.6)
        True
        """
        first = not hasattr(self, "components_")
        # every call, as scikit-learn's own partial_fit: set_params may come between
        self._validate_params()
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
        Z, ids = self._validate_X(X, user_ids, reset=first)
        self._check_trainable(Z)
        y, sw = self._validate_y(y, Z.shape[0], sample_weight, Z)
        if classes is not None:
            classes = self._set_classes(_classes_argument(classes))
            if first:
                self.classes_ = classes
            elif not np.array_equal(classes, self.classes_):
                raise ValueError(
                    f"classes={classes.tolist()} differs from the classes of earlier "
                    f"calls {self.classes_.tolist()}."
                )
            # equal by value ([0.0, 1.0] for [0, 1]): classes_ and its type stay
        y01 = self._binary_labels(y)
        # files saved before the flag existed: a model without users was fitted without ids
        with_users = getattr(self, "_fit_with_users", None)
        if with_users is None:
            with_users = len(getattr(self, "users_", ())) > 0
        if not first and (ids is None) == with_users:
            raise ValueError(
                "Give user ids in every partial_fit call or in none: this model was "
                + ("trained with" if with_users else "trained without")
                + " user ids (fit starts over either way)."
            )
        batch = _drop_unweighted(Z, y01, sw, ids)
        previous = getattr(self, "_stream_memory", None) if not first else None
        if previous is not None and self._holds_users_outside(previous, batch[3]):
            # a refit of the memory would start these users over from its rows alone and
            # lose what partial_fit_users taught: the stream goes on without the memory
            previous = None
        if first:
            memory = batch
        elif previous is not None:
            memory = tuple(
                None if old is None else np.concatenate([old, new])
                for old, new in zip(previous[:3], batch[:3])
            ) + (None if batch[3] is None else _concat_ids(previous[3], batch[3]),)
        else:
            memory = None
        if memory is not None and len(memory[1]) > self.stream_memory:
            memory = None
        if first and memory is not None:
            # the memory keeps its own copy: a caller refilling one buffer per batch
            # would otherwise change the rows remembered (later batches are copied by
            # the concatenation)
            memory = tuple(None if part is None else np.array(part, copy=True)
                           for part in memory)
        with _numerical_failure_as_value_error(Z, sw):
            if first:
                # a stream builds on this first fit: solve it as tightly as its updates
                self._fit_first_batch(*batch, tol=self.tol / 10, stream=True)
            elif memory is not None:
                self._refit_memory(memory)
            else:
                self._stream_update(*batch)
        self._stream_memory = memory
        return self

    def _holds_users_outside(self, memory, batch_ids):
        """Whether the batch has users the model knows from outside the remembered rows
        (folded in with :meth:`partial_fit_users`, or kept from before the memory)."""
        if batch_ids is None or len(self.users_) == 0:
            return False
        known = self._user_index(batch_ids) >= 0
        if not known.any():
            return False
        remembered = set(memory[3].tolist())
        return any(u not in remembered for u in batch_ids[known].tolist())

    def _refit_memory(self, memory):
        """Refit on every remembered row, warm-started from the current basis.

        Users known but absent from the memory (folded in with
        :meth:`partial_fit_users`) keep their weights and precision and get the
        refit's ``fold_in_temperature_``. The
        cross-fitted ``shrinkage_`` is chosen again only when the memory has doubled
        since it was last chosen, so a stream pays for a few cross-fits, not one per
        call.
        """
        Z, y01, sw, ids = memory
        known = (self.users_, self.user_weights_, self.user_precision_,
                 self._user_temperatures())
        # files saved before it existed lack it: the seen users' temperature stood in
        fold_in_temperature = getattr(self, "fold_in_temperature_", self.temperature_)
        # files saved before the flag: their fold-in temperature came from the cross-fit
        # (kept below), their population temperature from leave-one-out (fitted again,
        # so ``held_out["unknown"]`` reads the flag as False)
        unknown_held_out = getattr(self, "_unknown_temperature_held_out", True)
        # a float shrinkage (set_params during the stream) is used as given; calibrate
        # switched since the scale was chosen chooses it again (the cross-fit also gave
        # new users' temperature, which follows calibrate)
        keep_scale = (self.shrinkage == "auto"
                      and len(y01) < 2 * getattr(self, "_shrinkage_rows", 0)
                      and getattr(self, "_shrinkage_calibrated", True) == bool(self.calibrate))
        # the temperatures that cross-fit fitted on held-out rows go with the scale
        held_out = None
        if keep_scale and self.calibrate:
            held_out = {
                "seen": (self.temperature_
                         if getattr(self, "_seen_temperature_held_out", False) else None),
                "unknown": (self.population_temperature_
                            if getattr(self, "_unknown_temperature_held_out", False)
                            else None)}
        self._fit_first_batch(Z, y01, sw, ids, V0=self.components_.T,
                              shrinkage=self.shrinkage_ if keep_scale else None,
                              held_out=held_out, stream=True)
        # the cross-fit that chose the scale also calibrated new users where it held
        # out enough of their rows: keep both. Where it did not, the fold-in temperature
        # was the seen users' temperature of then, and follows the refit's (it stayed
        # 1.5 times the seen users' new one); files saved before the flag kept it.
        if keep_scale and self.calibrate and unknown_held_out:
            self.fold_in_temperature_ = fold_in_temperature
        outside = self._user_index(known[0]) < 0
        if outside.any():
            # folded-in users keep their weights, not a temperature of the model before
            # the refit: they get the refit's new-user temperature (one kept from before
            # stayed beside both of the refit's, and no later call moved it)
            self._update_users(known[0][outside], np.full(int(outside.sum()), -1),
                               known[1][outside], known[2][outside],
                               self.fold_in_temperature_)

    def _user_temperatures(self):
        """Each known user's temperature (models saved before it existed: ``temperature_``)."""
        T = getattr(self, "user_temperature_", None)
        return np.full(len(self.users_), self.temperature_) if T is None else T

    def _stream_update(self, Z, y01, sw, ids):
        if ids is None:
            groups = np.zeros(Z.shape[0], dtype=np.intp)
            centres = self.prior_mean_[None, :]
            precisions = self._population_precision[None]
            batch_users, index = None, None
        else:
            groups, batch_users = self._factorize(ids)
            # the empirical-Bayes prior needs well-fitted users; mid-stream the
            # users are not, so new users get the prior of fit
            fixed = self.prior_strength * np.eye(self.n_components)
            centres, precisions, index = self._batch_priors(batch_users, fixed)
        be = resolve_backend(self.backend, self.device)
        rows = _solver.make_rows(be, Z, y01, sw, groups, centres.shape[0])
        V_prev = self.components_.T
        # the batch as the model predicted it before learning from it: held-out logits
        # for the stream's temperatures
        before = (self._logits_before_update(be, rows.Z, V_prev, y01, groups, index)
                  if self.calibrate else None)
        curvature = self._curvature_on(be)
        A, S, _ = curvature
        anchor = (be.asarray(V_prev), A, be.asarray(S), self.alpha)
        # each call's errors stay in the model for the rest of the stream: solve the
        # batch ten times tighter than a fit (a batch is small, so this is cheap)
        res = _solver.fit_alternating(
            be, rows, V_prev, self._kind, 0.0, self.prior_strength,
            self.max_iter, self.tol / 10, prior=(be.asarray(centres), be.asarray(precisions)),
            anchor=anchor, log=self._log,
        )
        _require_finite(Z, res.V, res.theta, res.user_hessian, sw=sw)
        self._warn_if_user_steps_exhausted(res.user_steps_exhausted, Z, sw)
        self._warn_if_line_search_failed(res, Z, sw)
        self.components_ = res.V.T.copy()
        self.n_iter_ = res.n_iter
        self.objective_ = res.objective
        posterior = precisions + res.user_hessian
        F = be.to_numpy(res.F)
        batch_curv = _solver.kron_curvature(
            F, sw, self._weights_from_params(res.theta)[groups], res.gram_be)
        # everything that can fail before the users' rows are written in place
        population = self._update_population(F, y01, sw)
        # uncalibrated (calibrate switched off during the stream) every temperature is
        # 1, as a fit or a refit of the memory makes it, and no held-out logits are kept
        windows, seen, unknown = (self._stream_temperatures(before, sw)
                                  if before is not None else (None, 1.0, 1.0))
        self._stream_curvature = _solver.add_kron_curvature(curvature, batch_curv)
        old = self.temperature_
        self._stream_calibration = windows
        self.temperature_, self.population_temperature_ = seen, unknown
        if not self.calibrate or getattr(self, "fold_in_temperature_", None) == old:
            self.fold_in_temperature_ = seen
        if batch_users is not None:
            self._update_users(batch_users, index, self._weights_from_params(res.theta),
                               posterior, self.temperature_)
        T_users = getattr(self, "user_temperature_", None)
        if T_users is not None and (seen != old or not self.calibrate):
            # the users that had the seen users' temperature follow it, all of them when
            # uncalibrated (in place: the per-user arrays are views of buffers with
            # spare rows)
            T_users[(T_users == old) | (not self.calibrate)] = seen
        self._set_population(*population)

    def _logits_before_update(self, be, Z, V, y01, groups, index):
        """The batch's held-out logits: the model before the update on the batch's
        distinct rows (copies of a row of one user, as a row of weight 2, are one row
        whose weight is theirs summed). Returns ``(users, population)``, each
        ``(logits, labels, rows, copy_of, keys)`` for known users' rows under their
        weights and for every row under the population's weights: ``rows`` are the
        batch rows of each distinct row's first copy, ``copy_of`` maps every batch row
        to its distinct row (``_stream_temperatures`` sums the weights over the
        copies), ``keys`` are the distinct rows' content keys (their order in the
        windows)."""
        F = be.to_numpy(be.matmul_ZV(Z, be.asarray(V))).astype(np.float64, copy=False)
        keys = _solver._content_keys(be, Z, y01)
        copy_of, _, _ = _solver._distinct_pairs(groups, keys)
        first = np.unique(copy_of, return_index=True)[1]  # each distinct row's first copy
        known = np.zeros(F.shape[0], dtype=bool)
        if index is not None:
            row_index = index[groups]
            known = row_index >= 0
        kept = first[known[first]]
        users = np.einsum("nb,nb->n", F[kept], self.user_weights_[row_index[kept]]) \
            if len(kept) else np.zeros(0)
        return ((users, y01[kept], kept, copy_of, keys[kept]),
                (F[first] @ self.population_weights_, y01[first], first, copy_of,
                 keys[first]))

    def _stream_temperatures(self, before, sw):
        """The temperatures of a memory-free stream after a call: fitted on the last
        ``_STREAM_CALIBRATION_ROWS`` rows of the stream's batches as the model predicted
        them before learning from them (rows it had not seen; copies of a row of one
        user count once, with their weights summed, as in the cross-fit's held-out
        rows, so a duplicated row and a row of weight 2 decide alike): the rows of
        users it knew under their weights for ``temperature_``, every row under the
        population's weights for ``population_temperature_`` (rows of unknown users
        alone went stale once every user was known: a window of the first batches'
        weak population sharpened it 4-fold), each where there are
        ``_solver._MIN_HELD_OUT_ROWS`` of them (the seen users' may sharpen only on
        ``_solver._SHARPEN_ROWS``), as the cross-fit's held-out rows do in a fit.
        Without users the population is the model itself: one temperature for all.
        Returns the windows and the two temperatures."""
        windows = list(getattr(self, "_stream_calibration", None) or (None, None))
        with_users = getattr(self, "_fit_with_users", None)
        if with_users is None:  # files saved before the flag existed, as partial_fit reads
            with_users = len(getattr(self, "users_", ())) > 0
        for k, (t, y_k, rows, copy_of, keys) in enumerate(before):
            # a distinct row weighs what its copies weigh together
            s_k = np.bincount(copy_of, weights=sw)[copy_of[rows]]
            kept = s_k > 0
            if not kept.any():
                continue
            new = (t[kept], y_k[kept], s_k[kept])
            # a batch's rows in an order of their content, spread over their keys (a
            # golden-ratio sequence over the content order): the rows a window keeps of
            # a batch larger than it, or of an older batch it is cutting, are an even
            # sample of the batch whatever order its rows came in (in the batch's order,
            # the window's temperatures changed with the row order)
            by_content = np.lexsort((new[2], new[1], new[0], keys[kept]))
            rank = np.empty(len(by_content), dtype=np.intp)
            rank[by_content] = np.arange(len(by_content))
            new = tuple(a[np.argsort((rank * _solver.GOLDEN) % 1.0, kind="stable")]
                        for a in new)
            if windows[k] is not None:
                new = tuple(np.concatenate([a, b]) for a, b in zip(windows[k], new))
            windows[k] = tuple(a[-_STREAM_CALIBRATION_ROWS:] for a in new)
        seen, unknown = self.temperature_, self.population_temperature_
        if windows[0] is not None and len(windows[0][0]) >= _solver._MIN_HELD_OUT_ROWS:
            upper = (1.0 / _MIN_INVERSE_TEMPERATURE
                     if len(windows[0][0]) >= _solver._SHARPEN_ROWS else 1.0)
            seen = 1.0 / _solver.fit_inverse_temperature(
                *windows[0], bounds=(_MIN_INVERSE_TEMPERATURE, upper))
        if windows[1] is not None and len(windows[1][0]) >= _solver._MIN_HELD_OUT_ROWS:
            unknown = 1.0 / _solver.fit_inverse_temperature(
                *windows[1], bounds=(_MIN_INVERSE_TEMPERATURE, 1.0 / _MIN_INVERSE_TEMPERATURE))
            if not with_users:  # the population is the model itself
                seen = unknown
        return tuple(windows), float(seen), float(unknown)

    @_unchanged_on_failure
    def partial_fit_users(self, X, y, sample_weight=None, *, user_ids=None):
        """Adapt users from a few comparisons with the basis frozen (fold-in).

        New users start from the population prior (``prior_mean_``,
        ``prior_precision_``); known users start from their current weights and
        precision, so calling this twice with two halves of a user's pairs matches
        one call with all of them up to the Laplace approximation. The basis and
        all other users are untouched. The batch's rows are not remembered by a
        stream; a fold-in that teaches a user whose rows the stream memory holds ends
        the memory (see :meth:`partial_fit`). New users are appended into spare rows,
        so a call costs the same however many users the model knows; an array taken
        from ``user_weights_`` or ``user_precision_`` before the call may or may not
        share memory with the model afterwards: copy it for a snapshot and read the
        attribute again for the current values.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DataFrame
            Embedding differences of the users' comparisons, as in :meth:`fit`.
        y : array-like of shape (n_samples,)
            Labels, among the ``classes_`` of the fit.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each comparison; a new user whose rows all weigh 0 stays unknown.
        user_ids : array-like of shape (n_samples,), default=None
            Required unless X has the user column.

        Returns
        -------
        self : LowRankRewardEstimator

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_lore import LowRankRewardEstimator
        >>> from sklearn_lore.datasets import make_preference_data
        >>> X, y, users, _ = make_preference_data(n_users=21, n_pairs_per_user=30,
        ...                                       n_features=8, random_state=0)
        >>> seen = users != "u20"
        >>> est = LowRankRewardEstimator(n_components=2, random_state=0)
        >>> est = est.fit(X[seen], y[seen], user_ids=users[seen])
        >>> basis = est.components_.copy()
        >>> new = np.flatnonzero(~seen)[:5]  # five comparisons of a new user
        >>> est = est.partial_fit_users(X[new], y[new], user_ids=users[new])
        >>> "u20" in est.users_, bool((est.components_ == basis).all())
        (True, True)
        """
        check_is_fitted(self)
        self._validate_params()  # as fit and partial_fit do (set_params after fitting)
        Z, ids = self._validate_X(X, user_ids, reset=False, finite=False)
        if ids is None:
            raise ValueError(
                "partial_fit_users needs user ids: pass user_ids= or a "
                f"{self.user_col!r} column in X."
            )
        # the user step needs only F = Z V (n, B): computed here, the rows never travel
        # to the device, which for a few comparisons costs more than the step itself
        F = np.asarray(self._project(Z), dtype=np.float64)
        self._check_trainable(Z)
        y, sw = self._validate_y(y, Z.shape[0], sample_weight, Z)
        y01 = self._binary_labels(y)
        groups, batch_users = self._factorize(ids)
        centres, precisions, index = self._batch_priors(batch_users, self.prior_precision_)
        if Z.shape[0] <= _HOST_FOLD_IN_ROWS:
            # on the host with either backend (see _HOST_FOLD_IN_ROWS): a model fitted
            # with torch folds users in where torch is absent
            be = NumpyBackend()
        else:
            be = resolve_backend(self.backend, self.device)
        rows = _solver.make_rows(be, F, y01, sw, groups, len(batch_users))
        status = []
        with _numerical_failure_as_value_error(Z, sw):
            theta, hess = _solver.user_step(
                be, rows, be.asarray(F), be.asarray(centres), be.asarray(centres),
                be.asarray(precisions), self._kind, status=status,
            )
        if status:
            _warn_caller(
                "The fold-in's Newton iterations ran out before every user's weights "
                "converged (rows on a far larger scale than the fitted ones, say). "
                + _scale_advice(Z, sw), ConvergenceWarning)
        W = self._weights_from_params(be.to_numpy(theta))
        precision = precisions + be.to_numpy(hess)
        _require_finite(Z, W, precision, sw=sw)
        # a new user whose rows all weigh 0 has told nothing: it stays unknown (the
        # population, temperature included) rather than a copy of the prior
        # (nor does a known one change: its weights would come back through the
        # parameters' round trip, a log and a softmax for simplex weights)
        taught = np.bincount(groups, weights=sw, minlength=len(batch_users)) > 0
        self._update_users(batch_users[taught], index[taught], W[taught], precision[taught],
                           getattr(self, "fold_in_temperature_", self.temperature_))
        # only users known before the call can have remembered rows
        self._end_memory_of(batch_users[taught & (index >= 0)])
        return self

    def _end_memory_of(self, taught):
        """End the stream memory when it holds rows of users a fold-in just taught: a
        refit of the memory would start them over from those rows alone and lose the
        fold-in. The stream goes on memory-free, every user keeping its weights."""
        memory = getattr(self, "_stream_memory", None)
        if memory is None or memory[3] is None or len(taught) == 0:
            return
        remembered = set(memory[3].tolist())
        if any(u in remembered for u in taught.tolist()):
            self._stream_memory = None

    def _batch_priors(self, batch_users, new_precision):
        """Prior centre and precision of each user of a batch (known or new)."""
        index = self._user_index(batch_users)
        G = len(batch_users)
        centres = np.tile(self.prior_mean_, (G, 1))
        precisions = np.tile(new_precision, (G, 1, 1))
        known = index >= 0
        centres[known] = self._params_from_weights(self.user_weights_[index[known]])
        precisions[known] = self.user_precision_[index[known]]
        return centres, precisions, index

    def _update_users(self, batch_users, index, W, precision, new_temperature):
        """Write a batch's users' weights ``W`` and precisions back (``index``: their
        rows in ``users_``, -1 for new users, appended with ``new_temperature``, a
        value or one per new user).

        The per-user arrays are views of buffers with spare rows (``_user_buffers``):
        known users are updated in place and new users appended without copying
        every user, so a fold-in costs about the same with a million users as with a
        thousand (the first one after a fit or a load makes the buffers).
        """
        known = index >= 0
        new = ~known
        n_old, n_new = len(self.users_), int(new.sum())
        new_users = batch_users[new]
        buffers = self._user_buffers(n_old + n_new, new_users.dtype)
        rows = np.r_[index[known], n_old + np.arange(n_new)]
        order = np.r_[np.flatnonzero(known), np.flatnonzero(new)]
        buffers[0][rows] = W[order]
        buffers[1][rows] = precision[order]
        buffers[2][n_old:n_old + n_new] = new_temperature
        views = tuple(buf[:n_old + n_new] for buf in buffers)
        self.user_weights_, self.user_precision_, self.user_temperature_ = views[:3]
        if n_new:
            positions = self._id_positions()
            buffers[3][n_old:n_old + n_new] = new_users
            self.users_ = views[3]
            # the id index grows with the users instead of being rebuilt
            positions.update(zip(new_users.tolist(), range(n_old, n_old + n_new)))
            self._loaded_user_index = (self.users_, positions)
        else:  # users_ stays the same array, and its index with it
            views = views[:3] + (self.users_,)
        self._loaded_user_buffers = (buffers, views)

    def _user_buffers(self, n_rows, ids_dtype):
        """Buffers behind the per-user arrays and ``users_``, with room for ``n_rows``
        users whose new ids are of ``ids_dtype``.

        Reused while the public arrays are still the views handed out last time, the
        room suffices and the ids fit the ids' buffer; otherwise (after a fit, a
        deletion, a load, when full, or for ids of another type or wider text) the
        users are copied into buffers a quarter larger than needed (geometric growth:
        each user is copied a bounded number of times on average, and the spare
        memory stays at a quarter of the per-user arrays). Appending users thus costs
        the new users, not a copy of ``users_``.
        """
        current = (self.user_weights_, self.user_precision_, self._user_temperatures(),
                   self.users_)
        cached = getattr(self, "_loaded_user_buffers", None)
        # a model that knows no users (fitted without ids, or all forgotten) takes the
        # new ids' dtype: ints folded into a population model stay ints
        known = self.users_.dtype if len(self.users_) else ids_dtype
        ids = _merged_ids_dtype(known, ids_dtype)
        if (cached is not None and all(a is b for a, b in zip(current, cached[1]))
                and len(cached[0][0]) >= n_rows and cached[0][3].dtype == ids):
            return cached[0]
        capacity = n_rows + max(n_rows // 4, 16)
        buffers = []
        for array, dtype in zip(current, (np.float64, np.float64, np.float64, ids)):
            buffer = np.empty((capacity,) + array.shape[1:], dtype=dtype)
            buffer[:len(array)] = array
            buffers.append(buffer)
        return tuple(buffers)

    @_exclusive
    def forget_users(self, user_ids):
        """Delete users' personal weights (a data-deletion request).

        The rows of ``users_``, ``user_weights_``, ``user_precision_`` and
        ``user_temperature_`` that belong
        to these users are removed, so are their comparisons remembered by
        :meth:`partial_fit` (``stream_memory``). A forgotten user is then predicted
        like any unknown user (the population weights), and a later
        :meth:`partial_fit_users` or :meth:`partial_fit` with their id starts from the
        population prior, as for a user never seen.

        What stays: the basis ``components_``, the population weights, the new-user
        prior (``prior_mean_``, ``prior_precision_``) and the streaming curvature were
        fitted on all rows, the forgotten users' included. They are aggregates over
        many users and hold no per-user parameter, but erasing a user's influence on
        them requires refitting without their rows.

        Parameters
        ----------
        user_ids : array-like of shape (n_ids,)
            Ids to forget, compared as the ids of :meth:`predict` are: as Python
            compares them, so numbers by value (3, 3.0 and ``np.int64(3)`` are one id;
            so are 1 and True) while the int 3 is not the str "3". A single id must be
            wrapped in a list.

        Returns
        -------
        self : LowRankRewardEstimator

        Raises
        ------
        ValueError
            If an id is not in ``users_`` (never seen, already forgotten, or of
            another type); nothing is deleted then. Filter with
            ``np.isin(ids, est.users_)`` for an idempotent call.

        Examples
        --------
        >>> from sklearn_lore import LowRankRewardEstimator
        >>> from sklearn_lore.datasets import make_preference_data
        >>> X, y, users, _ = make_preference_data(n_users=4, n_pairs_per_user=10,
        ...                                       n_features=4, random_state=0)
        >>> est = LowRankRewardEstimator(n_components=2, random_state=0)
        >>> est = est.fit(X, y, user_ids=users).forget_users(["u1"])
        >>> est.users_.tolist()
        ['u0', 'u2', 'u3']
        >>> bool((est.predict_proba(X[:3], user_ids=["u1"] * 3)
        ...       == est.predict_proba(X[:3])).all())
        True
        """
        check_is_fitted(self)
        single = ValueError("user_ids must be a 1-d sequence of ids; wrap a single id in a list.")
        if (isinstance(user_ids, (str, bytes)) or not hasattr(user_ids, "__iter__")
                or (isinstance(user_ids, np.ndarray) and user_ids.ndim == 0)):
            raise single
        ids = _ids_array(user_ids)
        if ids.ndim != 1:
            raise ValueError(f"user_ids must be 1-d; got an array of shape {ids.shape}.")
        ids = self._check_ids(ids, len(ids))
        index = self._user_index(ids)
        if (index < 0).any():
            unknown = ids[index < 0]
            raise ValueError(
                f"Cannot forget unknown user id(s) {unknown[:5].tolist()} (types "
                f"{sorted({type(u).__name__ for u in unknown[:5]})}): they are not in users_ "
                "(never seen, already forgotten, or of another type). Nothing was deleted."
            )
        keep = np.ones(len(self.users_), dtype=bool)
        keep[index] = False
        memory = getattr(self, "_stream_memory", None)
        if memory is not None:
            forgotten = pd.Index(pd.Series(self.users_[~keep], dtype=object))
            rows = forgotten.get_indexer(pd.Series(memory[3], dtype=object)) < 0
            self._stream_memory = tuple(part[rows] for part in memory)
        # a memory-free stream's held-out logits hold no ids: they all go (the
        # temperatures stay until the stream brings enough rows again)
        self._stream_calibration = None
        self.user_temperature_ = self._user_temperatures()[keep]
        self.users_ = self.users_[keep]
        self.user_weights_ = self.user_weights_[keep]
        self.user_precision_ = self.user_precision_[keep]
        # the old buffers and index (the forgotten users in them) go now, not at the
        # next fold-in
        self._drop_caches()
        # the population stays as fitted (recomputing its weights from prior_mean_ would
        # read user_weights as set now, which set_params may have changed)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.input_tags.allow_nan = False
        return tags
