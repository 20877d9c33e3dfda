"""Persistence without pickle: a fitted model as arrays plus a JSON manifest.

:func:`save` writes a zip archive with two kinds of members:

- ``manifest.json``: the format name and version, the versions of sklearn_lore,
  numpy, scikit-learn and Python that wrote the file, and a tree describing the
  object: for each estimator its class (from an allow-list), its constructor
  parameters and its fitted attributes;
- ``arrays/<k>.npy``: every numeric or text array, written with
  ``np.save(allow_pickle=False)`` and listed in the manifest with its SHA-256.

:func:`load` reads only data: JSON values, arrays of plain dtypes, and classes
named in the allow-list (:class:`~sklearn_lore.LowRankRewardEstimator`,
:class:`~sklearn_lore.embedding.SentencePairEmbedder`,
:class:`~sklearn_lore.embedding.RewardModelEmbedder` and
:class:`sklearn.pipeline.Pipeline`). It never unpickles and never imports a
module named by the file. Anything else in a file (an unknown class, a pickle
payload, a member not in the manifest, an array whose bytes do not match its
digest, missing or inconsistent fitted attributes) makes it raise ``ValueError``,
as do members that would take more memory to read than ``max_bytes`` (by default
1 GiB, or 100 times the file's size): members are read up to their declared size,
so a decompression bomb is refused before anything is inflated.

Values are encoded in the manifest as JSON scalars (None, bool, int, float, str;
Python's ``json`` keeps int and float apart) or as one-key objects:
``{"array": member, "sha256": hex}``, ``{"objects": [...], "shape": [...]}``
(an object array of scalars, such as mixed int and str user ids),
``{"tuple": [...]}``, ``{"list": [...]}``, ``{"path": str}``,
``{"float": "nan" | "inf" | "-inf"}``, ``{"random_state": [...]}`` (a
``numpy.random.RandomState``) and ``{"estimator": node}``, where a node is
``{"class": name, "params": {...}, "state": {...}}``.
"""

import contextlib
import errno
import hashlib
import io
import json
import math
import numbers
import os
import pathlib
import platform
import re
import secrets
import stat
import zipfile
import zlib

import numpy as np

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "sklearn_lore.io"
FORMAT_VERSION = 1

_MANIFEST = "manifest.json"
_MAX_MANIFEST_BYTES = 256 * 2**20
# What load may read without max_bytes: 1 GiB, or 100 times the file's size when that is more.
# Deflate shrinks a model's numbers little (measured 1.1 to 1.2 times on fitted models); only
# arrays mostly of zeros (features that are always 0) come near its limit of about 1000, and a
# decompression bomb (a small file that inflates to gigabytes) is refused.
_MIN_BUDGET = 2**30
_MAX_EXPANSION = 100
# The manifest's JSON takes up to about 30 times its size in memory (measured 28 for a list of
# empty objects), so it counts 30 times against the budget.
_MANIFEST_WEIGHT = 30
_READ_CHUNK = 2**20
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_ARRAY_MEMBER = re.compile(r"arrays/[0-9]+\.npy")
# Fitted state is plain data: no dunder names, nothing that shadows the class.
_STATE_NAME = re.compile(r"_?[A-Za-z][A-Za-z0-9_]*")
# Per-process handles to loaded models, rebuilt on first use after loading.
_TRANSIENT_PREFIXES = ("_loaded", "_mutex")
_ARRAY_KINDS = "biufcUSMm"
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
# What reading a damaged or hostile zip member can raise (zlib: a broken deflate stream;
# NotImplementedError: an unknown compression method; RuntimeError: an encrypted member).
_ZIP_ERRORS = (
    KeyError,
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    EOFError,
    NotImplementedError,
    RuntimeError,
)

# The only classes a file may name: "module.Class" -> (module, attribute).
_CLASSES = {
    f"{module}.{name}": (module, name)
    for module, name in [
        ("sklearn_lore.estimator", "LowRankRewardEstimator"),
        ("sklearn_lore.embedding", "SentencePairEmbedder"),
        ("sklearn_lore.embedding", "RewardModelEmbedder"),
        ("sklearn.pipeline", "Pipeline"),
    ]
}


def _allowed_class(name):
    """The class registered under ``name``; imports only modules of the allow-list."""
    import importlib

    module, attribute = _CLASSES[name]
    return getattr(importlib.import_module(module), attribute)


def _class_name(obj):
    for name in _CLASSES:
        if type(obj) is _allowed_class(name):
            return name
    return None


def _package_version():
    from . import __version__

    return __version__


def _major(version):
    match = re.match(r"([0-9]{1,9})\.", version) if isinstance(version, str) else None
    if match is None:
        raise ValueError(f"The file records an unreadable sklearn_lore version {_short(version)}.")
    return int(match.group(1))


# --------------------------------------------------------------------------- writing


class _Writer:
    """Encodes a Python value into JSON plus array members, naming where it failed."""

    def __init__(self):
        self.members = {}

    def value(self, value, where):
        if isinstance(value, (np.float32, np.float16)):
            # a float32 parameter computes otherwise than a Python float (numpy's
            # promotion): a continued fit after loading would differ in the last digits
            return {"narrow_float": [value.dtype.name, self.value(value.item(), where)]}
        if isinstance(value, np.generic) and value.dtype.kind in "biufU":
            value = value.item()
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            return self._float(float(value))
        if isinstance(value, np.ndarray):
            return self._array(value, where)
        if isinstance(value, (tuple, list)):
            items = [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return {"tuple" if isinstance(value, tuple) else "list": items}
        if isinstance(value, pathlib.PurePath):
            return {"path": os.fspath(value)}
        if isinstance(value, dict) and all(isinstance(key, str) for key in value):
            # set_output's configuration ({"transform": "pandas"}), say
            return {"dict": {key: self.value(item, f"{where}[{key!r}]")
                             for key, item in value.items()}}
        if isinstance(value, np.random.RandomState):
            generator = value.get_state(legacy=False)["bit_generator"]
            if generator != "MT19937":  # its state is a dict that set_state refuses
                raise TypeError(
                    f"{where} is a RandomState over {generator}; sklearn_lore.save stores "
                    "RandomState(seed) (MT19937) or an int seed."
                )
            return {"random_state": self.value(list(value.get_state()), where)}
        if hasattr(value, "get_params"):
            return {"estimator": self.estimator(value, where)}
        raise TypeError(_unsupported(value, where))

    @staticmethod
    def _float(value):
        return value if math.isfinite(value) else {"float": repr(value)}

    def _requests(self, request, where):
        """Metadata-routing requests (``set_fit_request(user_ids=True)``, ...) as
        {method: {parameter: True, False, None or an alias}}; load sets them again."""
        serialize = getattr(request, "_serialize", None)
        table = serialize() if serialize is not None else None
        if not (isinstance(table, dict) and all(
                isinstance(method, str) and isinstance(requests, dict)
                and all(isinstance(param, str) and (value is None or isinstance(value, (bool, str)))
                        for param, value in requests.items())
                for method, requests in table.items())):
            raise TypeError(_unsupported(request, where))
        return {"requests": table}

    def _array(self, array, where):
        if array.dtype.kind == "O":
            return self._objects(array, where)
        if array.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(f"{where} is an array of dtype {array.dtype}, which cannot be saved.")
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        data = buffer.getvalue()
        member = f"arrays/{len(self.members)}.npy"
        self.members[member] = data
        return {"array": member, "sha256": hashlib.sha256(data).hexdigest()}

    def _objects(self, array, where):
        items = []
        for i, item in enumerate(array.ravel().tolist()):
            if not isinstance(item, (str, numbers.Real, np.bool_)):
                raise TypeError(
                    f"{where} holds a value of type {type(item).__name__} ({item!r}); only "
                    "str, int, float and bool values (such as user ids) can be saved."
                )
            items.append(self.value(item, f"{where}[{i}]"))
        return {"objects": items, "shape": list(array.shape)}

    def estimator(self, obj, where):
        name = _class_name(obj)
        if name is None:
            raise TypeError(
                f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}; sklearn_lore.save "
                f"stores only these classes: {sorted(_CLASSES)}. Use pickle or joblib for others."
            )
        if hasattr(obj, "_state_lock"):  # its state of one moment, not torn by an update
            with obj._state_lock():
                return self._estimator(obj, where, name)
        return self._estimator(obj, where, name)

    def _estimator(self, obj, where, name):
        if hasattr(obj, "_state_to_host"):  # a GPU fit's state, as numpy arrays
            obj._state_to_host()
        params = obj.get_params(deep=False)
        if name == "sklearn.pipeline.Pipeline" and params["memory"] is not None:
            raise TypeError(
                f"{where}.memory is set; a joblib cache directory is not saved (its entries "
                "are pickles). Set memory=None before saving."
            )
        state = {
            key: value
            for key, value in vars(obj).items()
            if key not in params and not key.startswith(_TRANSIENT_PREFIXES)
        }
        node = {
            "class": name,
            "params": {k: self.value(v, f"{where}.{k}") for k, v in params.items()},
            "state": {k: self._requests(v, f"{where}.{k}") if k == _REQUESTS
                      else self.value(v, f"{where}.{k}") for k, v in state.items()},
        }
        # what load would refuse (invalid parameters, inconsistent state) is refused
        # now, while the object is still in memory
        _CHECKS.get(name, lambda obj, where: None)(obj, where)
        return node


def _unsupported(value, where):
    if callable(value):
        return (
            f"{where} is a callable ({getattr(value, '__qualname__', type(value).__name__)}); "
            "sklearn_lore.save stores data, not code. For an embedder, pass model=<name or "
            "path> instead of encoder=, or save this object with pickle or joblib."
        )
    return (
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which "
        "sklearn_lore.save cannot store; use pickle or joblib for this object."
    )


def _header():
    import sklearn

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sklearn_lore_version": _package_version(),
        "numpy_version": np.__version__,
        "sklearn_version": sklearn.__version__,
        "python_version": platform.python_version(),
    }


def save(obj, path):
    """Save a fitted model to a file without pickle.

    The file is a zip archive holding a JSON manifest (class names, constructor
    parameters, versions) and the fitted arrays in ``.npy`` format. Embedders are
    stored by their parameters: the model name or path, never its weights, so the
    same model must be available where the file is loaded.

    Parameters
    ----------
    obj : LowRankRewardEstimator, SentencePairEmbedder, RewardModelEmbedder or Pipeline
        A Pipeline may hold only these estimators. Fitted or not.
    path : str or path-like
        Destination file, replaced atomically when it exists (keeping its
        permissions). A symbolic link is followed: the file it points to is written
        and the link stays. A path that is a directory or another special file (a
        device, a pipe) is refused.

    Raises
    ------
    TypeError
        If `path` is not a str or path-like (an open file, a buffer), or `obj` (or
        one of its steps) is not of an allowed class, or holds a value that is not
        data: an injected ``encoder`` callable, user ids that are not str, int, float
        or bool, another estimator class.
    ValueError
        If `obj` (or one of its steps) would not load back: an invalid parameter
        (``n_components=0``, a ``RewardModelEmbedder`` without a model), a fitted
        state whose shapes disagree, or a Pipeline that scikit-learn would not fit
        (an estimator before a transformer), or ``path`` is a directory (or ends with
        a separator) or a special file. Nothing is written then.
    OSError
        If the file cannot be written (a missing folder, no permission: the error
        names ``path`` as ``open`` would); any previous file stays as it was.

    See Also
    --------
    load : Read the file back.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from sklearn_lore import LowRankRewardEstimator, save, load
    >>> from sklearn_lore.datasets import make_preference_data
    >>> X, y, users, _ = make_preference_data(n_users=5, n_pairs_per_user=10,
    ...                                       n_features=4, random_state=0)
    >>> est = LowRankRewardEstimator(n_components=2, random_state=0)
    >>> est = est.fit(X, y, user_ids=users)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.lore")
    >>> save(est, path)
    >>> again = load(path)
    >>> np.array_equal(again.predict_proba(X, user_ids=users),
    ...                est.predict_proba(X, user_ids=users))
    True
    """
    path = _file_name(path, "save")
    writer = _Writer()
    manifest = dict(_header(), object=writer.estimator(obj, type(obj).__name__))
    text = json.dumps(manifest, allow_nan=False, indent=1, sort_keys=True)
    # a link is followed (the file it names is replaced, the link stays); a directory,
    # device or pipe there is refused, not replaced by a regular file (as root,
    # save(model, "/dev/null") would have replaced the system's /dev/null)
    if os.fsdecode(path).endswith(tuple(sep for sep in (os.sep, os.altsep) if sep)):
        raise ValueError(f"Cannot save to {os.fsdecode(path)!r}: it names a directory (a "
                         "trailing separator). Give a file name.")
    target = os.path.realpath(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise ValueError(f"Cannot save to {os.fsdecode(path)!r}: it is {kind}. Give a file "
                         "name (an existing file is replaced).")
    temporary = f"{target}.{secrets.token_hex(6)}.tmp"
    try:
        try:
            with (
                open(temporary, "xb") as file,
                zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive,
            ):
                if mode is not None:  # a replaced file keeps its permissions
                    os.chmod(file.fileno(), stat.S_IMODE(mode))
                archive.writestr(_MANIFEST, text)
                for member, data in writer.members.items():
                    archive.writestr(member, data)
            os.replace(temporary, target)
        except OSError as err:
            # named by the path asked for (as open() names it), not by the hidden
            # temporary file; errors that cannot be rebuilt so go as they came
            if err.errno is None:
                raise
            try:
                named = type(err)(err.errno, err.strerror, os.fsdecode(path))
            except Exception:  # noqa: BLE001 - a subclass with another constructor
                raise err from None
            raise named from err
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# --------------------------------------------------------------------------- reading


class _Reader:
    """Decodes the manifest tree, reading (and verifying) each array member once."""

    def __init__(self, archive):
        self.archive = archive
        self.used = set()

    def value(self, node, where):
        if node is None or isinstance(node, (bool, str, int, float)):
            return node
        if isinstance(node, list) or not isinstance(node, dict) or len(node) not in (1, 2):
            raise ValueError(f"{where}: malformed value {_short(node)}.")
        handlers = {
            "array": self._array,
            "objects": self._objects,
            "tuple": lambda n, w: tuple(self._items(n["tuple"], w)),
            "list": lambda n, w: self._items(n["list"], w),
            "path": lambda n, w: pathlib.Path(_expect(n["path"], str, w)),
            "dict": lambda n, w: {key: self.value(item, f"{w}[{key!r}]")
                                  for key, item in _expect(n["dict"], dict, w).items()},
            "float": self._float,
            "narrow_float": self._narrow_float,
            "random_state": self._random_state,
            "estimator": lambda n, w: self.estimator(n["estimator"], w),
        }
        tag = next((key for key in node if key in handlers), None)
        if tag is None or set(node) - {tag, "sha256", "shape"}:
            raise ValueError(f"{where}: unknown value tag in {_short(node)}.")
        return handlers[tag](node, where)

    def _items(self, items, where):
        items = _expect(items, list, where)
        return [self.value(item, f"{where}[{i}]") for i, item in enumerate(items)]

    @staticmethod
    def _float(node, where):
        if not isinstance(node["float"], str) or node["float"] not in _NONFINITE:
            raise ValueError(f"{where}: unknown float {node['float']!r}.")
        return _NONFINITE[node["float"]]

    def _narrow_float(self, node, where):
        item = node["narrow_float"]
        if set(node) != {"narrow_float"} or not (
                isinstance(item, list) and len(item) == 2 and item[0] in ("float32", "float16")):
            raise ValueError(f"{where}: malformed narrow float {_short(item)}.")
        number = self.value(item[1], where)  # a number, or a tagged inf or NaN
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ValueError(f"{where}: malformed narrow float {_short(item)}.")
        return np.dtype(item[0]).type(number)

    def _objects(self, node, where):
        shape = _expect(node.get("shape"), list, where)
        # checked before math.prod: a product of thousands of huge ints takes minutes
        if len(shape) > 32 or not all(_index(n) and n < 2**63 for n in shape):
            raise ValueError(f"{where}: invalid shape {_short(shape)} for an object array.")
        items = self._items(node["objects"], where)
        if any(not isinstance(item, (str, int, float)) for item in items):
            raise ValueError(f"{where}: an object array may hold only str, int, float, bool.")
        if math.prod(shape) != len(items):
            raise ValueError(f"{where}: {len(items)} objects do not fill the shape {shape}.")
        array = np.empty(len(items), dtype=object)
        array[:] = items
        try:
            return array.reshape(shape)
        except ValueError as exc:  # no items, but more dimensions or elements than numpy allows
            raise ValueError(f"{where}: invalid shape {_short(shape)} ({exc}).") from exc

    def _random_state(self, node, where):
        state = self.value(node["random_state"], where)
        if not _is_mt19937_state(state):
            raise ValueError(
                f"{where}: invalid random state; expected what RandomState.get_state() returns: "
                "['MT19937', a key of 624 uint32, a position from 0 to 624, has_gauss 0 or 1, "
                "a finite cached Gaussian]."
            )
        try:
            random_state = np.random.RandomState()
            random_state.set_state(tuple(state))
        except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
            raise ValueError(f"{where}: invalid random state ({exc}).") from exc
        return random_state

    def _array(self, node, where):
        member = _expect(node["array"], str, where)
        if not _ARRAY_MEMBER.fullmatch(member) or member in self.used:
            raise ValueError(f"{where}: invalid or repeated array member {member!r}.")
        self.used.add(member)
        try:
            with self.archive.open(member) as stream:
                data = _Member(stream, self.archive.getinfo(member).file_size)
                array, error = _read_npy(data)
                data.drain()  # hash what a broken header left unread, for the digest's verdict
        except (_BrokenMember, *_ZIP_ERRORS) as exc:
            raise ValueError(f"{where}: cannot read array member {member!r} ({exc}).") from exc
        if data.digest.hexdigest() != node.get("sha256"):
            raise ValueError(
                f"{where}: the array {member!r} does not match its SHA-256 in the manifest; "
                "the file is corrupted or was tampered with."
            )
        if error is not None:
            raise ValueError(f"{where} ({member}): not a valid array ({error}).") from error
        return array

    def estimator(self, node, where):
        node = _expect(node, dict, where)
        name = node.get("class")
        if not isinstance(name, str) or name not in _CLASSES:
            raise ValueError(
                f"{where}: class {_short(name)} is not allowed; sklearn_lore.load builds only "
                f"{sorted(_CLASSES)}."
            )
        if set(node) != {"class", "params", "state"}:
            raise ValueError(f"{where}: an estimator needs exactly class, params and state.")
        cls = _allowed_class(name)
        params = {
            key: self.value(value, f"{where}.{key}")
            for key, value in _expect(node["params"], dict, where).items()
        }
        unknown = set(params) - set(cls._get_param_names())
        if unknown:
            raise ValueError(f"{where}: {cls.__name__} has no parameter(s) {sorted(unknown)}.")
        obj = cls(**params)
        for key, value in _expect(node["state"], dict, where).items():
            _check_state_name(cls, key, params, where)
            if key == _REQUESTS:  # the only place such a node may be
                if not (isinstance(value, dict) and set(value) == {"requests"}):
                    raise ValueError(f"{where}.{key}: expected metadata requests, got "
                                     f"{_short(value)}.")
                _Requests(_expect(value["requests"], dict, f"{where}.{key}")).apply(
                    obj, f"{where}.{key}")
                continue
            value = self.value(value, f"{where}.{key}")
            if key == "_sklearn_output_config" and not (
                    isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
                raise ValueError(f"{where}.{key}: expected set_output's configuration, a "
                                 f"dict of str, got {_short(value)}.")
            setattr(obj, key, value)
        _CHECKS.get(name, lambda obj, where: None)(obj, where)
        if hasattr(obj, "_state_lock"):
            obj._state_lock()  # made before any thread can share the model
        return obj


# where scikit-learn keeps an estimator's metadata-routing requests
_REQUESTS = "_metadata_request"


class _Requests:
    """Requests read from a file, set again through the estimator's public
    ``set_{method}_request`` methods (which check every name and value)."""

    def __init__(self, table):
        self.table = table

    def apply(self, obj, where):
        import sklearn

        for method, requests in self.table.items():
            requests = _expect(requests, dict, f"{where}[{method!r}]")
            if not requests:
                continue
            setter = getattr(obj, f"set_{method}_request", None)
            if not _STATE_NAME.fullmatch(method) or setter is None:
                raise ValueError(f"{where}: {type(obj).__name__} takes no requests for "
                                 f"{_short(method)}.")
            if not all(value is None or isinstance(value, (bool, str))
                       for value in requests.values()):
                raise ValueError(f"{where}[{method!r}]: a request is True, False, None or "
                                 f"an alias (str); got {_short(requests)}.")
            try:
                with sklearn.config_context(enable_metadata_routing=True):
                    setter(**requests)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{where}[{method!r}]: {exc}") from exc


class _BrokenMember(Exception):
    """The zip layer failed while a member was read (a damaged or hostile archive)."""


class _Member:
    """A zip member read in chunks, hashed as it is read, never past its declared size."""

    def __init__(self, stream, size):
        self.stream = stream
        self.left = size
        self.digest = hashlib.sha256()

    def read(self, n):
        try:
            data = self.stream.read(min(n, self.left))
        except _ZIP_ERRORS as exc:
            raise _BrokenMember(exc) from exc
        self.left -= len(data)
        self.digest.update(data)
        return data

    def drain(self):
        while self.left > 0 and self.read(_READ_CHUNK):
            pass


def _read_npy(data):
    """``(array, None)`` from a ``.npy`` member, or ``(None, error)`` if it is not one.

    Plain dtypes only; the data size is checked against the header before anything is
    allocated, and the array is filled in chunks (no second copy of the member in memory).
    """
    try:
        version = np.lib.format.read_magic(data)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }.get(version)
        if read_header is None:  # 3.0 has UTF-8 field names: structured dtypes, refused anyway
            raise ValueError(f".npy format version {version} is not supported")
        shape, fortran_order, dtype = read_header(data)
        if dtype.hasobject or dtype.kind not in _ARRAY_KINDS:
            raise ValueError(f"dtype {dtype} is not allowed")
        if dtype.itemsize == 0:  # the size check below could not bound the element count
            raise ValueError(f"dtype {dtype} has elements of size 0")
        if math.prod(shape) * dtype.itemsize != data.left:
            raise ValueError("the data size does not match the header")
        array = np.empty(math.prod(shape), dtype=dtype)
        target = memoryview(array.view(np.uint8))
        filled = 0
        while filled < len(target):  # a read may return less than asked: fill by offset
            chunk = data.read(min(_READ_CHUNK, len(target) - filled))
            if not chunk:
                raise ValueError("the member ends before its declared size")
            target[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
    except (ValueError, KeyError, TypeError, OSError, EOFError, SyntaxError) as exc:
        return None, exc
    if fortran_order:
        return array.reshape(shape[::-1]).transpose(), None
    return array.reshape(shape), None


def _is_mt19937_state(state):
    """Whether ``state`` (decoded from a file) is what ``RandomState.get_state()`` returns.

    numpy's ``set_state`` does not check the position: one past the key's 624 words makes the
    generator read outside it (wrong numbers, then a segmentation fault).
    """
    if not (isinstance(state, list) and len(state) == 5 and isinstance(state[0], str)):
        return False
    if state[0] != "MT19937":
        return False
    key, position, has_gauss, gauss = state[1:]
    return (
        isinstance(key, np.ndarray)
        and key.shape == (624,)
        and key.dtype.kind == "u"
        and key.dtype.itemsize == 4
        and _index(position)
        and position <= 624
        and _index(has_gauss)
        and has_gauss <= 1
        and _finite_real(gauss)
    )


def _index(value):
    """Whether ``value`` is a non-negative int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _finite_real(value):
    """Whether ``value`` is a real number (not a bool) that converts to a finite float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range, such as 10**400
        return False


def _expect(value, kind, where):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where}: expected {kind.__name__}, got {_short(value)}.")
    return value


def _short(value):
    text = repr(value)
    return _clip(text)


def _clip(text):
    text = str(text)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_state_name(cls, key, params, where):
    if (
        not _STATE_NAME.fullmatch(key)
        or key in params
        or hasattr(cls, key)
        # per-process caches (a loaded model, an id index) are never saved: an embedder
        # would use a _loaded_model from the file as its model
        or key.startswith(_TRANSIENT_PREFIXES)
    ):
        raise ValueError(f"{where}: {key!r} is not a valid fitted attribute of {cls.__name__}.")


def _file_name(path, verb):
    """``path`` as a file name; an open file or a buffer is refused by name."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(
            f"{verb} takes the file's name (a str or path-like), not a "
            f"{type(path).__name__}: it opens the file itself"
            + (" and replaces it atomically." if verb == "save" else ".")
        )
    return os.fsdecode(os.fspath(path))


def _open_file(path):
    """The regular file at ``path``, opened for reading without blocking.

    A directory raises IsADirectoryError as ``open`` does; a named pipe, a device or a
    socket is refused (a pipe would block ``open`` until someone writes to it).
    """
    name = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(name, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
        if not stat.S_ISREG(mode):
            raise ValueError(f"{name!r} is not a sklearn_lore file (not a regular file).")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_archive(file, name, max_bytes):
    """The zip archive in ``file``, checked before any member is read."""
    try:
        archive = zipfile.ZipFile(file)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        ValueError,
        NotImplementedError,  # a "zip file version" beyond what zipfile reads
        OSError,
    ) as exc:
        raise ValueError(f"{name!r} is not a sklearn_lore file (not a zip archive).") from exc
    try:
        _check_members(archive, name, max_bytes, os.fstat(file.fileno()).st_size)
    except BaseException:
        archive.close()
        raise
    return archive


def _check_members(archive, name, max_bytes, file_size):
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if len(names) != len(set(names)) or _MANIFEST not in names:
        raise ValueError(f"{name!r} is not a sklearn_lore file: bad or missing manifest.")
    for info in infos:
        if info.compress_type not in _COMPRESSIONS:
            # bzip2 and lzma expand without the bounds zipfile gives deflate; save never uses them
            raise ValueError(
                f"{name!r}: the member {_short(info.filename)} uses compression method "
                f"{info.compress_type}; sklearn_lore files use deflate (8) or none (0)."
            )
    # Declared sizes bound what is read (members are read up to their declared size), so this
    # bounds what loading allocates, before anything is decompressed.
    cost = sum(info.file_size for info in infos)
    cost += (_MANIFEST_WEIGHT - 1) * archive.getinfo(_MANIFEST).file_size
    limit = max(_MIN_BUDGET, _MAX_EXPANSION * file_size) if max_bytes is None else max_bytes
    if cost > limit:
        default = "1 GiB, or 100 times the file's size" if max_bytes is None else "max_bytes"
        raise ValueError(
            f"{name!r} would take about {_size(cost)} of memory to load, as its members "
            f"declare them decompressed, from a file of {_size(file_size)}: more than the "
            f"limit of {_size(limit)} ({default}). A small file that inflates this much is "
            "likely a decompression bomb; if you trust it, pass a larger max_bytes to load."
        )


def _size(n_bytes):
    return f"{n_bytes / 2**20:.0f} MiB" if n_bytes >= 2**20 else f"{n_bytes} bytes"


def _read_manifest(archive):
    info = archive.getinfo(_MANIFEST)
    if info.file_size > _MAX_MANIFEST_BYTES:
        raise ValueError("The manifest is implausibly large; refusing to read it.")

    def reject_constant(name):
        raise ValueError(f"non-standard JSON constant {name}")

    try:
        with archive.open(info) as stream:
            # at most the declared size, however much more the compressed data holds
            text = stream.read(info.file_size)
        manifest = json.loads(text, parse_constant=reject_constant)
    except (ValueError, RecursionError, *_ZIP_ERRORS) as exc:
        raise ValueError(f"The manifest is not valid JSON ({exc}).") from exc
    return _expect(manifest, dict, "manifest")


def _check_header(manifest):
    if manifest.get("format") != FORMAT:
        raise ValueError(
            f"Not a sklearn_lore model file: format {_short(manifest.get('format'))}, "
            f"expected {FORMAT!r}."
        )
    file_format = manifest.get("format_version")
    written_by = _clip(manifest.get("sklearn_lore_version"))
    if type(file_format) is not int or file_format != FORMAT_VERSION:
        raise ValueError(
            f"The file has format version {_short(file_format)} (written by sklearn_lore "
            f"{written_by}); sklearn_lore {_package_version()} reads format version "
            f"{FORMAT_VERSION}. Load it with the sklearn_lore version that wrote it."
        )
    if _major(manifest.get("sklearn_lore_version")) != _major(_package_version()):
        raise ValueError(
            f"The file was written by sklearn_lore {written_by}, incompatible with the "
            f"installed sklearn_lore {_package_version()} (major versions differ). Load it "
            f"with sklearn_lore {_major(manifest.get('sklearn_lore_version'))}.x and refit or "
            "re-save."
        )


def _read_object(archive):
    """The object a checked archive holds."""
    manifest = _read_manifest(archive)
    _check_header(manifest)
    reader = _Reader(archive)
    try:
        obj = reader.estimator(manifest.get("object"), "object")
    except RecursionError as exc:
        raise ValueError("The manifest is nested too deeply.") from exc
    except (TypeError, KeyError, AttributeError, IndexError, OverflowError) as exc:
        raise ValueError(f"The manifest is malformed ({exc!r}).") from exc
    extra = set(archive.namelist()) - reader.used - {_MANIFEST}
    if extra:
        raise ValueError(
            f"The file holds members the manifest does not list: {_short(sorted(extra))}."
        )
    return obj


def load(path, *, max_bytes=None):
    """Load a model written by :func:`save`; runs no code from the file.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.
    max_bytes : int, default=None
        The most memory, in bytes, that reading the file may take, as its members declare
        it once decompressed (the manifest counting 30 times its size, what its JSON takes
        in memory). None allows 1 GiB, or 100 times the file's size when that is more:
        a fitted model's numbers compress little, so only a model whose arrays are mostly
        zeros comes near that, while a decompression bomb (a small file that inflates to
        gigabytes) is refused before anything is decompressed. Pass a larger value for a
        trusted file that the default refuses.

    Returns
    -------
    obj : LowRankRewardEstimator, SentencePairEmbedder, RewardModelEmbedder or Pipeline
        Equal in parameters and fitted attributes to the saved object. Embedders
        load their model lazily, by the name or path saved, on first use.

    Raises
    ------
    TypeError
        If `path` is not a str or path-like (an open file, a buffer: pass its name), or
        `max_bytes` is not an integer (a numpy one will do).
    FileNotFoundError, IsADirectoryError, PermissionError
        As ``open`` raises them for `path`.
    ValueError
        If the file is not a sklearn_lore file (not a regular file, not a zip archive, a
        member compressed otherwise than with deflate, members that would take more than
        `max_bytes` to read), was written by an incompatible version (the message names
        both versions), names a class outside the allow-list, holds a pickle payload, an
        unlisted member, an array that does not match its digest, an invalid random state,
        or a fitted estimator whose fitted attributes are missing, of inconsistent shapes,
        of a non-numeric dtype where numbers are expected (text, bool, complex, dates),
        non-finite, or (temperatures, ``shrinkage_``) not positive, or a pipeline whose
        steps scikit-learn would refuse to fit. The message names the file and what is
        wrong. Files written before ``user_temperature_`` and ``fold_in_temperature_``
        existed still load.

    See Also
    --------
    save : Write the file.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn_lore import LowRankRewardEstimator, save, load
    >>> path = os.path.join(tempfile.mkdtemp(), "unfitted.lore")
    >>> save(LowRankRewardEstimator(n_components=3, backend="numpy"), path)
    >>> load(path)
    LowRankRewardEstimator(backend='numpy', n_components=3)
    """
    if max_bytes is not None:
        if not isinstance(max_bytes, numbers.Integral) or isinstance(max_bytes, (bool, np.bool_)):
            raise TypeError(f"max_bytes must be None or a non-negative int; got "
                            f"{type(max_bytes).__name__} {max_bytes!r}.")
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be None or a non-negative int; got {max_bytes!r}.")
        max_bytes = int(max_bytes)
    name = _file_name(path, "load")
    with _open_file(name) as file:
        with _open_archive(file, name, max_bytes) as archive:
            try:
                return _read_object(archive)
            except ValueError as exc:
                raise ValueError(f"Cannot load {name!r}: {exc}") from exc


# --------------------------------------------------------------------------- consistency


def _check_lore_state(est, where):
    """Shapes and values of a loaded LowRankRewardEstimator agree with each other."""
    from sklearn.utils._param_validation import InvalidParameterError

    try:
        est._validate_params()
    except InvalidParameterError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    # fitted as scikit-learn's check_is_fitted sees it: then every fitted attribute is needed
    if not any(key.endswith("_") and not key.startswith("__") for key in vars(est)):
        return
    B = est.n_components
    d = _expect(_attribute(est, "n_features_in_", where), int, f"{where}.n_features_in_")
    users = _attribute(est, "users_", where)
    # ids as the estimator keeps them: ints, text or objects (save writes no others;
    # bytes, dates or bools there would match no id at predict: everyone the population)
    if not (isinstance(users, np.ndarray) and users.ndim == 1 and users.dtype.kind in "iuUO"):
        got = (f"an array of dtype {users.dtype} and shape {users.shape}"
               if isinstance(users, np.ndarray) else _short(users))
        raise ValueError(f"{where}.users_: expected a 1-d array of user ids (int, str or "
                         f"object dtype), got {got}.")
    n_users = len(users)
    expected = {
        "classes_": (2,),
        "components_": (B, d),
        "users_": (n_users,),
        "user_weights_": (n_users, B),
        "user_precision_": (n_users, B, B),
        "population_weights_": (B,),
        "prior_mean_": (B,),
        "prior_precision_": (B, B),
    }
    if hasattr(est, "feature_names_in_"):
        expected["feature_names_in_"] = (d,)
    if hasattr(est, "user_temperature_"):
        expected["user_temperature_"] = (n_users,)
    for name, shape in expected.items():
        _check_shape(_attribute(est, name, where), shape, f"{where}.{name}")
    for name in (name for name in expected if name not in _NON_NUMERIC_ARRAYS):
        _check_numeric(getattr(est, name), f"{where}.{name}")
    for name in _REQUIRED_SCALARS:
        _attribute(est, name, where)
    _check_scalar(est.n_iter_, f"{where}.n_iter_", integer=True)
    _check_scalar(est.objective_, f"{where}.objective_")
    if hasattr(est, "_shrinkage_rows"):
        _check_scalar(est._shrinkage_rows, f"{where}._shrinkage_rows", integer=True)
    for name in _POSITIVE_SCALARS:
        if hasattr(est, name):
            _check_scalar(getattr(est, name), f"{where}.{name}", positive=True)
    if hasattr(est, "user_temperature_") and not (est.user_temperature_ > 0).all():
        raise ValueError(f"{where}.user_temperature_: temperatures must be positive.")
    if len(set(est.users_.tolist())) != n_users:
        raise ValueError(f"{where}.users_: user ids are not unique.")
    labels = est.classes_.tolist()
    if len(set(labels)) != 2 or any(isinstance(v, float) and not math.isfinite(v) for v in labels):
        # predict returns these labels: [0, 0] would answer 0 whatever the model says
        raise ValueError(f"{where}.classes_: expected two different labels, got {_short(labels)}.")
    if getattr(est, "_fitted_kind", "free") not in ("free", "simplex"):
        raise ValueError(f"{where}._fitted_kind: expected 'free' or 'simplex', got "
                         f"{_short(est._fitted_kind)}.")
    for flag in ("_shrinkage_calibrated", "_seen_temperature_held_out",
                 "_unknown_temperature_held_out"):
        if not isinstance(getattr(est, flag, False), bool):
            raise ValueError(f"{where}.{flag}: expected True or False, got "
                             f"{_short(getattr(est, flag))}.")
    if not isinstance(getattr(est, "_fit_with_users", False), bool):
        raise ValueError(f"{where}._fit_with_users: expected True or False, got "
                         f"{_short(est._fit_with_users)}.")
    curvature = _attribute(est, "_stream_curvature", where)
    if not (isinstance(curvature, tuple) and len(curvature) == 3):
        raise ValueError(f"{where}._stream_curvature: expected a tuple (A, S, scale).")
    _check_shape(curvature[0], (d, d), f"{where}._stream_curvature[0]")
    _check_shape(curvature[1], (B, B), f"{where}._stream_curvature[1]")
    _check_numeric(curvature[0], f"{where}._stream_curvature[0]")
    _check_numeric(curvature[1], f"{where}._stream_curvature[1]")
    _check_scalar(curvature[2], f"{where}._stream_curvature[2]")
    memory = getattr(est, "_stream_memory", None)
    if memory is not None:
        if not (isinstance(memory, tuple) and len(memory) == 4):
            raise ValueError(f"{where}._stream_memory: expected a tuple (Z, y, weights, ids).")
        n = len(memory[1]) if hasattr(memory[1], "__len__") else -1
        _check_shape(memory[0], (n, d), f"{where}._stream_memory[0]")
        _check_shape(memory[1], (n,), f"{where}._stream_memory[1]")
        _check_shape(memory[2], (n,), f"{where}._stream_memory[2]")
        for i in range(3):
            _check_numeric(memory[i], f"{where}._stream_memory[{i}]")
        # what fit checks of its rows (a label of 2 there made the next partial_fit store
        # NaN temperatures and weights)
        if not np.isin(memory[1], (0, 1)).all():
            raise ValueError(f"{where}._stream_memory[1]: the remembered labels must be 0 "
                             "or 1.")
        if not (np.isfinite(memory[2]).all() and (memory[2] >= 0).all()):
            raise ValueError(f"{where}._stream_memory[2]: the remembered sample weights must "
                             "be finite and non-negative.")
        with_users = getattr(est, "_fit_with_users", None)
        if with_users is None:  # files saved before the flag existed
            with_users = n_users > 0
        if (memory[3] is None) == bool(with_users):
            raise ValueError(
                f"{where}._stream_memory[3]: the remembered rows' user ids are "
                + ("missing on a model trained with user ids." if with_users
                   else "present on a model trained without user ids."))
        if memory[3] is not None:
            _check_shape(memory[3], (n,), f"{where}._stream_memory[3]")
            import pandas as pd

            missing = pd.isna(memory[3])
            if missing.any():
                raise ValueError(f"{where}._stream_memory[3]: a missing user id (None or "
                                 f"NaN) at row {int(np.argmax(missing))}.")
    _check_stream_calibration(getattr(est, "_stream_calibration", None), where)
    precision = _attribute(est, "_population_precision", where)
    _check_shape(precision, (B, B), f"{where}._population_precision")
    _check_numeric(precision, f"{where}._population_precision")
    _check_finite(vars(est), where)


def _check_stream_calibration(windows, where):
    """A memory-free stream's held-out logits (``_stream_calibration``): None, or two
    windows (seen users', population's), each None or (logits, labels 0/1, weights) of
    one length, finite, the weights positive (the next partial_fit fits temperatures
    on them)."""
    if windows is None:
        return
    name = f"{where}._stream_calibration"
    if not (isinstance(windows, tuple) and len(windows) == 2):
        raise ValueError(f"{name}: expected None or a tuple of two windows.")
    for k, window in enumerate(windows):
        if window is None:
            continue
        if not (isinstance(window, tuple) and len(window) == 3):
            raise ValueError(f"{name}[{k}]: expected a tuple (logits, labels, weights).")
        n = len(window[0]) if hasattr(window[0], "__len__") else -1
        for i, part in enumerate(window):
            _check_shape(part, (n,), f"{name}[{k}][{i}]")
            _check_numeric(part, f"{name}[{k}][{i}]")
            if not np.isfinite(part).all():
                raise ValueError(f"{name}[{k}][{i}]: values must be finite.")
        if not np.isin(window[1], (0, 1)).all():
            raise ValueError(f"{name}[{k}][1]: the labels must be 0 or 1.")
        if not (window[2] > 0).all():
            raise ValueError(f"{name}[{k}][2]: the weights must be positive.")


# The fitted arrays of the shape table that hold ids, labels or names; every other one holds
# real numbers (float or int dtypes; not bool, complex, text or dates).
_NON_NUMERIC_ARRAYS = {"classes_", "users_", "feature_names_in_"}
# Scalars every fitted estimator has: files of every version that stores temperatures
# hold these (older files lack user_temperature_ and fold_in_temperature_, which the
# estimator derives from temperature_ when they are missing; they are checked if present).
_REQUIRED_SCALARS = (
    "n_iter_",
    "objective_",
    "shrinkage_",
    "temperature_",
    "population_temperature_",
)
# Logits are divided by the temperatures; shrinkage_ scales a prior precision.
_POSITIVE_SCALARS = ("shrinkage_", "temperature_", "population_temperature_",
                     "fold_in_temperature_")


def _check_numeric(value, where):
    # float32 or float64 and machine integers in native byte order, as save writes them
    # (a float128 array, say, loaded and then crashed numpy's linear algebra)
    ok = isinstance(value, np.ndarray) and value.dtype.isnative and (
        (value.dtype.kind == "f" and value.dtype.itemsize in (4, 8))
        or (value.dtype.kind in "iu" and value.dtype.itemsize <= 8))
    if not ok:
        got = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
        raise ValueError(
            f"{where}: expected an array of real numbers (float32, float64 or integer "
            f"dtype), got {got}."
        )


def _check_scalar(value, where, integer=False, positive=False):
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and _finite_real(value)
    if not ok or (positive and value <= 0) or (integer and value < 0):
        what = "a non-negative integer" if integer else (
            "a finite positive number" if positive else "a finite number")
        raise ValueError(f"{where}: expected {what}, got {_short(value)}.")


def _attribute(est, name, where):
    if not hasattr(est, name):
        raise ValueError(f"{where}: the fitted attribute {name} is missing.")
    return getattr(est, name)


def _check_shape(value, shape, where):
    if not isinstance(value, np.ndarray) or value.shape != shape:
        got = value.shape if isinstance(value, np.ndarray) else type(value).__name__
        raise ValueError(f"{where}: expected an array of shape {shape}, got {got}.")


def _check_finite(values, where):
    for name, value in values.items():
        if isinstance(value, tuple):
            _check_finite(dict(enumerate(value)), f"{where}.{name}")
        elif isinstance(value, (np.ndarray, float)) and np.asarray(value).dtype.kind in "fc":
            if not np.isfinite(value).all():
                raise ValueError(f"{where}.{name}: non-finite values in a fitted attribute.")


def _check_embedder_state(embedder, where):
    try:
        embedder._check_params()
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    for name in ("model", "cache_dir"):  # opened as paths or model names when transforming
        value = getattr(embedder, name)
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"{where}.{name}: expected None, a str or a path, got "
                             f"{_short(value)}.")
    if hasattr(embedder, "n_features_in_"):  # fitted
        n_columns = embedder.n_features_in_
        _check_scalar(n_columns, f"{where}.n_features_in_", integer=True)
        if hasattr(embedder, "feature_names_in_"):
            _check_shape(embedder.feature_names_in_, (n_columns,), f"{where}.feature_names_in_")
    if not isinstance(getattr(embedder, "_fit_has_user", False), bool):
        raise ValueError(f"{where}._fit_has_user: expected True or False, got "
                         f"{_short(embedder._fit_has_user)}.")


def _check_pipeline_state(pipe, where):
    if pipe.memory is not None:
        # A joblib cache unpickles its entries when the pipeline is fitted.
        raise ValueError(f"{where}.memory: a loaded Pipeline must have memory=None.")
    steps = pipe.steps
    if not isinstance(steps, (list, tuple)):
        raise ValueError(f"{where}.steps: expected a list, got {type(steps).__name__}.")
    for i, step in enumerate(steps):
        if not (isinstance(step, tuple) and len(step) == 2 and isinstance(step[0], str)):
            raise ValueError(f"{where}.steps[{i}]: expected a (name, estimator) pair.")
        # "passthrough" or None: a step left out, as scikit-learn allows
        if step[1] is not None and step[1] != "passthrough" and _class_name(step[1]) is None:
            raise ValueError(f"{where}.steps[{i}]: expected an estimator, got {_short(step[1])}.")
    if len({name for name, _ in steps}) != len(steps):
        raise ValueError(f"{where}.steps: step names are not unique.")
    # what Pipeline.fit checks first: parameter types, names without "__", no steps missing,
    # and every step but the last a transformer (predict would fail on another estimator)
    try:
        pipe._validate_params()
        pipe._validate_steps()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from exc


_CHECKS = {
    "sklearn_lore.estimator.LowRankRewardEstimator": _check_lore_state,
    "sklearn_lore.embedding.SentencePairEmbedder": _check_embedder_state,
    "sklearn_lore.embedding.RewardModelEmbedder": _check_embedder_state,
    "sklearn.pipeline.Pipeline": _check_pipeline_state,
}
