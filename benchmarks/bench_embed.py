"""SentencePairEmbedder throughput against the raw model forward, same model, one run.

Texts are synthetic sentences of about 64 tokens (words of the model's vocabulary with
Zipf-like frequencies, capitals and punctuation), a new set for every timed repeat after a
warm-up set: the tokenizer's word cache meets words it has not seen, as it would in a
running service. "raw forward" runs the transformer
and mean pooling on pre-tokenized batches (the ceiling); "raw tokenize + forward"
adds the tokenizer; "SentencePairEmbedder" is ``transform`` on a DataFrame of pairs
from a cold cache (every text new), so it pays for tokenization, de-duplication,
the cache and the output frame. On CUDA everything runs in float16.

Diagnostic rows, to read the share of each part: the embedder's forward alone (its
own length-sorted batches, pre-tokenized and pinned, through its forward loop: against
"raw forward", what the batches and copies cost; against the transform, what
tokenizing beside it costs), the embedder's work around the model (``transform`` with
an encoder that answers at once with a tensor on the device), the tokenizer alone as a full
``tokenizer(batch, padding=True, truncation=True, return_tensors="pt")`` call and as
its Rust ``encode_batch`` (no tensors), the tokenization of the embedder's host
threads alone and of its worker processes alone (pool started before the timing; no
forward), the same processes without their word cache (SKLEARN_LORE_WORD_CACHE=0), and
``SentenceTransformer.encode`` on the same texts. The header says how
the embedder tokenized: host threads, worker processes (on CUDA for calls of at least
1024 texts; ``--tokenize-processes`` sets SKLEARN_LORE_TOKENIZE_PROCESSES), or
``model.encode``.

    python benchmarks/bench_embed.py --model .carry/minilm-fp16 --n-texts 4096
"""

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from sklearn_lore import SentencePairEmbedder  # noqa: E402
from sklearn_lore._tokenize_worker import _WORD_CACHE_SWITCH  # noqa: E402
from sklearn_lore.embedding import (  # noqa: E402
    _PROCESSES_SWITCH,
    _host_tokenizers,
    _spare_cores,
    _tokenization_workers,
    _WorkerCall,
    _forward_batches,
    _WorkerPool,
    clear_embedding_cache,
)
from _report import environment, write_report  # noqa: E402

def vocabulary(tokenizer):
    """Whole words of the model's vocabulary (one token each), in the vocabulary's order."""
    vocab = tokenizer.get_vocab()
    return [w for w in sorted(vocab, key=vocab.get) if w.isalpha() and w.isascii()]


def make_texts(n, words, n_words=48, seed=0):
    """Sentences of words drawn with Zipf-like frequencies (rank r weighs 1 / (r + 10)),
    capitalized at sentence starts, with commas and full stops attached: a text's words
    (what the tokenizer's word cache keeps) vary as in prose, not among a handful."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(len(words)) + 10.0)
    picks = rng.choice(len(words), size=(n, n_words), p=weights / weights.sum())
    marks = rng.choice(["", "", "", "", "", ",", "."], size=(n, n_words))
    texts = []
    for row, mark in zip(picks, marks):
        tokens, start = [], True
        for index, m in zip(row, mark):
            word = words[index]
            tokens.append((word.capitalize() if start else word) + m)
            start = m == "."
        texts.append(" ".join(tokens) + ".")
    return texts


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_of(fn, device, repeats):
    """Fastest and median of ``fn(k)`` for k = 1 .. repeats (k: the repeat's texts)."""
    times = []
    for k in range(1, repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        fn(k)
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="sentence-transformers folder; default MiniLM")
    p.add_argument("--n-texts", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/embed")
    p.add_argument("--tokenize-processes", choices=["0", "1"], default=None,
                   help=f"set {_PROCESSES_SWITCH} (default: as the environment has it)")
    args = p.parse_args(argv)
    if args.tokenize_processes is not None:
        os.environ[_PROCESSES_SWITCH] = args.tokenize_processes

    device = "cuda" if torch.cuda.is_available() else "cpu"
    emb = SentencePairEmbedder(args.model, batch_size=args.batch_size, normalize=False)
    st = emb._sentence_transformer()
    st.max_seq_length = args.max_tokens
    tok = st.tokenizer
    words = vocabulary(tok)
    # texts of set 0 warm up; repeat k times set k, texts none of the calls saw before
    # (the tokenizer's word cache, SKLEARN_LORE_WORD_CACHE, keeps words across calls)
    sets = [make_texts(args.n_texts, words, seed=k) for k in range(args.repeats + 1)]
    texts = sets[1]

    def split(texts):
        return [texts[i:i + args.batch_size] for i in range(0, len(texts), args.batch_size)]

    batch_sets = [split(s) for s in sets]
    batches = batch_sets[1]
    encoded = [{k: v.to(device) for k, v in tok(b, padding=True, truncation=True,
                max_length=args.max_tokens, return_tensors="pt").items()} for b in batches]
    n_tokens = float(np.mean([e["attention_mask"].sum(1).float().mean().item() for e in encoded]))

    def raw_forward(k=1):  # pre-tokenized: the same batches every time
        with torch.inference_mode():
            for e in encoded:
                st({"input_ids": e["input_ids"], "attention_mask": e["attention_mask"],
                    **({"token_type_ids": e["token_type_ids"]} if "token_type_ids" in e else {})})

    def raw_tokenize_forward(k):
        with torch.inference_mode():
            for b in batch_sets[k]:
                e = {name: v.to(device) for name, v in tok(b, padding=True, truncation=True,
                     max_length=args.max_tokens, return_tensors="pt").items()}
                st(dict(e))

    def tokenizer_full_call(k):
        for b in batch_sets[k]:
            tok(b, padding=True, truncation=True, max_length=args.max_tokens, return_tensors="pt")

    backend = tok.backend_tokenizer  # padding and truncation as the last full call set them

    def tokenizer_encode_batch(k):
        for b in batch_sets[k]:
            backend.encode_batch(b)

    host = _host_tokenizers(st)
    workers = _tokenization_workers()

    def tokenizer_host_threads(k):
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(host.features, batch_sets[k]))

    n_processes = max(2, _spare_cores())
    processes = plain = None
    if host is not None:
        processes = _WorkerPool.start(host, n_processes)
        # the same pool without the word cache (a worker reads the switch when it starts)
        with environment(_WORD_CACHE_SWITCH, "0"):
            plain = _WorkerPool.start(host, n_processes)

    def on_processes(pool):
        def tokenize(k):
            with _WorkerCall(pool, host, batch_sets[k], pinned=False) as call:
                for number in range(len(batch_sets[k])):
                    call.result(number)
        return tokenize

    tokenizer_processes, tokenizer_plain_processes = on_processes(processes), on_processes(plain)

    def model_encode(k):
        st.encode(sets[k], batch_size=args.batch_size, convert_to_tensor=True,
                  show_progress_bar=False)

    half = len(texts) // 2

    def frame(texts):
        return pd.DataFrame({"user_id": np.arange(half) % 7, "prompt": [""] * half,
                             "response_a": texts[:half], "response_b": texts[half:2 * half]})

    frames = [frame(s) for s in sets]

    def embedder(k):
        clear_embedding_cache()
        emb.transform(frames[k])

    # the embedder's forward alone: its own batches (length-sorted), pre-tokenized and
    # pinned as its pipeline hands them over, through the same loop, no tokenizing beside
    pinned = device == "cuda"
    own_order = np.argsort([-len(text) for text in texts])
    own_batches = split([texts[i] for i in own_order])
    own_features = ([host.features(b, pin_memory=pinned) for b in own_batches]
                    if host is not None else None)

    def embedder_forward(k):
        _forward_batches(st, iter(own_features), own_order, st.device, pinned)

    # the embedder's own work around the model (checks, distinct texts, cache, output):
    # transform with an encoder that answers at once with a tensor on the device
    dim = (getattr(st, "get_embedding_dimension", None)
           or st.get_sentence_embedding_dimension)()
    instant = SentencePairEmbedder(
        encoder=lambda batch: torch.zeros((len(batch), dim), dtype=torch.float16,
                                          device=device),
        model="instant", batch_size=args.batch_size, normalize=False)

    def around_the_model(k):
        clear_embedding_cache()
        instant.transform(frames[k])

    cases = [("raw forward", raw_forward, len(texts)),
             ("raw tokenize + forward", raw_tokenize_forward, len(texts)),
             ("SentencePairEmbedder.transform (cold cache)", embedder, 2 * half)]
    if own_features is not None:
        cases.append(("the embedder's forward alone (its batches, pre-tokenized)",
                      embedder_forward, len(texts)))
    cases += [("tokenizer alone (full call)", tokenizer_full_call, len(texts)),
              ("tokenizer alone (Rust encode_batch)", tokenizer_encode_batch, len(texts))]
    if host is not None:  # None: the embedder falls back to model.encode for this model
        cases.append((f"tokenizer alone (embedder's {workers} host threads)",
                      tokenizer_host_threads, len(texts)))
    if processes is not None:
        cases.append((f"tokenizer alone ({n_processes} worker processes)",
                      tokenizer_processes, len(texts)))
    if plain is not None:
        cases.append((f"tokenizer alone ({n_processes} worker processes, no word cache)",
                      tokenizer_plain_processes, len(texts)))
    cases += [("model.encode", model_encode, len(texts)),
              ("transform with an instant encoder (the embedder's work around the model)",
               around_the_model, 2 * half)]
    raw_forward()
    embedder(0)
    around_the_model(0)
    if host is not None:
        tokenizer_host_threads(0)
    if processes is not None:
        tokenizer_processes(0)
    if plain is not None:
        tokenizer_plain_processes(0)
    if host is not None:
        host.calls.clear()  # count the timed calls only
    rows = []
    for name, fn, n in cases:
        best, median = best_of(fn, device, args.repeats)
        rows.append({"path": name, "texts_per_s": n / best, "median_texts_per_s": n / median})
    for pool in (processes, plain):
        if pool is not None:
            pool.close()
    path = embedder_path(host)
    table = pd.DataFrame(rows)
    table["share of raw forward"] = table.texts_per_s / table.texts_per_s.iloc[0]
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none"
    text = (f"device {device} ({gpu}), dtype {emb._device_dtype()[1]}, {len(texts)} texts, "
            f"~{n_tokens:.0f} tokens each, batch {args.batch_size}, "
            f"{os.cpu_count()} CPUs, embedder path: {path}\n\n"
            + table.to_markdown(index=False, floatfmt=".2f"))
    write_report(args.out, text, {"device": device, "gpu": gpu, "rows": rows, "tokens": n_tokens,
                                  "cpus": os.cpu_count(), "pipelined": host is not None,
                                  "embedder_path": path})
    return 0


def embedder_path(host):
    """How the timed embedder calls tokenized, from the counts of its pipelined calls."""
    if host is None:
        return "model.encode"
    workers = host._workers
    counts = {
        "worker processes" + (f" ({len(workers.processes)})" if workers else ""):
            host.calls["processes"],
        "host threads": host.calls["threads"],
    }
    used = [f"{name}, {n} calls" for name, n in counts.items() if n]
    return "pipelined, tokenized on " + " and ".join(used)


if __name__ == "__main__":
    sys.exit(main())
