"""SentencePairEmbedder throughput against the raw model forward, same model, one run.

Texts are synthetic sentences of about 64 tokens. "raw forward" runs the transformer
and mean pooling on pre-tokenized batches (the ceiling); "raw tokenize + forward"
adds the tokenizer; "SentencePairEmbedder" is ``transform`` on a DataFrame of pairs
from a cold cache (every text new), so it pays for tokenization, de-duplication,
the cache and the output frame. On CUDA everything runs in float16.

Diagnostic rows, to read the share of each part: the tokenizer alone as a full
``tokenizer(batch, padding=True, truncation=True, return_tensors="pt")`` call and as
its Rust ``encode_batch`` (no tensors), the tokenization of the embedder's host
threads alone and of its worker processes alone (pool started before the timing; no
forward), and ``SentenceTransformer.encode`` on the same texts. The header says how
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
from sklearn_lore.embedding import (  # noqa: E402
    _PROCESSES_SWITCH,
    _host_tokenizers,
    _spare_cores,
    _tokenization_workers,
    _WorkerCall,
    _WorkerPool,
    clear_embedding_cache,
)
from _report import write_report  # noqa: E402

WORDS = ("model reward user prefers answer short long polite detailed joke recipe code "
         "explain summary careful friendly formal casual example question helpful").split()


def make_texts(n, n_words=48, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, n_words)) + f" #{i}" for i in range(n)]


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_of(fn, device, repeats):
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
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
    texts = make_texts(args.n_texts)
    tok = st.tokenizer
    batches = [texts[i:i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
    encoded = [{k: v.to(device) for k, v in tok(b, padding=True, truncation=True,
                max_length=args.max_tokens, return_tensors="pt").items()} for b in batches]
    n_tokens = float(np.mean([e["attention_mask"].sum(1).float().mean().item() for e in encoded]))

    def raw_forward():
        with torch.inference_mode():
            for e in encoded:
                st({"input_ids": e["input_ids"], "attention_mask": e["attention_mask"],
                    **({"token_type_ids": e["token_type_ids"]} if "token_type_ids" in e else {})})

    def raw_tokenize_forward():
        with torch.inference_mode():
            for b in batches:
                e = {k: v.to(device) for k, v in tok(b, padding=True, truncation=True,
                     max_length=args.max_tokens, return_tensors="pt").items()}
                st(dict(e))

    def tokenizer_full_call():
        for b in batches:
            tok(b, padding=True, truncation=True, max_length=args.max_tokens, return_tensors="pt")

    backend = tok.backend_tokenizer  # padding and truncation as the last full call set them

    def tokenizer_encode_batch():
        for b in batches:
            backend.encode_batch(b)

    host = _host_tokenizers(st)
    workers = _tokenization_workers()

    def tokenizer_host_threads():
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(host.features, batches))

    n_processes = max(2, _spare_cores())
    processes = _WorkerPool.start(host, n_processes) if host is not None else None

    def tokenizer_processes():
        with _WorkerCall(processes, host, batches, pinned=False) as call:
            for number in range(len(batches)):
                call.result(number)

    def model_encode():
        st.encode(texts, batch_size=args.batch_size, convert_to_tensor=True,
                  show_progress_bar=False)

    half = len(texts) // 2
    frame = pd.DataFrame({"user_id": np.arange(half) % 7, "prompt": [""] * half,
                          "response_a": texts[:half], "response_b": texts[half:2 * half]})

    def embedder():
        clear_embedding_cache()
        emb.transform(frame)

    cases = [("raw forward", raw_forward, len(texts)),
             ("raw tokenize + forward", raw_tokenize_forward, len(texts)),
             ("SentencePairEmbedder.transform (cold cache)", embedder, 2 * half),
             ("tokenizer alone (full call)", tokenizer_full_call, len(texts)),
             ("tokenizer alone (Rust encode_batch)", tokenizer_encode_batch, len(texts)),
             ("model.encode", model_encode, len(texts))]
    if host is not None:  # None: the embedder falls back to model.encode for this model
        cases.insert(5, (f"tokenizer alone (embedder's {workers} host threads)",
                         tokenizer_host_threads, len(texts)))
    if processes is not None:
        cases.insert(6, (f"tokenizer alone ({n_processes} worker processes)",
                         tokenizer_processes, len(texts)))
    raw_forward()
    embedder()
    if host is not None:
        host.calls.clear()  # count the timed calls only
    rows = []
    for name, fn, n in cases:
        best, median = best_of(fn, device, args.repeats)
        rows.append({"path": name, "texts_per_s": n / best, "median_texts_per_s": n / median})
    if processes is not None:
        processes.close()
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
