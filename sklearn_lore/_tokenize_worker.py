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
    ``tokenizers.Tokenizer`` that truncates as wanted and does not pad.
    """
    # without the character offsets (tokenizers >= 0.20): the same ids, 10% less time
    encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch
    encodings = encode(texts)
    rows = [encoding.ids for encoding in encodings]
    lengths = np.fromiter(map(len, rows), np.int64, len(rows))
    total = int(lengths.sum())
    ids = np.fromiter(itertools.chain.from_iterable(rows), np.int64, total)
    types = None
    if type_ids:
        rows = (encoding.type_ids for encoding in encodings)
        types = np.fromiter(itertools.chain.from_iterable(rows), np.int64, total)
    return lengths, ids, types


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
    return backend, config["type_ids"]


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
