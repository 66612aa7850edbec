"""Faults: a non-finite loss stops training and keeps the last good weights; a checkpoint
save killed at a random moment never leaves a half-written checkpoint that loads wrong;
training resumes from a checkpoint (engine API and ``--resume``) with its curve continued.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import CheckpointError, OneShotMetaLearningEngine, create_one_shot_meta_learning_engine
from engine.checkpoint import previous_copy
from engine.cli import main
from engine.tasks import SinusoidTaskSource
from engine.tasks.base import Episode, Task, TaskSource
from tests.conftest import ROOT

X = np.linspace(-4, 4, 9, dtype=np.float32)[:, None]
FAST = dict(
    meta_batch_size=2,
    num_meta_iterations=20,
    support_shots=3,
    query_shots=3,
    num_inner_steps=1,
    eval_interval=2,
    val_episodes=2,
    hidden_dim=8,
    device="cpu",
)


# ---------------------------------------------------------------------------- (a) non-finite loss
class PoisonedTask(Task):
    def __init__(self, task: Task, value: float) -> None:
        super().__init__(task.name, task.task_type, task.output_dim)
        self.task, self.value = task, value

    def sample_episode(self, support_shots, query_shots, rng) -> Episode:
        ep = self.task.sample_episode(support_shots, query_shots, rng)
        return Episode(
            ep.support_x,
            torch.full_like(ep.support_y, self.value),
            ep.query_x,
            torch.full_like(ep.query_y, self.value),
            ep.task_type,
            ep.num_classes,
            ep.task_name,
        )


class PoisonAfter(TaskSource):
    """Sinusoid tasks whose training tasks turn to NaN / inf targets after ``good`` draws."""

    def __init__(self, good: int, value: float) -> None:
        self.base, self.good, self.value, self.drawn = SinusoidTaskSource(), good, value, 0
        self.name, self.task_type = "poisoned", self.base.task_type
        self.input_shape, self.output_dim = self.base.input_shape, self.base.output_dim

    def sample_task(self, split, rng) -> Task:
        task = self.base.sample_task(split, rng)
        if split != "train":
            return task
        self.drawn += 1
        return task if self.drawn <= self.good else PoisonedTask(task, self.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_loss_stops_with_message_and_keeps_last_good_weights(value):
    eng = create_one_shot_meta_learning_engine(**FAST)
    snapshots = {}

    def after_step(record):
        snapshots[record["iteration"]] = (
            {k: v.clone() for k, v in eng.learner.state_dict().items()},
            eng.predict_sync(X).clone(),
        )

    history = eng.meta_train_sync(PoisonAfter(good=3 * FAST["meta_batch_size"], value=value), callback=after_step)
    # three good meta-batches, then the fourth (iteration 3) is poisoned
    assert history["iteration"] == [0, 1, 2] and sorted(snapshots) == [0, 1, 2]
    assert history["stopped_early"]
    assert history["message"].startswith("training stopped at iteration 3: the loss or its gradient is not finite")
    assert "last good weights are kept" in history["message"]
    assert all(np.isfinite(history["train_loss"]))
    weights, predictions = snapshots[2]
    now = eng.learner.state_dict()
    assert all(torch.equal(now[k], weights[k]) for k in weights)
    assert torch.equal(eng.predict_sync(X), predictions) and torch.isfinite(predictions).all()
    # the stopped engine is usable: it adapts, and it trains on (clean tasks) from iteration 3
    assert np.isfinite(eng.one_shot_adapt_sync(SinusoidTaskSource().tasks("test", 1)[0])["adaptation_quality"]["loss"])
    eng.config = eng.config.replace(num_meta_iterations=2)
    eng.learner.config = eng.config
    assert eng.meta_train_sync(SinusoidTaskSource())["iteration"] == [0, 1, 2, 3, 4]


def test_poison_on_the_first_step_keeps_the_initial_weights():
    eng = create_one_shot_meta_learning_engine(**FAST)
    eng.initialize_for_source(SinusoidTaskSource())
    initial = {k: v.clone() for k, v in eng.learner.state_dict().items()}
    history = eng.meta_train_sync(PoisonAfter(good=0, value=float("nan")))
    assert history["iteration"] == [] and "stopped at iteration 0" in history["message"]
    assert all(torch.equal(v, initial[k]) for k, v in eng.learner.state_dict().items())


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_a_non_finite_validation_loss_does_not_make_the_checkpoint_unreadable(tmp_path, suffix):
    # Training steps are finite, but a validation loss may still overflow; the checkpoint
    # must stay loadable (the reader refuses NaN/Infinity in JSON, so it is stored as null).
    eng = create_one_shot_meta_learning_engine(**{**FAST, "num_meta_iterations": 3})
    eng.meta_train_sync(SinusoidTaskSource())
    eng.history.val_loss[0] = float("inf")
    eng.history.val_metric[0] = float("nan")
    path = eng.save_sync(tmp_path / f"ck{suffix}")
    loaded = OneShotMetaLearningEngine.from_checkpoint(path, device="cpu")
    assert np.isnan(loaded.history.val_loss[0]) and np.isnan(loaded.history.val_metric[0])
    assert loaded.history.val_loss[1:] == eng.history.val_loss[1:]
    assert torch.equal(loaded.predict_sync(X), eng.predict_sync(X))


# ---------------------------------------------------------------------------- (b) killed saves
DRIVER = r"""
import os, sys
os.environ["OMP_NUM_THREADS"] = "1"
import torch
torch.set_num_threads(1)  # no thread pools before fork()
from pathlib import Path
from engine import create_one_shot_meta_learning_engine
from engine.tasks import SinusoidTaskSource

out = Path(sys.argv[1])
eng = create_one_shot_meta_learning_engine(
    hidden_dim=512, num_meta_iterations=2, meta_batch_size=2, support_shots=2, query_shots=2,
    num_inner_steps=1, val_episodes=1, device="cpu")
eng.meta_train_sync(SinusoidTaskSource())
eng.source_info = {"version": 0}
eng.save_sync(out / "base")
base = {k: v.clone() for k, v in eng.learner.state_dict().items()}
os.write(1, b"ready\n")
for line in iter(sys.stdin.readline, ""):
    first = int(line)
    pid = os.fork()
    if pid == 0:  # the worker: save versions first, first + 1, ... until killed
        v = first
        while True:
            with torch.no_grad():
                for k, t in eng.learner.state_dict().items():
                    t.copy_(base[k] + v * 1e-4)
            eng.source_info = {"version": v}
            eng.save_sync(out / "ck")
            eng.save_sync(out / "ck.zip")
            os.write(1, f"saved {v}\n".encode())
            v += 1
    os.write(1, f"pid {pid}\n".encode())
    os.waitpid(pid, 0)
    os.write(1, f"dead {pid}\n".encode())
"""


class Lines:
    """Line reader over a pipe with a timeout (a hung child fails the test, not the run)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.buf = proc, b""

    def next(self, timeout: float = 60.0) -> str:
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no line from the save driver in {timeout} s")
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError(f"the save driver ended: {self.proc.stderr.read().decode()[-2000:]}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def _version_of(path: Path, base: dict[str, torch.Tensor]) -> int:
    """Load the checkpoint completely and check that every tensor belongs to its version."""
    eng = OneShotMetaLearningEngine.from_checkpoint(path, device="cpu")
    v = eng.source_info["version"]
    state = eng.learner.state_dict()
    assert state.keys() == base.keys()
    for k, t in base.items():
        assert torch.equal(state[k], t + v * 1e-4), f"{path.name}: {k} is not version {v}'s"
    assert torch.isfinite(eng.predict_sync(X)).all()
    return v


@pytest.mark.slow
def test_checkpoint_saves_killed_at_random_moments_never_leave_a_bad_checkpoint(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    lines = Lines(proc)
    rng = random.Random(2024)
    leftovers = 0
    try:
        assert lines.next(120) == "ready"
        base_engine = OneShotMetaLearningEngine.from_checkpoint(tmp_path / "base", device="cpu")
        base = {k: v.clone() for k, v in base_engine.learner.state_dict().items()}
        for round_ in range(5):
            first = 1000 * (round_ + 1)  # versions are unique across rounds
            proc.stdin.write(f"{first}\n".encode())
            proc.stdin.flush()
            pid = int(lines.next().split()[1])
            last = None
            while last is None:  # one complete save in this round, then kill at a random moment
                line = lines.next()
                last = int(line.split()[1]) if line.startswith("saved") else None
            time.sleep(rng.uniform(0.0, 0.3))
            os.kill(pid, signal.SIGKILL)
            while (line := lines.next()) != f"dead {pid}":
                last = int(line.split()[1])
            names = {p.name for p in tmp_path.iterdir()}
            # temporary files may be left, but they are hidden and never taken for the checkpoint
            assert {n for n in names if not n.startswith(".")} <= {"ck", "ck.zip", "base"}
            leftovers += len([n for n in names if n.startswith(".")])
            v_dir = _version_of(tmp_path / "ck", base)
            v_zip = _version_of(tmp_path / "ck.zip", base)
            # each holds the last completed save, or the one the kill interrupted (if it finished)
            assert last <= v_zip <= v_dir <= last + 1, (last, v_dir, v_zip)
    finally:
        proc.kill()
        proc.wait(30)
    # after the kills, a save over the leftovers works and tidies the parked copy away
    base_engine.source_info = {"version": 0}
    base_engine.save_sync(tmp_path / "ck")
    base_engine.save_sync(tmp_path / "ck.zip")
    assert _version_of(tmp_path / "ck", base) == 0 and _version_of(tmp_path / "ck.zip", base) == 0
    assert not previous_copy(tmp_path / "ck").exists()
    print(f"{leftovers} temporary entries were left by the 5 kills")


def test_save_killed_between_its_two_renames_still_loads_the_previous_checkpoint(tmp_path):
    # The one moment a folder checkpoint is not at its path: the old copy is parked at
    # .NAME.old and the new one not yet renamed in. The loader finds the parked copy.
    eng = create_one_shot_meta_learning_engine(**{**FAST, "num_meta_iterations": 2})
    eng.meta_train_sync(SinusoidTaskSource())
    path = eng.save_sync(tmp_path / "ck")
    expected = eng.predict_sync(X)
    os.replace(path, previous_copy(path))  # what a kill right after the first rename leaves
    (tmp_path / ".ck.tmpdir").mkdir()  # and a half-written new copy
    (tmp_path / ".ck.tmpdir" / "model.safetensors").write_bytes(b"\x00" * 10)
    loaded = OneShotMetaLearningEngine.from_checkpoint(path, device="cpu")
    assert torch.equal(loaded.predict_sync(X), expected) and loaded.history.iteration == [0, 1]
    # the next save puts a checkpoint at the path and removes the parked copy
    eng.save_sync(path)
    assert path.is_dir() and not previous_copy(path).exists()
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        OneShotMetaLearningEngine.from_checkpoint(tmp_path / "other", device="cpu")


# ---------------------------------------------------------------------------- (c) resume
def test_resume_through_the_engine_api_continues_the_curve(tmp_path):
    cfg = {**FAST, "num_meta_iterations": 4}
    eng = create_one_shot_meta_learning_engine(**cfg)
    first = eng.meta_train_sync(SinusoidTaskSource())
    path = eng.save_sync(tmp_path / "ck")
    resumed = OneShotMetaLearningEngine.from_checkpoint(path, device="cpu")
    assert all(
        torch.equal(a, b) for a, b in zip(resumed.learner.state_dict().values(), eng.learner.state_dict().values())
    )
    second = resumed.meta_train_sync(SinusoidTaskSource())
    assert second["iteration"] == list(range(8))
    assert (
        second["train_loss"][:4] == first["train_loss"]
        and second["val_iteration"][: len(first["val_iteration"])] == (first["val_iteration"])
    )
    assert second["val_iteration"][-1] == 7 and second["elapsed"][4] >= first["elapsed"][-1]
    # the resumed run trained: its weights moved away from the checkpoint's
    assert not torch.equal(resumed.predict_sync(X), eng.predict_sync(X))
    # and its checkpoint carries the whole curve
    resumed.save_sync(path)
    assert OneShotMetaLearningEngine.from_checkpoint(path, device="cpu").history.iteration == list(range(8))


TRAIN = ["--num-meta-iterations", "3", "--meta-batch-size", "2", "--val-episodes", "2", "--hidden-dim", "8", "--quiet"]


def test_resume_through_the_cli_continues_the_curve_and_refuses_what_cannot_continue(tmp_path, capsys):
    ck, first_json = tmp_path / "ck", tmp_path / "first.json"
    assert (
        main(["train", "--source", "sinusoid", *TRAIN, "--seed", "3", "--out", str(ck), "--json", str(first_json)]) == 0
    )
    first = json.loads(first_json.read_text())["history"]
    assert first["iteration"] == [0, 1, 2]
    saved = (ck / "model.safetensors").read_bytes()

    # refused resumes: an architecture change, another kind of task; the checkpoint is untouched
    for args, words in (
        (["--source", "sinusoid", "--hidden-dim", "16"], "--hidden-dim cannot change when resuming"),
        (["--source", "sinusoid", "--algorithm", "GRADIENT_CAUSAL"], "--algorithm cannot change when resuming"),
        (["--source", "scm", "--num-variables", "4"], "--resume: the checkpoint's model takes regression tasks"),
    ):
        assert main(["train", *args, "--resume", str(ck), "--quiet", "--out", str(ck)]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
        assert (ck / "model.safetensors").read_bytes() == saved

    second_json = tmp_path / "second.json"
    resume = ["train", "--source", "sinusoid", "--resume", str(ck), "--more-iterations", "2", "--quiet"]
    assert main([*resume, "--out", str(tmp_path / "ck2"), "--json", str(second_json)]) == 0
    second = json.loads(second_json.read_text())
    assert second["iterations"] == 5 and second["config"]["hidden_dim"] == 8 and second["config"]["seed"] == 3
    h = second["history"]
    assert h["iteration"] == [0, 1, 2, 3, 4] and h["train_loss"][:3] == first["train_loss"]
    assert h["val_iteration"][: len(first["val_iteration"])] == first["val_iteration"] and h["val_iteration"][-1] == 4
    stored = OneShotMetaLearningEngine.from_checkpoint(tmp_path / "ck2", device="cpu").history
    assert stored.iteration == h["iteration"] and stored.train_loss == h["train_loss"]
