"""Causal one-shot meta-learning engine (PyTorch; no UI code).

The engine logs under ``logging.getLogger("engine")`` (a child logger per module: INFO for
training progress, discovery, adaptation and checkpoint I/O, DEBUG for detail) and prints
nothing itself; the command line attaches a handler (``-v``/``-q``), applications their own.
"""

import logging

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

logging.getLogger(__name__).addHandler(logging.NullHandler())  # silent unless the application configures logging
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
