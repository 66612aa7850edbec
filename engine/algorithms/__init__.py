"""The four causal meta-learners, one file each, and a registry by algorithm."""

from __future__ import annotations

from ..config import MetaLearningAlgorithm, OneShotMetaLearningConfig
from ..model import CausalMetaModel
from .base import AdaptedState, CausalMetaLearner
from .maml import MAMLCausalLearner
from .meta_sgd import GradientCausalLearner
from .prototypical import PrototypicalCausalLearner
from .relation import RelationCausalLearner

LEARNERS: dict[MetaLearningAlgorithm, type[CausalMetaLearner]] = {
    MetaLearningAlgorithm.MAML_CAUSAL: MAMLCausalLearner,
    MetaLearningAlgorithm.GRADIENT_CAUSAL: GradientCausalLearner,
    MetaLearningAlgorithm.PROTOTYPICAL_CAUSAL: PrototypicalCausalLearner,
    MetaLearningAlgorithm.RELATION_CAUSAL: RelationCausalLearner,
}


def learner_class(algorithm: MetaLearningAlgorithm | str) -> type[CausalMetaLearner]:
    """The learner class of an algorithm (or its NAME): where the facts about it live."""
    if isinstance(algorithm, str):
        try:
            algorithm = MetaLearningAlgorithm[algorithm.upper()]
        except KeyError:
            raise ValueError(
                f"unknown algorithm {algorithm!r}; valid: {list(MetaLearningAlgorithm.__members__)}"
            ) from None
    return LEARNERS[algorithm]


def make_learner(model: CausalMetaModel, config: OneShotMetaLearningConfig, task_type: str) -> CausalMetaLearner:
    return LEARNERS[config.algorithm](config, model, task_type)


__all__ = [
    "AdaptedState",
    "CausalMetaLearner",
    "GradientCausalLearner",
    "LEARNERS",
    "MAMLCausalLearner",
    "PrototypicalCausalLearner",
    "RelationCausalLearner",
    "learner_class",
    "make_learner",
]
