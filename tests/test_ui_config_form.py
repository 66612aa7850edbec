"""ui.config_form and ui.fit: config field specs, presets, the config built from the form,
and whether a learner or an engine can serve a task source."""

from __future__ import annotations

import dataclasses

import pytest

from engine import ConfigError, OneShotMetaLearningConfig, OneShotMetaLearningEngine
from engine.tasks import ImageTaskSource, SCMTaskSource, SinusoidTaskSource
from ui.config_form import build_config, config_specs, default_values, plain_baseline, preset_values, sections
from ui.fit import check_algorithm_fits, engine_fit_problem


def test_every_config_field_has_a_spec_with_help_and_range():
    specs = config_specs()
    names = {f.name for f in dataclasses.fields(OneShotMetaLearningConfig)}
    assert set(specs) == names
    for name, spec in specs.items():
        assert spec.help, name
        rng = OneShotMetaLearningConfig.field_range(name)
        if rng is not None:
            assert (spec.low, spec.high) == rng and "Range:" in spec.help
    assert specs["algorithm"].kind == "choice" and "PROTOTYPICAL_CAUSAL" in specs["algorithm"].options
    assert specs["enable_causal_priors"].kind == "bool"
    assert specs["num_meta_iterations"].kind == "int" and specs["inner_lr"].kind == "float"
    listed = [n for names in sections().values() for n in names]
    assert sorted(listed + ["algorithm"]) == sorted(names)  # every field is shown exactly once


@pytest.mark.parametrize("kind", ["sinusoid", "images", "scm", "tabular"])
def test_presets_build_valid_configs(kind):
    cfg = build_config(preset_values(kind))
    assert isinstance(cfg, OneShotMetaLearningConfig)


def test_build_config_errors_name_the_field_and_images_take_n_way_from_the_source(omniglot_dir):
    values = default_values()
    values["inner_lr"] = 50.0
    with pytest.raises(ConfigError, match="inner_lr"):
        build_config(values)

    class FakeImages(ImageTaskSource):  # only n_way matters here
        def __init__(self):
            self.n_way = 7

    assert build_config(default_values(), FakeImages()).n_way == 7


def test_plain_baseline_and_algorithm_fit():
    cfg = build_config(preset_values("sinusoid"))
    base = plain_baseline(cfg)
    assert base.is_plain and base.causal_weight == 0 and not base.enable_causal_priors
    proto = cfg.replace(algorithm="prototypical_causal")
    assert "classification method" in check_algorithm_fits(proto, SinusoidTaskSource())
    assert "classification method" in check_algorithm_fits(
        cfg.replace(algorithm="relation_causal"), SinusoidTaskSource()
    )
    assert check_algorithm_fits(cfg, SinusoidTaskSource()) is None
    assert check_algorithm_fits(proto, SCMTaskSource(task_type="classification")) is None


def test_engine_fit_problem():
    sine = SinusoidTaskSource()
    assert "no model" in engine_fit_problem(OneShotMetaLearningEngine(), sine)
    eng = OneShotMetaLearningEngine(build_config(preset_values("sinusoid")))
    eng.initialize_for_source(sine)
    assert engine_fit_problem(eng, sine) is None
    assert "shape" in engine_fit_problem(eng, SCMTaskSource())
    assert engine_fit_problem(eng, None).startswith("No task source")
