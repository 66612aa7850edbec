"""OneShotMetaLearningEngine: the library's front door (docs/DESIGN.md section 4).

Methods that do work are coroutines under the original names (``await engine.meta_train(...)``)
running off the event loop; each has a synchronous twin with the suffix ``_sync``. The engine
builds, trains, adapts, predicts and checkpoints; its causal state (mechanism records, their
per-task effects, the discovery report, the priors) is a ``MechanismStore`` it holds and
delegates to, and discovery itself is ``engine.discovery``.

>>> from engine import create_one_shot_meta_learning_engine
>>> from engine.tasks import SinusoidTaskSource
>>> eng = create_one_shot_meta_learning_engine(num_meta_iterations=2, meta_batch_size=2, inner_lr=0.01)
>>> src = SinusoidTaskSource()
>>> history = eng.meta_train_sync(src)
>>> result = eng.one_shot_adapt_sync(src.tasks("test", 1, seed=3)[0])
>>> sorted(result["adaptation_quality"])
['loss', 'mse', 'num_query']
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .algorithms import AdaptedState, CausalMetaLearner, learner_class, make_learner
from .asynctwin import async_twin
from .causal.explain import explain_adaptation
from .causal.probe import Probe, feature_units
from .causal.store import MechanismStore
from .checkpoint import (
    CheckpointError,
    check_tensors,
    descriptive_fields,
    history_from_meta,
    load_checkpoint,
    optimizer_state,
    parse_checkpoint_files,
    read_checkpoint_zip,
    restore_optimizer,
    save_checkpoint,
)
from .config import TEST_TIME_FIELDS, OneShotMetaLearningConfig
from .discovery import discover_mechanisms
from .fixed_evaluation import score_fixed_episodes
from .interventions import (
    LEVELS,
    InterventionMask,
    create_intervention_mask,
    describe_intervention,
    hierarchical_adapt,
    set_features,
)
from .mechanisms import CausalMechanism, MechanismFormatError, parse_mechanisms, validate_priors
from .model import CausalMetaModel
from .tasks.base import Episode, Task, TaskError, TaskSource
from .tasks.content_hash import content_sha256
from .tasks.fixed_episodes import FixedEpisode, load_fixed_episodes
from .tasks.image_archive import ImageInput
from .tasks.support import SupportData, episode_for
from .tasks.task_list import as_task_source
from .training import TrainingHistory, evaluate, meta_train

if TYPE_CHECKING:
    import networkx as nx

    from .evolve import EvolutionResult

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but CUDA is not available on this machine")
    return torch.device(name)


def wait_for_device(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so a timer read after it
    measures the work itself, not just its launch. No-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# What a shared view (``OneShotMetaLearningEngine.shared_view``) shares with its original until it writes.
_SHARED_PARTS = ("config", "model", "learner", "optimizer", "history", "store", "evolution", "source_info")


def _writes(method: Callable[..., Any]) -> Callable[..., Any]:
    """Marks a method that changes the model, config, history or mechanisms: on a shared view it first
    takes the view's own copy of them (copy on write), so the shared original never changes."""

    @functools.wraps(method)
    def own_first(self: OneShotMetaLearningEngine, *args: Any, **kwargs: Any) -> Any:
        self._own()
        return method(self, *args, **kwargs)

    return own_first


class OneShotMetaLearningEngine:
    """Holds one meta-learner, its training history, its last adaptation and its mechanisms."""

    def __init__(self, config: OneShotMetaLearningConfig | None = None) -> None:
        self.config = config or OneShotMetaLearningConfig()
        self.device = resolve_device(self.config.device)
        self.model: CausalMetaModel | None = None
        self.learner: CausalMetaLearner | None = None
        self.task_type: str | None = None
        self.output_dim: int | None = None
        self.feature_names: list[str] | None = None
        self.source_info: dict[str, Any] = {}
        self.task_source: TaskSource | None = None  # the last one meta-trained on (evolution's default)
        self.evolution: EvolutionResult | None = None
        self.history: TrainingHistory | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.checkpoint_name: str | None = None
        self.store = MechanismStore()
        self._last_state: AdaptedState | None = None
        self._traces: dict[str, list[float]] = {}
        self._shared = False  # a shared view until its first write (shared_view)

    def shared_view(self) -> OneShotMetaLearningEngine:
        """An engine for one user of a model that many use at once (a server's ready model): it shares
        this engine's weights, config, history and mechanisms read-only and keeps its own adaptation
        state, so adapting, predicting and measuring effects copy no tensor, and views may adapt at
        once in different threads (one thread at a time per view). Its first call
        that would change what it shares (training, discovery, a config or priors change, loading)
        gives it its own deep copy first; this engine never changes through a view."""
        view = copy.copy(self)
        view._last_state, view._traces, view._shared = None, {}, True
        if self.learner is not None:
            # Its own modules around the same tensors: torch.func.functional_call puts a call's tensors into
            # the module while it runs, so two views adapting at once in two threads need two modules.
            tensors = {id(t): t for t in (*self.learner.parameters(), *self.learner.buffers())}
            view.model, view.learner = copy.deepcopy((self.model, self.learner), memo=tensors)
        return view

    @property
    def is_shared_view(self) -> bool:
        """Whether this is a view that still shares its model with others (``shared_view``)."""
        return self._shared

    def _own(self) -> None:
        if self._shared:  # one deepcopy of all parts: the optimizer keeps pointing at this learner's tensors
            self.__dict__.update(copy.deepcopy({name: getattr(self, name) for name in _SHARED_PARTS}))
            self._shared = False

    # ---- state ----------------------------------------------------------------------------
    @property
    def is_initialized(self) -> bool:
        return self.learner is not None

    @property
    def is_trained(self) -> bool:
        return self.history is not None and len(self.history.iteration) > 0

    @property
    def discovered_mechanisms(self) -> list[CausalMechanism]:
        """The kept mechanism records (copies): ``mech.mechanism_type``, ``mech.causal_strength``,
        ``mech.effectiveness`` (NaN until measured), ...; ``mech.to_dict()`` for tables and JSON."""
        return self.store.copies()

    @property
    def discovery_report(self) -> dict[str, Any] | None:
        """The last discovery run's report (per-task findings, invariance tests, timings)."""
        return self.store.report

    @property
    def causal_priors(self) -> dict[str, Any] | None:
        """The measured per-mechanism rates and their held-out effectiveness, if any."""
        return self.store.priors

    def status(self) -> dict[str, Any]:
        """Short summary for a status panel."""
        return {
            "algorithm": self.config.algorithm.name,
            "task_source": self.source_info.get("name"),
            "initialized": self.is_initialized,
            "trained_iterations": len(self.history.iteration) if self.history else 0,
            "checkpoint": self.checkpoint_name,
            "device": str(self.device),
        }

    def _require(self) -> CausalMetaLearner:
        if self.learner is None:
            raise RuntimeError("the engine is not initialised: call initialize(...) or meta_train(source) first")
        return self.learner

    # ---- building ---------------------------------------------------------------------------
    @_writes
    def initialize_sync(
        self,
        input_dim: int | Sequence[int],
        output_dim: int,
        task_type: str | None = None,
        feature_names: list[str] | None = None,
        input_gates: bool | None = None,
    ) -> None:
        """Build a fresh model and learner. ``input_dim``: feature count or (C, H, W)."""
        if task_type is None:
            task_type = learner_class(self.config.algorithm).default_task_type
        shape = (input_dim,) if isinstance(input_dim, int) else tuple(input_dim)
        if input_gates is None:
            # Sparse input gates make sense for named feature vectors with more than one column.
            input_gates = feature_names is not None and len(shape) == 1 and shape[0] > 1
        # The engine's own generator, never the process-wide seed: concurrent sessions building
        # models with the same seed get the same weights.
        generator = torch.Generator().manual_seed(self.config.seed)
        model, learner = _build_learner(self.config, input_dim, output_dim, task_type, input_gates, generator)
        self.model, self.learner = model.to(self.device), learner.to(self.device)
        self.task_type, self.feature_names = task_type, feature_names
        self.output_dim = output_dim
        self.history, self.optimizer, self._last_state = None, None, None
        self._traces = {}
        self._warm_up()

    def _warm_up(self) -> None:
        # torch.func's first transform costs about a second; pay it here, not on the first click.
        learner = self._require()
        x = torch.zeros((2, *self.model.input_shape), device=self.device)
        if self.task_type == "classification":
            y = torch.tensor([0, 1], device=self.device)
        else:
            y = torch.zeros(2, self.output_dim, device=self.device)
        params = {n: p.detach() for n, p in learner.meta_params().items()}
        with torch.no_grad():
            learner(learner.adapt(x, y, 1, params=params), x)

    def initialize_for_source(self, source: TaskSource) -> None:
        self.initialize_sync(
            source.input_shape if len(source.input_shape) > 1 else source.input_shape[0],
            source.output_dim,
            source.task_type,
            feature_names=getattr(source, "feature_names", None),
        )
        self.source_info = source.describe()

    # ---- meta-training ------------------------------------------------------------------------
    @_writes
    def meta_train_sync(
        self,
        source_tasks: TaskSource | Sequence[Task],
        callback: Callable[[dict[str, Any]], None] | None = None,
        stop: Any = None,
    ) -> dict[str, Any]:
        """Meta-train on a task source (or a list of tasks). Continues an existing history.

        ``callback(record)`` runs after every iteration; ``stop`` is a threading.Event or a
        callable returning True to stop, checked between the tasks and inner steps of an iteration too
        (an interrupted iteration's step is dropped). Under an initialised process
        group every process calls this alike and they train data-parallel (``engine.training.meta_train``).
        """
        source = self._as_source(source_tasks)
        self.task_source = source
        if self.learner is None or self._incompatible(source):
            self.initialize_for_source(source)
        else:
            self._adopt_names(source)
        learner = self._require()
        # The history grows in place, so a callback may save a checkpoint in the middle of a run.
        self.history = self.history or TrainingHistory(learner.metric_name())
        if self.optimizer is None:
            self.optimizer = torch.optim.Adam(learner.parameters(), lr=self.config.outer_lr)
        self.history = meta_train(
            learner,
            source,
            self.config,
            callback=callback,
            stop=stop,
            history=self.history,
            optimizer=self.optimizer,
            device=self.device,
        )
        return self.history.to_dict()

    def _adopt_names(self, source: TaskSource) -> None:
        """After ``initialize(input_dim, output_dim)``: take the feature and target names of the
        tasks' source, so discovery and ``enhance_mechanisms_with_graph`` use them."""
        if not self.source_info:
            self.source_info = source.describe()
        names = getattr(source, "feature_names", None)
        if self.feature_names is None and names is not None and len(names) == self.model.input_shape[0]:
            self.feature_names = list(names)

    def _as_source(self, source_tasks: TaskSource | Sequence[Task]) -> TaskSource:
        return as_task_source(source_tasks, self.model.input_shape if self.model is not None else None)

    def _incompatible(self, source: TaskSource) -> bool:
        assert self.model is not None
        return (
            tuple(self.model.input_shape) != tuple(source.input_shape)
            or self.output_dim != source.output_dim
            or self.task_type != source.task_type
        )

    def evaluate_sync(
        self,
        source: TaskSource,
        split: str = "test",
        episodes: int = 100,
        steps: int | None = None,
        seed: int = 1234,
    ) -> dict[str, Any]:
        """Mean held-out loss and metric (with 95% interval) over ``episodes`` fresh tasks."""
        learner = self._require()
        eps = [
            e.to(self.device)
            for e in source.episodes(
                split,
                episodes,
                self.config.support_shots,
                self.config.query_shots,
                seed,
            )
        ]
        return evaluate(learner, eps, steps)

    def evaluate_fixed_sync(
        self,
        data: ImageInput | Sequence[FixedEpisode],
        swap_roles: bool = False,
        steps: int | None = None,
    ) -> dict[str, Any]:
        """Score fixed episodes (``engine.tasks.fixed_episodes``: a zip or folder, its bytes, or
        loaded episodes): per-episode accuracy, confusion and predictions, and the mean over
        episodes with its 95% interval. ``data`` in the result names what was scored."""
        learner = self._require()
        record: dict[str, Any] = {"path": None, "sha256": None}
        if isinstance(data, (list, tuple)):
            episodes = list(data)
        else:
            shape = learner.model.input_shape
            if len(shape) != 3:
                raise TaskError(
                    f"fixed episodes are images; this checkpoint's model takes inputs of shape {list(shape)}"
                )
            if hasattr(data, "read"):
                data = data.read()
            record = {
                "path": "<uploaded zip>" if isinstance(data, (bytes, bytearray)) else str(data),
                "sha256": content_sha256(data) if isinstance(data, (bytes, bytearray)) or Path(data).exists() else None,
            }
            episodes = load_fixed_episodes(data, int(shape[-1]), swap_roles)
        result = score_fixed_episodes(learner, episodes, steps, self.device)
        record.update(
            kind="fixed_episodes",
            swap_roles=bool(swap_roles),
            episodes=len(episodes),
            classes=sum(len(fe.class_names) for fe in episodes),
            support_images=sum(len(fe.support_files) for fe in episodes),
            queries=result["queries"],
        )
        steps = learner.default_steps() if steps is None else steps
        return {"data": record, "settings": {"steps": steps, **self.test_time()}, **result}

    def test_time(self) -> dict[str, Any]:
        """The settings that change only how a trained model predicts (docs/DESIGN.md section 3)."""
        return {name: getattr(self.config, name) for name in TEST_TIME_FIELDS}

    def set_test_time(
        self, shifts: int | None = None, views: str | None = None, transductive_steps: int | None = None
    ) -> dict[str, Any]:
        """Change the test-time views and transduction (None keeps a setting) in the one config the
        engine and its learner both read. A bad value is a ConfigError and changes nothing.
        Returns the settings now in force."""
        changes = {
            name: value
            for name, value in zip(TEST_TIME_FIELDS, (shifts, views, transductive_steps), strict=True)
            if value is not None
        }
        self.set_config(**changes)
        return self.test_time()

    @_writes
    def set_config(self, **changes: Any) -> OneShotMetaLearningConfig:
        """Replace config fields (validated) for the engine and its learner alike."""
        config = self.config.replace(**changes)
        self.config = config
        if self.learner is not None:
            self.learner.config = config
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = config.outer_lr
        return config

    # ---- config evolution ---------------------------------------------------------------------
    @_writes
    def evolve_meta_config_sync(
        self,
        current_config: OneShotMetaLearningConfig | None = None,
        performance_history: Sequence[Any] = (),
        n_trials: int = 20,
        timeout: float | None = None,
        source_tasks: TaskSource | Sequence[Task] | None = None,
        **options: Any,
    ) -> OneShotMetaLearningConfig:
        """An Optuna study over the learner's settings (``engine/evolve.py``); returns the best config.

        Each trial meta-trains a fresh model for ``budget`` iterations (default 100) on
        ``source_tasks`` (default: the source this engine last trained on) and is scored on
        validation tasks. ``performance_history``: past results; the current config is tried
        first and results that carry a ``config`` and a value warm-start the study. Options:
        budget, objective_episodes, storage (URL, ``journal:PATH`` or a SQLite file path),
        study_name, seed, callback, stop. The whole outcome is kept in ``self.evolution``."""
        from .evolve import engine_evolve  # Optuna is imported only when evolution runs

        source = None if source_tasks is None else self._as_source(source_tasks)
        self.evolution = engine_evolve(
            self,
            current_config,
            source,
            performance_history=performance_history,
            n_trials=n_trials,
            timeout=timeout,
            **options,
        )
        return self.evolution.config

    # ---- adaptation ---------------------------------------------------------------------------
    def one_shot_adapt_sync(
        self,
        target_task: Task | Episode,
        support_data: SupportData = None,
        query_data: SupportData = None,
        steps: int | None = None,
        causal_mask: Any = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Adapt to ``target_task`` from its support data and score its query set.

        ``support_data``: an Episode, or ``(x, y)``; by default one episode of the task is
        drawn (``support_shots`` per class). The query set is ``query_data``, else the
        episode's query set. Returns adaptation_time (s), adaptation_quality (loss and
        accuracy or mse on the query set), predictions, targets, trace and explanation.
        """
        self._require()
        episode = self._episode_for(target_task, support_data, query_data, seed)
        mask = None if causal_mask is None else torch.as_tensor(causal_mask, dtype=torch.float32, device=self.device)
        name = episode.task_name or getattr(target_task, "name", "task")
        return self._adapt_and_score(episode, name, steps, mask)

    def _adapt_and_score(
        self, episode: Episode, name: str, steps: int | None = None, mask: torch.Tensor | None = None
    ) -> dict[str, Any]:
        """Adapt on the episode's support set (timed), score its query set, keep the state."""
        learner = self._require()
        steps = learner.default_steps() if steps is None else steps
        params = {n: p.detach() for n, p in learner.meta_params().items()}
        with torch.no_grad():
            wait_for_device(self.device)
            t0 = time.perf_counter()
            state = learner.adapt(
                episode.support_x,
                episode.support_y,
                steps,
                params=params,
                causal_mask=mask,
                record=True,
            )
            wait_for_device(self.device)
            adaptation_time = time.perf_counter() - t0
            t1 = time.perf_counter()
            outputs = learner(state, episode.query_x, causal_mask=mask)
            wait_for_device(self.device)
            prediction_time = time.perf_counter() - t1
            loss = float(learner.query_loss(state, outputs, episode.query_y))
            metric = learner.metric(state, outputs, episode.query_y)
        self._last_state = state
        self._traces[name] = list(state.trace)
        log.info(
            "adapted to %s in %.2f ms (%d steps): query loss %.4g, %s %.4g",
            name,
            adaptation_time * 1000,
            steps,
            loss,
            learner.metric_name(),
            metric,
        )
        log.debug("adaptation trace of %s: %s", name, state.trace)
        return {
            "task": name,
            "algorithm": self.config.algorithm.name,
            "adaptation_time": adaptation_time,
            "prediction_time": prediction_time,
            "steps": steps,
            "adaptation_quality": {
                "loss": loss,
                learner.metric_name(): metric,
                "num_query": int(episode.query_x.shape[0]),
            },
            "predictions": self._decode(state, outputs).tolist(),
            "targets": episode.query_y.cpu().tolist(),
            "trace": list(state.trace),
            "explanation": self._explain(params, state),
        }

    def _episode_for(
        self,
        target: Task | Episode,
        support: SupportData,
        query: SupportData,
        seed: int | None,
    ) -> Episode:
        rng = np.random.default_rng(self.config.seed if seed is None else seed)
        kw = {"support_shots": self.config.support_shots, "query_shots": self.config.query_shots}
        return episode_for(target, support, query, task_type=str(self.task_type), rng=rng, **kw).to(self.device)

    def _decode(self, state: AdaptedState, outputs: torch.Tensor) -> torch.Tensor:
        learner = self._require()
        if self.task_type == "classification":
            return learner.predict_labels(state, outputs).cpu()
        return outputs.cpu()

    def _explain(self, before: dict[str, torch.Tensor], state: AdaptedState) -> dict[str, Any]:
        assert self.model is not None
        features = self.store.feature_explanation(state, self.feature_names)
        return explain_adaptation(self.model, before, state, features)

    def hierarchical_adapt_sync(
        self,
        target_task: Task | Episode,
        adaptation_levels: Sequence[str] = LEVELS,
        support_data: Any = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Adapt input gates, then structure gates, then all weights (learned rates); each
        level's gain is the query-loss drop it caused. Predictions use the final state."""
        learner = self._require()
        episode = self._episode_for(target_task, support_data, None, seed)
        params = {n: p.detach() for n, p in learner.meta_params().items()}
        out = hierarchical_adapt(learner, episode, adaptation_levels)
        state = out.pop("state")
        self._last_state = state
        name = episode.task_name or getattr(target_task, "name", "task")
        trace = [v for row in out["levels"] for v in row.get("trace", [])]
        self._traces[name] = trace
        with torch.no_grad():
            outputs = learner(state, episode.query_x)
        out.update(
            task=name,
            predictions=self._decode(state, outputs).tolist(),
            targets=episode.query_y.cpu().tolist(),
            trace=trace,
            explanation=self._explain(params, state),
            gains={row["level"]: row["gain"] for row in out["levels"]},
        )
        return out

    def get_adaptation_trace(self, task: Task | str) -> list[float]:
        """Support loss per step of the last adaptation to ``task`` (by name)."""
        name = task if isinstance(task, str) else task.name
        if name not in self._traces:
            raise KeyError(f"no adaptation recorded for task {name!r}")
        return list(self._traces[name])

    # ---- interventions ------------------------------------------------------------------------
    def create_intervention_mask(
        self, mechanisms: Any, intervention_strength: float | Sequence[float] = 1.0
    ) -> InterventionMask:
        """Causal mask: chosen mechanisms scaled by 1 - strength (1 = switched off). Takes
        indices, names, records or ``get_mechanism_insights()["strongest_mechanisms"]``;
        records that name no mechanism are skipped and listed in ``mask.explanation``."""
        if self.model is None:
            raise RuntimeError("the engine is not initialised: call initialize(...) or meta_train(source) first")
        names = [u.name for u in feature_units(self.model.input_shape, self.feature_names)]
        return create_intervention_mask(mechanisms, intervention_strength, self.model.num_mechanisms, names)

    def adapt_with_intervention_sync(
        self,
        task: Task | Episode,
        support_data: Any = None,
        intervention_mask: Sequence[float] | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Adapt with and without the mask on the same episode; report what changed. A mask from
        ``create_intervention_mask`` may also set features to their reference value (its
        ``features``); that is applied to the episode's inputs."""
        self._require()
        if intervention_mask is None:
            raise ValueError("give an intervention_mask (see create_intervention_mask)")
        mask = [float(v) for v in intervention_mask]
        if isinstance(intervention_mask, InterventionMask):
            mask = intervention_mask
        if self.model is not None and len(mask) != self.model.num_mechanisms:
            raise ValueError(f"the mask has {len(mask)} values for {self.model.num_mechanisms} mechanisms")
        episode = self._episode_for(task, support_data, None, seed)
        base = self.one_shot_adapt_sync(episode)
        features = getattr(mask, "features", None)
        if features:  # do(feature := reference) on the inputs, blended by each strength
            units = feature_units(self.model.input_shape, self.feature_names)
            reference = float(getattr(_source_of([task]), "background_value", 0.0))
            episode = set_features(episode, features, units, reference)
        result = self.one_shot_adapt_sync(episode, causal_mask=mask)
        return describe_intervention(base, result, mask, self.task_type == "classification")

    def mechanism_effects_sync(
        self, task: Task | Episode, support_data: SupportData = None, seed: int | None = None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """do(c_k := 0) for each mechanism k alone: the query loss with mechanism k switched off
        during adaptation and prediction, minus the loss without (docs/DESIGN.md section 3).

        Returns (the ``one_shot_adapt`` result without intervention, one row per mechanism
        with ``mechanism``, ``effect``, ``loss_off``, ``metric`` and ``metric_change``). The
        engine is left adapted to the episode without intervention."""
        learner = self._require()
        episode = self._episode_for(task, support_data, None, seed)
        base = self._adapt_and_score(episode, episode.task_name or getattr(task, "name", "task"))
        probe = Probe(learner, base["steps"])
        metric = learner.metric_name()
        rows = []
        for k in range(learner.model.num_mechanisms):
            off = probe.switch_off(episode, k)
            with torch.no_grad():
                loss = float(learner.query_loss(off.state, off.outputs, episode.query_y))
                value = learner.metric(off.state, off.outputs, episode.query_y)
            rows.append(
                {
                    "mechanism": f"mechanism {k}",
                    "effect": loss - base["adaptation_quality"]["loss"],
                    "loss_off": loss,
                    "metric": metric,
                    "metric_change": value - base["adaptation_quality"][metric],
                }
            )
        return base, rows

    # ---- prediction ---------------------------------------------------------------------------
    def predict_sync(self, x: Any, causal_mask: Any = None) -> torch.Tensor:
        """Predictions of the last adapted model (labels or values); the meta-model if none."""
        outputs, state = self._outputs(x, causal_mask)
        return self._decode(state, outputs)

    def predict_proba_sync(self, x: Any, causal_mask: Any = None) -> torch.Tensor:
        """Class probabilities of the last adapted model (classification only)."""
        if self.task_type != "classification":
            raise ValueError("probabilities exist for classification tasks only")
        outputs, state = self._outputs(x, causal_mask)
        return self._require().probabilities(state, outputs).cpu()

    def _outputs(self, x: Any, causal_mask: Any) -> tuple[torch.Tensor, AdaptedState]:
        learner = self._require()
        state = self._last_state
        if state is None:
            if learner.embedding_only:
                raise RuntimeError("prototypical and relation learners need one_shot_adapt before predict")
            state = AdaptedState({n: p.detach() for n, p in learner.meta_params().items()})
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32, device=self.device)
        mask = None if causal_mask is None else torch.as_tensor(causal_mask, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            return learner(state, x, causal_mask=mask), state

    # ---- discovery and the mechanisms (engine.discovery, engine.causal.store) -----------------
    @_writes
    def discover_causal_patterns_sync(
        self,
        tasks: Sequence[Task | Episode] | TaskSource,
        progress: Callable[[dict[str, Any]], None] | None = None,
        stop: Any = None,
        held_out: Sequence[Task | Episode] | None = None,
        n_tasks: int = 20,
        **options: Any,
    ) -> list[CausalMechanism]:
        """Find mechanisms of all five types by intervention (``engine.discovery``).

        ``tasks``: a list of tasks (or episodes), or a task source (then ``n_tasks`` of its
        validation tasks). ``held_out``: tasks that measure the priors' effectiveness; by
        default a quarter of ``tasks`` is held out. Returns the kept records and stores them. ``options``
        go to ``discover_mechanisms`` (query_points, patch_size, n_bootstrap, types, ...).
        When priors were measured effective on held-out tasks and ``enable_causal_priors``
        is on, they are applied to the learner at once."""
        learner = self._require()
        if isinstance(tasks, TaskSource):
            source = tasks
            split = "val" if source.has_tasks("val") else "train"  # all tasks in train: discover on those
            tasks = source.tasks(split, n_tasks, seed=self.config.seed + 11)
        else:
            tasks = list(tasks)
            source = _source_of(tasks)
        if not tasks:
            raise ValueError("discovery needs at least one task")
        target = _target_name(source, self.source_info) or "target"
        result = discover_mechanisms(
            learner,
            tasks,
            self.config,
            feature_names=self.feature_names,
            background_value=float(getattr(source, "background_value", 0.0)),
            target_name=str(target),
            held_out=held_out,
            progress=progress,
            stop=stop,
            device=self.device,
            **options,
        )
        self.store.take_discovery(result.mechanisms, result.report, result.priors)
        log.info(
            "discovery on %d tasks (%d held out): %d mechanisms kept of %d measured; effectiveness %s",
            result.report.get("tasks_used", 0),
            result.report.get("held_out_tasks", 0),
            len(result.mechanisms),
            result.report.get("measured", 0),
            result.report.get("effectiveness_note", "not measured"),
        )
        effectiveness = (result.priors or {}).get("effectiveness")
        if self.config.enable_causal_priors and effectiveness is not None and effectiveness > 0:
            self.apply_causal_priors()
            result.report["priors_applied"] = True
        return self.discovered_mechanisms

    def get_mechanism_insights(self, top: int = 5) -> dict[str, Any]:
        """Counts, average effectiveness (None when nothing was measured) and the strongest
        mechanisms with type, source, target, strength and confidence."""
        return self.store.insights(top)

    def mechanism_graph(self, truth: Mapping[str, Any] | None = None) -> nx.DiGraph:
        """The mechanism graph (``engine.mechanism_graph.build_mechanism_graph``)."""
        from .mechanism_graph import build_mechanism_graph  # networkx only when a graph is asked for

        k = self.model.num_mechanisms if self.model is not None else None
        return build_mechanism_graph(self.store.as_dicts(), k, truth, self.store.report)

    @_writes
    def update_mechanisms_sync(
        self, task: Task | Episode, adaptation_result: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Measure this task's effects for every feature and mechanism record (the same
        interventions as discovery) and count reuse: a record is reused by a task when its
        intervention costs that task at least ``mechanism_threshold`` strength.

        Call ``refine_mechanisms_online_sync()`` to fold the new tasks into the records. With
        no records yet (discovery kept none above ``mechanism_threshold``), the task is only
        counted; ``updated`` says in words what was updated."""
        learner = self._require()
        episode = self._episode_for(task, None, None, self.config.seed + 1000 + self.store.online_tasks)
        name = episode.task_name or getattr(task, "name", "task")
        if len(self.store):
            units = feature_units(learner.model.input_shape, self.feature_names)
            reference = float(getattr(_source_of([task]), "background_value", 0.0))
            probe = Probe(learner, learner.default_steps())
            measured = self.store.record_task(probe, episode, units, reference, self.config.mechanism_threshold)
        else:
            measured = self.store.count_task()
        updated = _update_text(len(self.store), measured, self.config.mechanism_threshold)
        log.info("update_mechanisms %s: %s", name, updated)
        return {
            "task": name,
            "measured_records": measured["measured_records"],
            "reused": measured["reused"],
            "mechanism_shift": (adaptation_result or {}).get("explanation", {}).get("mechanism_shift"),
            "tasks_seen_online": measured["tasks_seen_online"],
            "updated": updated,
        }

    @_writes
    def refine_mechanisms_online_sync(self) -> list[CausalMechanism]:
        """Fold the tasks seen by ``update_mechanisms`` into the records: effect, spread,
        strength and confidence are recomputed over the discovery tasks (their per-task
        means, kept in ``details["task_effects"]``) and the new tasks (per point). Records
        that fall below ``mechanism_threshold`` are dropped. Returns the records."""
        before = len(self.store)
        refined = self.store.refine(self.config.mechanism_threshold, self.config.seed)
        log.info(
            "refine_mechanisms_online: %d of %d records refined with new tasks, %d kept",
            refined,
            before,
            len(self.store),
        )
        return self.discovered_mechanisms

    def export_mechanisms_sync(self, path: str | os.PathLike) -> Path:
        """Write the versioned mechanisms JSON (records + measured priors)."""
        return self.store.export(path, {"algorithm": self.config.algorithm.name, "feature_names": self.feature_names})

    @_writes
    def import_mechanisms(self, mechanisms_or_path: Any) -> int:
        """Replace the mechanisms with validated ones (a path, JSON text, a document or a
        list of records). Nothing changes unless every record is valid. Returns the count."""
        return self.store.import_records(
            mechanisms_or_path, self.model.num_mechanisms if self.model is not None else None
        )

    @_writes
    def apply_causal_priors(self) -> list[float]:
        """Set the learner's per-mechanism rates from the discovered priors (or from the
        records' ``prior_rate``); all 1 when there are none. Returns the rates. They act
        only while ``config.enable_causal_priors`` is on."""
        learner = self._require()
        rates = self.store.prior_rates(learner.model.num_mechanisms)
        learner.set_mechanism_rates(torch.as_tensor(rates, dtype=torch.float32))
        return [float(r) for r in rates]

    @_writes
    def set_transfer_priors(self, relationships: Mapping[Any, float] | Sequence[Mapping[str, Any]]) -> list[float]:
        """Set per-mechanism rates by hand: ``{mechanism: rate}`` (index or "mechanism k";
        missing ones keep 1), or records carrying ``details["prior_rate"]``. Their
        effectiveness is not measured (None) until discovery measures it. Returns the rates."""
        learner = self._require()
        self.store.set_manual_priors(relationships, learner.model.num_mechanisms)
        return self.apply_causal_priors()

    @_writes
    def enhance_mechanisms_with_graph(self, graph: nx.DiGraph) -> dict[str, Any]:
        """Restrict feature -> output records to the parents of the output in a known causal
        graph over the features (nodes named like the features; the output node is
        "output" or the source's target name). Other records are kept as they are."""
        return self.store.enhance_with_graph(graph, [_target_name(None, self.source_info), "output"])

    # ---- checkpoints ----------------------------------------------------------------------------
    def save_sync(self, path: str | Path) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (+ ``mechanisms.json``) atomically."""
        learner = self._require()
        assert self.model is not None
        keep = self.config.save_mechanisms
        meta = {
            "config": self.config.to_dict(),
            "model": self.model.describe(),
            "task_type": self.task_type,
            "output_dim": self.output_dim,
            "feature_names": self.feature_names,
            "source": self.source_info,
            "history": self.history.to_dict() if self.history else None,
            # measured per-mechanism rates and their effectiveness (the rates themselves are
            # the learner's mechanism_rates buffer, saved with the weights)
            "causal_priors": self.store.priors if keep else None,
        }
        optimizer = None
        if self.optimizer is not None:  # a resumed run continues the same Adam moments
            optimizer, groups = optimizer_state(self.optimizer)
            meta["optimizer"] = {"kind": type(self.optimizer).__name__, "param_groups": groups}
        out = save_checkpoint(path, learner.state_dict(), meta, self.store.as_dicts() if keep else [], optimizer)
        self.checkpoint_name = Path(path).name
        log.info("saved checkpoint %s (%d mechanisms)", out, len(self.store) if keep else 0)
        return out

    def load_sync(self, path: str | Path) -> None:
        """Replace this engine's learner with the checkpoint at ``path`` (never unpickles)."""
        self._load_data(load_checkpoint(path), Path(path).name)

    def load_bytes_sync(self, data: bytes, name: str = "uploaded checkpoint") -> None:
        """Load a checkpoint zip given as bytes (an upload); never unpickles, never writes."""
        self._load_data(parse_checkpoint_files(read_checkpoint_zip(data, name), name), name)

    @_writes
    def _load_data(self, data: Any, name: str) -> None:
        """Check everything first, then swap it in: a refused checkpoint changes nothing."""
        meta = data.meta
        try:
            config = OneShotMetaLearningConfig.from_dict({**meta["config"], "device": self.config.device})
            model_args = dict(meta["model"])
            input_dim = model_args["input_dim"]
            output_dim = int(meta.get("output_dim") or model_args["output_dim"])
            input_gates = bool(model_args.get("input_gates", False))
            # The model config.json describes, built on the meta device (no memory), so that a
            # config claiming a 10^10-wide layer is compared with the weights, never allocated.
            with torch.device("meta"):
                _, shadow = _build_learner(config, input_dim, output_dim, meta["task_type"], input_gates)
            expected = shadow.state_dict()
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{name}: config.json does not describe a valid model ({exc})") from None
        check_tensors(data.tensors, expected, name)
        history = history_from_meta(meta.get("history"), name)
        feature_names, source_info = descriptive_fields(meta, name)
        try:
            records, _ = parse_mechanisms(list(data.mechanisms))
            priors = validate_priors(meta["causal_priors"]) if meta.get("causal_priors") else None
            store = MechanismStore(records, priors)
        except MechanismFormatError as exc:
            raise CheckpointError(f"{name}: the stored mechanisms are invalid ({exc})") from None
        fresh = OneShotMetaLearningEngine(config)
        fresh.initialize_sync(input_dim, output_dim, meta["task_type"], feature_names, input_gates)
        assert fresh.learner is not None
        fresh.learner.load_state_dict(data.tensors, strict=True)  # names, shapes and dtypes checked above
        saved_optimizer = meta.get("optimizer")
        if data.optimizer is not None and isinstance(saved_optimizer, dict) and saved_optimizer.get("kind") == "Adam":
            fresh.optimizer = torch.optim.Adam(fresh.learner.parameters(), lr=config.outer_lr)
            restore_optimizer(fresh.optimizer, data.optimizer, saved_optimizer.get("param_groups"), name)
        self.__dict__.update(fresh.__dict__)
        self.source_info = source_info
        self.history = history
        self.store = store
        self.checkpoint_name = name
        log.info("loaded checkpoint %s: %s, %d mechanisms", name, config.algorithm.name, len(store))

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> OneShotMetaLearningEngine:
        eng = cls(OneShotMetaLearningConfig(device=device))
        eng.load_sync(path)
        return eng

    # ---- coroutines (docs/DESIGN.md section 4) ----------------------------------------------------
    initialize = async_twin("initialize", "build a fresh model and learner.")
    meta_train = async_twin("meta_train", "meta-train on a task source.")
    evaluate = async_twin("evaluate", "held-out loss and metric.")
    evaluate_fixed = async_twin("evaluate_fixed", "score fixed episodes.")
    one_shot_adapt = async_twin("one_shot_adapt", "adapt to a task from its support data.")
    hierarchical_adapt = async_twin("hierarchical_adapt", "adapt level by level.")
    adapt_with_intervention = async_twin("adapt_with_intervention", "adapt with a causal mask applied.")
    mechanism_effects = async_twin("mechanism_effects", "the effect of switching each mechanism off.")
    predict = async_twin("predict", "predictions of the adapted model.")
    discover_causal_patterns = async_twin("discover_causal_patterns", "find mechanisms by intervention.")
    update_mechanisms = async_twin("update_mechanisms", "measure a new task's effects for every record.")
    refine_mechanisms_online = async_twin("refine_mechanisms_online", "fold the new tasks into the records.")
    export_mechanisms = async_twin("export_mechanisms", "write the versioned mechanisms JSON.")
    save = async_twin("save", "write a checkpoint.")
    evolve_meta_config = async_twin("evolve_meta_config", "evolve the config with an Optuna study.")
    load = async_twin("load", "load a checkpoint.")


def _update_text(records: int, measured: Mapping[str, Any], threshold: float) -> str:
    """What ``update_mechanisms`` updated, in words."""
    seen = f"task counted ({measured['tasks_seen_online']} seen online)"
    if not records:
        return f"no mechanism records yet (none above mechanism_threshold {threshold:g}): {seen}, nothing else changed"
    n = measured["measured_records"]
    if not n:
        return f"{seen}; none of the {records} records has an intervention measurable on a single task"
    return f"{seen}; effects measured for {n} of {records} records, {len(measured['reused'])} reused"


def _target_name(source: Any, info: Mapping[str, Any] | None) -> str | None:
    """The output's real name: an SCM's target variable or a table's target column."""
    info = info or {}
    for name in (
        getattr(source, "target", None),
        getattr(source, "target_column", None),
        info.get("target"),
        info.get("target_column"),
    ):
        if name is not None:
            return str(name)
    return None


def _source_of(tasks: Sequence[Any]) -> Any:
    """The task source the tasks came from (the first that says), else None."""
    for t in tasks:
        src = getattr(t, "source", None)
        if src is not None:
            return src
    return None


def _build_learner(
    config: OneShotMetaLearningConfig,
    input_dim: int | Sequence[int],
    output_dim: int,
    task_type: str,
    input_gates: bool,
    generator: torch.Generator | None = None,
) -> tuple[CausalMetaModel, CausalMetaLearner]:
    model = CausalMetaModel(
        input_dim,
        config.hidden_dim,
        0 if learner_class(config.algorithm).embedding_only else output_dim,
        config.num_mechanisms,
        encoder=config.encoder,
        input_gates=input_gates,
        conv_channels=config.conv_channels,
        generator=generator,
    )
    learner = make_learner(model, config, task_type)  # raises for regression + embedding learner
    if generator is not None:
        learner.reset_parameters(generator)
    return model, learner


def create_one_shot_meta_learning_engine(
    **config_fields: Any,
) -> OneShotMetaLearningEngine:
    """An engine with ``OneShotMetaLearningConfig(**config_fields)`` (validated)."""
    return OneShotMetaLearningEngine(OneShotMetaLearningConfig(**config_fields))
