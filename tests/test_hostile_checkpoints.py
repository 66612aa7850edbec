"""Hostile checkpoints (beyond tests/test_checkpoint.py): every bad checkpoint is refused
with a CheckpointError naming the file and the problem, whether it is a folder, a zip on
disk or uploaded zip bytes; nothing is unpickled, nothing is allocated from a lying config,
nothing is extracted; and the engine that refused it keeps its weights, predictions,
history, mechanisms and name.

The hostile checkpoints are made here from one good one, one change each.
"""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import time
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from engine import CheckpointError, OneShotMetaLearningEngine, create_one_shot_meta_learning_engine
from engine import checkpoint as ck
from engine.tasks import SinusoidTaskSource

FAST = dict(
    meta_batch_size=2,
    num_meta_iterations=3,
    support_shots=2,
    query_shots=3,
    num_inner_steps=1,
    val_episodes=2,
    hidden_dim=8,
    device="cpu",
)
X = np.linspace(-4, 4, 9, dtype=np.float32)[:, None]
RECORD = {
    "mechanism_type": "FEATURE_TRANSFER",
    "source": "x",
    "target": "output",
    "causal_strength": 0.8,
    "confidence": 0.9,
    "effectiveness": None,
    "reuse_count": 0,
    "effect": 0.3,
    "effect_std": 0.1,
}


class Boom:
    """Unpickling this exits the test process: a loader that unpickles cannot pass."""

    def __reduce__(self):
        return (os._exit, (17,))


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, bytes]:
    eng = create_one_shot_meta_learning_engine(**FAST)
    eng.meta_train_sync(SinusoidTaskSource())
    eng.import_mechanisms([RECORD])
    path = eng.save_sync(tmp_path_factory.mktemp("good") / "good")
    return {name: (path / name).read_bytes() for name in (ck.WEIGHTS, ck.CONFIG, ck.MECHANISMS)}


@pytest.fixture(scope="module")
def victim(tmp_path_factory):
    """A trained engine that differs from ``good`` (other seed), so a wrongful load shows."""
    eng = create_one_shot_meta_learning_engine(**{**FAST, "seed": 5, "num_meta_iterations": 2})
    eng.meta_train_sync(SinusoidTaskSource())
    eng.import_mechanisms([{**RECORD, "source": "victim"}])
    path = eng.save_sync(tmp_path_factory.mktemp("victim") / "victim")
    return eng, path


@pytest.fixture
def engine(victim):
    eng, path = victim
    eng.load_sync(path)  # every test starts from the same state, so one failure cannot leak
    return eng


def state(eng) -> dict:
    return {
        "predictions": eng.predict_sync(X).clone(),
        "weights": {k: v.clone() for k, v in eng.learner.state_dict().items()},
        "history": copy.deepcopy(eng.history.to_dict()),
        "mechanisms": copy.deepcopy(eng.discovered_mechanisms),
        "config": eng.config.to_dict(),
        "name": eng.checkpoint_name,
    }


def assert_same_state(a: dict, b: dict) -> None:
    assert torch.equal(a["predictions"], b["predictions"])
    assert a["weights"].keys() == b["weights"].keys()
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    assert {k: v for k, v in a.items() if k not in ("predictions", "weights")} == {
        k: v for k, v in b.items() if k not in ("predictions", "weights")
    }


# ---------------------------------------------------------------------------- mutations
def tensors(files) -> dict[str, torch.Tensor]:
    return dict(st_load(files[ck.WEIGHTS]))


def with_tensors(change):
    def mutate(files):
        t = tensors(files)
        change(t)
        return {**files, ck.WEIGHTS: st_save(t)}

    return mutate


def first_weight(t) -> str:
    return "model.head.weight" if "model.head.weight" in t else sorted(t)[0]


def with_meta(change):
    def mutate(files):
        meta = json.loads(files[ck.CONFIG])
        change(meta)
        return {**files, ck.CONFIG: json.dumps(meta).encode()}

    return mutate


def setter(*keys, value):
    def change(meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return change


def replace(name, data: bytes):
    return lambda files: {**files, name: data}


def drop(name):
    return lambda files: {k: v for k, v in files.items() if k != name}


def torch_save_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save({"model.head.weight": torch.zeros(1, 8)}, buf)
    return buf.getvalue()


def nested(depth: int) -> bytes:
    return ('{"a":' * depth + "1" + "}" * depth).encode()


# (id, mutation, match) — applied to a folder, a zip on disk and uploaded zip bytes.
CASES = [
    # pickles where the safetensors should be
    (
        "pickle-as-safetensors",
        replace(ck.WEIGHTS, pickle.dumps(Boom())),
        "model.safetensors is not a valid safetensors",
    ),
    (
        "torch-save-as-safetensors",
        replace(ck.WEIGHTS, torch_save_bytes()),
        "model.safetensors is not a valid safetensors",
    ),
    ("empty-weights", replace(ck.WEIGHTS, b""), "model.safetensors is not a valid safetensors"),
    ("weights-missing", drop(ck.WEIGHTS), "model.safetensors is missing"),
    # tensors of the wrong shape, names or dtype, or not finite
    (
        "tensor-wrong-shape",
        with_tensors(lambda t: t.update({"model.head.weight": torch.zeros(3, 3)})),
        r"model.head.weight has shape \[3, 3\], the model needs \[1, 8\]",
    ),
    ("tensor-missing", with_tensors(lambda t: t.pop("model.head.bias")), "missing model.head.bias"),
    ("tensor-extra", with_tensors(lambda t: t.update({"evil": torch.zeros(1)})), "unexpected evil"),
    (
        "dtype-float64",
        with_tensors(lambda t: t.update({k: v.double() for k, v in t.items()})),
        "has dtype torch.float64, the model needs torch.float32",
    ),
    (
        "dtype-int64",
        with_tensors(lambda t: t.update({"model.head.weight": t["model.head.weight"].long()})),
        "model.head.weight has dtype torch.int64",
    ),
    (
        "dtype-bool",
        with_tensors(lambda t: t.update({"model.head.bias": t["model.head.bias"].bool()})),
        "model.head.bias has dtype torch.bool",
    ),
    (
        "dtype-float16",
        with_tensors(lambda t: t.update({"model.head.weight": t["model.head.weight"].half()})),
        "has dtype torch.float16",
    ),
    (
        "weights-nan",
        with_tensors(lambda t: t["model.head.weight"].view(-1).__setitem__(0, float("nan"))),
        "model.head.weight holds NaN or infinite values",
    ),
    (
        "weights-inf",
        with_tensors(lambda t: t["model.head.bias"].fill_(float("inf"))),
        "model.head.bias holds NaN or infinite values",
    ),
    # a config.json that does not match the weights
    ("config-input-dim-3", with_meta(setter("model", "input_dim", value=3)), "the weights do not match the model"),
    ("config-output-dim-2", with_meta(setter("output_dim", value=2)), "the weights do not match the model"),
    ("config-num-mechanisms-2", with_meta(setter("config", "num_mechanisms", value=2)), "do not match the model"),
    ("config-algorithm-gradient", with_meta(setter("config", "algorithm", value="GRADIENT_CAUSAL")), "do not match"),
    ("config-input-gates", with_meta(setter("model", "input_gates", value=True)), "do not match the model"),
    # ... claiming a layer of 10^10 inputs (320 GB if it were built; it is compared, not built)
    (
        "config-input-dim-1e10",
        with_meta(setter("model", "input_dim", value=10**10)),
        r"the model needs \[8, 10000000000\]",
    ),
    ("config-output-dim-1e10", with_meta(setter("output_dim", value=10**10)), r"needs \[10000000000, 8\]"),
    ("config-input-dim-negative", with_meta(setter("model", "input_dim", value=-4)), "does not describe a valid model"),
    ("config-input-dim-string", with_meta(setter("model", "input_dim", value="wide")), "does not describe a valid"),
    ("config-task-type", with_meta(setter("task_type", value="banana")), "task_type must be"),
    # config values out of range
    ("range-inner-lr", with_meta(setter("config", "inner_lr", value=-1)), r"inner_lr must be in \[1e-06, 10\]"),
    ("range-n-way", with_meta(setter("config", "n_way", value=1)), r"n_way must be in \[2, 200\]"),
    ("range-inner-steps", with_meta(setter("config", "num_inner_steps", value=10**9)), "num_inner_steps must be in"),
    ("range-meta-batch", with_meta(setter("config", "meta_batch_size", value=0)), "meta_batch_size must be in"),
    ("range-threshold", with_meta(setter("config", "mechanism_threshold", value=7.5)), "mechanism_threshold must be"),
    ("range-seed-string", with_meta(setter("config", "seed", value="zero")), "seed must be an integer"),
    ("config-algorithm-unknown", with_meta(setter("config", "algorithm", value="SGD")), "algorithm must be one of"),
    ("config-unknown-field", with_meta(setter("config", "evil", value=1)), r"unknown config field\(s\): evil"),
    ("config-not-object", with_meta(setter("config", value=[1, 2])), "does not describe a valid model"),
    ("config-model-missing", with_meta(lambda m: m.pop("model")), "config.json lacks the field 'model'"),
    ("config-format-version-2", with_meta(setter("format_version", value=2)), "no supported format_version"),
    # the rest of config.json
    ("history-list", with_meta(setter("history", value=[1, 2])), "history is malformed"),
    ("history-types", with_meta(setter("history", "iteration", value="abc")), "iteration must be a list"),
    (
        "history-loss-strings",
        with_meta(setter("history", "train_loss", value=["a", "b", "c"])),
        "train_loss must be a list of numbers",
    ),
    (
        "history-float-iteration",
        with_meta(setter("history", "iteration", value=[0, 1.5, 2])),
        "iteration must be a list of integers",
    ),
    ("history-lengths", with_meta(setter("history", "train_loss", value=[0.5])), "train_loss and iteration differ"),
    ("history-order", with_meta(setter("history", "iteration", value=[2, 1, 0])), "iteration must increase"),
    ("feature-names", with_meta(setter("feature_names", value=5)), "feature_names must be a list of strings"),
    ("source-not-object", with_meta(setter("source", value=["x"])), "source must be an object"),
    ("priors-negative", with_meta(setter("causal_priors", value={"mechanism_rates": [-1.0]})), "mechanism_rates"),
    # config.json / mechanisms.json that are not sane JSON
    ("config-not-json", replace(ck.CONFIG, b"{oops"), "config.json is not valid JSON"),
    ("config-empty", replace(ck.CONFIG, b""), "config.json is not valid JSON"),
    ("config-top-level-list", replace(ck.CONFIG, b"[1, 2]"), "config.json has no supported format_version"),
    ("config-utf16", lambda f: {**f, ck.CONFIG: f[ck.CONFIG].decode().encode("utf-16")}, "config.json is not valid"),
    ("config-NaN", lambda f: {**f, ck.CONFIG: f[ck.CONFIG].replace(b'"inner_lr": 0.01', b'"inner_lr": NaN')}, "NaN"),
    ("config-deep", replace(ck.CONFIG, nested(100_000)), "config.json is nested too deeply"),
    ("config-5000-digits", replace(ck.CONFIG, b'{"format_version": ' + b"1" * 5000 + b"}"), "config.json is not valid"),
    ("mechanisms-deep", replace(ck.MECHANISMS, b"[" * 100_000 + b"]" * 100_000), "mechanisms.json is nested too"),
    ("mechanisms-not-list", replace(ck.MECHANISMS, b'"all of them"'), "mechanisms.json must hold a list"),
    ("mechanisms-bad-record", replace(ck.MECHANISMS, b'[{"source": 1}]'), "the stored mechanisms are invalid"),
]
IDS = [c[0] for c in CASES]
assert len(set(IDS)) == len(IDS)


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def load(eng, files: dict[str, bytes], where: str, tmp_path) -> None:
    if where == "folder":
        d = tmp_path / "ckpt"
        d.mkdir()
        for name, data in files.items():
            (d / name).write_bytes(data)
        eng.load_sync(d)
    elif where == "zip":
        (tmp_path / "ckpt.zip").write_bytes(zip_bytes(files))
        eng.load_sync(tmp_path / "ckpt.zip")
    else:
        eng.load_bytes_sync(zip_bytes(files), "upload.zip")


@pytest.mark.parametrize("where", ["folder", "zip", "bytes"])
def test_the_good_checkpoint_loads_everywhere(engine, good, tmp_path, where) -> None:
    # Each case below is this checkpoint with one change: it must load, and differ from the victim.
    before = state(engine)
    load(engine, good, where, tmp_path)
    assert not torch.equal(engine.predict_sync(X), before["predictions"])
    assert engine.discovered_mechanisms[0].source == "x"


@pytest.mark.parametrize("where", ["folder", "zip", "bytes"])
@pytest.mark.parametrize(("case_id", "mutate", "match"), CASES, ids=IDS)
def test_hostile_checkpoint_is_refused_and_engine_kept(engine, good, tmp_path, where, case_id, mutate, match):
    before = state(engine)
    with pytest.raises(CheckpointError, match=match):
        load(engine, mutate(dict(good)), where, tmp_path)
    assert_same_state(state(engine), before)


# ---------------------------------------------------------------------------- zip-only cases
def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


ZIP_CASES = [
    ("truncated-half", lambda g: zip_bytes(g)[: len(zip_bytes(g)) // 2], "neither a checkpoint folder nor a zip"),
    ("truncated-tail", lambda g: zip_bytes(g)[:-7], "neither a checkpoint folder nor a zip"),
    ("empty-file", lambda g: b"", "neither a checkpoint folder nor a zip"),
    ("random-bytes", lambda g: bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "neither"),
    ("pickle-file", lambda g: pickle.dumps(Boom()), "neither a checkpoint folder nor a zip"),
    ("empty-zip", lambda g: _zip([]), "model.safetensors is missing"),
    (
        "dotdot-member",
        lambda g: _zip([("../../model.safetensors", g[ck.WEIGHTS]), ("config.json", g[ck.CONFIG])]),
        r"unsafe member path '../../model.safetensors'",
    ),
    (
        "dotdot-other-member",
        lambda g: _zip([*g.items(), ("../../../tmp/evil.sh", b"rm -rf ~")]),
        "unsafe member path",
    ),
    (
        "absolute-member",
        lambda g: _zip([("/etc/model.safetensors", g[ck.WEIGHTS]), ("config.json", g[ck.CONFIG])]),
        "unsafe member path '/etc/model.safetensors'",
    ),
    (
        "windows-member",
        lambda g: _zip([("..\\..\\model.safetensors", g[ck.WEIGHTS]), ("config.json", g[ck.CONFIG])]),
        "unsafe member path",
    ),
    (
        "duplicate-weights",
        lambda g: _zip([*g.items(), ("other/model.safetensors", pickle.dumps(Boom()))]),
        "the zip holds more than one model.safetensors",
    ),
]
ZIP_IDS = [c[0] for c in ZIP_CASES]


@pytest.mark.parametrize("where", ["zip", "bytes"])
@pytest.mark.parametrize(("case_id", "make", "match"), ZIP_CASES, ids=ZIP_IDS)
def test_hostile_zip_is_refused_and_engine_kept(engine, good, tmp_path, where, case_id, make, match):
    data = make(dict(good))
    before = state(engine)
    listing = sorted(p.name for p in tmp_path.parent.iterdir())
    with pytest.raises(CheckpointError, match=match):
        if where == "zip":
            (tmp_path / "c.zip").write_bytes(data)
            engine.load_sync(tmp_path / "c.zip")
        else:
            engine.load_bytes_sync(data, "c.zip")
    assert_same_state(state(engine), before)
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == listing  # nothing extracted next door


# ---------------------------------------------------------------------------- huge and odd files
def _sparse(path, size: int) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)  # no disk blocks, no time: only a reader that reads it all pays


@pytest.mark.parametrize(
    ("name", "size"),
    [
        (ck.CONFIG, ck.MAX_JSON_BYTES + 1),
        (ck.MECHANISMS, ck.MAX_JSON_BYTES + 1),
        (ck.WEIGHTS, ck.MAX_WEIGHTS_BYTES + 1),
    ],
    ids=["config", "mechanisms", "weights"],
)
def test_huge_file_in_folder_is_refused_by_size_without_reading(engine, good, tmp_path, name, size):
    d = tmp_path / "ckpt"
    d.mkdir()
    for n, data in good.items():
        (d / n).write_bytes(data)
    _sparse(d / name, size)
    before = state(engine)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=f"{name} is larger than {size - 1} bytes"):
        engine.load_sync(d)
    assert time.perf_counter() - t0 < 1.0  # reading 2 GiB of zeros would take far longer
    assert_same_state(state(engine), before)


def test_huge_config_json_in_zip_is_refused(engine, good, tmp_path):
    cap = ck.MAX_JSON_BYTES
    assert cap == 50 * 1024 * 1024
    big = b'{"pad": "' + b" " * cap + b'"}'  # deflates to ~50 KB; its header says 50 MB
    data = zip_bytes({**good, ck.CONFIG: big})
    assert len(data) < 1024 * 1024
    before = state(engine)
    for load_it in (lambda: engine.load_bytes_sync(data, "big.zip"), lambda: engine.load_sync(tmp_path / "big.zip")):
        (tmp_path / "big.zip").write_bytes(data)
        with pytest.raises(CheckpointError, match=f"config.json is larger than {cap} bytes"):
            load_it()
    assert_same_state(state(engine), before)


def test_checkpoint_member_that_is_not_a_regular_file(engine, good, tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    for n, data in good.items():
        (d / n).write_bytes(data)
    (d / ck.CONFIG).unlink()
    (d / ck.CONFIG).mkdir()
    before = state(engine)
    with pytest.raises(CheckpointError, match="config.json is not a regular file"):
        engine.load_sync(d)
    (d / ck.CONFIG).rmdir()
    os.symlink("/dev/zero", d / ck.CONFIG)  # endless bytes: must not be read
    with pytest.raises(CheckpointError, match="config.json is not a regular file"):
        engine.load_sync(d)
    assert_same_state(state(engine), before)


def test_fresh_engine_refuses_too(good, tmp_path):
    # from_checkpoint on a hostile zip: an error, not a half-built engine
    (tmp_path / "c.zip").write_bytes(zip_bytes(with_meta(setter("model", "input_dim", value=10**10))(dict(good))))
    with pytest.raises(CheckpointError, match="do not match"):
        OneShotMetaLearningEngine.from_checkpoint(tmp_path / "c.zip", device="cpu")
