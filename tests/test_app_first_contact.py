"""AppTest regressions for the bugs a new user met on first contact (issue 21, item 6)."""

from __future__ import annotations

import pytest

from tests.test_app_pages import (  # noqa: F401  (fixtures used by name)
    _restore_torch_threads,
    _st_navigation_only,
    button,
    new_app,
    ok,
    texts,
    trained_sine_engine,
    wait_records,
)


def test_omniglot_chosen_after_meta_train_was_opened_selects_the_prototypical_learner():
    at = new_app("pages/train.py")
    assert at.selectbox(key="cfg_algorithm").value == "MAML_CAUSAL"
    at.switch_page("pages/tasks.py")
    at.run()
    at.radio(key="tasks_kind").set_value("images")
    at.run()
    button(at, "Use this task source").click()
    at.run()
    ok(at)
    at.switch_page("pages/train.py")
    at.run()
    ok(at)
    box = at.selectbox(key="cfg_algorithm")
    assert box.value == "PROTOTYPICAL_CAUSAL"
    # The browser shows (and sends back) its own old value unless the server marks the value as set.
    assert box.proto.set_value
    assert at.number_input(key="cfg_num_meta_iterations").proto.set_value


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("num_meta_iterations", 999_999_999_999, "0 to 1e+06"),
        ("num_meta_iterations", -3, "0 to 1e+06"),
        ("outer_lr", 1e30, "1e-07 to 1"),
    ],
)
def test_out_of_range_setting_shows_its_range_and_start_refuses(field, value, words):
    at = new_app("pages/train.py")
    at.number_input(key=f"cfg_{field}").set_value(value)
    at.run()
    ok(at)
    assert words in texts(at.error)
    assert button(at, "Start").disabled
    at.number_input(key=f"cfg_{field}").set_value(100 if field == "num_meta_iterations" else 0.003)
    at.run()
    assert not at.error and not button(at, "Start").disabled


def test_settings_are_labelled_in_words_with_the_field_name_in_the_help():
    at = new_app("pages/train.py")
    box = at.selectbox(key="cfg_algorithm")
    assert box.label == "Learner" and "`algorithm`" in box.help
    it = at.number_input(key="cfg_num_meta_iterations")
    assert it.label == "Meta-training iterations" and "`num_meta_iterations`" in it.help
    labels = [w.label for w in list(at.number_input) + list(at.checkbox) + list(at.selectbox)]
    assert not [x for x in labels if "_" in x], labels


def test_download_button_of_an_earlier_models_checkpoint_goes_when_another_model_is_trained():
    at = new_app("pages/train.py")
    at.number_input(key="cfg_num_meta_iterations").set_value(2)
    at.number_input(key="cfg_val_episodes").set_value(1)
    at.run()
    button(at, "Start").click()
    at.run()
    w = at.session_state["workers"]["train"]
    assert w.join(60) and w.status == "done", w.error
    at.run()
    button(at, "Save checkpoint").click()
    at.run()
    ok(at)
    assert [b for b in at.get("download_button")], "the saved checkpoint can be downloaded"
    button(at, "Start").click()  # a different model
    at.run()
    assert w.join(60) and w.status == "done", w.error
    at.run()
    ok(at)
    assert not at.get("download_button") and "ck_bytes" not in at.session_state


def test_start_says_it_replaces_the_trained_model_and_a_stopped_run_does_not_replace_it():
    at = new_app("pages/train.py")
    at.number_input(key="cfg_num_meta_iterations").set_value(2)
    at.number_input(key="cfg_val_episodes").set_value(1)
    at.run()
    button(at, "Start").click()
    at.run()
    w = at.session_state["workers"]["train"]
    assert w.join(60) and w.status == "done", w.error
    at.run()
    trained = at.session_state["engine"]
    assert trained.is_trained and "replaces the session's trained model" in texts(at.caption)
    # a long run, stopped early: the session keeps the trained model, and says so
    at.number_input(key="cfg_num_meta_iterations").set_value(100_000)
    at.run()
    button(at, "Start").click()
    at.run()
    wait_records(w, 2)
    button(at, "Stop").click()
    at.run()
    assert not w.running and w.status == "stopped"
    at.run()
    ok(at)
    assert at.session_state["engine"] is trained
    assert "so the session keeps its earlier trained model" in texts(at.info)
    button(at, "Use the stopped run's model").click()
    at.run()
    ok(at)
    assert at.session_state["engine"] is not trained and at.session_state["engine"].history.iteration
    # a run that finishes replaces it
    trained = at.session_state["engine"]
    at.number_input(key="cfg_num_meta_iterations").set_value(2)
    at.run()
    button(at, "Start").click()
    at.run()
    assert w.join(60) and w.status == "done", w.error
    at.run()
    ok(at)
    assert at.session_state["engine"] is not trained and len(at.session_state["engine"].history.iteration) == 2


def test_returning_to_causal_direction_keeps_the_inputs_of_the_plot_shown():
    at = new_app("pages/causal_direction.py")
    at.number_input(key="cd_episodes").set_value(50)
    at.number_input(key="cd_runs").set_value(2)
    at.number_input(key="cd_scm_tasks").set_value(20)
    button(at, "Run").click()
    at.run()
    w = at.session_state["workers"]["direction"]
    assert w.join(60) and w.status == "done", w.error
    at.switch_page("pages/home.py")
    at.run()
    at.switch_page("pages/causal_direction.py")
    at.run()
    ok(at)
    assert at.get("plotly_chart"), "the earlier run's curves are still shown"
    assert at.number_input(key="cd_episodes").value == 50 and at.number_input(key="cd_runs").value == 2
    assert at.number_input(key="cd_scm_tasks").value == 20


def test_tasks_page_offers_a_large_scm_graph_as_a_table_in_causal_order():
    at = new_app("pages/tasks.py")
    at.radio(key="tasks_kind").set_value("scm")
    at.run()
    at.number_input(key="scm_d").set_value(50)
    at.run()
    ok(at)
    assert "The true graph as a table" in texts(at.markdown)
    tables = [d.value for d in at.dataframe if "causal order" in d.value.columns]
    assert len(tables) == 1 and len(tables[0]) == 50


def test_home_demo_shows_one_two_and_five_points_with_the_error_before_and_after():
    at = new_app(engine=trained_sine_engine(20))
    ok(at)
    assert "one point is one equation" in texts(at.markdown)
    rows = at.session_state["demo_steps"]
    assert [r["count"] for r in rows] == [1, 2, 5]
    metrics = [m for m in at.metric if m.label == "MSE on the curve"]
    assert len(metrics) == 3
    for m, r in zip(metrics, rows, strict=True):
        assert m.value == f"{r['result']['adaptation_quality']['mse']:.3g}"
        assert f"from {r['prior_quality']['mse']:.3g}" in m.proto.delta


@pytest.mark.slow
def test_home_demo_measures_the_mean_error_over_100_held_out_tasks():
    at = new_app(engine=trained_sine_engine(20))
    button(at, "Measure the error over 100 held-out tasks").click()
    at.run()
    ok(at)
    data = at.session_state["demo_sweep"]["data"]
    assert data["tasks"] == 100 and data["counts"] == [1, 2, 3, 5, 10]
    assert "Measured now on this session's model" in texts(at.caption)
    assert any(c.proto.spec and "held-out tasks" in c.proto.spec for c in at.get("plotly_chart"))
