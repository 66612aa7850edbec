"""Causal one-shot meta-learning engine (PyTorch; no UI code)."""

from .algorithms import (
    CausalMetaLearner,
    GradientCausalLearner,
    MAMLCausalLearner,
    PrototypicalCausalLearner,
    RelationCausalLearner,
)
from .allocator import keep_freed_memory
from .checkpoint import CheckpointError
from .config import (
    CausalMechanismType,
    ConfigError,
    MetaLearningAlgorithm,
    OneShotMetaLearningConfig,
)
from .engine import OneShotMetaLearningEngine, create_one_shot_meta_learning_engine
from .mechanisms import CausalMechanism
from .model import CausalMetaModel

keep_freed_memory()  # fewer page faults in every training step (see engine/allocator.py)

__all__ = [
    "CausalMechanism",
    "CausalMechanismType",
    "CausalMetaLearner",
    "CausalMetaModel",
    "CheckpointError",
    "ConfigError",
    "GradientCausalLearner",
    "MAMLCausalLearner",
    "MetaLearningAlgorithm",
    "OneShotMetaLearningConfig",
    "OneShotMetaLearningEngine",
    "PrototypicalCausalLearner",
    "RelationCausalLearner",
    "create_one_shot_meta_learning_engine",
]
