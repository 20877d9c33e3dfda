"""sklearn_lore.save / sklearn_lore.load: round trips, and hostile files that must run nothing.

Most tests use small synthetic data; the pipeline tests swap the embedder's model call for a
deterministic function (class-level monkeypatch), so the embedder is saved by a model name that
is never loaded. One test marked ``slow`` saves a pipeline with the real default MiniLM.
"""

import copy
import doctest
import functools
import hashlib
import io
import json
import os
import pickle
import re
import stat
import struct
import zipfile
import zlib

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import sklearn_lore
import sklearn_lore.io as lore_io
from sklearn_lore import LowRankRewardEstimator, SentencePairEmbedder, load, save
from sklearn_lore.datasets import make_preference_data
from sklearn_lore.embedding import RewardModelEmbedder, clear_embedding_cache

# --------------------------------------------------------------------------- helpers


def data(n_users=8, n_pairs=12, n_features=5, seed=0):
    X, y, users, _ = make_preference_data(
        n_users=n_users,
        n_pairs_per_user=n_pairs,
        n_features=n_features,
        n_components=2,
        random_state=seed,
    )
    return X, y, users


def user_ids_of_kind(users, kind):
    numbers = np.array([int(u[1:]) for u in users])
    if kind == "int":
        return numbers
    if kind == "str":
        return users
    mixed = [n if n % 2 else f"u{n}" for n in numbers]  # ints and strings in one model
    return np.asarray(mixed, dtype=object)


@pytest.fixture(scope="module")
def fitted():
    X, y, users = data()
    est = LowRankRewardEstimator(2, random_state=0, backend="numpy").fit(X, y, user_ids=users)
    return est, X, y, users


@pytest.fixture
def saved(fitted, tmp_path):
    path = tmp_path / "model.lore"
    save(fitted[0], path)
    return path


def assert_same_state(a, b):
    """Same class, parameters and fitted attributes (arrays: same dtype and values)."""
    assert type(a) is type(b)
    assert a.get_params(deep=False).keys() == b.get_params(deep=False).keys()
    # per-process caches and the lock are not state
    state_a = {k: v for k, v in vars(a).items() if not k.startswith(("_loaded", "_mutex"))}
    state_b = {k: v for k, v in vars(b).items() if not k.startswith(("_loaded", "_mutex"))}
    assert state_a.keys() == state_b.keys()
    for key, value in state_a.items():
        other = state_b[key]
        if isinstance(value, np.ndarray):
            assert value.dtype == other.dtype, key
            assert np.array_equal(value, other), key
            if value.dtype == object:
                assert list(map(scalar_kind, value.ravel())) == list(
                    map(scalar_kind, other.ravel())
                )
        elif isinstance(value, tuple):
            assert all(np.array_equal(x, y) for x, y in zip(value, other, strict=True)), key
        elif isinstance(value, list):  # Pipeline steps
            assert [name for name, _ in value] == [name for name, _ in other]
            for (_, x), (_, y) in zip(value, other, strict=True):
                assert_same_state(x, y)
        else:
            assert value == other, key


def scalar_kind(value):
    """str, int, float or bool; numpy scalars load as the equal Python scalar."""
    return type(value.item() if isinstance(value, np.generic) else value)


def rewrite(path, edit=None, members=None, drop=()):
    """Copy a saved file with its manifest edited and members replaced, added or dropped."""
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        contents = {name: archive.read(name) for name in archive.namelist()}
    if edit is not None:
        edit(manifest)
    contents["manifest.json"] = json.dumps(manifest).encode()
    contents.update(members or {})
    for name in drop:
        del contents[name]
    out = path.with_name("tampered.lore")
    with zipfile.ZipFile(out, "w") as archive:
        for name, blob in contents.items():
            archive.writestr(name, blob)
    return out


def replace_array(path, attribute, blob):
    """Swap the member holding ``attribute`` for ``blob``, with a matching digest."""

    def edit(manifest):
        node = manifest["object"]["state"][attribute]
        node["sha256"] = hashlib.sha256(blob).hexdigest()
        edit.member = node["array"]

    edit(json.loads(zipfile.ZipFile(path).read("manifest.json")))
    return rewrite(path, edit, members={edit.member: blob})


def npy_bytes(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def npy_header(descr, shape):
    """The header of a ``.npy`` file of that dtype and shape (version 1.0), without data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


class Payload:
    """Unpickling this object runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    # The payload is live: plain pickle does run it.
    pickle.loads(pickle.dumps(Payload(tmp_path / "proof")))
    assert (tmp_path / "proof").exists()
    return path


@pytest.fixture
def no_unpickling(monkeypatch):
    """Make any use of pickle while loading fail loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("load() used pickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", ["str", "int", "mixed"])
def test_estimator_round_trip_predicts_identically(kind, tmp_path, no_unpickling):
    X, y, users = data()
    ids = user_ids_of_kind(users, kind)
    est = LowRankRewardEstimator(2, random_state=0, backend="numpy").fit(X, y, user_ids=ids)
    save(est, tmp_path / "m.lore")
    again = load(tmp_path / "m.lore")
    assert_same_state(est, again)
    for method in ("predict_proba", "decision_function", "predict", "predict_log_proba"):
        expected = getattr(est, method)(X, user_ids=ids)
        assert np.array_equal(getattr(again, method)(X, user_ids=ids), expected), method
    assert np.array_equal(again.predict_proba(X), est.predict_proba(X))  # population
    assert list(map(scalar_kind, again.users_)) == list(map(scalar_kind, est.users_))


def test_dataframe_fit_keeps_feature_names_and_user_column(tmp_path):
    X, y, users = data()
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    frame.insert(0, "who", users)
    est = LowRankRewardEstimator(2, user_col="who", random_state=0).fit(frame, y)
    save(est, tmp_path / "m.lore")
    again = load(tmp_path / "m.lore")
    assert list(again.feature_names_in_) == list(frame.columns[1:])
    assert np.array_equal(again.predict_proba(frame), est.predict_proba(frame))


@pytest.mark.parametrize(
    "params",
    [{"user_weights": "simplex"}, {"alpha": 0.3, "prior_strength": 4.0, "tol": 0.0}],
)
def test_other_configurations_round_trip(params, tmp_path):
    X, y, users = data()
    est = LowRankRewardEstimator(2, random_state=1, **params).fit(X, y, user_ids=users)
    save(est, tmp_path / "m.lore")
    again = load(tmp_path / "m.lore")
    assert again.get_params() == est.get_params()
    assert np.array_equal(
        again.predict_proba(X, user_ids=users), est.predict_proba(X, user_ids=users)
    )


def test_population_model_without_ids_round_trips(tmp_path):
    X, y, _ = data()
    est = LowRankRewardEstimator(2, random_state=0).fit(X, y)
    save(est, tmp_path / "m.lore")
    again = load(tmp_path / "m.lore")
    assert_same_state(est, again)
    assert np.array_equal(again.predict_proba(X), est.predict_proba(X))


def test_string_labels_round_trip(tmp_path):
    X, y, users = data()
    labels = np.where(y == 1, "a", "b").astype(object)
    est = LowRankRewardEstimator(2, random_state=0).fit(X, labels, user_ids=users)
    save(est, tmp_path / "m.lore")
    again = load(tmp_path / "m.lore")
    assert again.classes_.tolist() == ["a", "b"]
    assert np.array_equal(again.predict(X, user_ids=users), est.predict(X, user_ids=users))


def test_streaming_and_fold_in_continue_identically_after_loading(tmp_path):
    X, y, users = data(n_users=10, n_pairs=16)
    first = np.arange(len(y)) % 2 == 0
    est = LowRankRewardEstimator(2, random_state=0, backend="numpy")
    est.partial_fit(X[first], y[first], classes=[0, 1], user_ids=users[first])
    save(est, tmp_path / "m.lore")
    again = load(tmp_path / "m.lore")
    for model in (est, again):
        model.partial_fit(X[~first], y[~first], user_ids=users[~first])
        model.partial_fit_users(X[:3], y[:3], user_ids=["new"] * 3)
    assert_same_state(est, again)


def test_unfitted_estimator_and_device_backend_params_are_saved_as_given(tmp_path):
    est = LowRankRewardEstimator(3, backend="torch", device="cuda:1", max_iter=7, verbose=2)
    save(est, tmp_path / "m.lore")
    again = load(tmp_path / "m.lore")
    assert again.get_params() == est.get_params()
    assert not hasattr(again, "components_")


def test_a_random_state_over_another_generator_is_refused_at_save(tmp_path):
    # its state is a dict, which the file stored as its keys and load then refused
    est = LowRankRewardEstimator(random_state=np.random.RandomState(np.random.PCG64(0)))
    with pytest.raises(TypeError, match="RandomState over PCG64; sklearn_lore.save stores"):
        save(est, tmp_path / "m.lore")
    assert not os.listdir(tmp_path)


def test_random_state_instance_is_saved_with_its_state(tmp_path):
    rng = np.random.RandomState(5)
    rng.randint(10, size=3)  # advance it: the saved state is the current one
    save(LowRankRewardEstimator(random_state=rng), tmp_path / "m.lore")
    restored = load(tmp_path / "m.lore").random_state
    assert restored.randint(10**9) == rng.randint(10**9)


def test_loaded_estimator_clones_and_refits(saved, fitted):
    est, X, y, users = fitted
    refit = clone(load(saved)).fit(X, y, user_ids=users)
    assert np.array_equal(
        refit.predict_proba(X, user_ids=users), est.predict_proba(X, user_ids=users)
    )


def test_saving_replaces_a_file_atomically(fitted, tmp_path):
    path = tmp_path / "m.lore"
    save(fitted[0], path)
    with pytest.raises(TypeError, match="encoder"):
        save(SentencePairEmbedder(encoder=fake_encode), path)
    assert load(path).get_params() == fitted[0].get_params()  # the old file is intact
    assert os.listdir(tmp_path) == ["m.lore"]


def test_open_files_and_buffers_are_refused_by_name(fitted, tmp_path):
    import io as stdlib_io

    path = tmp_path / "m.lore"
    save(fitted[0], path)
    for target in (stdlib_io.BytesIO(), 3):
        with pytest.raises(TypeError, match="save takes the file's name .* not a "
                                            f"{type(target).__name__}"):
            save(fitted[0], target)
    with open(path, "rb") as file:
        with pytest.raises(TypeError, match="load takes the file's name .* not a "
                                            "BufferedReader: it opens the file itself"):
            load(file)
    assert os.listdir(tmp_path) == ["m.lore"]
    assert load(str(path)).get_params() == load(os.fsencode(path)).get_params()
    save(fitted[0], os.fsencode(tmp_path / "b.lore"))  # a bytes name is a name too
    assert sorted(os.listdir(tmp_path)) == ["b.lore", "m.lore"]


def test_docstring_examples_run():
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    for test in finder.find(lore_io):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0 and results.failed == 0


def test_public_namespace_exports_save_and_load():
    assert sklearn_lore.save is save and sklearn_lore.load is load


# --------------------------------------------------------------------------- pipelines


def fake_encode(texts):
    """Signed counts of hashed character trigrams: deterministic and cheap."""
    out = np.zeros((len(texts), 16))
    for row, text in enumerate(texts):
        padded = f"  {text}  "
        for start in range(len(padded) - 2):
            h = zlib.crc32(padded[start : start + 3].encode())
            out[row, h % 16] += 1.0 if (h >> 16) & 1 else -1.0
    return out


def text_pairs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    words = ["kind", "short", "rude", "long", "funny", "dry", "clear", "vague"]
    rows, labels = [], []
    for i in range(n):
        a, b = rng.choice(words, 2, replace=False)
        rows.append(
            {
                "user_id": ["ann", "bob", 3][i % 3],
                "prompt": f"question {i % 7}",
                "response_a": f"a {a} answer",
                "response_b": f"a {b} answer",
            }
        )
        labels.append(int(words.index(a) < words.index(b)) if i % 3 else int(len(a) > len(b)))
    return pd.DataFrame(rows), np.asarray(labels)


def fitted_text_pipeline(model):
    """Pipeline(embedder of ``model``, LowRankRewardEstimator(2)) fitted on text_pairs()."""
    df, y = text_pairs()
    return Pipeline(
        [
            ("embed", SentencePairEmbedder(model)),
            ("lore", LowRankRewardEstimator(2, random_state=0)),
        ]
    ).fit(df, y)


@pytest.fixture
def named_model(monkeypatch):
    """Embedders call fake_encode instead of loading their model (which never exists)."""
    clear_embedding_cache()
    monkeypatch.setattr(
        SentencePairEmbedder, "_encode_batch", lambda self, texts: fake_encode(texts)
    )
    yield "my-org/my-sentence-model"
    clear_embedding_cache()


def test_pipeline_round_trip_stores_the_model_by_name(named_model, tmp_path, no_unpickling):
    df, y = text_pairs()
    pipe = Pipeline(
        [
            ("embed", SentencePairEmbedder(named_model, device="cpu", batch_size=8)),
            ("lore", LowRankRewardEstimator(2, random_state=0)),
        ]
    ).fit(df, y)
    save(pipe, tmp_path / "p.lore")
    again = load(tmp_path / "p.lore")
    assert_same_state(pipe, again)
    assert again.named_steps["embed"].model == named_model
    clear_embedding_cache()  # the loaded pipeline embeds the texts again
    assert np.array_equal(again.predict_proba(df), pipe.predict_proba(df))
    assert np.array_equal(again.predict(df), pipe.predict(df))


def test_pipeline_file_holds_no_embeddings(named_model, tmp_path):
    pipe = fitted_text_pipeline(named_model)
    save(pipe, tmp_path / "p.lore")
    with zipfile.ZipFile(tmp_path / "p.lore") as archive:
        shapes = [np.load(archive.open(n)).shape for n in archive.namelist() if n.endswith(".npy")]
    n_rows = len(text_pairs()[0])
    assert all(n_rows not in shape for shape in shapes)  # nothing per row, no text vectors


def test_reward_model_embedder_and_path_params_round_trip(tmp_path):
    import pathlib

    emb = RewardModelEmbedder(
        pathlib.Path("/models/rm"), pooling="mean", cache_dir=tmp_path / "cache", dtype="bfloat16"
    )
    save(emb, tmp_path / "e.lore")
    again = load(tmp_path / "e.lore")
    assert again.get_params() == emb.get_params()
    assert isinstance(again.model, pathlib.Path)


@pytest.mark.slow
def test_pipeline_with_the_default_minilm_round_trips(tmp_path):
    df, y = text_pairs(n=30)
    pipe = Pipeline(
        [
            ("embed", SentencePairEmbedder(device="cpu")),
            ("lore", LowRankRewardEstimator(2, random_state=0)),
        ]
    ).fit(df, y)
    save(pipe, tmp_path / "p.lore")
    assert os.path.getsize(tmp_path / "p.lore") < 5_000_000  # the weights are about 90 MB
    clear_embedding_cache()
    again = load(tmp_path / "p.lore")
    assert np.array_equal(again.predict_proba(df), pipe.predict_proba(df))


# --------------------------------------------------------------------------- what save refuses


def test_injected_encoder_cannot_be_saved(tmp_path):
    df, y = text_pairs()
    pipe = Pipeline(
        [
            ("embed", SentencePairEmbedder(encoder=fake_encode)),
            ("lore", LowRankRewardEstimator(2, random_state=0)),
        ]
    ).fit(df, y)
    with pytest.raises(TypeError, match=r"encoder is a callable .*model=<name or path>"):
        save(pipe, tmp_path / "p.lore")
    assert not os.listdir(tmp_path)


def test_classes_outside_the_allow_list_cannot_be_saved(tmp_path):
    X, y, _ = data()
    pipe = Pipeline([("scale", StandardScaler()), ("lore", LowRankRewardEstimator(2))]).fit(X, y)
    with pytest.raises(TypeError, match="StandardScaler.*stores only these classes"):
        save(pipe, tmp_path / "p.lore")
    with pytest.raises(TypeError, match="stores only these classes"):
        save({"model": "dict"}, tmp_path / "p.lore")


def test_pipeline_memory_is_neither_saved_nor_loaded(named_model, tmp_path):
    # A joblib cache unpickles its entries on fit: a file must not be able to point at one.
    pipe = fitted_text_pipeline(named_model)
    with pytest.raises(TypeError, match="memory is set.*memory=None"):
        save(clone(pipe).set_params(memory=str(tmp_path / "cache")), tmp_path / "p.lore")
    save(pipe, tmp_path / "p.lore")
    tampered = rewrite(tmp_path / "p.lore", lambda m: m["object"]["params"].update(memory="/tmp/x"))
    with pytest.raises(ValueError, match="must have memory=None"):
        load(tampered)


def test_user_ids_that_are_not_scalars_cannot_be_saved(tmp_path):
    X, y, users = data(n_users=3)
    ids = np.empty(len(users), dtype=object)
    ids[:] = [frozenset([u]) for u in users]
    est = LowRankRewardEstimator(2, random_state=0).fit(X, y, user_ids=ids)
    with pytest.raises(TypeError, match="users_.*frozenset.*str, int, float and bool"):
        save(est, tmp_path / "m.lore")


# --------------------------------------------------------------------------- plain pickle


@pytest.mark.parametrize("library", [pickle, joblib])
def test_pickle_and_joblib_keep_working(fitted, library, tmp_path):
    est, X, y, users = fitted
    df, labels = text_pairs()
    pipe = Pipeline(
        [
            ("embed", SentencePairEmbedder(encoder=fake_encode)),
            ("lore", LowRankRewardEstimator(2, random_state=0)),
        ]
    ).fit(df, labels)
    for obj, args, kwargs in ((est, (X,), {"user_ids": users}), (pipe, (df,), {})):
        with open(tmp_path / "model.pkl", "wb") as file:
            library.dump(obj, file)
        with open(tmp_path / "model.pkl", "rb") as file:
            again = library.load(file)
        assert np.array_equal(
            again.predict_proba(*args, **kwargs), obj.predict_proba(*args, **kwargs)
        )


# --------------------------------------------------------------------------- hostile files


def test_a_pickle_file_is_rejected_and_runs_nothing(marker, tmp_path):
    path = tmp_path / "model.lore"
    path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ValueError, match="not a sklearn_lore file"):
        load(path)
    assert not marker.exists()


def test_pickle_bytes_in_place_of_an_array_run_nothing(marker, saved):
    tampered = replace_array(saved, "components_", pickle.dumps(Payload(marker)))
    with pytest.raises(ValueError, match="components_.*not a valid array"):
        load(tampered)
    assert not marker.exists()


def test_object_npy_with_a_pickle_payload_runs_nothing(marker, saved):
    payload = np.array([Payload(marker), 1], dtype=object)
    tampered = replace_array(saved, "users_", npy_bytes(payload, allow_pickle=True))
    with pytest.raises(ValueError, match="users_.*dtype object is not allowed"):
        load(tampered)
    assert not marker.exists()


def test_unlisted_pickle_member_is_rejected(marker, saved):
    tampered = rewrite(saved, members={"payload.pkl": pickle.dumps(Payload(marker))})
    with pytest.raises(ValueError, match=r"members the manifest does not list: \['payload.pkl'\]"):
        load(tampered)
    assert not marker.exists()


@pytest.mark.parametrize(
    "name",
    [
        "os.system",
        "builtins.eval",
        "sklearn_lore.io.load",
        "sklearn.preprocessing.StandardScaler",
        "LowRankRewardEstimator",
        None,
    ],
)
def test_manifest_naming_a_class_outside_the_allow_list(name, saved, monkeypatch):
    import os as os_module

    def refuse(*args):
        raise AssertionError("os.system was called")

    monkeypatch.setattr(os_module, "system", refuse)
    tampered = rewrite(saved, lambda m: m["object"].update({"class": name}))
    with pytest.raises(ValueError, match=f"class {name!r} is not allowed"):
        load(tampered)


def test_nested_estimator_outside_the_allow_list(named_model, tmp_path):
    pipe = fitted_text_pipeline(named_model)
    save(pipe, tmp_path / "p.lore")

    def edit(manifest):
        step = manifest["object"]["params"]["steps"]["list"][0]["tuple"][1]["estimator"]
        step["class"] = "subprocess.Popen"

    with pytest.raises(ValueError, match="'subprocess.Popen' is not allowed"):
        load(rewrite(tmp_path / "p.lore", edit))


@pytest.mark.parametrize(
    "attribute, match",
    [
        ("__class__", "not a valid fitted attribute"),
        ("__reduce__", "not a valid fitted attribute"),
        ("predict", "not a valid fitted attribute"),
        ("alpha", "not a valid fitted attribute"),
        ("_kind", "not a valid fitted attribute"),
        ("_loaded_user_index", "not a valid fitted attribute"),  # per-process caches
    ],
)
def test_state_cannot_shadow_methods_params_or_dunders(attribute, match, saved):
    tampered = rewrite(saved, lambda m: m["object"]["state"].update({attribute: 1}))
    with pytest.raises(ValueError, match=match):
        load(tampered)


def test_unknown_constructor_parameter(saved):
    tampered = rewrite(saved, lambda m: m["object"]["params"].update({"eval": "1"}))
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['eval'\]"):
        load(tampered)


def test_invalid_parameter_value(saved):
    tampered = rewrite(saved, lambda m: m["object"]["params"].update({"n_components": 0}))
    with pytest.raises(ValueError, match="n_components"):
        load(tampered)


@pytest.mark.parametrize(
    "node, match",
    [
        ({"eval": "print(1)"}, "unknown value tag"),
        ([1, 2], "malformed value"),
        ({"float": "1e999"}, "unknown float"),
        ({"array": "../../etc/passwd", "sha256": ""}, "invalid or repeated array member"),
        ({"array": "arrays/999.npy", "sha256": ""}, "cannot read array member"),
        ({"objects": [1, [2]], "shape": [2]}, "malformed value"),
        ({"objects": [1, 2], "shape": [3]}, "do not fill the shape"),
        ({"objects": [], "shape": [2**63, 0]}, "invalid shape"),
        ({"objects": [], "shape": [1] * 40 + [0]}, "invalid shape"),
        # the old code multiplied these first: 500 ints of 4000 digits took 6 s, 3000 minutes
        ({"objects": [], "shape": [10**4000] * 200 + [0]}, "invalid shape"),
        ({"random_state": {"list": ["MT19937"]}}, "invalid random state"),
        ({"float": ["nan"]}, "unknown float"),
        ({"path": 3}, "expected str"),
        ({"tuple": "abc"}, "expected list"),
        ({"estimator": {"class": ["os", "system"], "params": {}, "state": {}}}, "is not allowed"),
        ({"estimator": {"class": "sklearn.pipeline.Pipeline", "params": {}}}, "exactly class"),
    ],
)
def test_malformed_values(node, match, saved):
    tampered = rewrite(saved, lambda m: m["object"]["state"].update({"n_iter_": node}))
    with pytest.raises(ValueError, match=match):
        load(tampered)


def test_an_array_used_twice_is_rejected(saved):
    def edit(manifest):
        state = manifest["object"]["state"]
        state["prior_mean_"] = dict(state["population_weights_"])

    with pytest.raises(ValueError, match="invalid or repeated array member"):
        load(rewrite(saved, edit))


def test_flipped_bytes_fail_the_digest(saved):
    with zipfile.ZipFile(saved) as archive:
        member = json.loads(archive.read("manifest.json"))["object"]["state"]["components_"][
            "array"
        ]
        blob = bytearray(archive.read(member))
    blob[-1] ^= 0xFF
    tampered = rewrite(saved, members={member: bytes(blob)})
    with pytest.raises(ValueError, match="does not match its SHA-256"):
        load(tampered)


@pytest.mark.parametrize(
    "attribute, blob, match",
    [
        ("components_", npy_bytes(np.zeros((2, 5)))[:-8], "not a valid array"),
        ("components_", b"\x93NUMPY\x01\x00garbage", "not a valid array"),
        (
            "components_",
            npy_bytes(np.zeros((3, 3))),
            r"components_: expected an array of shape \(2, 5\)",
        ),
        ("components_", npy_bytes(np.full((2, 5), np.nan)), "components_: non-finite"),
        (
            "user_weights_",
            npy_bytes(np.zeros((2, 2))),
            r"user_weights_: expected .* shape \(8, 2\)",
        ),
        ("users_", npy_bytes(np.array(["a"] * 8)), "not unique"),
        ("classes_", npy_bytes(np.array([0, 1, 2])), r"classes_: expected .* shape \(2,\)"),
        ("classes_", npy_bytes(np.array([1, 1])), "classes_: expected two different labels"),
        ("users_", npy_header("<U0", (10**12,)), "dtype <U0 has elements of size 0"),
    ],
    ids=[
        "truncated",
        "bad-header",
        "wrong-shape",
        "nan",
        "users-mismatch",
        "duplicate-ids",
        "three-classes",
        "one-class-twice",
        "zero-size-dtype",
    ],
)
def test_corrupted_or_inconsistent_arrays(attribute, blob, match, saved):
    with pytest.raises(ValueError, match=match):
        load(replace_array(saved, attribute, blob))


def test_a_header_claiming_a_huge_array_is_rejected_before_allocating(saved):
    buffer = io.BytesIO()
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}  # 8 TB
    np.lib.format.write_array_header_1_0(buffer, header)
    blob = buffer.getvalue() + np.zeros(2).tobytes()
    with pytest.raises(ValueError, match="data size does not match the header"):
        load(replace_array(saved, "population_weights_", blob))


def test_missing_fitted_attribute(saved):
    with pytest.raises(ValueError, match="fitted attribute user_weights_ is missing"):
        load(rewrite(saved, lambda m: m["object"]["state"].pop("user_weights_")))


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda m: m.update(format_version=2),
            r"format version 2 \(written by sklearn_lore 0\.1\.0\).*reads format version 1",
        ),
        (lambda m: m.update(format_version="1"), "format version '1'"),
        (lambda m: m.update(format_version=True), "format version True"),
        (lambda m: m.update(format_version=1.0), r"format version 1\.0 "),
        (
            lambda m: m.update(sklearn_lore_version="9." + "x" * 100_000),
            r"written by sklearn_lore 9\.x{70,80}\.\.\., incompatible",
        ),
        (
            lambda m: m.update(sklearn_lore_version="1.0.0"),
            r"written by sklearn_lore 1\.0\.0, incompatible with the installed "
            r"sklearn_lore 0\.1\.0",
        ),
        (lambda m: m.update(sklearn_lore_version="dev"), "unreadable sklearn_lore version 'dev'"),
        (lambda m: m.update(format="skops"), "Not a sklearn_lore model file: format 'skops'"),
        (lambda m: m.pop("object"), "expected dict, got None"),
    ],
    ids=[
        "newer-format",
        "format-type",
        "format-bool",
        "format-float",
        "long-version",
        "major-version",
        "bad-version",
        "other-format",
        "no-object",
    ],
)
def test_versions_and_header(edit, match, saved):
    with pytest.raises(ValueError, match=match):
        load(rewrite(saved, edit))


def test_a_newer_minor_version_of_the_same_major_loads(saved, fitted):
    est, X, _, users = fitted
    again = load(rewrite(saved, lambda m: m.update(sklearn_lore_version="0.9.3")))
    assert np.array_equal(
        again.predict_proba(X, user_ids=users), est.predict_proba(X, user_ids=users)
    )


@pytest.mark.parametrize(
    "manifest, match",
    [
        (b"{not json", "not valid JSON"),
        (b'{"format": NaN}', "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b"[]", "expected dict"),
    ],
    ids=["syntax", "nan-constant", "deeply-nested", "not-an-object"],
)
def test_broken_manifest(manifest, match, saved):
    with pytest.raises(ValueError, match=match):
        load(rewrite(saved, members={"manifest.json": manifest}))


def test_missing_manifest_and_truncated_file(saved, tmp_path):
    with pytest.raises(ValueError, match="bad or missing manifest"):
        load(rewrite(saved, drop=["manifest.json"]))
    truncated = tmp_path / "truncated.lore"
    truncated.write_bytes(saved.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a sklearn_lore file"):
        load(truncated)
    text = tmp_path / "text.lore"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a sklearn_lore file"):
        load(text)


def test_duplicate_member_names_are_rejected(saved):
    out = saved.with_name("dup.lore")
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        with pytest.warns(UserWarning, match="Duplicate name"):
            dst.writestr("manifest.json", b"{}")
    with pytest.raises(ValueError, match="bad or missing manifest"):
        load(out)


def test_a_stream_memory_inconsistent_with_the_model_is_rejected(tmp_path, monkeypatch):
    X, y, users, _ = make_preference_data(n_users=6, n_pairs_per_user=10, n_features=5,
                                          random_state=0)
    est = LowRankRewardEstimator(2, random_state=0).partial_fit(
        X, y, classes=[0, 1], user_ids=users)
    path = tmp_path / "stream.lore"
    save(est, path)
    assert len(load(path)._stream_memory[1]) == len(y)  # the memory travels with the model
    Z, y01, sw, ids = est._stream_memory
    est._stream_memory = (Z, y01[:-1], sw, ids)  # one label short
    pattern = r"_stream_memory\[\d\]: expected an array of shape"
    with pytest.raises(ValueError, match=pattern):
        save(est, path)  # refused while the model is in memory; the earlier file stays
    assert len(load(path)._stream_memory[1]) == len(y)
    with monkeypatch.context() as patch:  # such a file written anyway (by other code)
        patch.setattr(lore_io, "_CHECKS", {})
        save(est, path)
    with pytest.raises(ValueError, match=pattern):
        load(path)


@pytest.mark.parametrize("part, bad, pattern", [
    (0, lambda a: a[:-1], r"_stream_calibration\[1\]\[\d\]: expected an array of shape"),
    (0, lambda a: np.where(np.arange(len(a)) == 3, np.nan, a), "finite"),
    (1, lambda a: np.where(np.arange(len(a)) == 3, 2.0, a), "labels must be 0 or 1"),
    (2, lambda a: np.where(np.arange(len(a)) == 3, -1.0, a), "weights must be positive"),
])
def test_a_memory_free_streams_held_out_logits_are_checked(tmp_path, monkeypatch, part, bad,
                                                           pattern):
    """The next partial_fit fits the temperatures on them: a label of 2 or a negative
    weight there would give a wrong temperature, silently."""
    X, y, users, _ = make_preference_data(n_users=6, n_pairs_per_user=20, n_features=5,
                                          random_state=0)
    est = LowRankRewardEstimator(2, random_state=0, stream_memory=0).fit(
        X[:60], y[:60], user_ids=users[:60])
    est.partial_fit(X[60:], y[60:], user_ids=users[60:])
    path = tmp_path / "stream.lore"
    save(est, path)
    window = list(load(path)._stream_calibration[1])
    np.testing.assert_array_equal(window[0], est._stream_calibration[1][0])
    window[part] = bad(window[part])
    est._stream_calibration = (est._stream_calibration[0], tuple(window))
    with monkeypatch.context() as patch:  # such a file written anyway (by other code)
        patch.setattr(lore_io, "_CHECKS", {})
        save(est, path)
    with pytest.raises(ValueError, match=pattern):
        load(path)


@pytest.mark.parametrize("with_ids", [True, False])
def test_stream_memory_ids_that_do_not_fit_the_model_are_rejected(tmp_path, monkeypatch,
                                                                   with_ids):
    """The remembered rows' ids: present exactly when the model was trained with ids,
    and never missing (a later partial_fit crashed, or streamed NaN ids)."""
    X, y, users, _ = make_preference_data(n_users=6, n_pairs_per_user=10, n_features=5,
                                          random_state=0)
    est = LowRankRewardEstimator(2, random_state=0).partial_fit(
        X, y, classes=[0, 1], user_ids=users if with_ids else None)
    Z, y01, sw, ids = est._stream_memory
    tampered = ([None, np.full(len(y), np.nan, dtype=object)] if with_ids
                else [np.asarray(users, dtype=object)])
    patterns = (["ids are missing on a model trained with user ids",
                 r"missing user id \(None or NaN\) at row 0"] if with_ids
                else ["ids are present on a model trained without user ids"])
    for bad, pattern in zip(tampered, patterns):
        est._stream_memory = (Z, y01, sw, bad)
        path = tmp_path / "stream.lore"
        with pytest.raises(ValueError, match=pattern):
            save(est, path)
        with monkeypatch.context() as patch:  # such a file written anyway (by other code)
            patch.setattr(lore_io, "_CHECKS", {})
            save(est, path)
        with pytest.raises(ValueError, match=pattern):
            load(path)


def test_a_set_output_configuration_is_restored(tmp_path, monkeypatch):
    """save refused an embedder (or a pipeline of one) after set_output: its
    configuration is a dict."""
    embedder = SentencePairEmbedder(encoder=None).set_output(transform="pandas")
    pipe = Pipeline([("embed", clone(embedder)), ("lore", LowRankRewardEstimator(2))])
    for obj in (embedder, pipe):
        path = tmp_path / "out.lore"
        save(obj, path)
        again = load(path)
        step = again if obj is embedder else again.named_steps["embed"]
        assert step._sklearn_output_config == {"transform": "pandas"}
    embedder._sklearn_output_config = {"transform": 3}  # a file written by other code
    with monkeypatch.context() as patch:
        patch.setattr(lore_io, "_CHECKS", {})
        save(embedder, path)
    with pytest.raises(ValueError, match="_sklearn_output_config: expected set_output"):
        load(path)


def test_metadata_requests_are_restored(tmp_path):
    """The documented routing recipe (set_fit_request(user_ids=True)...) made a model,
    or a pipeline of one, that save refused."""
    import sklearn

    X, y, users = data()
    with sklearn.config_context(enable_metadata_routing=True):
        est = LowRankRewardEstimator(2, random_state=0).set_fit_request(
            user_ids=True).set_score_request(user_ids="uid", sample_weight=False)
        pipe = Pipeline([("scale", "passthrough"), ("lore", clone(est))])
        pipe.fit(X, y, user_ids=users)
    with sklearn.config_context(enable_metadata_routing=True):
        fitted = clone(est).fit(X, y, user_ids=users)
    for obj in (est, fitted, pipe):
        path = tmp_path / "routed.lore"
        save(obj, path)
        again = load(path)
        model, loaded = (obj[-1], again[-1]) if obj is pipe else (obj, again)
        assert loaded._metadata_request._serialize() == model._metadata_request._serialize()
        if hasattr(model, "components_"):
            np.testing.assert_array_equal(loaded.predict_proba(X, user_ids=users),
                                          model.predict_proba(X, user_ids=users))
    assert not sklearn.get_config()["enable_metadata_routing"]  # left as it was
    with sklearn.config_context(enable_metadata_routing=True):  # the loaded one routes
        again.fit(X, y, user_ids=users)


@pytest.mark.parametrize("requests, message", [
    ({"fit": {"user_ids": 3}}, "a request is True, False, None or an alias"),
    ({"fit": {"no_such": True}}, r"\['fit'\]"),
    ({"transform": {"user_ids": True}}, "takes no requests for 'transform'"),
    ({"__init__": {"user_ids": True}}, "takes no requests for"),
    ({"fit": {"user_ids": "not an identifier"}}, r"\['fit'\]"),
    ([], "expected dict"),
])
def test_tampered_metadata_requests_are_rejected(tmp_path, requests, message):
    import sklearn

    with sklearn.config_context(enable_metadata_routing=True):
        est = LowRankRewardEstimator(2).set_fit_request(user_ids=True)
    path = tmp_path / "routed.lore"
    save(est, path)

    def edit(manifest):
        manifest["object"]["state"]["_metadata_request"] = {"requests": requests}

    with pytest.raises(ValueError, match=message):
        load(rewrite(path, edit))

    def elsewhere(manifest):  # the requests' tag is read in _metadata_request alone
        manifest["object"]["state"]["_other"] = {"requests": {}}

    with pytest.raises(ValueError, match="unknown value tag"):
        load(rewrite(path, elsewhere))


# --------------------------------------------------------------------------- fitted attributes


@pytest.mark.parametrize(
    "attribute",
    [
        "temperature_",
        "population_temperature_",
        "shrinkage_",
        "n_iter_",
        "objective_",
        "n_features_in_",
        "components_",
        "_population_precision",
        "_stream_curvature",
    ],
)
def test_every_fitted_attribute_a_fitted_model_needs_must_be_present(attribute, saved):
    tampered = rewrite(saved, lambda m: m["object"]["state"].pop(attribute))
    with pytest.raises(ValueError, match=f"fitted attribute {attribute} is missing"):
        load(tampered)


@pytest.mark.parametrize("attribute", ["temperature_", "population_temperature_",
                                       "fold_in_temperature_", "shrinkage_"])
@pytest.mark.parametrize(
    "value",
    [None, "1.0", 0, 0.0, -1.0, True, {"float": "inf"}, {"float": "nan"}, {"list": [1.0]},
     10**400],
    ids=["null", "str", "zero-int", "zero", "negative", "bool", "inf", "nan", "list",
         "int-beyond-float"],
)
def test_temperatures_must_be_finite_positive_numbers(attribute, value, saved):
    tampered = rewrite(saved, lambda m: m["object"]["state"].update({attribute: value}))
    with pytest.raises(ValueError, match=rf"{attribute}: expected a finite positive number"):
        load(tampered)


@pytest.mark.parametrize(
    "attribute, value",
    [("n_iter_", -1), ("n_iter_", 2.5), ("n_iter_", None), ("objective_", "0.5"),
     ("_shrinkage_rows", "96"), ("n_iter_", 10**400), ("objective_", -(10**400)),
     ("_shrinkage_rows", 10**400)],
)
def test_other_fitted_scalars_are_checked(attribute, value, saved):
    tampered = rewrite(saved, lambda m: m["object"]["state"].update({attribute: value}))
    with pytest.raises(ValueError, match=rf"{attribute}: expected a"):
        load(tampered)


def test_integer_temperatures_are_numbers(saved, fitted):
    est, X, _, users = fitted

    def edit(manifest):
        manifest["object"]["state"].update(temperature_=2, population_temperature_=3,
                                           fold_in_temperature_=1)

    again = load(rewrite(saved, edit))
    assert again.temperature_ == 2 and again.population_temperature_ == 3
    unknown = np.asarray(["nobody"] * len(users))
    np.testing.assert_allclose(
        again.decision_function(X, user_ids=unknown),
        est.decision_function(X, user_ids=unknown) * est.population_temperature_ / 3,
    )


def test_a_file_from_before_per_user_temperatures_still_loads(saved, fitted):
    """Files written before user_temperature_ / fold_in_temperature_ existed: the
    estimator uses temperature_ for every known user."""
    est, X, y, users = fitted

    def edit(manifest):
        state = manifest["object"]["state"]
        edit.member = state.pop("user_temperature_")["array"]
        del state["fold_in_temperature_"]

    manifest = json.loads(zipfile.ZipFile(saved).read("manifest.json"))
    edit(manifest)
    again = load(rewrite(saved, edit, drop=[edit.member]))
    assert not hasattr(again, "user_temperature_")
    np.testing.assert_allclose(
        again.predict_proba(X, user_ids=users), est.predict_proba(X, user_ids=users)
    )
    again.partial_fit_users(X[:5], y[:5], user_ids=["new"] * 5)  # fold-in works too


@pytest.mark.parametrize(
    "attribute, array",
    [
        ("components_", np.full((2, 5), "0.1")),
        ("components_", np.zeros((2, 5), dtype=bool)),
        ("components_", np.zeros((2, 5), dtype=complex)),
        ("components_", np.zeros((2, 5), dtype="datetime64[s]")),
        ("user_weights_", np.zeros((8, 2), dtype="timedelta64[s]")),
        ("user_precision_", np.ones((8, 2, 2), dtype=bool)),
        ("population_weights_", np.array(["1", "0"])),
        ("prior_mean_", np.zeros(2, dtype=complex)),
        ("prior_precision_", np.eye(2, dtype=bool)),
        ("user_temperature_", np.array(["1.0"] * 8)),
        ("_population_precision", np.eye(2, dtype=complex)),
    ],
    ids=["str", "bool", "complex", "datetime", "timedelta", "bool-3d", "str-1d",
         "complex-1d", "bool-2d", "str-temperatures", "complex-private"],
)
def test_numeric_fitted_arrays_must_have_a_real_number_dtype(attribute, array, saved):
    with pytest.raises(ValueError, match=rf"{attribute}: expected an array of real numbers"):
        load(replace_array(saved, attribute, npy_bytes(array)))


def test_integer_fitted_arrays_are_numbers(saved, fitted):
    est, X, _, users = fitted
    again = load(replace_array(saved, "prior_mean_", npy_bytes(np.array([0, 1]))))
    assert again.prior_mean_.dtype.kind == "i"
    np.testing.assert_array_equal(again.predict(X, user_ids=users),
                                  est.predict(X, user_ids=users))


def test_user_temperatures_must_be_positive(saved):
    with pytest.raises(ValueError, match="user_temperature_: temperatures must be positive"):
        load(replace_array(saved, "user_temperature_", npy_bytes(np.zeros(8))))


@pytest.mark.parametrize("skip", ["passthrough", None])
def test_pipelines_with_skipped_steps_or_tuple_steps_load_back(tmp_path, skip):
    path = tmp_path / "pipe.lore"
    for pipe in [Pipeline([("embed", SentencePairEmbedder()), ("skip", skip),
                           ("lore", LowRankRewardEstimator(n_components=3))]),
                 Pipeline((("embed", SentencePairEmbedder()),
                           ("lore", LowRankRewardEstimator(n_components=3))))]:
        save(pipe, path)
        again = load(path)
        assert [name for name, _ in again.steps] == [name for name, _ in pipe.steps]
        assert again.get_params()["lore__n_components"] == 3
    assert again.steps[0][1].get_params() == SentencePairEmbedder().get_params()


@pytest.mark.parametrize("obj, message", [
    (lambda: LowRankRewardEstimator(n_components=0), "n_components"),
    (lambda: SentencePairEmbedder(batch_size=0), "batch_size"),
    (lambda: RewardModelEmbedder(), "needs model="),
    (lambda: Pipeline([("lore", LowRankRewardEstimator(alpha=-1.0))]), "alpha"),
    (lambda: Pipeline([("lore", LowRankRewardEstimator()), ("embed", SentencePairEmbedder())]),
     "intermediate steps should be transformers"),
])
def test_save_refuses_what_load_would_refuse_and_writes_nothing(tmp_path, obj, message):
    path = tmp_path / "bad.lore"
    with pytest.raises(ValueError, match=message):
        save(obj(), path)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- damaged archives


def raw_zip(path, members):
    """Write a zip of deflated members given as ``(name, raw deflate data, declared size,
    crc)``: the headers say what a hostile writer wants, whatever the data inflates to."""
    local, central = b"", b""
    for name, data, size, crc in members:
        name = name.encode()
        fields = (20, 0, 8, 0, 0x21, crc, len(data), size, len(name))
        central += struct.pack("<4s6H3I5HII", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, 0,
                               len(local))
        central += name
        local += struct.pack("<4s5H3I2H", b"PK\x03\x04", *fields, 0) + name + data
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(members), len(members),
                      len(central), len(local), 0)
    path.write_bytes(local + central + end)
    return path


def deflated(data):
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def inflating(prefix, chunk, count, suffix=b""):
    """Raw deflate data of ``prefix + chunk * count + suffix``, built in milliseconds: the
    chunk is compressed once and repeated (a full flush makes each copy independent)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    return head + block * count + compressor.compress(suffix) + compressor.flush()


def members_of(path):
    """``(name, raw deflate data, size, crc)`` of every member of a saved file."""
    with zipfile.ZipFile(path) as archive:
        blobs = {name: archive.read(name) for name in archive.namelist()}
    return {name: (name, deflated(b), len(b), zlib.crc32(b)) for name, b in blobs.items()}


def test_raw_zip_writes_what_load_reads(saved, fitted):
    est, X, _, users = fitted
    again = load(raw_zip(saved.with_name("raw.lore"), list(members_of(saved).values())))
    assert np.array_equal(again.predict_proba(X, user_ids=users),
                          est.predict_proba(X, user_ids=users))


def test_an_array_inflating_to_gigabytes_is_refused_before_decompressing(saved):
    # 2 MB on disk, 2 GiB once inflated (deflate's ratio tops out near 1000)
    members = members_of(saved)
    member = json.loads(zipfile.ZipFile(saved).read("manifest.json"))["object"]["state"][
        "population_weights_"]["array"]
    header = npy_header("<f8", (2**28,))
    bomb = inflating(header, bytes(2**20), 2048)
    # the CRC is not computed (2 GiB of work): nothing of the member is read
    members[member] = (member, bomb, len(header) + 2**31, 0)
    path = raw_zip(saved.with_name("bomb.lore"), list(members.values()))
    assert path.stat().st_size < 3 * 2**20
    with pytest.raises(ValueError, match=r"would take about 2048 MiB .*decompression bomb"):
        load(path)


def test_a_manifest_inflating_to_json_of_gigabytes_is_refused(saved):
    # 40 MiB of JSON objects from 45 KB: json would build about 1 GB of Python objects
    manifest = json.loads(zipfile.ZipFile(saved).read("manifest.json"))
    manifest["object"]["state"]["junk_"] = {"list": "@"}
    before, after = json.dumps(manifest).split('"@"')
    chunk = b'{"list": []}, ' * (2**20 // 14)
    head, tail = before.encode() + b"[", b'{"list": []}]' + after.encode()
    text = inflating(head, chunk, 40, tail)
    crc = zlib.crc32(tail, functools.reduce(lambda c, _: zlib.crc32(chunk, c), range(40),
                                            zlib.crc32(head)))
    members = members_of(saved)
    members["manifest.json"] = ("manifest.json", text, len(head) + 40 * len(chunk) + len(tail),
                                crc)
    path = raw_zip(saved.with_name("bomb.lore"), list(members.values()))
    with pytest.raises(ValueError, match="decompression bomb"):
        load(path)


def test_a_member_is_read_no_further_than_its_declared_size(saved, fitted):
    # The manifest's data inflates to 64 MiB more than its header declares (and its CRC
    # covers): load reads what is declared, and the model loads.
    import tracemalloc

    est, X, _, users = fitted
    members = members_of(saved)
    text = zipfile.ZipFile(saved).read("manifest.json")
    members["manifest.json"] = ("manifest.json", inflating(text, bytes(2**20), 64), len(text),
                                zlib.crc32(text))
    path = raw_zip(saved.with_name("long.lore"), list(members.values()))
    tracemalloc.start()
    try:
        again = load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
    assert np.array_equal(again.predict_proba(X, user_ids=users),
                          est.predict_proba(X, user_ids=users))


def test_max_bytes_bounds_what_load_reads(saved, fitted):
    with pytest.raises(ValueError, match=r"more than the limit of 1000 bytes \(max_bytes\)"):
        load(saved, max_bytes=1000)
    assert load(saved, max_bytes=10**6).get_params() == fitted[0].get_params()
    assert load(saved, max_bytes=np.int64(10**6)).get_params() == fitted[0].get_params()
    with pytest.raises(ValueError, match="max_bytes must be None or a non-negative int"):
        load(saved, max_bytes=-1)
    for bad in (1.5, True, "1e9"):  # not an integer: a TypeError (a ValueError before)
        with pytest.raises(TypeError, match="max_bytes must be None or a non-negative int"):
            load(saved, max_bytes=bad)


@pytest.mark.parametrize("compression", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_members_compressed_otherwise_than_with_deflate_are_refused(compression, saved):
    # bzip2 and lzma inflate a whole read at once, without the bound zipfile gives deflate
    out = saved.with_name("other.lore")
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(out, "w", compression) as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
    with pytest.raises(ValueError, match=f"compression method {compression}; sklearn_lore"):
        load(out)


def test_a_zip_version_beyond_what_zipfile_reads_is_a_value_error(saved):
    data = bytearray(saved.read_bytes())
    entry = data.find(b"PK\x01\x02")
    struct.pack_into("<H", data, entry + 6, 99)  # version needed to extract: 9.9
    damaged = saved.with_name("version.lore")
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a sklearn_lore file"):  # was NotImplementedError
        load(damaged)


def test_truncated_or_flipped_files_load_or_raise_value_error(saved):
    data = saved.read_bytes()
    damaged = saved.with_name("damaged.lore")
    for cut in range(0, len(data), 97):
        damaged.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="is not a sklearn_lore file"):
            load(damaged)
    rng = np.random.default_rng(0)
    for position, value in zip(rng.integers(0, len(data), 60), rng.integers(0, 256, 60)):
        blob = bytearray(data)
        blob[position] = value
        damaged.write_bytes(bytes(blob))
        try:
            load(damaged)  # a flip in a date or a spare header byte changes nothing
        except ValueError as exc:
            assert repr(str(damaged)) in str(exc)


def test_errors_name_the_file(saved):
    tampered = rewrite(saved, lambda m: m["object"].update({"class": "os.system"}))
    with pytest.raises(ValueError, match=rf"^Cannot load {re.escape(repr(str(tampered)))}: "):
        load(tampered)


# --------------------------------------------------------------------------- paths


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_or_a_device_is_refused_without_blocking(tmp_path):
    import threading

    fifo = tmp_path / "model.lore"
    os.mkfifo(fifo)
    outcome = []

    def attempt():
        try:
            load(fifo)
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # opening the pipe blocked: a writer unblocks it
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load blocked on a named pipe")
    assert isinstance(outcome[0], ValueError) and "not a regular file" in str(outcome[0])
    if os.path.exists("/dev/zero"):
        with pytest.raises(ValueError, match="'/dev/zero' is not a sklearn_lore file"):
            load("/dev/zero")  # was read into memory until it ran out


def test_paths_that_are_not_files_raise_as_open_does(saved, tmp_path):
    with pytest.raises(IsADirectoryError if os.name != "nt" else PermissionError,
                       match=re.escape(repr(str(tmp_path)))):
        load(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.lore"):
        load(tmp_path / "missing.lore")
    if hasattr(os, "symlink"):
        link = tmp_path / "link.lore"
        link.symlink_to(saved)
        assert load(link).get_params() == load(saved).get_params()


# --------------------------------------------------------------------------- hostile values


@pytest.mark.parametrize(
    "index, value",
    [(2, 700), (2, -1), (2, 10**30), (3, 2), (4, {"float": "inf"}), (4, 10**400), (1, "key")],
    ids=["position-past-key", "negative-position", "huge-position", "has-gauss-2",
         "inf-gauss", "huge-gauss", "float-key"],
)
def test_an_invalid_random_state_is_refused(index, value, tmp_path):
    # numpy's set_state does not check the position: a generator at 700 reads past its
    # 624-word key (other memory, then a segmentation fault when drawing on)
    path = tmp_path / "m.lore"
    save(LowRankRewardEstimator(random_state=np.random.RandomState(0)), path)
    state = json.loads(zipfile.ZipFile(path).read("manifest.json"))["object"]["params"][
        "random_state"]["random_state"]["list"]
    members = {}
    if value == "key":
        value = dict(state[1], sha256=hashlib.sha256(npy_bytes(np.zeros(624))).hexdigest())
        members = {state[1]["array"]: npy_bytes(np.zeros(624))}

    def edit(manifest):
        manifest["object"]["params"]["random_state"]["random_state"]["list"][index] = value

    with pytest.raises(ValueError, match="invalid random state; expected what RandomState"):
        load(rewrite(path, edit, members=members))


@pytest.mark.parametrize(
    "attribute, value, match",
    [
        ("_fitted_kind", {"list": ["free"]}, "_fitted_kind: expected 'free' or 'simplex'"),
        ("_fitted_kind", "diagonal", "_fitted_kind: expected 'free' or 'simplex'"),
        ("_fit_with_users", "no", "_fit_with_users: expected True or False"),
    ],
)
def test_private_fitted_flags_are_checked(attribute, value, match, saved):
    tampered = rewrite(saved, lambda m: m["object"]["state"].update({attribute: value}))
    with pytest.raises(ValueError, match=match):
        load(tampered)


@pytest.mark.parametrize("labels", [[0, 0], [{"float": "nan"}, 1]], ids=["same", "nan"])
def test_class_labels_in_an_object_array_must_be_two_different_labels(labels, saved):
    member = json.loads(zipfile.ZipFile(saved).read("manifest.json"))["object"]["state"][
        "classes_"]["array"]

    def edit(manifest):
        manifest["object"]["state"]["classes_"] = {"objects": labels, "shape": [2]}

    with pytest.raises(ValueError, match="classes_: expected two different labels"):
        load(rewrite(saved, edit, drop=[member]))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda p: p["steps"]["list"].reverse(), "intermediate steps should be transformers"),
        (lambda p: p["steps"]["list"][0]["tuple"].__setitem__(0, "a__b"), "must not contain __"),
        (lambda p: p.update(verbose="loud"), "'verbose' parameter of Pipeline"),
    ],
    ids=["estimator-before-embedder", "dunder-name", "verbose-str"],
)
def test_pipelines_are_checked_as_fit_checks_them(edit, match, named_model, tmp_path):
    # the swapped pipeline loaded and failed in predict (no transform on the estimator)
    save(fitted_text_pipeline(named_model), tmp_path / "p.lore")
    with pytest.raises(ValueError, match=match):
        load(rewrite(tmp_path / "p.lore", lambda m: edit(m["object"]["params"])))


LOADED_MODEL = {"estimator": {"class": "sklearn_lore.estimator.LowRankRewardEstimator",
                              "params": {}, "state": {}}}


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda e: e["params"].update(model=5),
         "model must be None, a checkpoint name or a local folder .* got int 5"),
        (lambda e: e["params"].update(cache_dir={"list": ["/tmp"]}),
         r"cache_dir must be None or a folder path .*got \['/tmp'\]"),
        (lambda e: e["state"].update(n_features_in_="4"),
         "n_features_in_: expected a non-negative integer"),
        (lambda e: e["state"].update(feature_names_in_=3),
         r"feature_names_in_: expected an array of shape \(4,\)"),
        (lambda e: e["state"].update(_fit_has_user="no"), "_fit_has_user: expected True or False"),
        # the embedder would take the file's object for its sentence-transformers model
        (lambda e: e["state"].update(
            _loaded_key={"tuple": ["sentence-transformers", "my-org/model", "cpu", "float32"]},
            _loaded_model=LOADED_MODEL), "'_loaded_key' is not a valid fitted attribute"),
    ],
    ids=["model-int", "cache-dir-list", "n-features-str", "names-int", "has-user-str",
         "loaded-model"],
)
def test_embedder_parameters_and_fitted_state_are_checked(edit, match, tmp_path):
    df, _ = text_pairs()
    save(SentencePairEmbedder("my-org/model").fit(df), tmp_path / "e.lore")
    with pytest.raises(ValueError, match=match):
        load(rewrite(tmp_path / "e.lore", lambda m: edit(m["object"])))


@pytest.mark.parametrize("path, blob, match", [
    (("_stream_curvature", 1), np.eye(3), r"_stream_curvature\[1\]: expected .*shape \(2, 2\)"),
    (("_population_precision",), np.eye(3), r"_population_precision: expected .*shape \(2, 2\)"),
    (("_stream_memory", 0), np.zeros((80, 4)), r"_stream_memory\[0\]: expected .*shape"),
], ids=["curvature-S", "population-precision", "memory-rows"])
def test_streaming_state_of_the_wrong_shape_is_refused(path, blob, match, tmp_path):
    """Three of the loader's shape checks could be deleted without a test failing (a
    mutation audit): a tampered file then loaded and failed later inside numpy."""
    X, y, users = data()
    est = LowRankRewardEstimator(2, random_state=0).partial_fit(X, y, classes=[0, 1],
                                                                user_ids=users)
    assert est._stream_memory is not None
    source = tmp_path / "stream.lore"
    save(est, source)
    payload = npy_bytes(blob)

    def edit(manifest):
        node = manifest["object"]["state"][path[0]]
        if len(path) > 1:
            node = node["tuple"][path[1]]
        node["sha256"] = hashlib.sha256(payload).hexdigest()
        edit.member = node["array"]

    edit(json.loads(zipfile.ZipFile(source).read("manifest.json")))
    with pytest.raises(ValueError, match=match):
        load(rewrite(source, edit, members={edit.member: payload}))


def _tampered_stream(tmp_path, path, change):
    """A saved stream whose array at ``path`` (attribute, tuple index or None) is replaced
    by ``change(array)``, with a matching digest."""
    X, y, users = data()
    est = LowRankRewardEstimator(2, random_state=0).partial_fit(X, y, classes=[0, 1],
                                                                user_ids=users)
    source = tmp_path / "stream.lore"
    save(est, source)
    value = getattr(est, path[0]) if path[1] is None else getattr(est, path[0])[path[1]]
    payload = npy_bytes(change(np.asarray(value)))

    def edit(manifest):
        node = manifest["object"]["state"][path[0]]
        if path[1] is not None:
            node = node["tuple"][path[1]]
        node["sha256"] = hashlib.sha256(payload).hexdigest()
        edit.member = node["array"]

    edit(json.loads(zipfile.ZipFile(source).read("manifest.json")))
    return rewrite(source, edit, members={edit.member: payload})


@pytest.mark.parametrize("path, change, match", [
    (("_stream_memory", 1), lambda a: 2 * a, r"_stream_memory\[1\]: the remembered labels must "
                                             r"be 0 or 1"),
    (("_stream_memory", 2), lambda a: -a, r"_stream_memory\[2\]: the remembered sample "
                                          "weights must be finite and non-negative"),
    (("_stream_memory", 2), lambda a: a.astype(np.longdouble),
     r"_stream_memory\[2\]: expected an array of real numbers .* got float128"),
    (("components_", None), lambda a: a.astype(">f8"),
     r"components_: expected an array of real numbers .* got >f8"),
    (("components_", None), lambda a: a.astype(np.float16),
     r"components_: expected an array of real numbers .* got float16"),
    (("users_", None), lambda a: a.astype("S"),
     r"users_: expected a 1-d array of user ids \(int, str or object dtype\), got an array "
     r"of dtype \|S\d+"),
    (("users_", None), lambda a: np.zeros(len(a), dtype=bool), r"users_: expected a 1-d array"),
], ids=["labels-2", "negative-weights", "float128", "big-endian", "float16", "bytes-ids",
        "bool-ids"])
def test_state_save_never_writes_is_refused(path, change, match, tmp_path):
    """Each loaded before and failed later: remembered labels of 2 made the next
    partial_fit store NaN temperatures; float128 crashed numpy's linear algebra; bytes
    ids matched no user, so every user silently got the population weights."""
    with pytest.raises(ValueError, match=match):
        load(_tampered_stream(tmp_path, path, change))


def test_users_that_are_not_an_array_are_named(fitted, tmp_path):
    path = tmp_path / "m.lore"
    save(fitted[0], path)
    with pytest.raises(ValueError, match=r"users_: expected a 1-d array of user ids .* got 7"):
        load(rewrite(path, lambda m: m["object"]["state"].update(users_=7)))


def test_narrow_float_parameters_keep_their_type_and_continue_identically(tmp_path):
    """A float32 prior_strength came back a Python float: numpy computes with the two
    differently, and a partial_fit after loading differed by 3e-8."""
    X, y, users = data()
    est = LowRankRewardEstimator(2, random_state=0, prior_strength=np.float32(0.3),
                                 alpha=np.float16(0.5), tol=np.float32(1e-4))
    est.partial_fit(X[:40], y[:40], classes=[0, 1], user_ids=users[:40])
    save(est, tmp_path / "m.lore")
    again = load(tmp_path / "m.lore")
    for name in ("prior_strength", "alpha", "tol"):
        value = again.get_params()[name]
        assert type(value) is type(est.get_params()[name]) and value == est.get_params()[name]
    for model in (est, again):
        model.partial_fit(X[40:60], y[40:60], user_ids=users[40:60])
    np.testing.assert_array_equal(again.user_weights_, est.user_weights_)
    np.testing.assert_array_equal(again.components_, est.components_)


@pytest.mark.parametrize("bad", [["float32", "x"], ["float64", 1.0], ["float32"], "float32",
                                 ["float32", True]])
def test_malformed_narrow_floats_are_refused(bad, fitted, tmp_path):
    path = tmp_path / "m.lore"
    save(fitted[0], path)
    edit = lambda m: m["object"]["params"].update(alpha={"narrow_float": bad})  # noqa: E731
    with pytest.raises(ValueError, match="malformed narrow float"):
        load(rewrite(path, edit))
    extra = lambda m: m["object"]["params"].update(  # noqa: E731
        alpha={"narrow_float": ["float32", 0.5], "shape": []})
    with pytest.raises(ValueError, match="malformed narrow float"):
        load(rewrite(path, extra))


def test_save_follows_links_refuses_special_files_and_keeps_permissions(fitted, tmp_path):
    """save replaced whatever was at the path by a regular file: a symbolic link lost
    its target's update, a device or a pipe became a file (as root, /dev/null could
    go), and a file made private (0600) came back readable by anyone (0644)."""
    est = fitted[0]
    target = tmp_path / "v1.lore"
    save(est, target)
    os.chmod(target, 0o600)
    save(est, target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    link = tmp_path / "latest.lore"
    link.symlink_to(target)
    before = target.read_bytes()
    changed = copy.deepcopy(est).forget_users(est.users_[:1])
    save(changed, link)
    assert link.is_symlink() and target.read_bytes() != before
    assert len(load(link).users_) == len(est.users_) - 1
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"Cannot save to .*pipe.*: it is not a regular file"):
        save(est, fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    with pytest.raises(ValueError, match=r"Cannot save to .*: it is a directory"):
        save(est, tmp_path)
    missing = tmp_path / "missing" / "m.lore"
    with pytest.raises(FileNotFoundError, match=r"No such file or directory: '.*missing.m\.lore'"
                       ) as err:
        save(est, missing)
    assert err.value.filename == str(missing)  # as open() names it, not the temporary
    for folder in (f"{tmp_path / 'new'}{os.sep}", f"{target}{os.sep}"):
        with pytest.raises(ValueError, match="it names a directory .a trailing separator"):
            save(est, folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.lore", "pipe", "v1.lore"]


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(fitted, tmp_path,
                                                                     monkeypatch):
    """The atomic-replace test failed before any file was opened: a save that wrote the
    path in place would have passed it."""
    path = tmp_path / "m.lore"
    save(fitted[0], path)
    before = path.read_bytes()
    written = []

    def interrupted(self, name, data, *args, **kwargs):
        written.append(name)
        if len(written) == 2:  # after the manifest, inside the open temporary
            raise KeyboardInterrupt
        return real(self, name, data, *args, **kwargs)

    real = zipfile.ZipFile.writestr
    monkeypatch.setattr(zipfile.ZipFile, "writestr", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save(copy.deepcopy(fitted[0]).forget_users(fitted[0].users_[:1]), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.lore"]
