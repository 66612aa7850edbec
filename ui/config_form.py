"""The config form's content: one spec per config field, its sections, presets per task source,
and the config (or its plain baseline) built from the form's values."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from engine import MetaLearningAlgorithm, OneShotMetaLearningConfig
from engine.config import VIEW_KINDS
from engine.tasks import TaskSource

SECTIONS: dict[str, list[str]] = {
    "Schedule": ["num_meta_iterations", "meta_batch_size", "outer_lr", "eval_interval", "val_episodes", "grad_clip"],
    "Inner loop and adaptation": [
        "inner_lr",
        "num_inner_steps",
        "adaptation_steps",
        "first_order",
        "test_time_shifts",
        "test_time_views",
        "transductive_steps",
    ],
    "Episodes": ["support_shots", "query_shots", "n_way"],
    "Causal": ["causal_weight", "enable_causal_priors", "mechanism_threshold", "save_mechanisms"],
    "Model and system": ["num_mechanisms", "hidden_dim", "encoder", "conv_channels", "device", "seed"],
}
# Words for the form; each field's own name stays in its help text.
LABELS: dict[str, str] = {
    "algorithm": "Learner",
    "num_meta_iterations": "Meta-training iterations",
    "meta_batch_size": "Tasks per meta-batch",
    "outer_lr": "Outer learning rate (Adam)",
    "eval_interval": "Validate every N iterations",
    "val_episodes": "Validation episodes",
    "grad_clip": "Gradient clipping norm",
    "inner_lr": "Inner learning rate",
    "num_inner_steps": "Inner steps in meta-training",
    "adaptation_steps": "Adaptation steps at test time",
    "first_order": "First-order approximation",
    "test_time_shifts": "Test-time pixel shifts",
    "test_time_views": "Test-time views",
    "transductive_steps": "Transductive steps",
    "support_shots": "Support examples per class",
    "query_shots": "Query examples per class",
    "n_way": "Classes per task (N-way)",
    "causal_weight": "Causal penalty weight",
    "enable_causal_priors": "Use causal priors",
    "mechanism_threshold": "Mechanism threshold",
    "save_mechanisms": "Save discovered mechanisms",
    "num_mechanisms": "Number of mechanisms",
    "hidden_dim": "Hidden width",
    "encoder": "Encoder",
    "conv_channels": "Convolution channels",
    "device": "Device",
    "seed": "Random seed",
}
CHOICES: dict[str, list[str]] = {
    "algorithm": [a.name for a in MetaLearningAlgorithm],
    "device": ["auto", "cpu", "cuda"],
    "encoder": ["auto", "mlp", "conv4"],
    "test_time_views": list(VIEW_KINDS),
}


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """How to show one config field: kind is bool, int, float or choice."""

    name: str
    kind: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    options: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name.replace("_", " ").capitalize())

    @property
    def range_text(self) -> str:
        if self.low is None or self.high is None:
            return ""
        return f"{self.low:g} to {self.high:g}"

    @property
    def step(self) -> float:
        if self.kind == "int":
            return 1
        if self.name.endswith("_lr"):
            return 0.001
        return 0.05 if (self.high or 0) <= 1 else 0.1

    @property
    def format(self) -> str:
        if self.kind == "int":
            return "%d"
        return "%.4f" if self.name.endswith("_lr") else "%.3f"


def _kind(field: dataclasses.Field, default: Any) -> str:
    if field.name in CHOICES:
        return "choice"
    for kind, typ in (("bool", bool), ("int", int), ("float", float)):  # bool first: a bool is an int
        if field.type == kind or isinstance(default, typ):
            return kind
    return "text"


def config_specs() -> dict[str, FieldSpec]:
    """One spec per field of OneShotMetaLearningConfig, with its help text and range."""
    helps = OneShotMetaLearningConfig.field_help()
    defaults = OneShotMetaLearningConfig().to_dict()
    specs: dict[str, FieldSpec] = {}
    for f in dataclasses.fields(OneShotMetaLearningConfig):
        name, default = f.name, defaults[f.name]
        rng = OneShotMetaLearningConfig.field_range(name)
        help_text = f"`{name}`: {helps.get(name, '')}".strip()
        if rng is not None:
            help_text = f"{help_text} Range: {rng[0]:g} to {rng[1]:g}."
        kind = _kind(f, default)
        if kind == "choice":
            specs[name] = FieldSpec(name, kind, default, help_text, options=tuple(CHOICES[name]))
        elif kind in ("int", "float") and rng is not None:
            specs[name] = FieldSpec(name, kind, default, help_text, rng[0], rng[1])
        else:
            specs[name] = FieldSpec(name, kind, default, help_text)
    return specs


def sections() -> dict[str, list[str]]:
    """SECTIONS plus an "Other" section for any config field not listed there."""
    out = {k: list(v) for k, v in SECTIONS.items()}
    listed = {n for v in SECTIONS.values() for n in v} | {"algorithm"}
    other = [n for n in config_specs() if n not in listed]
    if other:
        out["Other"] = other
    return out


def default_values() -> dict[str, Any]:
    return OneShotMetaLearningConfig().to_dict()


PRESETS: dict[str, dict[str, Any]] = {
    # ~150 iterations/s on an idle 2-core CPU; a few hundred iterations give a visible fit.
    "sinusoid": {
        "algorithm": "MAML_CAUSAL",
        "inner_lr": 0.01,
        "outer_lr": 0.003,
        "num_inner_steps": 1,
        "adaptation_steps": 10,
        "support_shots": 5,
        "query_shots": 10,
        "meta_batch_size": 10,
        # A test that needs the demo to train for a while (two sessions at once) sets this.
        "num_meta_iterations": int(os.environ.get("CAUSAL_EXPLORER_DEMO_ITERATIONS", "400")),
        "hidden_dim": 40,
        "eval_interval": 25,
        "val_episodes": 20,
    },
    # 5-way 1-shot Omniglot: ~85 % validation accuracy after 60 iterations (~10 s).
    "images": {
        "algorithm": "PROTOTYPICAL_CAUSAL",
        "hidden_dim": 64,
        "conv_channels": 32,
        "meta_batch_size": 4,
        "outer_lr": 0.003,
        "support_shots": 1,
        "query_shots": 5,
        "num_meta_iterations": 60,
        "eval_interval": 10,
        "val_episodes": 10,
    },
    "scm": {
        "algorithm": "MAML_CAUSAL",
        "inner_lr": 0.05,
        "outer_lr": 0.003,
        "num_inner_steps": 1,
        "adaptation_steps": 10,
        "support_shots": 5,
        "query_shots": 15,
        "meta_batch_size": 10,
        "num_meta_iterations": 300,
        "hidden_dim": 40,
        "eval_interval": 25,
        "val_episodes": 20,
    },
    "tabular": {
        "algorithm": "MAML_CAUSAL",
        "inner_lr": 0.05,
        "outer_lr": 0.003,
        "num_inner_steps": 1,
        "adaptation_steps": 10,
        "support_shots": 3,
        "query_shots": 8,
        "meta_batch_size": 4,
        "num_meta_iterations": 300,
        "hidden_dim": 40,
        "eval_interval": 25,
        "val_episodes": 10,
    },
}


def preset_values(kind: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Full config values: defaults (or ``base``), overridden by the preset of a source kind."""
    values = dict(base or default_values())
    values.update(PRESETS.get(kind, {}))
    return values


def build_config(values: dict[str, Any], source: TaskSource | None = None) -> OneShotMetaLearningConfig:
    """Validated config from widget values (raises ConfigError naming the field).

    For an image source the config's n_way is the source's (set on the Tasks page)."""
    known = set(config_specs())
    vals = {k: v for k, v in values.items() if k in known}
    if source is not None and source.name == "images":
        vals["n_way"] = source.n_way
    return OneShotMetaLearningConfig.from_dict(vals)


def plain_baseline(config: OneShotMetaLearningConfig) -> OneShotMetaLearningConfig:
    """The same learner without the causal parts: causal_weight 0 and no causal priors."""
    return config.replace(causal_weight=0.0, enable_causal_priors=False)
