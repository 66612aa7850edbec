"""Each benchmark runs end to end with tiny settings, so the scripts never rot (no numbers checked)."""

import pytest

from benchmarks import omniglot_quality, sinusoid_quality


def test_sinusoid_quality_smoke():
    result = sinusoid_quality.main(
        ["--iterations", "3", "--tasks", "3", "--shots", "5", "--variants", "MAML (plain)", "--no-write"]
    )
    assert result["rows"][0]["mse_5shot"] > 0


def test_omniglot_quality_smoke(tmp_path):
    result = omniglot_quality.main(
        ["--minutes", "0.01", "--episodes", "2", "--channels", "8", "--chunk", "2", "--no-write"]
        + ["--mirrors", "--augment-affine", "1", "--test-time-shifts", "1", "--cosine"]
    )
    point = result["curve"][0]
    assert all(0 <= point[k]["accuracy"] <= 1 for k in ("20way", "5way", "20way_views", "5way_views"))
    assert "mirrors, affine x1" in omniglot_quality.training_line(result["settings"])
    assert "lr cosine to 0" in omniglot_quality.training_line(result["settings"])
    assert omniglot_quality._error({"20way": point["20way"]}, "20way_views") == "–"  # older results lack views
    omniglot_quality.plot({"run": {**result, "curve": [point, point]}}, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_omniglot_plot_highlights_the_best_curve_of_each_kind():
    def run(errors: list[float], members: int, views: bool = False) -> dict:
        def point(e: float) -> dict:
            views_key = {"20way_views": {"error": e - 0.02, "ci95": 0.01}} if views else {}
            return {"20way": {"error": e, "ci95": 0.01}} | views_key

        return {"curve": [point(e) for e in errors], "settings": {"ensemble_of": ["a"] * members} if members else {}}

    results = {
        "one_good": run([0.30, 0.20], 0),
        "one_bad": run([0.25, 0.22], 0, views=True),  # better early, worse at the end; has views
        "pair": run([0.28, 0.17], 2),
        "short": run([0.01], 0),  # one mark: no curve
        "replayed": run([0.27, 0.10], 0) | {"settings": {"replay": "one_good"}},  # a check, never highlighted
    }
    chosen = omniglot_quality.highlighted_curves(results)
    assert chosen == [("one_bad", "20way_views"), ("one_good", "20way"), ("pair", "20way")]
    pair_of_replays = {"ensemble_of": ["a", "b"], "member_settings": [{"replay": "a"}, {"replay": "b"}]}
    assert omniglot_quality.is_replay(pair_of_replays) and not omniglot_quality.is_replay({})


@pytest.mark.slow
def test_omniglot_ensemble_scores_saved_runs(tmp_path, monkeypatch):
    from benchmarks import common

    for module in (omniglot_quality, common):
        monkeypatch.setattr(module, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "BENCHMARKS_MD", tmp_path / "BENCHMARKS.md")
    monkeypatch.setattr(omniglot_quality, "RUNS_MD", tmp_path / "omniglot_runs.md")
    tiny = ["--minutes", "0.01", "--episodes", "3", "--channels", "8", "--chunk", "2", "--save-checkpoints"]
    for seed in ("0", "1"):
        omniglot_quality.main([*tiny, "--seed", seed, "--tag", f"m{seed}"])
    result = omniglot_quality.main(["--ensemble", "m0,m1", "--episodes", "3", "--tag", "pair"])
    assert 0 <= result["curve"][0]["20way"]["accuracy"] <= 1
    assert "ensemble of 2 such runs (seeds 0, 1)" in omniglot_quality.training_line(result["settings"])
    assert (tmp_path / "omniglot_quality_small1_pair.json").exists()
    assert "ensemble of 2" in (tmp_path / "omniglot_runs.md").read_text()
    # One run's checkpoints scored again with transductive prototypes: its plain error comes back
    # exactly, the transductive errors join it, and it shows in the transductive table only.
    rescored = omniglot_quality.main(
        ["--ensemble", "m0", "--episodes", "3", "--test-time-shifts", "1", "--transductive-steps", "2", "--tag", "m0t"]
    )
    point = rescored["curve"][0]
    assert {"20way_trans", "20way_views_trans"} <= point.keys() and "5way_trans" not in point
    own = omniglot_quality.json.loads((tmp_path / "omniglot_quality_small1_m0.json").read_text())["curve"][0]
    assert point["20way"]["accuracy"] == own["20way"]["accuracy"]
    text = (tmp_path / "omniglot_runs.md").read_text()
    assert "| small1_m0t | m0 | " in text and "ensemble of 1 such" not in text
    views = ["--test-time-shifts", "1", "--test-time-views", "grid_affine"]
    pair = ["--ensemble", "m0,m1", "--episodes", "3", "--no-write"]
    wider = omniglot_quality.main([*pair, *views, "--marks", "0.01", "--ways", "20"])
    assert "test views grid_affine ±1px (15)" in omniglot_quality.training_line(wider["settings"])
    assert 0 <= wider["curve"][0]["20way_views"]["accuracy"] <= 1 and "5way" not in wider["curve"][0]
    with pytest.raises(SystemExit, match="the runs have no mark 7 min"):
        omniglot_quality.main([*pair, "--marks", "7"])
    with pytest.raises(SystemExit, match="no saved run omniglot_quality_small1_nope.json"):
        omniglot_quality.main(["--ensemble", "m0,nope", "--no-write"])
    omniglot_quality.main([*tiny[:-1], "--tag", "unsaved"])  # trained without --save-checkpoints
    with pytest.raises(SystemExit, match="run unsaved kept no model at 0.01 min"):
        omniglot_quality.main(["--ensemble", "m0,unsaved", "--no-write"])

    # one member's mean probability is its own prediction; a member twice changes nothing
    eng = omniglot_quality.create_one_shot_meta_learning_engine(algorithm="PROTOTYPICAL_CAUSAL")
    eng.load_sync(omniglot_quality.checkpoint_path("small1", "m0", 0.01))
    source = omniglot_quality.ImageTaskSource(
        omniglot_quality.OMNIGLOT_DIR / "images_background_small2.zip", n_way=20, split_fractions=(0, 0, 1)
    )
    for episode in source.episodes("test", 3, 1, 2, seed=5):
        own = eng.learner.evaluate_episode(episode)["accuracy"]
        assert omniglot_quality.ensemble_accuracy([eng.learner], episode) == pytest.approx(own)
        assert omniglot_quality.ensemble_accuracy([eng.learner] * 2, episode) == pytest.approx(own)


@pytest.mark.slow
def test_omniglot_replay_repeats_a_run_step_for_step(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    from benchmarks import common

    for module in (omniglot_quality, common):
        monkeypatch.setattr(module, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "BENCHMARKS_MD", tmp_path / "BENCHMARKS.md")
    monkeypatch.setattr(omniglot_quality, "RUNS_MD", tmp_path / "omniglot_runs.md")
    tiny = ["--episodes", "3", "--channels", "8", "--chunk", "2", "--save-checkpoints", "--cpu-time"]
    tiny += ["--threads", "1", "--augment-shift", "1", "--augment-affine", "1", "--test-time-shifts", "1"]
    # marks in CPU time: how many iterations each holds depends on the machine; the rate drops at the first
    original = omniglot_quality.main([*tiny, "--minutes", "0.04,0.08", "--decay-at", "0.04", "--tag", "orig"])
    assert original["curve"][1]["iterations"] > original["curve"][0]["iterations"] > 0
    replayed = omniglot_quality.main(["--replay", "orig", "--threads", "1"])
    assert replayed["settings"]["tag"] == "origr" and replayed["settings"]["replay"] == "orig"
    assert "replay of orig by iterations" in omniglot_quality.training_line(replayed["settings"])

    def scores(curve: list[dict]) -> list[dict]:  # all but the (machine-dependent) training time
        return [{k: v for k, v in point.items() if k != "train_minutes"} for point in curve]

    assert scores(replayed["curve"]) == scores(original["curve"])
    for mark in (0.04, 0.08):
        own = load_file(omniglot_quality.checkpoint_path("small1", "orig", mark) / "model.safetensors")
        again = load_file(omniglot_quality.checkpoint_path("small1", "origr", mark) / "model.safetensors")
        assert own.keys() == again.keys() and all(torch.equal(own[k], again[k]) for k in own)
    first = omniglot_quality.main(["--replay", "orig", "--marks", "0.04", "--threads", "1", "--no-write"])
    assert scores(first["curve"]) == scores(original["curve"][:1])  # up to its first mark only
    with pytest.raises(SystemExit, match="the run has no mark 5 min"):
        omniglot_quality.main(["--replay", "orig", "--marks", "5", "--no-write"])
    omniglot_quality.main([*tiny, "--minutes", "0.01", "--cosine", "--tag", "cos"])
    with pytest.raises(SystemExit, match="cosine rate or weight averaging followed the clock"):
        omniglot_quality.main(["--replay", "cos", "--no-write"])
    with pytest.raises(SystemExit, match="no saved run omniglot_quality_small1_nope.json"):
        omniglot_quality.main(["--replay", "nope", "--no-write"])
    with pytest.raises(SystemExit):  # argparse's error: the two modes conflict
        omniglot_quality.main(["--replay", "orig", "--ensemble", "orig", "--no-write"])


@pytest.mark.slow
def test_omniglot_weight_averaging(tmp_path):
    import torch

    model = torch.nn.Linear(3, 2)
    first = [p.detach().clone() for p in model.parameters()]
    average = omniglot_quality.AveragedModel(model, use_buffers=False)
    average.update_parameters(model)  # the first update copies the weights
    with torch.no_grad():
        for p in model.parameters():
            p.add_(2.0)
    average.update_parameters(model)
    with omniglot_quality.averaged_weights(model, average):
        assert all(torch.allclose(p, f + 1.0) for p, f in zip(model.parameters(), first))  # mean of the two
    assert all(torch.allclose(p, f + 2.0) for p, f in zip(model.parameters(), first))  # own weights back

    result = omniglot_quality.main(
        ["--minutes", "0.01,0.03", "--average-from", "0.01", "--episodes", "2", "--channels", "8", "--chunk", "2"]
        + ["--test-time-shifts", "1", "--no-write"]
    )
    point = result["curve"][-1]
    assert point["averaged_chunks"] >= 1
    assert all(0 <= point[k]["accuracy"] <= 1 for k in ("20way", "20way_last", "20way_views_last"))
    table = omniglot_quality.averaging_table({"omniglot_quality_small1_avg": result})
    assert table[-1].startswith(f"| small1_avg | {point['train_minutes']:.1f} min | {point['averaged_chunks']} |")
    assert omniglot_quality.averaging_table({"plain": {"curve": [{"20way": point["20way"]}]}}) == []
    line = omniglot_quality.training_line(result["settings"])
    assert "weights averaged from 0.01 min" in line
    mixed = {**result["settings"], "ensemble_of": ["a", "b"], "seed": [0, 1]}
    mixed["member_settings"] = [result["settings"], {**result["settings"], "average_from": 0, "seed": 1}]
    assert omniglot_quality.training_line(mixed) == (
        f"ensemble of 2 different runs: ({line}) + ({line.replace(', weights averaged from 0.01 min', '')}, seed 1)"
    )


def test_maml_speed_smoke():
    from benchmarks import maml_speed

    row = maml_speed.worker("ours", "sinusoid MLP 1-40-40-1", steps=1, iters=2, warmup=1, threads=1)
    ref = maml_speed.worker("higher", "sinusoid MLP 1-40-40-1", steps=1, iters=2, warmup=1, threads=1)
    assert row["tasks_per_s"] > 0 and ref["tasks_per_s"] > 0


@pytest.mark.slow
def test_adaptation_latency_smoke():
    from benchmarks import adaptation_latency

    result = adaptation_latency.main(
        ["--runs", "2", "--learners", "PROTOTYPICAL_CAUSAL,GRADIENT_CAUSAL", "--conv-steps", "1", "--no-write"]
    )
    assert all(r["adapt_p50_ms"] > 0 and r["adapt_flops"] > 0 for r in result["rows"])


@pytest.mark.browser
def test_app_latency_smoke():
    import os

    import pytest

    if not os.access("/usr/bin/chromium", os.X_OK):
        pytest.skip("needs Debian's Chromium (CI installs it)")
    from benchmarks import app_latency

    result = app_latency.main(["--starts", "1", "--clicks", "1", "--strokes", "1", "--no-write"])
    assert result["start_median_s"] > 0 and result["adapt_median_s"] > 0 and result["stroke_median_s"] > 0
    assert 0 < result["first_adapted_median_s"] <= result["start_median_s"]


@pytest.mark.slow
def test_meta_training_smoke(tmp_path):
    from benchmarks import meta_training
    from benchmarks.common import machine

    proto = meta_training.worker("PROTOTYPICAL_CAUSAL", ways=5, shots=1, steps=0, batch=1, iters=1, threads=1)
    maml = meta_training.worker("MAML_CAUSAL", ways=5, shots=1, steps=1, batch=2, iters=1, threads=1)
    assert proto["episodes_per_s"] > 0 and maml["gflop_per_iteration"] > proto["gflop_per_iteration"] > 0
    result = {
        "throughput": [proto, maml],
        "scaling": [{"axis": "batch", "value": 1, **proto}, {"axis": "batch", "value": 2, **maml}],
        "settings": {"iters": 1, "threads": 1},
        "machine": machine(),
        "command": "smoke",
    }
    meta_training.plot(result, tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").stat().st_size > 1000
    text = meta_training.markdown(result)
    assert "fraction of bound" in text and "| MAML_CAUSAL | batch | 2 |" in text  # one row per learner and axis


@pytest.mark.browser
def test_session_memory_smoke():
    import os

    import pytest

    if not os.access("/usr/bin/chromium", os.X_OK):
        pytest.skip("needs Debian's Chromium (CI installs it)")
    from benchmarks import common, session_memory

    result = session_memory.main(["--sessions", "1", "--train-seconds", "0.5", "--final-wait", "0", "--no-write"])
    assert result["start"]["rss_mb"] > 0 and len(result["per_session"]) == 1 and result["end"]["rss_mb"] > 0
    assert "| after session 1 |" in session_memory.markdown({**result, "machine": common.machine(), "command": "x"})


def test_gpu_check_smoke():
    # The CPU stands in for the GPU here: the two runs are the same computation, so they agree exactly.
    from benchmarks import gpu_check

    result = gpu_check.main(["--device", "cpu", "--cases", "1", "--iterations", "3", "--episodes", "3", "--no-write"])
    row = result["rows"][0]
    assert row["max_loss_difference_first_iterations"] == 0 and row["gpu_checkpoint_metric_difference"] == 0
    assert row["gpu_adapt_ms"] > 0


def test_gpu_columns_ask_for_cuda_clearly_where_there_is_none():
    import pytest
    import torch

    from benchmarks.common import pick_device, result_name

    assert result_name("maml_speed", pick_device("cpu")) == "maml_speed"
    assert result_name("maml_speed", torch.device("cuda")) == "maml_speed_cuda"
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device"):
            pick_device("cuda")


def test_meta_training_markdown_without_scaling():
    from benchmarks import meta_training
    from benchmarks.common import machine

    row = {
        "learner": "PROTOTYPICAL_CAUSAL",
        "ways": 20,
        "shots": 1,
        "steps": 0,
        "batch": 1,
        "episodes_per_s": 100.0,
        "ms_per_iteration": 10.0,
        "gflop_per_iteration": 7.0,
        "bound_ms": 1.0,
        "fraction_of_bound": 0.1,
        "peak_mb": 50.0,
    }
    result = {
        "throughput": [row],
        "scaling": [],
        "settings": {"iters": 1, "threads": 1, "device": "cuda"},
        "machine": machine(),
        "command": "smoke",
    }
    text = meta_training.markdown(result)
    assert "on the GPU" in text and "Scaling" not in text and "allocated GPU memory" in text


def test_machine_line_names_the_cpu_kernels_when_recorded():
    from benchmarks.common import machine, machine_line

    m = machine()
    assert m["cpu_kernels"] and f"({m['cpu_kernels']} kernels, " in machine_line(m)
    older = {k: v for k, v in m.items() if k != "cpu_kernels"}  # results saved before it was recorded
    assert machine_line(older).startswith(f"{m['cpu']} ({m['cores']} cores")


@pytest.mark.slow
def test_evolve_quality_smoke():
    from benchmarks import evolve_quality

    result = evolve_quality.main(
        ["--trials", "2", "--budget", "2", "--seeds", "1", "--tasks", "2", "--sources", "sinusoid", "--no-write"]
    )
    row = result["rows"][0]
    assert row["test"]["default"]["mse"] > 0 and row["test"]["evolved"]["mse"] > 0


def test_distributed_training_smoke():
    import argparse

    from benchmarks import distributed_training

    args = argparse.Namespace(batch=2, iters=1, device="cpu")
    row = distributed_training._point(args, "PROTOTYPICAL_CAUSAL", 2, 1)  # a real 2-process torchrun
    assert row["processes"] == 2 and row["batch"] == 2 and row["tasks_per_s"] > 0


def test_distributed_training_markdown_speed_up_is_against_one_process_on_one_thread():
    from benchmarks import distributed_training
    from benchmarks.common import machine

    def row(processes: int, threads: int, tasks_per_s: float) -> dict:
        return {
            "learner": "MAML_CAUSAL",
            "steps": 1,
            "processes": processes,
            "threads_per_process": threads,
            "tasks_per_s": tasks_per_s,
            "ms_per_iteration": 8000 / tasks_per_s,
        }

    rows = [row(1, 1, 10.0), row(1, 2, 15.0), row(2, 1, 18.0)]
    settings = {"iters": 1, "batch": 8, "nprocs": "1,2", "cores": 2, "repeats": 1, "device": "cpu"}
    result = {"rows": rows, "settings": settings, "machine": machine(), "command": "smoke", "load_average": "1-1"}
    text = distributed_training.markdown(result)
    assert "| 2nd-order MAML, 1 step | 2 | 1 | 18.0 | 444 | 1.80x |" in text
    assert "| 2nd-order MAML, 1 step | 1 | 2 | 15.0 | 533 | 1.50x |" in text


def test_poll_cost_smoke():
    from benchmarks.poll_cost import main

    result = main(["--iterations", "60", "--per-poll", "20", "--no-write"])
    (run,) = result["runs"]
    assert run["polls"] == 3 and run["rebuilt_ms"] > 0 and run["live_ms"] > 0
