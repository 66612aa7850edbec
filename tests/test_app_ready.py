"""AppTest of first contact with the ready models: a fresh session adapts at once, the sidebar names the
model in use, a session's own training replaces it for that session only, and the one loaded ready model is shared
read-only by all sessions and never changed by one."""

from __future__ import annotations

import time

import torch

from engine.ready_models import load_ready_model
from tests.test_app_pages import (  # noqa: F401  (fixtures used by name)
    _restore_torch_threads,
    _st_navigation_only,
    button,
    new_app,
    ok,
    texts,
    train_a_few_iterations,
)
from ui.ready import shared_ready_engine


def sidebar(at) -> str:
    return texts(at.sidebar.markdown).replace("\\", "")  # markdown escapes, e.g. Meta\-SGD


def test_fresh_home_shows_one_shot_adaptation_on_the_ready_model_without_training():
    at = new_app()
    ok(at)
    assert "Model: **ready sinusoid Meta-SGD model**" in sidebar(at)
    w = at.session_state["workers"]["train"]  # Home shows its (idle) training status
    assert not w.running and w.num_records() == 0, "nothing was trained"
    rows = at.session_state["demo_steps"]
    assert [r["count"] for r in rows] == [1, 2, 5]
    five = rows[-1]
    assert len(five["adapted"]) == len(five["x"]) > 0
    assert five["result"]["adaptation_quality"]["mse"] < 0.5 * five["prior_quality"]["mse"]
    # the 100-task chart is measured on the ready model in the background, then shown
    t0 = time.monotonic()
    while "Measured on the ready model" not in texts(at.caption) and time.monotonic() - t0 < 120:
        time.sleep(1)
        at.run()
    ok(at)
    assert "Measured on the ready model" in texts(at.caption)
    assert len(at.get("plotly_chart")) >= 5  # three steps, the 100-task chart, the clickable chart
    assert any(b.label.startswith("Meta-train your own") for b in at.button)


def _shares_weights(eng, shared) -> bool:
    mine = eng.learner.state_dict()
    return all(mine[n].data_ptr() == t.data_ptr() for n, t in shared.learner.state_dict().items())


def test_sessions_share_the_loaded_ready_model_read_only_and_adapt_on_their_own():
    at, other = new_app(), new_app()
    at.number_input(key="demo_x").set_value(2.0)
    button(at, "Adapt to this point").click()
    at.run()
    ok(at)
    assert at.session_state["demo_result"]["support"][0] == [2.0]
    shared = shared_ready_engine("sinusoid_metasgd")
    session_engine = at.session_state["engine"]
    assert session_engine is not shared and session_engine._last_state is not None
    assert shared._last_state is None
    # loaded once: both sessions use its tensors, no per-session copy
    for eng in (session_engine, other.session_state["engine"]):
        assert eng.is_shared_view and _shares_weights(eng, shared)
    # and what it shows before a session changes anything is computed once for all
    assert at.session_state["demo_steps"] is other.session_state["demo_steps"]
    pristine = load_ready_model("sinusoid_metasgd").learner.state_dict()
    for name, value in shared.learner.state_dict().items():
        assert torch.equal(value, pristine[name]), name


def test_own_training_replaces_the_ready_model_for_that_session_only():
    at = new_app("pages/train.py")
    assert "ready sinusoid Meta-SGD model" in sidebar(at)
    train_a_few_iterations(at, iterations=2, val_episodes=1)
    ok(at)
    own = at.session_state["engine"]
    assert not own.is_shared_view and not _shares_weights(own, shared_ready_engine("sinusoid_metasgd"))
    assert "Model: **your model trained at" in sidebar(at) and "2 iterations" in sidebar(at)
    assert "ready sinusoid" not in sidebar(at)
    # the session keeps its own model on every page and when it changes task source
    at.switch_page("pages/home.py")
    at.run()
    ok(at)
    assert "your model trained at" in sidebar(at)
    other = new_app()
    assert "Model: **ready sinusoid Meta-SGD model**" in sidebar(other)


def test_choosing_scm_tasks_uses_the_ready_scm_model_and_its_mechanisms():
    at = new_app("pages/tasks.py")
    at.radio(key="tasks_kind").set_value("scm")
    at.run()
    button(at, "Use this task source").click()
    at.run()
    ok(at)
    assert "Model: **ready SCM model with discovered mechanisms**" in sidebar(at)
    at.switch_page("pages/mechanisms.py")
    at.run()
    ok(at)
    assert at.session_state["engine"].discovered_mechanisms
    assert "None yet" not in texts(at.caption)
    # another graph is another SCM: no ready model for it
    at.switch_page("pages/tasks.py")
    at.run()
    at.radio(key="tasks_kind").set_value("scm")
    at.run()
    at.number_input(key="scm_seed").set_value(3)
    at.run()
    button(at, "Use this task source").click()
    at.run()
    ok(at)
    assert "Model: **none**" in sidebar(at)


def test_image_tasks_get_the_ready_omniglot_model_only_at_its_image_size():
    from engine.tasks import EXAMPLE_CSV, make_task_source
    from ui.ready import ready_name_for

    assert ready_name_for(make_task_source("images")) == "omniglot_proto"
    assert ready_name_for(make_task_source("images", image_size=20)) is None
    assert (
        ready_name_for(make_task_source("tabular", data=EXAMPLE_CSV, target_column="failure", task_column="plant"))
        is None
    )


def test_a_stopped_home_demo_run_leaves_the_ready_model_in_use():
    at = new_app()
    button(at, "Meta-train your own (replaces the ready model for this session)").click()
    at.run()
    ok(at)
    assert "MAML_CAUSAL (training)" in sidebar(at) and "in use until the new one finishes" in sidebar(at)
    assert at.session_state["engine"].is_shared_view  # still the ready model while the new one trains
    button(at, "Stop").click()
    at.run()
    t0 = time.monotonic()
    while at.session_state["workers"]["train"].running and time.monotonic() - t0 < 30:
        time.sleep(0.5)
        at.run()
    ok(at)
    assert "Model: **ready sinusoid Meta-SGD model**" in sidebar(at)
    assert at.session_state["engine"].is_shared_view
