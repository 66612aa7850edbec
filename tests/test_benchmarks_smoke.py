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
