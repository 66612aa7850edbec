"""Each benchmark runs end to end with tiny settings, so the scripts never rot (no numbers checked)."""

from benchmarks import omniglot_quality, sinusoid_quality


def test_sinusoid_quality_smoke():
    result = sinusoid_quality.main(
        ["--iterations", "3", "--tasks", "3", "--shots", "5", "--variants", "MAML (plain)", "--no-write"]
    )
    assert result["rows"][0]["mse_5shot"] > 0


def test_omniglot_quality_smoke():
    result = omniglot_quality.main(
        ["--minutes", "0.01", "--episodes", "2", "--channels", "8", "--chunk", "2", "--no-write"]
    )
    assert 0 <= result["curve"][0]["20way"]["accuracy"] <= 1


def test_maml_speed_smoke():
    from benchmarks import maml_speed

    row = maml_speed.worker("ours", "sinusoid MLP 1-40-40-1", steps=1, iters=2, warmup=1, threads=1)
    ref = maml_speed.worker("higher", "sinusoid MLP 1-40-40-1", steps=1, iters=2, warmup=1, threads=1)
    assert row["tasks_per_s"] > 0 and ref["tasks_per_s"] > 0


def test_adaptation_latency_smoke():
    from benchmarks import adaptation_latency

    result = adaptation_latency.main(
        ["--runs", "2", "--learners", "PROTOTYPICAL_CAUSAL,GRADIENT_CAUSAL", "--conv-steps", "1", "--no-write"]
    )
    assert all(r["adapt_p50_ms"] > 0 and r["adapt_flops"] > 0 for r in result["rows"])


def test_app_latency_smoke():
    import os

    import pytest

    if not os.access("/usr/bin/chromium", os.X_OK):
        pytest.skip("needs Debian's Chromium (CI installs it)")
    from benchmarks import app_latency

    result = app_latency.main(["--starts", "1", "--clicks", "1", "--no-write"])
    assert result["start_median_s"] > 0 and result["adapt_median_s"] > 0


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
    assert "fraction of bound" in meta_training.markdown(result)


def test_session_memory_smoke():
    import os

    import pytest

    if not os.access("/usr/bin/chromium", os.X_OK):
        pytest.skip("needs Debian's Chromium (CI installs it)")
    from benchmarks import common, session_memory

    result = session_memory.main(["--sessions", "1", "--train-seconds", "0.5", "--final-wait", "0", "--no-write"])
    assert result["start"]["rss_mb"] > 0 and len(result["per_session"]) == 1 and result["end"]["rss_mb"] > 0
    assert "| after session 1 |" in session_memory.markdown({**result, "machine": common.machine(), "command": "x"})
