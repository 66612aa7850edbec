"""AppTest of the Meta-train page's "Evolve settings" section: a small study runs in the
session's worker, its optimisation history is drawn, and the best settings go into the form."""

from __future__ import annotations

import math

from tests.test_app_pages import _restore_torch_threads, _st_navigation_only, button, new_app, ok, texts

__all__ = ["_restore_torch_threads", "_st_navigation_only"]  # autouse fixtures of the page tests


def test_evolve_settings_runs_a_study_draws_its_history_and_applies_the_best():
    at = new_app("pages/train.py")
    for name, value in {"meta_batch_size": 2, "val_episodes": 2, "query_shots": 5}.items():
        at.number_input(key=f"cfg_{name}").set_value(value)
    at.number_input(key="evolve_trials").set_value(3)
    at.number_input(key="evolve_budget").set_value(4)
    at.run()
    ok(at)
    button(at, "Evolve settings").click()
    at.run()
    ok(at)
    w = at.session_state["workers"]["evolve"]
    assert w.join(120), "the study finishes"
    assert w.status == "done", (w.status, w.error)
    at.run()
    ok(at)
    assert "Evolution finished" in texts(at.success)
    result = w.result
    assert math.isfinite(result.value) and len(result.trials) == 3
    assert at.get("plotly_chart"), "the optimisation history is drawn"
    trials = [r for r in w.records() if r.get("event") == "trial"]
    assert [r["trial"] for r in trials] == [0, 1, 2] and trials[-1]["done"] == 3
    assert "Best validation MSE" in texts(at.markdown)
    button(at, "Apply the best settings").click()
    at.run()
    ok(at)
    best = result.config.to_dict()
    for name in result.trials[0]["params"]:
        assert at.session_state[f"cfg_{name}"] == best[name], name
        assert at.session_state["config_values"][name] == best[name], name
    assert at.session_state["cfg_meta_batch_size"] == 2  # fields the study does not search stay


def test_evolve_settings_is_disabled_while_training_runs():
    at = new_app("pages/train.py")
    at.number_input(key="cfg_num_meta_iterations").set_value(100000)
    at.run()
    button(at, "Start").click()
    at.run()
    ok(at)
    try:
        assert button(at, "Evolve settings").disabled
    finally:
        at.session_state["workers"]["train"].stop(timeout=10)


def test_evolution_figure_shows_complete_pruned_and_best_so_far():
    from ui.figures import evolution_figure

    records = [
        {"event": "intermediate", "trial": 0, "step": 0, "value": 3.0},
        {"event": "trial", "trial": 0, "state": "COMPLETE", "value": 2.0, "best_value": 2.0},
        {"event": "trial", "trial": 1, "state": "PRUNED", "value": 4.0, "best_value": 2.0},
        {"event": "trial", "trial": 2, "state": "COMPLETE", "value": 1.5, "best_value": 1.5},
    ]
    fig = evolution_figure(records, "mse")
    complete, pruned, best = fig.data
    assert list(complete.x) == [0, 2] and list(pruned.y) == [4.0] and list(best.y) == [2.0, 2.0, 1.5]
    assert "validation MSE" in fig.layout.title.text


def test_evolve_settings_stops_on_request_with_a_message():
    at = new_app("pages/train.py")
    at.number_input(key="evolve_budget").set_value(5000)
    at.run()
    button(at, "Evolve settings").click()
    at.run()
    ok(at)
    w = at.session_state["workers"]["evolve"]
    assert w.running
    at.button(key="evolve_stop").click()
    at.run()
    assert w.join(30) and w.status == "stopped", (w.status, w.error)
    at.run()
    ok(at)
    assert "Evolution stopped" in texts(at.warning)
    assert not [b for b in at.button if b.label == "Apply the best settings"]  # no trial finished
