"""AppTest of every page: renders on built-in data, and each page's main interaction works."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

from engine import OneShotMetaLearningConfig, OneShotMetaLearningEngine
from engine.tasks import EXAMPLE_CSV, SinusoidTaskSource, TabularTaskSource, make_task_source
from tests.fixed_episode_data import copies_layout, write_fixed_zip
from ui.config_form import build_config, preset_values
from ui.ready import TRAIN_YOUR_OWN

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGES = [
    "pages/home.py",
    "pages/tasks.py",
    "pages/train.py",
    "pages/adapt.py",
    "pages/mechanisms.py",
    "pages/interventions.py",
    "pages/causal_direction.py",
]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


class _RouterPagesManager(PagesManager):
    """AppTest resets ``PagesManager.uses_pages_directory`` before every run, so with a
    ``pages/`` folder each run goes through Streamlit's old automatic-pages wrapper, which
    loses the sidebar from the second run on. The server does that only for its very first
    run: app.py's st.navigation switches it off for good. This makes AppTest do the same."""

    def __init__(self, *args, **kwargs):
        PagesManager.uses_pages_directory = False
        super().__init__(*args, **kwargs)


@pytest.fixture(autouse=True)
def _st_navigation_only(monkeypatch):
    monkeypatch.setattr(app_test_module, "PagesManager", _RouterPagesManager)


def new_app(page: str | None = None, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def button(at: AppTest, label: str):
    hits = [b for b in at.button if b.label == label]
    assert hits, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return hits[0]


def texts(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


def train_a_few_iterations(at: AppTest, iterations: int = 3, val_episodes: int = 2) -> None:
    """On the Meta-train page: set a tiny run, press Start and wait until it has finished."""
    at.number_input(key="cfg_num_meta_iterations").set_value(iterations)
    at.number_input(key="cfg_val_episodes").set_value(val_episodes)
    at.run()
    button(at, "Start").click()
    at.run()
    w = at.session_state["workers"]["train"]
    assert w.join(60) and w.status == "done", w.error
    at.run()


def wait_records(worker, n: int = 1, timeout: float = 30.0) -> None:
    t0 = time.monotonic()
    while worker.num_records() < n and worker.running and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
    assert worker.num_records() >= n, (worker.status, worker.error)


def trained_sine_engine(iterations: int = 20) -> OneShotMetaLearningEngine:
    cfg = build_config(preset_values("sinusoid")).replace(num_meta_iterations=iterations, val_episodes=2)
    eng = OneShotMetaLearningEngine(cfg)
    eng.meta_train_sync(SinusoidTaskSource())
    return eng


@pytest.fixture(scope="module")
def sine_engine():
    return trained_sine_engine()


# ---------------------------------------------------------------------------------------------- every page


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_builtin_data(page):
    at = new_app(page)
    ok(at)
    assert at.title, "each page has a title"
    assert "This session's engine" in texts(at.sidebar.markdown)


def test_every_page_renders_with_a_trained_engine(sine_engine):
    at = new_app(engine=sine_engine)
    for page in PAGES[1:]:
        at.switch_page(page)
        at.run()
        ok(at)
    assert "your model trained at" in texts(at.sidebar.markdown)
    assert "20 iterations" in texts(at.sidebar.markdown)


# ---------------------------------------------------------------------------------------------- home demo


def test_home_demo_trains_stops_and_adapts_to_one_typed_point():
    at = new_app()
    button(at, TRAIN_YOUR_OWN).click()
    at.run()
    ok(at)
    w = at.session_state["workers"]["train"]
    assert w.running
    wait_records(w, 3)
    at.run()  # the fragment shows progress and live curves
    ok(at)
    assert at.get("plotly_chart"), "live curves are drawn"
    assert any("Training" in str(p.proto.text) for p in at.get("progress"))
    t0 = time.monotonic()
    button(at, "Stop").click()
    at.run()
    assert not w.running and time.monotonic() - t0 < 5
    assert w.status == "stopped"
    at.run()
    ok(at)
    assert "Training stopped" in texts(at.warning)
    assert at.session_state["runs"][0]["name"] == "demo: sinusoid MAML"
    # step 2: type one point and adapt
    at.number_input(key="demo_x").set_value(2.0)
    button(at, "Adapt to this point").click()
    at.run()
    ok(at)
    res = at.session_state["demo_result"]
    assert res["support"][0] == [2.0]
    labels = [m.label for m in at.metric]
    assert "adaptation time" in labels and "MSE on the curve, after" in labels


# ---------------------------------------------------------------------------------------------- tasks


def test_tasks_upload_csv_choose_columns_and_use_it():
    at = new_app("pages/tasks.py")
    at.radio(key="tasks_kind").set_value("upload_csv")
    at.run()
    at.file_uploader(key="csv_upload").set_value(("plants.csv", EXAMPLE_CSV.read_bytes(), "text/csv"))
    at.run()
    ok(at)
    assert at.selectbox(key="csv_target").value == "yield"
    assert at.selectbox(key="csv_task").value == "plant"
    at.selectbox(key="csv_target").set_value("failure")
    at.run()
    ok(at)
    assert not at.error
    button(at, "Use this task source").click()
    at.run()
    ok(at)
    src = at.session_state["source"]
    assert isinstance(src, TabularTaskSource) and src.target_column == "failure" and src.task_type == "classification"
    assert "failure" in texts(at.success)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "empty"),
        (b"a,b\n1,2\n", "at least a feature column"),
        (b"x,y,task\n1,2,a\nfoo,3,b\n", "not numeric"),
    ],
)
def test_tasks_bad_csv_shows_a_message_not_a_traceback(data, message):
    at = new_app("pages/tasks.py")
    at.radio(key="tasks_kind").set_value("upload_csv")
    at.run()
    at.file_uploader(key="csv_upload").set_value(("bad.csv", data, "text/csv"))
    at.run()
    ok(at)
    if message == "not numeric":
        at.selectbox(key="csv_target").set_value("y")
        at.selectbox(key="csv_task").set_value("task")
        at.run()
        ok(at)
    assert message in texts(at.error)


def test_tasks_bad_zip_shows_a_message():
    at = new_app("pages/tasks.py")
    at.radio(key="tasks_kind").set_value("upload_zip")
    at.run()
    at.file_uploader(key="zip_upload").set_value(("x.zip", b"not a zip", "application/zip"))
    at.run()
    ok(at)
    assert "not a valid zip" in texts(at.error)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "no images")
    at.file_uploader(key="zip_upload").set_value(("empty.zip", buf.getvalue(), "application/zip"))
    at.run()
    ok(at)
    assert "no images found" in texts(at.error)


@pytest.mark.parametrize("kind", ["scm", "images", "example_csv"])
def test_tasks_builtin_previews(kind):
    at = new_app("pages/tasks.py")
    at.radio(key="tasks_kind").set_value(kind)
    at.run()
    ok(at)
    assert not at.error
    if kind == "scm":
        assert at.get("plotly_chart") and at.dataframe  # the true graph and an episode table
    if kind == "images":
        assert len(at.get("image")) == 2, "support and query images are shown"
    button(at, "Use this task source").click()
    at.run()
    ok(at)
    assert at.session_state["source"].name == {"example_csv": "tabular"}.get(kind, kind)


def test_tasks_images_mirrors_and_distortion_reach_the_source():
    at = new_app("pages/tasks.py")
    at.radio(key="tasks_kind").set_value("images")
    at.run()
    at.checkbox(key="img_mirror").check()
    at.checkbox(key="img_distort").check()
    at.run()
    ok(at)
    button(at, "Use this task source").click()
    at.run()
    ok(at)
    info = at.session_state["source"].describe()
    assert info["mirrors"] is True and info["augment_shift"] == 2 and info["augment_affine"] == 1.0


# ---------------------------------------------------------------------------------------------- meta-train


def test_train_start_stop_overlay_and_checkpoint_roundtrip():
    at = new_app("pages/train.py")
    ok(at)
    at.number_input(key="cfg_num_meta_iterations").set_value(100_000)
    at.checkbox(key="with_baseline").check()
    at.run()
    button(at, "Start").click()
    at.run()
    ok(at)
    w = at.session_state["workers"]["train"]
    wait_records(w, 2)
    button(at, "Stop").click()
    at.run()
    assert not w.running and w.status == "stopped"
    at.run()
    ok(at)
    assert len(at.session_state["runs"]) == 1  # the baseline does not start after a stop
    # a short run with its plain baseline: both finish and overlay
    at.number_input(key="cfg_num_meta_iterations").set_value(3)
    at.number_input(key="cfg_val_episodes").set_value(2)
    at.run()
    button(at, "Start").click()
    at.run()
    assert w.join(60) and w.status == "done", w.error
    at.run()
    ok(at)
    names = [r["name"] for r in at.session_state["runs"]]
    assert len(names) == 3 and names[-1].endswith("(plain baseline)")
    assert at.session_state["runs"][-1]["plain"] is True
    assert at.multiselect(key=f"overlay_runs_{len(names)}").value == names
    # save, then load the saved bytes back through the uploader
    button(at, "Save checkpoint").click()
    at.run()
    ok(at)
    fname, data = at.session_state["ck_bytes"]
    assert fname.endswith(".zip") and data[:2] == b"PK"
    at.file_uploader(key="ck_upload").set_value((fname, data, "application/zip"))
    at.run()
    button(at, "Load checkpoint").click()
    at.run()
    ok(at)
    assert at.session_state["engine"].checkpoint_name == fname
    assert "Loaded" in texts(at.success)


def test_train_bad_checkpoint_and_bad_config_show_messages():
    at = new_app("pages/train.py")
    at.file_uploader(key="ck_upload").set_value(("bad.zip", b"garbage", "application/zip"))
    at.run()
    button(at, "Load checkpoint").click()
    at.run()
    ok(at)
    assert "zip" in texts(at.error)
    at.selectbox(key="cfg_algorithm").set_value("PROTOTYPICAL_CAUSAL")
    at.run()
    ok(at)
    assert "classification method" in texts(at.error)
    assert button(at, "Start").disabled


# ---------------------------------------------------------------------------------------------- adapt


def test_adapt_sinusoid_from_one_typed_point(sine_engine):
    at = new_app("pages/adapt.py", engine=sine_engine)
    ok(at)
    at.number_input(key="adapt_sine_x").set_value(-1.5)
    button(at, "Adapt to this point").click()
    at.run()
    ok(at)
    assert at.session_state["adapt_sine_result"]["support"][0] == [-1.5]


def test_adapt_images_held_out_and_own_uploads():
    src = make_task_source("images")
    cfg = build_config(preset_values("images"), src).replace(conv_channels=8, hidden_dim=16)
    eng = OneShotMetaLearningEngine(cfg)
    eng.initialize_for_source(src)  # untrained is enough to exercise the page
    at = new_app("pages/adapt.py", engine=eng, source=src)
    ok(at)
    button(at, "Adapt and label the query drawings").click()
    at.run()
    ok(at)
    res = at.session_state["img_result"]
    assert res["labelled"] and len(res["predicted"]) == 5 * min(5, cfg.query_shots)
    assert "query accuracy" in [m.label for m in at.metric]
    assert "labelled together" not in texts(at.caption)
    # transductive labelling: said on the page, and the drawings are still labelled
    eng.config = eng.config.replace(transductive_steps=3)
    eng.learner.config = eng.config
    at.run()
    assert "Transductive labelling is on (transductive_steps = 3)" in texts(at.caption)
    button(at, "Adapt and label the query drawings").click()
    at.run()
    ok(at)
    assert len(at.session_state["img_result"]["predicted"]) == 5 * min(5, cfg.query_shots)
    # own pictures: one per class, then one to label
    at.radio(key="img_mode").set_value("My own images")
    at.run()
    pics = [_picture(i) for i in range(3)]
    at.file_uploader(key="own_support").set_value([(f"class{i}.png", p, "image/png") for i, p in enumerate(pics)])
    at.file_uploader(key="own_query").set_value([("mystery.png", pics[1], "image/png")])
    at.run()
    ok(at)
    button(at, "Adapt and label my pictures").click()
    at.run()
    ok(at)
    res = at.session_state["img_result"]
    assert not res["labelled"] and res["class_names"] == ["class0", "class1", "class2"] and len(res["predicted"]) == 1
    # no labels for the pictures to label: no accuracy (it would be the support pictures' own)
    assert not [m.label for m in at.metric if m.label.startswith("query")]
    assert "no accuracy can be measured" in texts(at.caption)
    # a broken picture is a message
    at.file_uploader(key="own_query").set_value([("broken.png", b"nope", "image/png")])
    at.run()
    ok(at)
    assert "broken" in texts(at.error) and "not a readable PNG or JPEG" in texts(at.error)


def test_adapt_tabular_from_one_row():
    src = TabularTaskSource(EXAMPLE_CSV, "yield", "plant")
    cfg = build_config(preset_values("tabular")).replace(num_meta_iterations=3, val_episodes=2)
    eng = OneShotMetaLearningEngine(cfg)
    eng.meta_train_sync(src)
    at = new_app("pages/adapt.py", engine=eng, source=src)
    ok(at)
    button(at, "Adapt to this row").click()
    at.run()
    ok(at)
    r = at.session_state["vec_result"]["result"]
    assert r["adaptation_quality"]["num_query"] >= 1
    assert at.dataframe, "predictions table"


# ---------------------------------------------------------------------------------------------- interventions


def test_interventions_slider_changes_predictions_and_effects(sine_engine):
    at = new_app("pages/interventions.py", engine=sine_engine)
    ok(at)
    k = sine_engine.model.num_mechanisms
    assert len(at.slider) == k
    before = {m.label: m.value for m in at.metric}
    assert before["MSE without intervention"] == before["MSE with intervention"]
    at.slider(key="iv_mask_0").set_value(0.0)
    at.slider(key="iv_mask_1").set_value(0.0)
    at.run()
    ok(at)
    # The masked curve moves (two mechanisms' changes can cancel in the MSE's three digits).
    curves = {t.get("name"): t.get("y") for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"]}
    assert curves["adapted, with the mask"] != curves["adapted, no intervention"]
    for i in range(k):
        at.slider(key=f"iv_mask_{i}").set_value(0.0)
    at.run()
    after = {m.label: m.value for m in at.metric}
    assert after["MSE with intervention"] != after["MSE without intervention"]
    button(at, "Measure the effect of each mechanism").click()
    at.run()
    ok(at)
    rows = at.session_state["iv_effects_data"]["rows"]
    assert [r["mechanism"] for r in rows] == [f"mechanism {i}" for i in range(k)]
    button(at, "All mechanisms on").click()
    at.run()
    assert at.slider(key="iv_mask_0").value == 1.0


def _source(kind: str):
    from engine.tasks import SCMTaskSource

    return {
        "scm_regression": lambda: SCMTaskSource(),
        "scm_classification": lambda: SCMTaskSource(task_type="classification"),
        "csv_regression": lambda: TabularTaskSource(EXAMPLE_CSV, "yield", "plant"),
        "csv_classification": lambda: TabularTaskSource(EXAMPLE_CSV, "failure", "plant"),
    }[kind]()


@pytest.mark.parametrize("kind", ["scm_regression", "scm_classification", "csv_regression", "csv_classification"])
def test_adapt_and_interventions_on_vector_sources(kind):
    src = _source(kind)
    cfg = build_config(preset_values("tabular" if kind.startswith("csv") else "scm"))
    eng = OneShotMetaLearningEngine(cfg)
    eng.initialize_for_source(src)  # untrained is enough to exercise the pages
    at = new_app("pages/adapt.py", engine=eng, source=src)
    ok(at)
    button(at, "Adapt to this row" if src.task_type == "regression" else "Adapt to these rows").click()
    at.run()
    ok(at)
    assert not at.error, texts(at.error)
    assert at.session_state["vec_result"]["result"]["adaptation_quality"]["num_query"] >= 1
    at.switch_page("pages/interventions.py")
    at.run()
    ok(at)
    at.slider(key="iv_mask_0").set_value(0.0)
    at.run()
    ok(at)
    button(at, "Measure the effect of each mechanism").click()
    at.run()
    ok(at)
    assert len(at.session_state["iv_effects_data"]["rows"]) == cfg.num_mechanisms


# ---------------------------------------------------------------------------------------------- mechanisms


class _FakeCausalEngine(OneShotMetaLearningEngine):
    """A discovery with fixed results: the page's worker, table and filters, tested quickly."""

    def discover_causal_patterns_sync(self, tasks, progress=None, stop=None, held_out=None):
        for i in range(len(tasks)):
            progress(i + 1, len(tasks))
        self.import_mechanisms(
            [
                {
                    "mechanism_type": "representation_transfer",
                    "source": "mechanism 0",
                    "target": "task",
                    "causal_strength": 0.9,
                    "confidence": 0.98,
                    "effectiveness": None,
                    "reuse_count": 0,
                    "effect": 0.4,
                    "effect_std": 0.1,
                },
                {
                    "mechanism_type": "feature_transfer",
                    "source": "x",
                    "target": "output",
                    "causal_strength": 0.3,
                    "confidence": 0.7,
                    "effectiveness": None,
                    "reuse_count": 0,
                    "effect": 0.05,
                    "effect_std": 0.02,
                },
            ]
        )
        return self.discovered_mechanisms


def test_mechanisms_page_runs_discovery_in_a_worker_and_filters():
    src = SinusoidTaskSource()
    eng = _FakeCausalEngine(build_config(preset_values("sinusoid")))
    eng.initialize_for_source(src)
    at = new_app("pages/mechanisms.py", engine=eng)
    ok(at)
    button(at, "Run discovery").click()
    at.run()
    w = at.session_state["workers"]["discovery"]
    assert w.join(10) and w.status == "done", w.error
    at.run()
    ok(at)
    assert at.dataframe, "the mechanisms table"
    at.slider(key="mech_threshold").set_value(0.0)
    at.run()
    assert "2 of 2 mechanisms shown" in texts(at.caption)
    at.slider(key="mech_threshold").set_value(0.5)
    at.run()
    ok(at)
    assert "1 of 2 mechanisms shown" in texts(at.caption)


def test_mechanisms_page_with_the_engine_discovery_table_graph_and_truth():
    from engine.tasks import SCMTaskSource

    src = SCMTaskSource()
    # Trained long enough that its mechanisms pass the threshold on any draw of tasks (after 30
    # iterations whether one does depends on which tasks are drawn).
    cfg = build_config(preset_values("scm")).replace(num_meta_iterations=60, val_episodes=2)
    eng = OneShotMetaLearningEngine(cfg)
    eng.meta_train_sync(src)
    at = new_app("pages/mechanisms.py", engine=eng, source=src)
    ok(at)
    at.slider(key="disc_tasks").set_value(4)
    at.slider(key="disc_held").set_value(0)
    button(at, "Run discovery").click()
    at.run()
    w = at.session_state["workers"]["discovery"]
    assert w.join(120) and w.status == "done", w.error
    at.run()
    ok(at)
    assert eng.discovered_mechanisms
    assert at.dataframe, "the mechanisms table"
    assert "precision" in [m.label for m in at.metric], "scored against the SCM's truth"
    # no held-out tasks chosen: discovery holds out a quarter of its 4 tasks, so effectiveness is measured
    effectiveness = next(m for m in at.metric if m.label == "average effectiveness")
    assert effectiveness.value != "not measured", texts(at.caption)
    assert float(effectiveness.value) == pytest.approx(eng.get_mechanism_insights()["average_effectiveness"], abs=1e-3)
    assert at.get("iframe"), "the pyvis graph"
    assert "Last discovery" in texts(at.caption)
    downloads = [d.proto.label for d in at.get("download_button")]
    assert {"Download graph (HTML)", "Download graph (GraphML)", "Download graph (JSON)"} <= set(downloads)


def test_causal_direction_page_runs_the_experiment():
    at = new_app("pages/causal_direction.py")
    ok(at)
    at.number_input(key="cd_episodes").set_value(50)
    at.number_input(key="cd_runs").set_value(2)
    button(at, "Run").click()
    at.run()
    w = at.session_state["workers"]["direction"]
    assert w.join(60) and w.status == "done", w.error
    at.run()
    ok(at)
    assert at.get("plotly_chart"), "the belief curves"


@pytest.mark.slow
def test_causal_direction_page_learns_the_scm_graph_beside_pc():
    at = new_app("pages/causal_direction.py")
    at.number_input(key="cd_scm_tasks").set_value(20)
    button(at, "Learn the graph").click()
    at.run()
    ok(at)
    labels = {m.label: m.value for m in at.metric}
    assert "SHD, learned from interventions" in labels and "SHD, PC" in labels
    assert len(at.get("plotly_chart")) >= 3, "truth, learned and PC graphs"


def test_interventions_hierarchical_levels(sine_engine):
    at = new_app("pages/interventions.py", engine=sine_engine)
    button(at, "Adapt level by level").click()
    at.run()
    ok(at)
    rows = at.session_state["iv_hier_data"]["res"]["levels"]
    assert [r["level"] for r in rows] == ["feature", "structure", "optimization"]
    labels = [m.label for m in at.metric]
    assert labels.count("query MSE") == 3  # regression: the loss is the MSE, shown once per level
    assert "query loss" not in labels and "mse" not in labels


def _picture(i: int) -> bytes:
    """A PNG of a dark bar on white paper, at a different height for each ``i``."""
    from PIL import Image

    pic = np.full((28, 28), 255, dtype=np.uint8)
    pic[4 + 6 * i : 8 + 6 * i, 3:25] = 0
    buf = io.BytesIO()
    Image.fromarray(pic, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def test_adapt_page_scores_an_uploaded_fixed_episode_zip(tmp_path):

    src = make_task_source("images", n_way=3)
    cfg = OneShotMetaLearningConfig(
        algorithm="PROTOTYPICAL_CAUSAL", hidden_dim=16, conv_channels=8, n_way=3, device="cpu"
    )
    eng = OneShotMetaLearningEngine(cfg)
    eng.initialize_for_source(src)
    data = write_fixed_zip(tmp_path / "trials.zip", copies_layout(episodes=2, ways=3)).read_bytes()
    at = new_app("pages/adapt.py", engine=eng, source=src)
    at.radio(key="img_mode").set_value("Fixed episodes (a zip)")
    at.run()
    at.file_uploader(key="fixed_zip").set_value([("trials.zip", data, "application/zip")])
    at.run()
    button(at, "Score every episode").click()
    at.run()
    ok(at)
    res = at.session_state["fixed_result"]
    assert res["accuracy"] == 1.0 and [r["episode"] for r in res["per_episode"]] == ["ep0", "ep1"]
    assert any(m.label.startswith("accuracy, mean over episodes") for m in at.metric)
    confusion = at.dataframe[-1].value
    assert list(confusion.columns) == ["c0", "c1", "c2"] and confusion.values.trace() == 3
    # a zip that breaks the layout is a message, not a traceback
    bad = write_fixed_zip(tmp_path / "bad.zip", {"ep": {"a": {"q.png": 1}, "b": {"support.png": 2, "q.png": 3}}})
    at.file_uploader(key="fixed_zip").set_value([("bad.zip", bad.read_bytes(), "application/zip")])
    at.run()
    button(at, "Score every episode").click()
    at.run()
    ok(at)
    assert "has no 'support" in texts(at.error)
