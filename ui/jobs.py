"""Work functions for a session's worker thread (meta-training, mechanism discovery, the
causal direction experiment) and the progress they report, as the pages show it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import OneShotMetaLearningEngine
from engine.causal_direction import run_two_variable_experiment
from engine.config import OneShotMetaLearningConfig
from engine.tasks import Task, TaskSource

from .worker import Worker

if TYPE_CHECKING:
    from engine.evolve import EvolutionResult


def empty_history() -> dict[str, Any]:
    """A TrainingHistory-like dict with no iterations."""
    keys = ("iteration", "train_loss", "train_metric", "val_iteration", "val_loss", "val_metric")
    return {"metric_name": None, **{k: [] for k in keys}}


def extend_history(h: dict[str, Any], records: Sequence[dict[str, Any]], run: str | None = None) -> dict[str, Any]:
    """Append the worker's callback records (of one run) to the history ``h``, in place; returns it."""
    for r in records:
        if run is not None and r.get("run") != run:
            continue
        if "iteration" not in r:
            continue
        h["metric_name"] = r.get("metric_name", h["metric_name"])
        h["iteration"].append(r["iteration"])
        h["train_loss"].append(r.get("train_loss"))
        h["train_metric"].append(r.get("train_metric"))
        if r.get("val_loss") is not None:
            h["val_iteration"].append(r["iteration"])
            h["val_loss"].append(r["val_loss"])
            h["val_metric"].append(r.get("val_metric"))
    return h


def merge_histories(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """History ``a`` followed by ``b`` (a continued run after the one it continues)."""
    out = {k: list(a.get(k, [])) + list(b.get(k, [])) for k in b if isinstance(b.get(k), list)}
    out["metric_name"] = b.get("metric_name") or a.get("metric_name")
    return out


def format_seconds(s: float | None) -> str:
    """A duration for people: "42 s", "3 min 05 s", "1 h 02 min" ("?" when unknown)."""
    if s is None or not math.isfinite(s):
        return "?"
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def progress_of(record: dict[str, Any] | None, age: float = 0.0) -> tuple[float, str]:
    """(fraction in [0, 1], one line of text) for a progress bar.

    ``age``: seconds since the record was reported; elapsed time and ETA count on from it."""
    if not record:
        return 0.0, "starting…"
    if "done" in record and "total" in record and record.get("total"):
        frac = float(record["done"]) / float(record["total"])
    else:
        frac = float(record.get("fraction", 0.0) or 0.0)
    frac = min(1.0, max(0.0, frac))
    parts = [f"{record['done']} / {record['total']}" if "done" in record and "total" in record else f"{frac:.0%}"]
    for key in ("run", "stage"):
        if record.get(key):
            parts.append(str(record[key]))
    if "elapsed" in record:
        parts.append(f"{format_seconds(record['elapsed'] + age)} elapsed")
    if "eta" in record:
        parts.append(f"ETA {format_seconds(max(0.0, record['eta'] - age))}")
    if record.get("message"):
        parts.append(str(record["message"]))
    return frac, " · ".join(parts)


def worker_progress(worker: Worker) -> tuple[float, str]:
    """The one place a job's progress and ETA are computed for display (the page and the sidebar
    show the same numbers at the same moment)."""
    position = worker.position() if hasattr(worker, "position") else None
    if position is not None:  # waiting in the server's queue (ui.job_pool)
        eta = worker.eta_start()
        wait = f"starts in about {format_seconds(eta)}" if eta is not None else "start time not known yet"
        return 0.0, f"queued, position {position} · {wait}"
    return progress_of(worker.latest, worker.latest_age())


def training_job(
    eng: OneShotMetaLearningEngine,
    source: TaskSource,
    run_name: str,
    baseline: tuple[OneShotMetaLearningEngine, str] | None = None,
) -> Callable[[Worker], dict[str, Any]]:
    """The work function of a training run: meta-train ``eng`` on ``source``, reporting every
    iteration; then, optionally, a second engine (the plain baseline) on the same source.
    (A partial of a module-level function: it pickles, so it can run in a worker process.)"""
    return partial(_train, eng, source, run_name, baseline)


def _train(
    eng: OneShotMetaLearningEngine,
    source: TaskSource,
    run_name: str,
    baseline: tuple[OneShotMetaLearningEngine, str] | None,
    worker: Worker,
) -> dict[str, Any]:
    out = {run_name: eng.meta_train_sync(source, callback=_reporter(worker, run_name), stop=worker.should_stop)}
    if baseline is not None and not worker.should_stop():
        beng, bname = baseline
        out[bname] = beng.meta_train_sync(source, callback=_reporter(worker, bname), stop=worker.should_stop)
    return out


def _reporter(worker: Worker, run: str) -> Callable[[dict[str, Any]], None]:
    """Records of one run, tagged with its name (made inside the job: it never needs to pickle)."""

    def report(record: dict[str, Any]) -> None:
        worker.report({**record, "run": run})

    return report


def discovery_job(
    eng: OneShotMetaLearningEngine, tasks: Sequence[Task], held_out: Sequence[Task] | None = None
) -> Callable[[Worker], Any]:
    """Work function of ``eng.discover_causal_patterns_sync`` on ``tasks`` (held-out tasks
    measure the effectiveness of the discovered priors), reporting its progress."""
    return partial(_discover, eng, list(tasks), list(held_out) if held_out else None)


def _discover(eng: OneShotMetaLearningEngine, tasks: list[Task], held_out: list[Task] | None, worker: Worker) -> Any:
    return eng.discover_causal_patterns_sync(
        tasks, progress=worker.progress_callback(), stop=worker.should_stop, held_out=held_out
    )


def direction_job(episodes: int, runs: int, n_categories: int) -> Callable[[Worker], dict[str, Any]]:
    """Work function of the two-variable experiment: ``runs`` seeds, ``episodes`` interventions,
    categorical variables with ``n_categories`` values; every callback reports sigma(gamma) of
    every seed, so the page can draw the belief curves live."""
    return partial(_direction, episodes, runs, n_categories)


def _direction(episodes: int, runs: int, n_categories: int, worker: Worker) -> dict[str, Any]:
    def callback(episode: int, sigmas: Sequence[float]) -> None:
        worker.report(
            {
                "done": int(episode),
                "total": int(episodes),
                "fraction": episode / max(1, episodes),
                "sigmas": [float(v) for v in sigmas],
                "message": f"median σ(γ) {float(np.median(sigmas)):.3f}",
            }
        )

    return run_two_variable_experiment(
        seeds=runs,
        episodes=episodes,
        n=n_categories,
        callback=callback,
        callback_every=max(1, episodes // 100),
        stop=worker.should_stop,
    )


def evolve_job(
    config: OneShotMetaLearningConfig, source: TaskSource, n_trials: int, budget: int
) -> Callable[[Worker], EvolutionResult]:
    """Work function of a small config-evolution study (in memory) starting from ``config``:
    every record carries the finished-trial count, so the progress bar and the live
    optimisation history follow the study."""
    return partial(_evolve, config, source, n_trials, budget)


def _evolve(
    config: OneShotMetaLearningConfig, source: TaskSource, n_trials: int, budget: int, worker: Worker
) -> EvolutionResult:
    from engine.evolve import evolve_config  # Optuna loads when a study starts, not with every page

    done = {"trials": 0}

    def report(record: dict[str, Any]) -> None:
        if record.get("event") == "trial":
            done["trials"] = record["done"]
        trial = f"trial {record['trial'] + 1}"
        worker.report({**record, "done": done["trials"], "total": n_trials, "message": trial})

    return evolve_config(
        source,
        config,
        n_trials=n_trials,
        budget=budget,
        objective_episodes=20,
        callback=report,
        stop=worker.should_stop,
    )
