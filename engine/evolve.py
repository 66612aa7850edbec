"""Config evolution: an Optuna study over the settings that matter for the chosen learner.

Each trial meta-trains a fresh engine for a fixed budget of meta-iterations, reports its
validation curve to Optuna (weak trials are pruned from it), and is scored by its held-out
adaptation quality on the validation split; the test split is never touched here, so a
final report on it stays honest. Storage is in memory by default, or any storage Optuna
takes (``sqlite:///study.db``, another SQLAlchemy URL, ``journal:PATH``, or a bare file path
read as a SQLite file), so several processes can run trials against one study.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from .algorithms import learner_class
from .config import MetaLearningAlgorithm, OneShotMetaLearningConfig
from .tasks.base import TaskSource
from .training import should_stop

if TYPE_CHECKING:
    from .engine import OneShotMetaLearningEngine

log = logging.getLogger(__name__)
# The library prints nothing itself: Optuna's records go through Python logging, like the engine's.
optuna.logging.disable_default_handler()
optuna.logging.enable_propagation()

# Seed of the validation episodes the objective scores (apart from the training curve's, seed + 1).
OBJECTIVE_SEED_OFFSET = 7919
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class EvolutionError(ValueError):
    """Evolution cannot run with the given arguments or storage (the message names the problem)."""


class EvolutionStopped(Exception):
    """Raised inside a trial when the caller's stop signal is set."""


# ---------------------------------------------------------------------------------------------
# search space
# ---------------------------------------------------------------------------------------------
def search_space(algorithm: MetaLearningAlgorithm | str) -> dict[str, BaseDistribution]:
    """The config fields evolved for ``algorithm``, each with its Optuna distribution.

    Every range lies inside ``OneShotMetaLearningConfig``'s. hidden_dim moves in steps of 8 and
    num_mechanisms is 1, 2, 4 or 8, so the mechanisms always split the hidden layer evenly.
    Meta-SGD takes at most num_inner_steps steps when adapting (its learned rates are for that
    many), so adaptation_steps is not searched for it; the embedding learners take gate steps
    only, so their step ranges are short."""
    algorithm = OneShotMetaLearningConfig(algorithm=algorithm).algorithm
    space: dict[str, BaseDistribution] = {
        "outer_lr": FloatDistribution(1e-4, 3e-2, log=True),
        "causal_weight": FloatDistribution(0.0, 2.0),
        "num_mechanisms": CategoricalDistribution([1, 2, 4, 8]),
        "hidden_dim": IntDistribution(16, 128, step=8),
    }
    if learner_class(algorithm).embedding_only:
        space["inner_lr"] = FloatDistribution(1e-3, 1.0, log=True)
        space["num_inner_steps"] = IntDistribution(0, 5)
        space["adaptation_steps"] = IntDistribution(0, 10)
        return space
    space["inner_lr"] = FloatDistribution(1e-3, 0.5, log=True)
    space["num_inner_steps"] = IntDistribution(1, 5)
    if algorithm != MetaLearningAlgorithm.GRADIENT_CAUSAL:
        space["adaptation_steps"] = IntDistribution(1, 20)
    return space


def _snap(value: Any, dist: BaseDistribution) -> Any:
    """The value of ``dist`` nearest to ``value`` (a config's value may lie outside the space)."""
    if isinstance(dist, CategoricalDistribution):
        return min(dist.choices, key=lambda c: abs(float(c) - float(value)))
    low, high = dist.low, dist.high  # type: ignore[attr-defined]
    v = min(max(value, low), high)
    if isinstance(dist, IntDistribution):
        return int(low + round((v - low) / dist.step) * dist.step)
    return float(v)


def config_params(config: OneShotMetaLearningConfig, space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """The config's values of the searched fields, each snapped into its distribution."""
    return {name: _snap(getattr(config, name), dist) for name, dist in space.items()}


def trial_config(
    base: OneShotMetaLearningConfig, params: Mapping[str, Any], budget: int | None = None
) -> OneShotMetaLearningConfig:
    """``base`` with the searched ``params``; with ``budget``, the per-trial training length
    (num_meta_iterations) and about five validation points along it."""
    changes: dict[str, Any] = dict(params)
    if budget is not None:
        changes.update(num_meta_iterations=budget, eval_interval=max(1, budget // 5))
    return base.replace(**changes)


# ---------------------------------------------------------------------------------------------
# storage and study
# ---------------------------------------------------------------------------------------------
def redact(url: str | None) -> str:
    """A storage URL without its password (for reports and messages)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url) if url else "in memory"


def open_storage(storage: str | None) -> optuna.storages.BaseStorage | None:
    """None (in memory), ``journal:PATH`` (a journal file), a URL Optuna's RDB storage takes,
    or a bare file path (a SQLite file). A storage that cannot be opened is an EvolutionError."""
    if storage is None or not str(storage).strip():
        return None
    text = str(storage).strip()
    try:
        if text.startswith("journal:"):
            path = text.removeprefix("journal:").removeprefix("//")
            if not path:
                raise ValueError("journal: needs a file path, e.g. journal:study.log")
            backend = optuna.storages.journal.JournalFileBackend(path)
            return optuna.storages.JournalStorage(backend)
        url = text if "://" in text else f"sqlite:///{text}"
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy and drivers raise many kinds; say which storage
        raise EvolutionError(f"storage {redact(text)!r} cannot be opened: {type(exc).__name__}: {exc}") from None


def open_study(
    storage: str | None, study_name: str, direction: str, seed: int | None, n_trials: int, warmup: int
) -> optuna.Study:
    """Create the study, or join it when it exists in the storage (another worker made it)."""
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, n_trials // 3)))
    # Early validation points are noisy: prune from the second half of a trial's curve on.
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=warmup, n_min_trials=2)
    study = optuna.create_study(
        storage=open_storage(storage),
        sampler=sampler,
        pruner=pruner,
        study_name=study_name,
        direction=direction,
        load_if_exists=True,
    )
    if study.direction.name.lower() != direction:
        raise EvolutionError(
            f"study {study_name!r} in {redact(storage)} was made to {study.direction.name.lower()} its objective, "
            f"this one would {direction} it (another metric): use another study name"
        )
    return study


# ---------------------------------------------------------------------------------------------
# seeding from the current config and past results
# ---------------------------------------------------------------------------------------------
def _history_entry(
    entry: Any, algorithm: MetaLearningAlgorithm, metric: str
) -> tuple[OneShotMetaLearningConfig, float] | str:
    """(config, value) of a past result that carries a config and a metric, else why not."""
    if not isinstance(entry, Mapping):
        return f"not a mapping ({type(entry).__name__})"
    raw = entry.get("config")
    if raw is None:
        return "carries no config"
    try:
        cfg = raw if isinstance(raw, OneShotMetaLearningConfig) else OneShotMetaLearningConfig.from_dict(dict(raw))
    except (ValueError, TypeError) as exc:
        return f"its config is not valid: {exc}"
    if cfg.algorithm != algorithm:
        return f"another learner ({cfg.algorithm.name})"
    quality = entry.get("adaptation_quality")
    value = entry.get("value", entry.get(metric, quality.get(metric) if isinstance(quality, Mapping) else None))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"no finite {metric} or value"
    return cfg, float(value)


def seed_study(
    study: optuna.Study,
    current: OneShotMetaLearningConfig,
    history: Sequence[Any],
    space: Mapping[str, BaseDistribution],
    metric: str,
) -> dict[str, Any]:
    """Enqueue the current config (its trial runs first) and add every past result that
    carries a config and a value of ``metric`` as a finished trial (TPE learns from it)."""
    study.enqueue_trial(config_params(current, space), user_attrs={"origin": "current config"}, skip_if_exists=True)
    known = {(tuple(sorted(t.params.items())), t.value) for t in study.get_trials(deepcopy=False)}
    added, skipped = 0, []
    for i, entry in enumerate(history or ()):
        parsed = _history_entry(entry, current.algorithm, metric)
        if isinstance(parsed, str):
            skipped.append(f"performance_history[{i}]: {parsed}")
            continue
        cfg, value = parsed
        params = config_params(cfg, space)
        if (tuple(sorted(params.items())), value) in known:
            continue  # another worker (or an earlier run) added it already
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=dict(space), value=value, user_attrs={"origin": "performance_history"}
            )
        )
        known.add((tuple(sorted(params.items())), value))
        added += 1
    return {"enqueued_current": True, "warm_started": added, "skipped": skipped}


# ---------------------------------------------------------------------------------------------
# the objective
# ---------------------------------------------------------------------------------------------
@dataclass
class _Objective:
    """One trial: meta-train a fresh engine for ``budget`` iterations, report the validation
    curve (pruning from it), then score ``episodes`` validation episodes."""

    source: TaskSource
    base: OneShotMetaLearningConfig
    space: Mapping[str, BaseDistribution]
    budget: int
    episodes: int
    callback: Callable[[dict[str, Any]], None] | None = None
    stop: Any = None

    def __call__(self, trial: optuna.Trial) -> float:
        from .engine import OneShotMetaLearningEngine

        params = {name: _suggest(trial, name, dist) for name, dist in self.space.items()}
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # who ran it, in a shared study
        eng = OneShotMetaLearningEngine(trial_config(self.base, params, self.budget))
        pruned: list[int] = []

        def on_iteration(record: dict[str, Any]) -> None:
            value = record.get("val_metric")
            if value is None:
                return
            step = int(record["iteration"])
            if math.isfinite(value):
                trial.report(float(value), step)
            self._emit({"event": "intermediate", "trial": trial.number, "step": step, "value": float(value)})
            if not math.isfinite(value) or trial.should_prune():
                pruned.append(step)

        history = eng.meta_train_sync(
            self.source, callback=on_iteration, stop=lambda: bool(pruned) or should_stop(self.stop)
        )
        if should_stop(self.stop) and not pruned:
            raise EvolutionStopped()
        if pruned or history["message"]:
            trial.set_user_attr("note", f"pruned at iteration {pruned[0]}" if pruned else history["message"])
            raise optuna.TrialPruned()
        seed = self.base.seed + OBJECTIVE_SEED_OFFSET
        result = eng.evaluate_sync(self.source, "val", episodes=self.episodes, seed=seed)
        metric = eng.learner.metric_name()
        trial.set_user_attr(f"{metric}_ci95", result[f"{metric}_ci95"])
        return float(result[metric])

    def _emit(self, record: dict[str, Any]) -> None:
        if self.callback is not None:
            self.callback(record)


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


# ---------------------------------------------------------------------------------------------
# the study, end to end
# ---------------------------------------------------------------------------------------------
@dataclass
class EvolutionResult:
    """The evolved config, its validation score, and the study's trials."""

    config: OneShotMetaLearningConfig
    value: float
    metric: str
    direction: str
    best_trial: int
    study_name: str
    storage: str
    seeding: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    study: optuna.Study | None = field(default=None, repr=False)

    def counts(self) -> dict[str, int]:
        states = [t["state"] for t in self.trials]
        return {s: states.count(s) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "value": self.value,
            "metric": self.metric,
            "direction": self.direction,
            "best_trial": self.best_trial,
            "study_name": self.study_name,
            "storage": self.storage,
            "seeding": self.seeding,
            "counts": self.counts(),
            "trials": self.trials,
        }


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """JSON-able rows of the study's trials: number, state, value, params, intermediate values."""
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": dict(t.params),
            "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
            "origin": t.user_attrs.get("origin", "sampled"),
            "note": t.user_attrs.get("note"),
            "worker": t.user_attrs.get("worker"),
        }
        for t in study.get_trials(deepcopy=False)
    ]


def check_arguments(n_trials: Any, timeout: Any, budget: Any, episodes: Any) -> None:
    for name, value, low in (("n_trials", n_trials, 1), ("budget", budget, 1), ("objective_episodes", episodes, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise EvolutionError(f"{name} must be an integer >= {low}; got {value!r}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0
    ):
        raise EvolutionError(f"timeout must be a positive number of seconds or None; got {timeout!r}")


def evolve_config(
    source: TaskSource,
    current_config: OneShotMetaLearningConfig,
    performance_history: Sequence[Any] = (),
    n_trials: int = 20,
    timeout: float | None = None,
    budget: int = 100,
    objective_episodes: int = 50,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    stop: Any = None,
) -> EvolutionResult:
    """Evolve ``current_config`` on ``source`` with an Optuna study; returns the best config.

    ``n_trials`` is the study's total (trials other workers finished in the same storage
    count); ``budget`` meta-iterations per trial; ``callback(record)`` gets intermediate
    values and one record per finished trial; ``stop`` (an Event or a callable) ends the
    study early, keeping what has finished."""
    check_arguments(n_trials, timeout, budget, objective_episodes)
    if not isinstance(current_config, OneShotMetaLearningConfig):
        raise EvolutionError(f"current_config must be a OneShotMetaLearningConfig; got {type(current_config).__name__}")
    if learner_class(current_config.algorithm).embedding_only and source.task_type != "classification":
        raise EvolutionError(f"{current_config.algorithm.name} needs classification tasks; {source.name} is regression")
    metric = "accuracy" if source.task_type == "classification" else "mse"
    direction = "maximize" if metric == "accuracy" else "minimize"
    space = search_space(current_config.algorithm)
    name = study_name or f"evolve-{source.name}-{current_config.algorithm.name.lower()}"
    study = open_study(storage, name, direction, current_config.seed if seed is None else seed, n_trials, budget // 2)
    seeding = seed_study(study, current_config, performance_history, space, metric)
    objective = _Objective(source, current_config, space, budget, objective_episodes, callback, stop)
    _optimize(study, objective, n_trials, timeout, callback)
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        raise EvolutionError(
            f"no trial of study {name!r} finished (all pruned, failed or stopped): "
            "give more trials, a longer timeout or a larger budget"
        )
    best = study.best_trial
    log.info("evolution of %s: best %s %.4g (trial %d)", name, metric, best.value, best.number)
    return EvolutionResult(
        config=trial_config(current_config, {k: v for k, v in best.params.items() if k in space}),
        value=float(best.value),
        metric=metric,
        direction=direction,
        best_trial=best.number,
        study_name=name,
        storage=redact(storage),
        seeding=seeding,
        trials=trial_rows(study),
        study=study,
    )


def run_count(study: optuna.Study, running: bool) -> int:
    """Trials this study ran (any worker), finished or, with ``running``, in progress too;
    trials added from performance_history do not count."""
    states = (*FINISHED, TrialState.RUNNING) if running else FINISHED
    return sum(t.user_attrs.get("origin") != "performance_history" for t in study.get_trials(False, states=states))


def _optimize(
    study: optuna.Study,
    objective: _Objective,
    n_trials: int,
    timeout: float | None,
    callback: Callable[[dict[str, Any]], None] | None,
) -> None:
    """Run trials until the study holds ``n_trials`` (counting other workers'), or timeout."""

    def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if callback is None:
            return
        done = run_count(study, running=False)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        callback(
            {
                "event": "trial",
                "trial": trial.number,
                "state": trial.state.name,
                "value": trial.value,
                "params": dict(trial.params),
                "best_value": study.best_value if complete else None,
                "done": min(done, n_trials),
                "total": n_trials,
            }
        )

    def limit(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if run_count(study, running=True) >= n_trials:
            study.stop()

    remaining = n_trials - run_count(study, running=False)
    if remaining <= 0:
        return
    try:
        study.optimize(objective, n_trials=remaining, timeout=timeout, callbacks=[on_trial, limit])
    except EvolutionStopped:
        log.info("evolution of %s stopped by request", study.study_name)


def engine_evolve(
    engine: OneShotMetaLearningEngine,
    current_config: OneShotMetaLearningConfig | None,
    source: TaskSource | None,
    **kwargs: Any,
) -> EvolutionResult:
    """The engine's side: its config and its last training source unless others are given."""
    source = source if source is not None else engine.task_source
    if source is None:
        raise EvolutionError("no task source to evolve on: pass source_tasks=... or meta-train the engine first")
    return evolve_config(source, current_config or engine.config, **kwargs)
