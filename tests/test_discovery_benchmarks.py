"""Smoke runs of the discovery benchmarks with tiny settings (they write nothing)."""

from __future__ import annotations

from benchmarks import bench_causal_direction, bench_priors, bench_scm_recovery


def test_bench_priors_smoke() -> None:
    out = bench_priors.main(
        "--families target_term --settings large --graphs 1 --tasks 4 --pre 4 --post 2 "
        "--discovery-tasks 8 --threads 1 --no-write".split()
    )
    entry = out["summary"][0]
    assert entry["tasks"] == 4 and entry["plain_maml_ratio"] == 1.0
    assert len(out["rows"][0]["rates"]) == 4


def test_bench_scm_recovery_smoke(omniglot_dir) -> None:
    assert (omniglot_dir / "images_background_small1.zip").exists(), "assets/omniglot ships the Omniglot minimal set"
    out = bench_scm_recovery.main(
        "--graphs 1 --iterations 5 --tasks 6 --image-iterations 2 --image-tasks 2 --image-episodes 2 "
        "--ks 1 --threads 1 --no-write".split()
    )
    assert 0.0 <= out["scm"]["mean_f1"] <= 1.0
    assert out["images"]["checks"][0]["k"] == 1


def test_bench_causal_direction_smoke() -> None:
    out = bench_causal_direction.main(
        "--seeds 2 --episodes 20 --sizes 5 --graphs 1 --tasks 10 --samples 60 --no-write".split()
    )
    assert out["two_variable"]["episodes"] == 20
    assert "pc_shd" in out["graphs"]["rows"][0]
