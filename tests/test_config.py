import pytest

from engine import ConfigError, MetaLearningAlgorithm, OneShotMetaLearningConfig
from engine.config import CausalMechanismType


def test_defaults_match_design():
    c = OneShotMetaLearningConfig()
    assert c.algorithm is MetaLearningAlgorithm.MAML_CAUSAL
    assert (c.inner_lr, c.outer_lr, c.num_inner_steps) == (0.01, 0.001, 5)
    assert (c.support_shots, c.query_shots, c.meta_batch_size) == (1, 15, 32)
    assert (c.num_meta_iterations, c.causal_weight, c.mechanism_threshold) == (
        1000,
        0.5,
        0.7,
    )
    assert c.adaptation_steps == 10 and c.enable_causal_priors and c.save_mechanisms
    assert not c.is_plain
    assert c.replace(causal_weight=0, enable_causal_priors=False).is_plain


def test_enums_have_original_names():
    assert {a.name for a in MetaLearningAlgorithm} == {
        "MAML_CAUSAL",
        "GRADIENT_CAUSAL",
        "PROTOTYPICAL_CAUSAL",
        "RELATION_CAUSAL",
    }
    assert len(CausalMechanismType) == 5 and "STRUCTURE_TRANSFER" in CausalMechanismType.__members__


@pytest.mark.parametrize(
    "field,value",
    [
        ("inner_lr", -1.0),
        ("inner_lr", float("nan")),
        ("outer_lr", 5.0),
        ("num_inner_steps", -1),
        ("support_shots", 0),
        ("meta_batch_size", 2.5),
        ("mechanism_threshold", 1.5),
        ("causal_weight", float("inf")),
        ("num_mechanisms", 0),
        ("hidden_dim", "wide"),
        ("enable_causal_priors", "yes"),
        ("device", "tpu"),
        ("encoder", "resnet"),
        ("algorithm", "SGD"),
    ],
)
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        OneShotMetaLearningConfig(**{field: value})


def test_algorithm_accepts_name_value_or_enum():
    assert OneShotMetaLearningConfig(algorithm="prototypical_causal").algorithm.name == "PROTOTYPICAL_CAUSAL"
    assert (
        OneShotMetaLearningConfig(algorithm=MetaLearningAlgorithm.RELATION_CAUSAL).algorithm.name == "RELATION_CAUSAL"
    )


def test_dict_round_trip_and_unknown_field():
    c = OneShotMetaLearningConfig(inner_lr=0.4, algorithm="gradient_causal", seed=3)
    assert OneShotMetaLearningConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="bogus"):
        OneShotMetaLearningConfig.from_dict({"bogus": 1})


def test_every_field_has_help():
    import dataclasses

    names = {f.name for f in dataclasses.fields(OneShotMetaLearningConfig)}
    assert names == set(OneShotMetaLearningConfig.field_help())
