"""Whether a config's learner, or the session's engine, can serve a task source: a message
saying why not (shown instead of running), or None."""

from __future__ import annotations

from engine import OneShotMetaLearningConfig, OneShotMetaLearningEngine
from engine.algorithms import learner_class
from engine.tasks import TaskSource


def check_algorithm_fits(config: OneShotMetaLearningConfig, source: TaskSource) -> str | None:
    """A message when the learner cannot run on the source (embedding learners need classes)."""
    if learner_class(config.algorithm).embedding_only and source.task_type != "classification":
        return (
            f"{config.algorithm.name} is a classification method (it compares queries with class "
            f"prototypes or relations); the task source '{source.name}' is regression. "
            "Choose MAML_CAUSAL or GRADIENT_CAUSAL, or a classification source."
        )
    return None


def engine_fit_problem(eng: OneShotMetaLearningEngine | None, source: TaskSource | None) -> str | None:
    """Why the engine's model cannot serve this task source, or None if it can."""
    if source is None:
        return "No task source is chosen: pick one on the Tasks page."
    if eng is None or not eng.is_initialized or eng.model is None:
        return "The engine has no model yet: meta-train it on the Meta-train page or load a checkpoint there."
    if tuple(eng.model.input_shape) != tuple(source.input_shape):
        return (
            f"The engine's model takes inputs of shape {tuple(eng.model.input_shape)}, but the task source "
            f"'{source.name}' gives {tuple(source.input_shape)}: meta-train on this source or load a matching checkpoint."
        )
    if eng.task_type != source.task_type:
        return (
            f"The engine's model does {eng.task_type}, but the task source '{source.name}' is "
            f"{source.task_type}: meta-train on this source or load a matching checkpoint."
        )
    # An embedding learner has no output head: it serves any number of classes.
    has_head = not learner_class(eng.config.algorithm).embedding_only
    if source.task_type == "classification" and has_head and eng.output_dim < source.output_dim:
        return (
            f"The engine's model has {eng.output_dim} outputs but the tasks have {source.output_dim} classes: "
            "meta-train on this source or load a matching checkpoint."
        )
    return None
