"""OneShotMetaLearningEngine: the library's front door (DESIGN section 4).

Methods that do work are coroutines under the original names (``await engine.meta_train(...)``)
running off the event loop; each has a synchronous twin with the suffix ``_sync``.

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

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .algorithms import AdaptedState, CausalMetaLearner, make_learner
from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    parse_checkpoint_files,
    read_checkpoint_zip,
    save_checkpoint,
)
from .config import MetaLearningAlgorithm, OneShotMetaLearningConfig
from .engine_causal import CausalEngineMixin
from .model import CausalMetaModel
from .tasks.base import Episode, Task, TaskSource
from .tasks.task_list import TaskListSource
from .training import TrainingHistory, evaluate, meta_train

SupportData = Episode | tuple[Any, Any] | None


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


def _async_twin(name: str, doc: str) -> Callable[..., Any]:
    async def method(self: OneShotMetaLearningEngine, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self, f"{name}_sync"), *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"Coroutine twin of ``{name}_sync``: {doc}"
    return method


class OneShotMetaLearningEngine(CausalEngineMixin):
    """Holds one meta-learner, its training history, its last adaptation and its mechanisms."""

    def __init__(self, config: OneShotMetaLearningConfig | None = None) -> None:
        self.config = config or OneShotMetaLearningConfig()
        self.device = resolve_device(self.config.device)
        self.model: CausalMetaModel | None = None
        self.learner: CausalMetaLearner | None = None
        self.task_type: str | None = None
        self.feature_names: list[str] | None = None
        self.source_info: dict[str, Any] = {}
        self.history: TrainingHistory | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.checkpoint_name: str | None = None
        self._mechanisms: list[dict[str, Any]] = []
        self._last_state: AdaptedState | None = None
        self._traces: dict[str, list[float]] = {}

    # ---- state ----------------------------------------------------------------------------
    @property
    def is_initialized(self) -> bool:
        return self.learner is not None

    @property
    def is_trained(self) -> bool:
        return self.history is not None and len(self.history.iteration) > 0

    @property
    def discovered_mechanisms(self) -> list[dict[str, Any]]:
        return list(self._mechanisms)

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
    def initialize_sync(
        self,
        input_dim: int | Sequence[int],
        output_dim: int,
        task_type: str | None = None,
        feature_names: list[str] | None = None,
        input_gates: bool | None = None,
    ) -> None:
        """Build a fresh model and learner. ``input_dim``: feature count or (C, H, W)."""
        torch.manual_seed(self.config.seed)
        if task_type is None:
            task_type = "classification" if self.config.algorithm in _EMBEDDING_ALGORITHMS else "regression"
        shape = (input_dim,) if isinstance(input_dim, int) else tuple(input_dim)
        if input_gates is None:
            # Sparse input gates make sense for named feature vectors with more than one column.
            input_gates = feature_names is not None and len(shape) == 1 and shape[0] > 1
        model, learner = _build_learner(self.config, input_dim, output_dim, task_type, input_gates)
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
    def meta_train_sync(
        self,
        source_tasks: TaskSource | Sequence[Task],
        callback: Callable[[dict[str, Any]], None] | None = None,
        stop: Any = None,
    ) -> dict[str, Any]:
        """Meta-train on a task source (or a list of tasks). Continues an existing history.

        ``callback(record)`` runs after every iteration; ``stop`` is a threading.Event or a
        callable returning True to stop after the current iteration.
        """
        source = self._as_source(source_tasks)
        if self.learner is None or self._incompatible(source):
            self.initialize_for_source(source)
        learner = self._require()
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

    def _as_source(self, source_tasks: TaskSource | Sequence[Task]) -> TaskSource:
        if isinstance(source_tasks, TaskSource):
            return source_tasks
        tasks = list(source_tasks)
        shape = self.model.input_shape if self.model is not None else None
        if shape is None:
            ep = tasks[0].sample_episode(1, 1, np.random.default_rng(0)) if tasks else None
            shape = tuple(ep.support_x.shape[1:]) if ep is not None else (1,)
        return TaskListSource(tasks, shape)

    def _incompatible(self, source: TaskSource) -> bool:
        assert self.model is not None
        out = self.output_dim
        return (
            tuple(self.model.input_shape) != tuple(source.input_shape)
            or out != source.output_dim
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
        learner = self._require()
        episode = self._episode_for(target_task, support_data, query_data, seed)
        mask = None if causal_mask is None else torch.as_tensor(causal_mask, dtype=torch.float32, device=self.device)
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
        name = episode.task_name or getattr(target_task, "name", "task")
        self._traces[name] = list(state.trace)
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
        if isinstance(target, Episode):
            base = target
        elif isinstance(support, Episode):
            base = support
        else:
            base = target.sample_episode(self.config.support_shots, self.config.query_shots, rng)
        sx, sy = base.support_x, base.support_y
        if isinstance(support, tuple):
            sx, sy = self._tensor_pair(support)
        elif isinstance(support, Episode):
            sx, sy = support.support_x, support.support_y
        qx, qy = base.query_x, base.query_y
        if isinstance(query, tuple):
            qx, qy = self._tensor_pair(query)
        elif isinstance(query, Episode):
            qx, qy = query.query_x, query.query_y
        ep = Episode(sx, sy, qx, qy, base.task_type, base.num_classes, base.task_name)
        return ep.to(self.device)

    def _tensor_pair(self, pair: tuple[Any, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.as_tensor(np.asarray(pair[0]), dtype=torch.float32)
        if self.task_type == "classification":
            y = torch.as_tensor(np.asarray(pair[1]), dtype=torch.long).reshape(-1)
        else:
            y = torch.as_tensor(np.asarray(pair[1]), dtype=torch.float32).reshape(x.shape[0], -1)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"support has {x.shape[0]} inputs but {y.shape[0]} labels")
        return x, y

    def _decode(self, state: AdaptedState, outputs: torch.Tensor) -> torch.Tensor:
        learner = self._require()
        if self.task_type == "classification":
            return learner.predict_labels(state, outputs).cpu()
        return outputs.cpu()

    def _explain(self, before: dict[str, torch.Tensor], state: AdaptedState) -> dict[str, Any]:
        """Which mechanisms adaptation moved, in numbers and words."""
        model = self.model
        assert model is not None
        K = model.num_mechanisms
        shift = torch.zeros(K)
        for name, (axis, block) in model.mechanism_axes().items():
            delta = (state.params[name] - before[name]).detach().cpu().movedim(axis, 0)
            shift += delta.reshape(K, block, -1).pow(2).sum(dim=(1, 2))
        shift = shift.sqrt()
        gates_before = torch.sigmoid(before["gate_logits"]).cpu()
        gates_after = torch.sigmoid(state.params["gate_logits"]).detach().cpu()
        order = torch.argsort(shift, descending=True).tolist()
        total = float(shift.sum())
        if total <= 0:
            text = "Adaptation did not change any mechanism's weights (closed-form adaptation or zero steps)."
        else:
            top = order[0]
            text = (
                f"Adaptation moved mechanism {top} most ({float(shift[top]) / total:.0%} of the total weight "
                f"change); its gate went {float(gates_before[top]):.2f} -> {float(gates_after[top]):.2f}."
            )
        explanation = {
            "text": text,
            "mechanism_shift": shift.tolist(),
            "gates_before": gates_before.tolist(),
            "gates_after": gates_after.tolist(),
            "ranked_mechanisms": order,
        }
        # Once discovery data exist: which features mattered (engine_causal), in words and numbers.
        features = self._feature_explanation(state)
        if features is not None:
            explanation["features"] = features["features"]
            explanation["features_text"] = features["text"]
            explanation["text"] = f"{text} {features['text']}"
        return explanation

    def predict_sync(self, x: Any, causal_mask: Any = None) -> torch.Tensor:
        """Predictions of the last adapted model (labels or values); the meta-model if none."""
        outputs, state = self._outputs(x, causal_mask)
        return self._decode(state, outputs)

    def predict_proba_sync(self, x: Any, causal_mask: Any = None) -> torch.Tensor:
        """Class probabilities of the last adapted model (classification only)."""
        if self.task_type != "classification":
            raise ValueError("probabilities exist for classification tasks only")
        outputs, state = self._outputs(x, causal_mask)
        if self.config.algorithm == MetaLearningAlgorithm.RELATION_CAUSAL:
            return (outputs / outputs.sum(-1, keepdim=True).clamp(min=1e-12)).cpu()
        return torch.softmax(outputs, -1).cpu()

    def _outputs(self, x: Any, causal_mask: Any) -> tuple[torch.Tensor, AdaptedState]:
        learner = self._require()
        state = self._last_state
        if state is None:
            if self.config.algorithm in _EMBEDDING_ALGORITHMS:
                raise RuntimeError("prototypical and relation learners need one_shot_adapt before predict")
            state = AdaptedState({n: p.detach() for n, p in learner.meta_params().items()})
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32, device=self.device)
        mask = None if causal_mask is None else torch.as_tensor(causal_mask, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            return learner(state, x, causal_mask=mask), state

    def get_adaptation_trace(self, task: Task | str) -> list[float]:
        """Support loss per step of the last adaptation to ``task`` (by name)."""
        name = task if isinstance(task, str) else task.name
        if name not in self._traces:
            raise KeyError(f"no adaptation recorded for task {name!r}")
        return list(self._traces[name])

    # ---- checkpoints ----------------------------------------------------------------------------
    def save_sync(self, path: str | Path) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (+ ``mechanisms.json``) atomically."""
        learner = self._require()
        assert self.model is not None
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
            "causal_priors": getattr(self, "_causal_priors", None) if self.config.save_mechanisms else None,
        }
        mechanisms = self._mechanisms if self.config.save_mechanisms else []
        out = save_checkpoint(path, learner.state_dict(), meta, mechanisms)
        self.checkpoint_name = Path(path).name
        return out

    def load_sync(self, path: str | Path) -> None:
        """Replace this engine's learner with the checkpoint at ``path`` (never unpickles)."""
        self._load_data(load_checkpoint(path), Path(path).name)

    def load_bytes_sync(self, data: bytes, name: str = "uploaded checkpoint") -> None:
        """Load a checkpoint zip given as bytes (an upload); never unpickles, never writes."""
        self._load_data(parse_checkpoint_files(read_checkpoint_zip(data, name), name), name)

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
        _check_tensors(data.tensors, expected, name)
        history = _history_from_meta(meta.get("history"), name)
        feature_names = meta.get("feature_names")
        if feature_names is not None and (
            not isinstance(feature_names, list) or not all(isinstance(f, str) for f in feature_names)
        ):
            raise CheckpointError(f"{name}: config.json feature_names must be a list of strings")
        source_info = meta.get("source") or {}
        if not isinstance(source_info, dict):
            raise CheckpointError(f"{name}: config.json source must be an object")
        from .mechanisms import MechanismFormatError, parse_mechanisms, validate_priors

        try:
            records, _ = parse_mechanisms(list(data.mechanisms))
            priors = validate_priors(meta["causal_priors"]) if meta.get("causal_priors") else None
        except MechanismFormatError as exc:
            raise CheckpointError(f"{name}: the stored mechanisms are invalid ({exc})") from None
        fresh = OneShotMetaLearningEngine(config)
        fresh.initialize_sync(input_dim, output_dim, meta["task_type"], feature_names, input_gates)
        assert fresh.learner is not None
        fresh.learner.load_state_dict(data.tensors, strict=True)  # names, shapes and dtypes checked above
        self.__dict__.update(fresh.__dict__)
        self.source_info = source_info
        self.history = history
        self._mechanisms = records
        self._causal_priors = priors
        self._mechanism_effects, self._discovery_report = {}, None
        self.checkpoint_name = name

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> OneShotMetaLearningEngine:
        eng = cls(OneShotMetaLearningConfig(device=device))
        eng.load_sync(path)
        return eng

    # ---- coroutines (DESIGN section 4) ----------------------------------------------------------
    initialize = _async_twin("initialize", "build a fresh model and learner.")
    meta_train = _async_twin("meta_train", "meta-train on a task source.")
    evaluate = _async_twin("evaluate", "held-out loss and metric.")
    one_shot_adapt = _async_twin("one_shot_adapt", "adapt to a task from its support data.")
    predict = _async_twin("predict", "predictions of the adapted model.")
    save = _async_twin("save", "write a checkpoint.")
    load = _async_twin("load", "load a checkpoint.")


_EMBEDDING_ALGORITHMS = (
    MetaLearningAlgorithm.PROTOTYPICAL_CAUSAL,
    MetaLearningAlgorithm.RELATION_CAUSAL,
)


def _build_learner(
    config: OneShotMetaLearningConfig,
    input_dim: int | Sequence[int],
    output_dim: int,
    task_type: str,
    input_gates: bool,
) -> tuple[CausalMetaModel, CausalMetaLearner]:
    embedding_only = config.algorithm in _EMBEDDING_ALGORITHMS
    model = CausalMetaModel(
        input_dim,
        config.hidden_dim,
        0 if embedding_only else output_dim,
        config.num_mechanisms,
        encoder=config.encoder,
        input_gates=input_gates,
        conv_channels=config.conv_channels,
    )
    return model, make_learner(model, config, task_type)  # raises for regression + embedding learner


def _check_tensors(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], name: str) -> None:
    """The weights must be exactly the tensors of the model config.json describes: same names,
    shapes and dtypes (no silent casts of int or bool data into weights), all finite."""
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:5])}"] if missing else []) + (
            [f"unexpected {', '.join(extra[:5])}"] if extra else []
        )
        raise CheckpointError(f"{name}: the weights do not match the model in config.json ({'; '.join(parts)})")
    for key, want in expected.items():
        got = tensors[key]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{name}: the weights do not match the model in config.json "
                f"({key} has shape {list(got.shape)}, the model needs {list(want.shape)})"
            )
        if got.dtype != want.dtype:
            raise CheckpointError(f"{name}: {key} has dtype {got.dtype}, the model needs {want.dtype}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise CheckpointError(f"{name}: {key} holds NaN or infinite values")


def _history_from_meta(raw: Any, name: str) -> TrainingHistory | None:
    """The training curves stored in config.json, checked (resuming appends to them)."""
    if not raw:
        return None

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{name}: config.json history is malformed ({why})")

    if not isinstance(raw, dict) or not isinstance(raw.get("metric_name"), str):
        raise bad("an object with a metric_name is expected")
    history = TrainingHistory.from_dict(raw)
    for key in ("iteration", "val_iteration", "train_loss", "train_metric", "elapsed", "val_loss", "val_metric"):
        values = getattr(history, key)
        integral = key.endswith("iteration")
        kinds = (int,) if integral else (int, float)
        if not isinstance(values, list):
            raise bad(f"{key} must be a list")
        if not integral:  # a loss that was not finite is saved as null: read it back as NaN
            values = [float("nan") if v is None else v for v in values]
            setattr(history, key, values)
        if not all(isinstance(v, kinds) and not isinstance(v, bool) for v in values):
            raise bad(f"{key} must be a list of {'integers' if integral else 'numbers'}")
    if any(b <= a for a, b in zip(history.iteration, history.iteration[1:], strict=False)):
        raise bad("iteration must increase")
    for keys, ref in (
        (("train_loss", "train_metric", "elapsed"), "iteration"),
        (("val_loss", "val_metric"), "val_iteration"),
    ):
        for key in keys:
            if len(getattr(history, key)) != len(getattr(history, ref)):
                raise bad(f"{key} and {ref} differ in length")
    return history


def create_one_shot_meta_learning_engine(
    **config_fields: Any,
) -> OneShotMetaLearningEngine:
    """An engine with ``OneShotMetaLearningConfig(**config_fields)`` (validated)."""
    return OneShotMetaLearningEngine(OneShotMetaLearningConfig(**config_fields))
