"""A tokenizing worker process of `sklearn_lore.embedding`, and the protocol it speaks.

``python -m sklearn_lore._tokenize_worker`` tokenizes batches of texts it reads on stdin
and writes their token ids on stdout. It imports numpy and ``tokenizers`` only (not
torch, not the rest of the package), so it starts in a fraction of a second and takes
one core; the parent runs several and pads their output itself.

Every message is a frame: the payload's size as an int64, then the payload.

- First frame, parent to worker: JSON ``{"tokenizer": <tokenizers.Tokenizer.to_str()>,
  "encode_special_tokens": bool, "type_ids": bool}``, a Rust tokenizer with its
  truncation set and no padding.
- Then per request: `pack_texts` of a list of texts. The answer is `pack_tokens` of
  their `tokenize` output, or an error frame (`unpack_tokens` raises `WorkerError`).
- End of file on stdin (the parent closed the pipe, or died) ends the worker.

Numbers are int64 in the machine's byte order (parent and worker share the machine), so
every array of a payload starts 8-byte aligned.
"""

import itertools
import json
import os
import re
import signal
import struct
import sys

import numpy as np

_HEADER = struct.Struct("=q")
_TOKENS_HEADER = struct.Struct("=qqq")  # status, number of texts, number of tokens
_OK, _ERROR = 0, 1


class WorkerError(RuntimeError):
    """A worker's answer is an error, is malformed, or never comes (end of file)."""


def write_frame(stream, *parts):
    """Write one frame made of the bytes-like `parts` to a raw (unbuffered) binary stream."""
    views = [memoryview(part).cast("B") for part in parts]
    _write_all(stream, _HEADER.pack(sum(view.nbytes for view in views)))
    for view in views:
        _write_all(stream, view)


def read_frame(stream):
    """The payload of the next frame as a bytearray, or None at end of file before it."""
    header = _read_exact(stream, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    payload = _read_exact(stream, size) if size else bytearray()
    if payload is None:
        raise WorkerError("the stream ended inside a frame")
    return payload


def _write_all(stream, data):
    view = memoryview(data)
    while view.nbytes:
        view = view[stream.write(view) :]


def _read_exact(stream, size):
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    while done < size:
        n = stream.readinto(view[done:])
        if not n:
            if done:
                raise WorkerError("the stream ended inside a frame")
            return None
        done += n
    return buffer


def pack_texts(texts):
    """Request payload: the number of texts, their lengths in characters, and their
    concatenation in UTF-8 (lone surrogates passed through, as Python holds them)."""
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    return [_HEADER.pack(len(texts)), lengths, "".join(texts).encode("utf-8", "surrogatepass")]


def unpack_texts(payload):
    """The list of texts of a `pack_texts` payload."""
    (n,) = _HEADER.unpack_from(payload)
    lengths = np.frombuffer(payload, np.int64, n, _HEADER.size)
    joined = str(memoryview(payload)[_HEADER.size + 8 * n :], "utf-8", "surrogatepass")
    ends = np.cumsum(lengths).tolist()
    return [joined[start:end] for start, end in zip([0, *ends], ends)]


def tokenize(backend, texts, type_ids):
    """Token ids of texts, unpadded: ``(lengths, ids, type_ids)``, int64 arrays.

    ``ids`` holds the ids of every text one after the other (``lengths`` says where each
    ends), ``type_ids`` likewise, or is None when not asked for. `backend` is a
    ``tokenizers.Tokenizer`` that truncates as wanted and does not pad, or a `WordCache`
    of one.
    """
    if isinstance(backend, WordCache):
        rows = backend.encode(texts)
        encodings = None
    else:
        encodings = _rust_encode(backend, texts)
        rows = [encoding.ids for encoding in encodings]
    lengths = np.fromiter(map(len, rows), np.int64, len(rows))
    total = int(lengths.sum())
    ids = np.fromiter(itertools.chain.from_iterable(rows), np.int64, total)
    types = None
    if type_ids and encodings is None:
        types = np.full(total, backend.type_id, dtype=np.int64)
    elif type_ids:
        rows = (encoding.type_ids for encoding in encodings)
        types = np.fromiter(itertools.chain.from_iterable(rows), np.int64, total)
    return lengths, ids, types


def _rust_encode(backend, texts, add_special_tokens=True):
    # without the character offsets (tokenizers >= 0.20): the same ids, 10% less time
    encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch
    return encode(texts, add_special_tokens=add_special_tokens)


# SKLEARN_LORE_WORD_CACHE=0: every text through the Rust tokenizer (for comparisons)
_WORD_CACHE_SWITCH = "SKLEARN_LORE_WORD_CACHE"
_WORD_CACHE_LIMIT = 1 << 17  # words kept per copy (about 20 MB); past it, start over
_WORDS_PER_TEXT = 256  # unseen words handed to the Rust tokenizer in one text
# the words of a text: what lies between the characters every normalizer below keeps and
# every pre-tokenizer below splits at
_WORDS = re.compile(r"[^ \t\n\r]+").findall
# BERT's own normalizer and pre-tokenizer on an ASCII text, finer: BertNormalizer
# (clean_text) drops the control characters other than tab, LF and CR (and lowercases
# when set), BertPreTokenizer splits at spaces and isolates every punctuation character
# (all printable ASCII that is not a letter or a digit); so the words are runs of
# letters and digits and single punctuation characters, "Word," and "word" sharing one
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ASCII_WORDS = {True: re.compile(r"[a-z0-9]+|[!-/:-@\[-`{-~]").findall,
                False: re.compile(r"[A-Za-z0-9]+|[!-/:-@\[-`{-~]").findall}
# and on any other text: ASCII punctuation alone too (the normalizer acts on each
# character alone and keeps it; the pre-tokenizer isolates it), the rest left to Rust
_BERT_WORDS = re.compile(r"[^ \t\n\r!-/:-@\[-`{-~]+|[!-/:-@\[-`{-~]").findall
# normalizers that act on each character (and its combining marks) alone, and
# pre-tokenizers that split at spaces, tabs and line breaks, whatever else they split at
_LOCAL_NORMALIZERS = {"BertNormalizer", "Lowercase", "NFD", "NFKD", "NFC", "NFKC",
                      "StripAccents"}
_SPLITTING_PRE_TOKENIZERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}
_MAY_FOLLOW = {"Punctuation", "Digits"}
# texts every cache must tokenize as its Rust tokenizer does before it is used
_PROBE = (
    "", " ", "a", "Hello, World! It's 3:15 p.m.; tabs\tand\nnew\rlines.  double  spaces ",
    "snake_case CamelCase kebab-case dot.separated path/to/file ~user @mention #tag $5 100%",
    "ctrl\x01chars\x0bgo\x0cmissing\x1f here\x7f, and\x00NUL too\x1c\x1d\x1e",
    "na\u00efve caf\u00e9 \u00dcn\u00efc\u00f6d\u00e9 e\u0301 \u0301x \u4e2d\u6587abc "
    "\u00a0nbsp\u2028sep\u3000wide\u0085next zero\u200bwidth \ufffd \U0001f600 \u0130stanbul",
    "\u039f\u0394\u039f\u03a3.\u0391\u0392 \u039f\u0394\u039f\u03a3 stra\u00dfe \ufb01ne "
    "\u00bd\u2460 \u0131\u0130",
    "unbelievably antidisestablishmentarianism supercalifragilisticexpialidocious " * 3,
    "x" * 99 + " " + "y" * 100 + " " + "z" * 101 + " " + "w" * 250,
    "numbers 0 1 12 123 1234 12345 3.14159 -2e10 0x1F 1,000,000",
    "!\"#$%&'()*+,-./:;<=>?@\\]^_`{|}~ ... --- !!! ??? \u00bf\u00a1 \u2014 \u201cquoted\u201d",
    "word " * 600,
    " ".join(f"w{i}" for i in range(300)),
)


class WordCache:
    """A Rust tokenizer's ids from a cache of the pieces of each word of a text.

    For a tokenizer whose normalizer acts on each character alone (BERT's: cleaning,
    accents, Chinese characters, lowercase; Unicode normal forms) and whose
    pre-tokenizer splits at spaces, tabs and line breaks (BERT's, ``Whitespace``), a
    text's ids are the ids of its words (what lies between those characters), each
    tokenized alone, one after the other, inside the template's special tokens and
    truncated as the tokenizer is. With BERT's own normalizer and pre-tokenizer the
    words are finer: every ASCII punctuation character alone (`_BERT_WORDS`), and an
    ASCII text's letters and digits lowercased where the normalizer lowercases
    (`_ASCII_WORDS`), so that "Word," and "word" share their pieces. The pieces of a
    word come from the Rust tokenizer the first time the word is seen (one call per
    batch, the words joined) and from a dict after: two to a few times faster than the
    Rust call per text on one core (the embedder's tokenizing was bound by it on a GPU
    machine; `benchmarks/bench_tokenize.py`). Texts
    that hold the first character of an added token (``[`` of ``[SEP]``) go to the Rust
    tokenizer whole. :meth:`wrap` returns the tokenizer itself unless its configuration
    is of that kind and every text of `_PROBE` comes out the same both ways. Used by the
    worker processes, each alone on its core (its Python part holds the GIL, so host
    threads keep the Rust call, which releases it). Not thread-safe.
    """

    def __init__(self, backend, plain, template, type_id, truncation, stop, marker,
                 bert=None):
        self.backend = backend  # the Rust tokenizer, for texts off the fast path
        # BERT's normalizer and pre-tokenizer: None, or whether the normalizer lowercases
        self._bert = bert
        self._plain = plain  # the same without truncation: words, no special tokens
        self._prefix, self._suffix = template
        self.type_id = type_id
        self._keep, self._left = truncation
        self._stop = stop
        self._marker = marker  # (content, id) of an added token, or None
        self._pieces = {}

    # what the embedder reads of a copy (the configuration of its worker processes)
    def to_str(self):
        return self.backend.to_str()

    @property
    def encode_special_tokens(self):
        return self.backend.encode_special_tokens

    @classmethod
    def wrap(cls, backend):
        """A `WordCache` of ``backend`` (a ``tokenizers.Tokenizer`` that does not pad),
        or ``backend`` itself where the cache does not apply or is switched off."""
        if os.environ.get(_WORD_CACHE_SWITCH) == "0" or isinstance(backend, cls):
            return backend
        try:
            plain = _untruncated(backend)
            settings = cls._settings(backend, plain)
            if settings is None:
                return backend
            cache = cls(backend, plain, *settings)
            expected = [encoding.ids for encoding in _rust_encode(backend, list(_PROBE))]
            if cache.encode(list(_PROBE)) != expected:
                return backend
        except Exception:  # noqa: BLE001 - anything unexpected: the Rust tokenizer as is
            return backend
        return cache

    @staticmethod
    def _settings(backend, plain):
        """The arguments of a cache for ``backend`` after ``plain`` (its untruncated
        copy), or None where it does not apply."""
        spec = json.loads(backend.to_str())
        normalizer = spec.get("normalizer") or {}
        normalizers = normalizer.get("normalizers", [normalizer]) if normalizer else []
        pre = spec.get("pre_tokenizer") or {}
        pres = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
        if (not all(n.get("type") in _LOCAL_NORMALIZERS for n in normalizers)
                or pres[0].get("type") not in _SPLITTING_PRE_TOKENIZERS
                or not all(p.get("type") in _SPLITTING_PRE_TOKENIZERS | _MAY_FOLLOW
                           for p in pres)
                or backend.padding is not None):
            return None
        added = spec.get("added_tokens") or []
        if any(token.get("normalized") for token in added):
            return None  # matched after normalization: no character to look for
        # the template: the special tokens around a text's own ids, one type id for all
        whole = plain.encode("a")
        own = plain.encode("a", add_special_tokens=False).ids
        at = next((i for i in range(len(whole.ids) - len(own) + 1)
                   if whole.ids[i:i + len(own)] == own), None)
        if not own or at is None or len(set(whole.type_ids)) != 1:
            return None
        template = (whole.ids[:at], whole.ids[at + len(own):])
        if plain.encode("").ids != template[0] + template[1]:
            return None
        keep, left = None, False
        truncation = backend.truncation
        if truncation is not None:
            keep = truncation["max_length"] - len(template[0]) - len(template[1])
            if keep <= 0 or truncation.get("strategy") not in ("longest_first", "only_first"):
                return None
            left = truncation.get("direction") == "left"
        # a text holding the first character of an added token goes whole
        added = [token for token in added if token.get("content")]
        firsts = sorted({token["content"][0] for token in added})
        stop = re.compile("|".join(map(re.escape, firsts))).search if firsts else None
        marker = None
        if added and not _WORDS(added[0]["content"])[1:]:  # one word, no space inside
            marker = (added[0]["content"], added[0]["id"])
        bert = None
        if (normalizer.get("type") == "BertNormalizer" and normalizer.get("clean_text")
                and pre.get("type") == "BertPreTokenizer"):
            bert = bool(normalizer.get("lowercase"))
        return template, whole.type_ids[0], (keep, left), stop, marker, bert

    def encode(self, texts):
        """Every text's ids (lists), special tokens included, truncated."""
        rows = [None] * len(texts)
        whole, later = [], []  # texts for the Rust tokenizer; texts with unseen words
        pieces, stop = self._pieces, self._stop
        get = pieces.__getitem__
        for i, text in enumerate(texts):
            if stop is not None and stop(text):
                whole.append(i)
                continue
            words = self.words(text)
            try:
                rows[i] = self._ids(list(itertools.chain.from_iterable(map(get, words))))
            except KeyError:
                later.append((i, words))
        if later:  # the batch's unseen words in one Rust call, then those texts
            self._learn(itertools.chain.from_iterable(words for _, words in later))
            for i, words in later:
                rows[i] = self._ids(list(itertools.chain.from_iterable(map(get, words))))
        if whole:
            encodings = _rust_encode(self.backend, [texts[i] for i in whole])
            for i, encoding in zip(whole, encodings):
                rows[i] = encoding.ids
        return rows

    def words(self, text):
        """The words of a text, the cache's keys (a text with none of the added tokens'
        first characters)."""
        if self._bert is None:
            return _WORDS(text)
        if text.isascii():
            if _ASCII_CONTROL.search(text):
                text = _ASCII_CONTROL.sub("", text)
            return _ASCII_WORDS[self._bert](text.lower() if self._bert else text)
        return _BERT_WORDS(text)

    def _ids(self, ids):
        """A text's own ids inside the template, truncated as the tokenizer does."""
        keep = self._keep
        if keep is not None and len(ids) > keep:
            ids = ids[len(ids) - keep:] if self._left else ids[:keep]
        return self._prefix + ids + self._suffix

    def _learn(self, words):
        """Add the pieces of the words not in the cache (one Rust call); past the limit
        the cache starts over with all of ``words``.

        The Rust tokenizer's cost is mostly per text, so the words go in a few long
        texts, one added token between each two (an added token is matched before
        normalization and never inside a cached word: texts holding its first character
        are not cached), and each text's ids are cut at that token's id.
        """
        pieces = self._pieces
        words = set(words)  # (words - pieces.keys() would walk the whole cache)
        new = [word for word in words if word not in pieces]
        if len(pieces) + len(new) > _WORD_CACHE_LIMIT:
            pieces.clear()  # and every word asked for is learnt again
            new = list(words)
        if self._marker is None or self.encode_special_tokens:
            parts, texts = [[word] for word in new], new
        else:
            parts = [new[i:i + _WORDS_PER_TEXT] for i in range(0, len(new), _WORDS_PER_TEXT)]
            texts = [f" {self._marker[0]} ".join(part) for part in parts]
        for part, encoding in zip(parts, _rust_encode(self._plain, texts,
                                                      add_special_tokens=False)):
            cut = self._cut(encoding.ids, len(part)) if len(part) > 1 else [encoding.ids]
            if cut is None:  # not as expected: one text per word
                encodings = _rust_encode(self._plain, part, add_special_tokens=False)
                cut = [encoding.ids for encoding in encodings]
            # tuples of ints: the garbage collector stops tracking them (a cache of lists
            # made every full collection walk it)
            pieces.update(zip(part, map(tuple, cut)))

    def _cut(self, ids, n_words):
        """``ids`` cut at the marker's id into ``n_words`` lists, or None."""
        marker, out, start = self._marker[1], [], 0
        try:
            while True:
                end = ids.index(marker, start)
                out.append(ids[start:end])
                start = end + 1
        except ValueError:
            out.append(ids[start:])
        return out if len(out) == n_words else None


def _untruncated(backend):
    """A copy of a Rust tokenizer that neither truncates nor pads."""
    plain = backend.__class__.from_str(backend.to_str())
    plain.no_truncation()
    plain.no_padding()
    plain.encode_special_tokens = backend.encode_special_tokens
    return plain


def pack_tokens(lengths, ids, types):
    """Answer payload of `tokenize`'s output (a header, then the arrays' bytes)."""
    arrays = [lengths, ids] + ([] if types is None else [types])
    return [_TOKENS_HEADER.pack(_OK, lengths.size, ids.size), *arrays]


def pack_error(message):
    """Answer payload of a request that failed."""
    return [_TOKENS_HEADER.pack(_ERROR, 0, 0), message.encode("utf-8", "replace")]


def unpack_tokens(payload, type_ids):
    """``(lengths, ids, type_ids)`` of a `pack_tokens` payload (views of it, no copy);
    raise `WorkerError` for an error payload or one of the wrong size."""
    if len(payload) < _TOKENS_HEADER.size:
        raise WorkerError("an answer shorter than its header")
    status, n, total = _TOKENS_HEADER.unpack_from(payload)
    if status != _OK:
        raise WorkerError(bytes(payload[_TOKENS_HEADER.size :]).decode("utf-8", "replace"))
    if len(payload) != 8 * (n + total * (2 if type_ids else 1)) + _TOKENS_HEADER.size:
        raise WorkerError(f"an answer of {len(payload)} bytes for {n} texts, {total} tokens")
    offset = _TOKENS_HEADER.size
    lengths = np.frombuffer(payload, np.int64, n, offset)
    ids = np.frombuffer(payload, np.int64, total, offset + 8 * n)
    types = np.frombuffer(payload, np.int64, total, offset + 8 * (n + total)) if type_ids else None
    return lengths, ids, types


def serve(requests, answers):
    """Read the configuration, then answer requests until `requests` ends."""
    config = read_frame(requests)
    if config is None:
        return
    try:
        backend, type_ids = _configured(json.loads(bytes(config)))
        failure = None
    except Exception as exc:  # noqa: BLE001 - the answer to every request, the probe first
        failure = pack_error(f"configuration failed: {exc!r}")
    while (payload := read_frame(requests)) is not None:
        if failure is not None:
            write_frame(answers, *failure)
            continue
        try:
            answer = pack_tokens(*tokenize(backend, unpack_texts(payload), type_ids))
        except Exception as exc:  # noqa: BLE001 - the parent decides what a failure means
            answer = pack_error(repr(exc))
        write_frame(answers, *answer)


def _configured(config):
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(config["tokenizer"])
    backend.encode_special_tokens = config["encode_special_tokens"]
    return WordCache.wrap(backend), config["type_ids"]


def main():
    """Serve on stdin and stdout; stray prints of any library go to stderr instead."""
    # Ctrl-C in a terminal reaches the whole process group: the parent decides, and the
    # worker ends when the parent closes its stdin (or dies).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
    with requests, answers:
        try:
            serve(requests, answers)
        except (BrokenPipeError, WorkerError):  # the parent went away mid-frame
            pass


if __name__ == "__main__":
    main()
