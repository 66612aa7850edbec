"""ui.logic and ui.images: config specs, sources, episodes from user input, adaptation and interventions."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from engine import ConfigError, OneShotMetaLearningConfig, OneShotMetaLearningEngine
from engine.tasks import EXAMPLE_CSV, SCMTaskSource, SinusoidTaskSource, TabularTaskSource, TaskError
from ui import logic
from ui.images import ImageInputError, array_to_png, image_bytes_to_array, images_to_batch, to_display
from ui.worker import DONE, STOPPED, Worker

# ---------------------------------------------------------------------------------------------- config


def test_every_config_field_has_a_spec_with_help_and_range():
    specs = logic.config_specs()
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
    listed = [n for names in logic.sections().values() for n in names]
    assert sorted(listed + ["algorithm"]) == sorted(names)  # every field is shown exactly once


@pytest.mark.parametrize("kind", ["sinusoid", "images", "scm", "tabular"])
def test_presets_build_valid_configs(kind):
    cfg = logic.build_config(logic.preset_values(kind))
    assert isinstance(cfg, OneShotMetaLearningConfig)


def test_build_config_errors_name_the_field_and_images_take_n_way_from_the_source(omniglot_dir):
    values = logic.default_values()
    values["inner_lr"] = 50.0
    with pytest.raises(ConfigError, match="inner_lr"):
        logic.build_config(values)

    class FakeImages(logic.ImageTaskSource):  # only n_way matters here
        def __init__(self):
            self.n_way = 7

    assert logic.build_config(logic.default_values(), FakeImages()).n_way == 7


def test_plain_baseline_and_algorithm_fit():
    cfg = logic.build_config(logic.preset_values("sinusoid"))
    base = logic.plain_baseline(cfg)
    assert base.is_plain and base.causal_weight == 0 and not base.enable_causal_priors
    proto = cfg.replace(algorithm="prototypical_causal")
    assert "classification method" in logic.check_algorithm_fits(proto, SinusoidTaskSource())
    assert logic.check_algorithm_fits(cfg, SinusoidTaskSource()) is None


# ---------------------------------------------------------------------------------------------- sources


def test_csv_upload_parsing_and_messages():
    df = logic.read_csv_upload(EXAMPLE_CSV.read_bytes(), "plants.csv")
    assert logic.guess_columns(df) == ("yield", "plant")
    with pytest.raises(TaskError, match="empty"):
        logic.read_csv_upload(b"", "x.csv")
    with pytest.raises(TaskError, match="at least a feature column"):
        logic.read_csv_upload(b"a,b\n1,2\n", "x.csv")
    with pytest.raises(TaskError, match="no data rows"):
        logic.read_csv_upload(b"a,b,c\n", "x.csv")


def test_tabular_source_with_chosen_features():
    df = pd.read_csv(EXAMPLE_CSV)
    src = logic.tabular_source(df, "yield", "plant", ["temperature", "pressure"])
    assert src.feature_names == ["temperature", "pressure"] and src.task_type == "regression"
    with pytest.raises(TaskError, match="at least one feature"):
        logic.tabular_source(df, "yield", "plant", [])
    with pytest.raises(TaskError, match="not numeric"):
        logic.tabular_source(df, "temperature", "yield", ["plant"])


def test_engine_fit_problem():
    sine = SinusoidTaskSource()
    assert "no model" in logic.engine_fit_problem(OneShotMetaLearningEngine(), sine)
    eng = OneShotMetaLearningEngine(logic.build_config(logic.preset_values("sinusoid")))
    eng.initialize_for_source(sine)
    assert logic.engine_fit_problem(eng, sine) is None
    assert "shape" in logic.engine_fit_problem(eng, SCMTaskSource())
    assert logic.engine_fit_problem(eng, None).startswith("No task source")


def test_source_kind_and_label():
    assert logic.source_kind(SinusoidTaskSource()) == "sinusoid"
    assert logic.source_kind(None) == "none"
    assert logic.source_label(SCMTaskSource()) == "scm: 6 variables, regression"


def test_previews():
    curves, points = logic.sinusoid_preview(SinusoidTaskSource(), n=3, shots=4, seed=1)
    assert len(curves) == 3 and len(points[0][0]) == 4
    src = SCMTaskSource()
    ep = src.tasks("train", 1, seed=0)[0].sample_episode(2, 3, np.random.default_rng(0))
    table = logic.episode_table(ep, src.feature_names, None, src.target)
    assert list(table["set"]) == ["support"] * 2 + ["query"] * 3 and src.target in table.columns


# ---------------------------------------------------------------------------------------------- training


def test_history_from_records_and_progress():
    recs = [
        {
            "iteration": 0,
            "train_loss": 2.0,
            "train_metric": 2.0,
            "metric_name": "mse",
            "val_loss": 1.5,
            "val_metric": 1.5,
            "run": "a",
            "done": 1,
            "total": 4,
            "elapsed": 0.5,
            "eta": 1.5,
        },
        {
            "iteration": 1,
            "train_loss": 1.0,
            "train_metric": 1.0,
            "metric_name": "mse",
            "val_loss": None,
            "val_metric": None,
            "run": "a",
            "done": 2,
            "total": 4,
            "elapsed": 1.0,
            "eta": 1.0,
        },
        {"iteration": 0, "train_loss": 9.0, "train_metric": 9.0, "metric_name": "mse", "run": "b"},
    ]
    h = logic.history_from_records(recs, "a")
    assert h["iteration"] == [0, 1] and h["val_iteration"] == [0] and h["metric_name"] == "mse"
    frac, text = logic.progress_of(recs[1])
    assert frac == 0.5 and "2 / 4" in text and "ETA 1 s" in text
    assert logic.progress_of(None) == (0.0, "starting…")
    assert logic.format_seconds(3725) == "1 h 02 min" and logic.format_seconds(75) == "1 min 15 s"


def test_training_job_runs_main_then_baseline_and_stops():
    src = SinusoidTaskSource()
    cfg = logic.build_config(logic.preset_values("sinusoid")).replace(num_meta_iterations=3, val_episodes=2)
    eng, beng = OneShotMetaLearningEngine(cfg), OneShotMetaLearningEngine(logic.plain_baseline(cfg))
    w = Worker()
    w.start(logic.training_job(eng, src, "causal", (beng, "plain")))
    assert w.join(60) and w.status == DONE, w.error
    assert set(w.result) == {"causal", "plain"}
    assert [r["run"] for r in w.records()] == ["causal"] * 3 + ["plain"] * 3
    assert eng.is_trained and beng.is_trained

    long = OneShotMetaLearningEngine(cfg.replace(num_meta_iterations=100_000))
    w.start(logic.training_job(long, src, "long"))
    while w.num_records() < 2:
        pass
    assert w.stop(timeout=2) and w.status == STOPPED
    assert long.history.stopped_early


# ---------------------------------------------------------------------------------------------- adaptation


@pytest.fixture(scope="module")
def sine_engine():
    src = SinusoidTaskSource()
    cfg = logic.build_config(logic.preset_values("sinusoid")).replace(num_meta_iterations=5, val_episodes=2)
    eng = OneShotMetaLearningEngine(cfg)
    eng.meta_train_sync(src)
    return eng, src


def test_adapt_sinusoid_one_point(sine_engine):
    eng, src = sine_engine
    task = src.tasks("test", 1, seed=0)[0]
    grid = logic.sinusoid_grid(src, 50)
    out = logic.adapt_sinusoid(eng, task, [(1.0, float(task.function(np.array([1.0]))[0]))], grid)
    assert len(out["x"]) == len(out["truth"]) == len(out["prior"]) == len(out["adapted"]) == 50
    assert out["support"][0] == [1.0]
    r = out["result"]
    assert r["adaptation_time"] > 0 and len(r["trace"]) == eng.config.adaptation_steps + 1
    assert out["prior"] != out["adapted"]  # adaptation moved the curve
    assert logic.prior_curve(eng, task, grid) == pytest.approx(out["prior"])
    assert logic.md_escape("a_b*[x](y) $z$ <i>") == r"a\_b\*\[x\]\(y\) \$z\$ \<i\>"
    # the reported MSE is the engine's, on the whole true curve
    assert r["adaptation_quality"]["mse"] == pytest.approx(logic.mse(out["adapted"], out["truth"]), rel=1e-4)


def test_intervention_effects_are_differences_of_engine_losses(sine_engine):
    eng, src = sine_engine
    task = src.tasks("test", 1, seed=2)[0]
    sup = task.sample_episode(5, 20, np.random.default_rng(0))
    base, rows = logic.intervention_effects(eng, sup)
    assert len(rows) == eng.model.num_mechanisms
    for k, row in enumerate(rows):
        mask = [1.0] * len(rows)
        mask[k] = 0.0
        off = eng.one_shot_adapt_sync(sup, causal_mask=mask)["adaptation_quality"]["loss"]
        assert row["effect"] == pytest.approx(off - base["adaptation_quality"]["loss"], abs=1e-6)
    # masked outputs: all-ones mask equals no mask; a zero mask changes the predictions
    eng.one_shot_adapt_sync(sup)
    x = sup.query_x.numpy()
    np.testing.assert_allclose(logic.masked_outputs(eng, x, None), logic.masked_outputs(eng, x, [1.0] * 4), atol=1e-6)
    assert not np.allclose(logic.masked_outputs(eng, x, None), logic.masked_outputs(eng, x, [0.0] * 4))


def test_vector_support_rows_roundtrip_and_errors():
    src = TabularTaskSource(EXAMPLE_CSV, "failure", "plant")
    task = next(iter(logic.vector_task_choices(src).values()))
    ep = logic.sample_vector_episode(task, 1, 3, seed=0)
    rows = logic.support_rows(src, ep)
    assert list(rows.columns) == [*src.feature_names, "failure"] and len(rows) == 2
    x, y = logic.rows_to_support(src, rows)
    np.testing.assert_allclose(x, ep.support_x.numpy(), atol=1e-4)
    assert y.tolist() == ep.support_y.numpy().tolist()
    bad = rows.copy()
    bad.loc[0, "failure"] = "maybe"
    with pytest.raises(TaskError, match="unknown class"):
        logic.rows_to_support(src, bad)
    bad = rows.copy()
    bad.loc[0, src.feature_names[0]] = np.nan
    with pytest.raises(TaskError, match="finite"):
        logic.rows_to_support(src, bad)

    reg = TabularTaskSource(EXAMPLE_CSV, "yield", "plant")
    ep = logic.sample_vector_episode(reg.all_tasks("test")[0], 1, 5, seed=0)
    rows = logic.support_rows(reg, ep)
    assert 0 < rows["yield"].iloc[0] < 30  # in the CSV's units, not standardised
    x, y = logic.rows_to_support(reg, rows)
    np.testing.assert_allclose(y, ep.support_y.numpy(), atol=1e-4)


def test_sample_vector_episode_shrinks_queries_for_small_tasks():
    df = pd.DataFrame({"a": range(8), "b": range(8), "t": ["x"] * 4 + ["y"] * 4, "y": [0.0, 1, 2, 3, 4, 5, 6, 7]})
    src = TabularTaskSource(df, "y", "t", task_type="regression")
    ep = logic.sample_vector_episode(src.all_tasks()[0], 1, 15, seed=0)
    assert ep.support_x.shape[0] == 1 and 1 <= ep.query_x.shape[0] <= 3


def test_predictions_table():
    t = logic.predictions_table([1, 0], [1, 1], ["no", "yes"])
    assert t["predicted"].tolist() == ["yes", "no"] and t["correct"].tolist() == [True, False]
    r = logic.predictions_table([[0.5]], [[1.0]], None, lambda v: v * 2 + 1)
    assert r["predicted"].iloc[0] == 2.0 and r["true"].iloc[0] == 3.0 and r["error"].iloc[0] == -1.0


def test_mechanism_table_helpers():
    mechs = [
        {
            "mechanism_type": "representation_transfer",
            "source": "mechanism 0",
            "target": "task",
            "causal_strength": 0.9,
            "confidence": 0.99,
        },
        {
            "mechanism_type": "feature_transfer",
            "source": "X1",
            "target": "output",
            "causal_strength": 0.4,
            "confidence": 0.6,
        },
    ]
    df = logic.mechanisms_frame(mechs)
    assert list(df.columns[: len(logic.MECHANISM_COLUMNS)]) == list(logic.MECHANISM_COLUMNS)
    assert len(logic.filter_mechanisms(df, None, 0.5)) == 1
    assert len(logic.filter_mechanisms(df, ["feature_transfer"], 0.0)) == 1
    assert len(logic.filter_mechanisms(df, None, 0.0, 0.7)) == 1


def test_optional_engine_calls():
    def fn(tasks, progress=None):
        return {"tasks": len(tasks), "progress": progress is not None}

    assert logic.call_supported(fn, [1, 2], progress=1, stop=2) == {"tasks": 2, "progress": True}
    assert logic.accepts(fn, "progress") and not logic.accepts(fn, "stop")

    class Module:  # the signature of engine.causal_direction.run_two_variable_experiment
        @staticmethod
        def run_two_variable_experiment(seeds=10, episodes=1000, n=10, callback=None, callback_every=10, stop=None):
            sig = [[0.5, 0.5], [0.7, 0.6], [0.9, 0.8]]
            for e, row in enumerate(sig[:episodes]):
                callback(e + 1, row)
            return {"episodes": episodes, "sigma": sig[:episodes], "median": [0.5, 0.65, 0.85][:episodes]}

    exp = logic.find_direction_experiment(Module)
    w = Worker()
    w.start(logic.direction_job(exp, 3, 2, 10))
    w.join(5)
    assert w.status == DONE, w.error
    curves = logic.belief_curves(w.result)
    assert curves["median"] == pytest.approx([0.5, 0.65, 0.85]) and curves["episodes"] == [1.0, 2.0, 3.0]
    assert curves["curves"] == [[0.5, 0.7, 0.9], [0.5, 0.6, 0.8]]  # one curve per seed
    assert w.latest["fraction"] == 1.0 and "median σ(γ)" in w.latest["message"]
    live = logic.live_belief(w.records())
    assert live["median"] == pytest.approx([0.5, 0.65, 0.85]) and len(live["curves"]) == 2
    assert logic.find_direction_experiment(object()) is None and logic.belief_curves(None) is None


def test_direction_job_with_the_engine_experiment():
    cd = pytest.importorskip("engine.causal_direction")
    exp = logic.find_direction_experiment(cd)
    assert exp is not None
    w = Worker()
    w.start(logic.direction_job(exp, 20, 2, 5))
    assert w.join(30) and w.status == DONE, w.error
    curves = logic.belief_curves(w.result)
    assert len(curves["median"]) == 20 and len(curves["curves"]) == 2
    assert w.latest["done"] == 20


def test_discovery_job_passes_progress_and_stop():
    seen = {}

    class Eng:
        def discover_causal_patterns_sync(self, tasks, progress=None, stop=None):
            seen["stop"] = stop is not None
            progress(0.5)
            return ["found"]

    w = Worker()
    w.start(logic.discovery_job(Eng(), ["t1", "t2"]))
    w.join(5)
    assert w.result == ["found"] and seen["stop"] and w.latest["fraction"] == 0.5


# ---------------------------------------------------------------------------------------------- images


def _png(arr: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_uploaded_dark_on_light_image_is_inverted_to_strokes_one():
    pic = np.full((105, 105), 255, dtype=np.uint8)
    pic[40:60, 10:95] = 0  # a black bar on white paper
    x = image_bytes_to_array(_png(pic), "bar.png")
    assert x.shape == (1, 28, 28) and x.dtype == np.float32
    assert x[0, 14, 14] > 0.9 and x[0, 2, 2] < 0.05  # stroke 1, background 0


def test_light_on_dark_image_is_kept_and_alpha_is_paper():
    pic = np.zeros((28, 28), dtype=np.uint8)
    pic[10:18, :] = 255
    x = image_bytes_to_array(_png(pic))
    assert x[0, 12, 5] > 0.9 and x[0, 0, 0] < 0.05
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)  # transparent everywhere but a black stroke
    rgba[5:8, :, 3] = 255
    y = image_bytes_to_array(_png(rgba, "RGBA"))
    assert y[0, 6, 10] > 0.9 and y[0, 20, 10] < 0.05


def test_png_roundtrip_and_display():
    x = np.zeros((1, 28, 28), dtype=np.float32)
    x[0, 5:20, 13:15] = 1.0
    back = image_bytes_to_array(array_to_png(x))
    np.testing.assert_allclose(back, x, atol=0.02)
    pic = to_display(x, scale=3)
    assert pic.shape == (84, 84) and pic.dtype == np.uint8 and pic[0, 0] == 255 and pic[20, 40] == 0


def test_bad_uploads_raise_clear_messages():
    with pytest.raises(ImageInputError, match="empty"):
        image_bytes_to_array(b"", "a.png")
    with pytest.raises(ImageInputError, match="unreadable image 'b.png'"):
        image_bytes_to_array(b"not an image", "b.png")
    ok = _png(np.zeros((28, 28), dtype=np.uint8))
    with pytest.raises(ImageInputError, match="c.png"):
        images_to_batch([("ok.png", ok), ("c.png", b"junk")])
    assert images_to_batch([]).shape == (0, 1, 28, 28)
    assert images_to_batch([("a.png", ok), ("b.png", ok)]).shape == (2, 1, 28, 28)


def test_adapt_images_with_and_without_query_labels():
    from engine.tasks import ImageTaskSource

    src = ImageTaskSource(_tiny_zip(), n_way=2, split_fractions=(0.34, 0.33, 0.33))
    cfg = logic.build_config(logic.preset_values("images"), src).replace(conv_channels=8, hidden_dim=16)
    eng = OneShotMetaLearningEngine(cfg)
    eng.initialize_for_source(src)
    task, ep = logic.image_episode(src, 1, 2, "test", 0)
    sx, sy = ep.support_x.numpy(), ep.support_y.numpy().tolist()
    out = logic.adapt_images(eng, sx, sy, ep.query_x.numpy(), ep.query_y.numpy().tolist(), ["a", "b"])
    assert out["labelled"] and out["result"]["adaptation_quality"]["num_query"] == 4
    assert np.asarray(out["probabilities"]).shape == (4, 2) and len(out["predicted"]) == 4
    own = logic.adapt_images(eng, sx, [0, 1], ep.query_x.numpy()[:1], None, ["mine", "yours"])
    assert not own["labelled"] and own["result"]["adaptation_quality"]["num_query"] == 2
    assert len(own["predicted"]) == 1


def _tiny_zip() -> bytes:
    import zipfile

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for c in range(6):
            for i in range(4):
                pic = np.full((28, 28), 255, dtype=np.uint8)
                pic[rng.integers(0, 20) :, c * 4 : c * 4 + 3] = 0
                zf.writestr(f"root/alpha/char{c}/{i}.png", _png(pic))
    return buf.getvalue()
