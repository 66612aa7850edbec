"""Configuration of the engine: enums and a validated config dataclass (docs/DESIGN.md section 5)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any


class MetaLearningAlgorithm(StrEnum):
    MAML_CAUSAL = "maml_causal"
    GRADIENT_CAUSAL = "gradient_causal"
    PROTOTYPICAL_CAUSAL = "prototypical_causal"
    RELATION_CAUSAL = "relation_causal"


class CausalMechanismType(StrEnum):
    FEATURE_TRANSFER = "feature_transfer"
    REPRESENTATION_TRANSFER = "representation_transfer"
    STRUCTURE_TRANSFER = "structure_transfer"
    PRIOR_TRANSFER = "prior_transfer"
    OPTIMIZATION_TRANSFER = "optimization_transfer"


class ConfigError(ValueError):
    """A configuration value is out of its allowed range (the message names the field)."""


# field -> (low, high) inclusive bounds for numbers; checked in __post_init__.
_RANGES: dict[str, tuple[float, float]] = {
    "inner_lr": (1e-6, 10.0),
    "outer_lr": (1e-7, 1.0),
    "num_inner_steps": (0, 100),
    "support_shots": (1, 100),
    "query_shots": (1, 500),
    "meta_batch_size": (1, 1024),
    "num_meta_iterations": (0, 1_000_000),
    "causal_weight": (0.0, 100.0),
    "mechanism_threshold": (0.0, 1.0),
    "adaptation_steps": (0, 1000),
    "num_mechanisms": (1, 64),
    "hidden_dim": (2, 4096),
    "n_way": (2, 200),
    "seed": (0, 2**31 - 1),
    "eval_interval": (1, 100_000),
    "val_episodes": (1, 10_000),
    "conv_channels": (4, 512),
    "grad_clip": (0.0, 1e6),
    "test_time_shifts": (0, 4),
    "transductive_steps": (0, 100),
}
_DEVICES = ("auto", "cpu", "cuda")
_ENCODERS = ("auto", "mlp", "conv4")
VIEW_KINDS = ("plus", "grid", "grid_affine")  # engine.algorithms.image_views makes them
# Settings that change only how a trained model predicts (OneShotMetaLearningEngine.set_test_time).
TEST_TIME_FIELDS = ("test_time_shifts", "test_time_views", "transductive_steps")


@dataclass
class OneShotMetaLearningConfig:
    """Every setting of the engine. Built values are validated; a bad one raises ConfigError.

    >>> OneShotMetaLearningConfig(inner_lr=0.4).inner_lr
    0.4
    """

    algorithm: MetaLearningAlgorithm = MetaLearningAlgorithm.MAML_CAUSAL
    inner_lr: float = 0.01
    outer_lr: float = 0.001
    num_inner_steps: int = 5
    support_shots: int = 1
    query_shots: int = 15
    meta_batch_size: int = 32
    num_meta_iterations: int = 1000
    causal_weight: float = 0.5
    mechanism_threshold: float = 0.7
    adaptation_steps: int = 10
    enable_causal_priors: bool = True
    save_mechanisms: bool = True
    # Beyond docs/DESIGN.md section 5:
    seed: int = 0
    device: str = "auto"
    num_mechanisms: int = 4
    hidden_dim: int = 40
    first_order: bool = False
    n_way: int = 5
    encoder: str = "auto"
    conv_channels: int = 64
    eval_interval: int = 25
    val_episodes: int = 20
    grad_clip: float = 10.0
    test_time_shifts: int = 0
    test_time_views: str = "plus"
    transductive_steps: int = 0

    def __post_init__(self) -> None:
        try:
            self.algorithm = MetaLearningAlgorithm(
                self.algorithm.value
                if isinstance(self.algorithm, MetaLearningAlgorithm)
                else str(self.algorithm).lower()
            )
        except ValueError:
            names = ", ".join(a.name for a in MetaLearningAlgorithm)
            raise ConfigError(f"algorithm must be one of {names}; got {self.algorithm!r}") from None
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("bool",) and not isinstance(value, bool):
                raise ConfigError(f"{f.name} must be true or false; got {value!r}")
            if f.name in _RANGES:
                low, high = _RANGES[f.name]
                integral = f.type == "int"
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    kind = "an integer" if integral else "a number"
                    raise ConfigError(f"{f.name} must be {kind} in [{low:g}, {high:g}]; got {value!r}")
                if integral and float(value) != int(value):
                    raise ConfigError(f"{f.name} must be an integer in [{low:g}, {high:g}]; got {value!r}")
                if not math.isfinite(value) or not low <= value <= high:
                    raise ConfigError(f"{f.name} must be in [{low:g}, {high:g}]; got {value!r}")
                setattr(self, f.name, int(value) if integral else float(value))
        if self.device not in _DEVICES and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"device must be one of {_DEVICES} or 'cuda:N'; got {self.device!r}")
        if self.encoder not in _ENCODERS:
            raise ConfigError(f"encoder must be one of {_ENCODERS}; got {self.encoder!r}")
        if self.test_time_views not in VIEW_KINDS:
            raise ConfigError(f"test_time_views must be one of {VIEW_KINDS}; got {self.test_time_views!r}")
        if self.hidden_dim < self.num_mechanisms:
            raise ConfigError(
                f"hidden_dim must be at least num_mechanisms ({self.num_mechanisms}); got {self.hidden_dim}"
            )

    @property
    def is_plain(self) -> bool:
        """True when the learner is its plain published counterpart (no causal regulariser, no priors)."""
        return self.causal_weight == 0 and not self.enable_causal_priors

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["algorithm"] = self.algorithm.name
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OneShotMetaLearningConfig:
        """Build from a dict (e.g. config.json); unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        data = dict(data)
        if isinstance(data.get("algorithm"), str) and data["algorithm"].upper() in MetaLearningAlgorithm.__members__:
            data["algorithm"] = MetaLearningAlgorithm[data["algorithm"].upper()]
        return cls(**data)

    def replace(self, **changes: Any) -> OneShotMetaLearningConfig:
        return dataclasses.replace(self, **changes)

    @staticmethod
    def field_help() -> dict[str, str]:
        """One-line help per field, with its range (used by the CLI and the app)."""
        return dict(FIELD_HELP)

    @staticmethod
    def field_range(name: str) -> tuple[float, float] | None:
        return _RANGES.get(name)


FIELD_HELP: dict[str, str] = {
    "algorithm": "Meta-learner: MAML_CAUSAL, GRADIENT_CAUSAL (Meta-SGD), PROTOTYPICAL_CAUSAL, RELATION_CAUSAL.",
    "inner_lr": "Inner-loop step size (initial rate for Meta-SGD).",
    "outer_lr": "Meta-optimiser (Adam) step size.",
    "num_inner_steps": "Inner gradient steps per task during meta-training (gate steps for prototypical/relation).",
    "support_shots": "Examples per class (or points) in the support set.",
    "query_shots": "Examples per class (or points) in the query set.",
    "meta_batch_size": "Tasks per meta-update.",
    "num_meta_iterations": "Meta-updates to run.",
    "causal_weight": "Weight of the causal regulariser (sparse mechanism shift + sparse input gates); 0 = off.",
    "mechanism_threshold": "Least causal strength for a discovered mechanism to be kept.",
    "adaptation_steps": "Inner steps when adapting to a new task (GRADIENT_CAUSAL takes at most num_inner_steps: "
    "its learned per-parameter rates are for that many, and repeating them diverges).",
    "enable_causal_priors": "Use discovered mechanisms as per-mechanism adaptation rates.",
    "save_mechanisms": "Store discovered mechanisms with checkpoints.",
    "seed": "Random seed (task sampling and initialisation).",
    "device": "auto (CUDA if present), cpu, cuda or cuda:N.",
    "num_mechanisms": "Number of mechanism modules K.",
    "hidden_dim": "Width of the hidden layer (split across the K mechanisms).",
    "first_order": "First-order MAML (no second derivatives).",
    "n_way": "Classes per episode for image tasks.",
    "encoder": "auto (conv4 for images, mlp for vectors), mlp or conv4.",
    "conv_channels": "Channels of each Conv-4 block.",
    "eval_interval": "Meta-iterations between validation evaluations.",
    "val_episodes": "Validation episodes per evaluation.",
    "grad_clip": "Meta-gradient norm clip (0 = none).",
    "test_time_shifts": "Prototypical/relation on images, outside meta-training: average each image's embedding "
    "with its copies shifted this many pixels (0 = off; which copies: test_time_views).",
    "test_time_views": "Which copies test_time_shifts averages over: plus (shifted up, down, left and right: 5 views), "
    "grid (every shift of at most that many pixels each way: 9 views at 1, 25 at 2) or grid_affine (the grid and "
    "copies rotated -10, -5, 5, 10 degrees or scaled 0.9 and 1.1: 15 views at 1, 31 at 2).",
    "transductive_steps": "Prototypical, outside meta-training: refine the prototypes this many soft k-means steps "
    "over the queries predicted together, so each prediction depends on the others in its batch (0 = off).",
}
