"""Every saved benchmark result can be rerun: its recorded command still parses with the script's
options today, and (for results that store their parsed options) means the same settings, so a
changed default cannot silently change what an old command measures."""

import importlib
import json
import shlex
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
RESULT_FILES = sorted(RESULTS.glob("*.json"))


def script_and_argv(command: str) -> tuple[str, list[str]]:
    """('sinusoid_quality', [...]) from 'python -m engine bench sinusoid_quality ...' or
    'python -m benchmarks.sinusoid_quality ...'."""
    words = shlex.split(command)
    if words[:4] == ["python", "-m", "engine", "bench"]:
        return words[4], words[5:]
    if words[:2] == ["python", "-m"] and words[2].startswith("benchmarks."):
        return words[2].removeprefix("benchmarks."), words[3:]
    raise AssertionError(f"not a benchmark command: {command!r}")


def test_there_are_saved_results():
    assert len(RESULT_FILES) > 10


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda p: p.stem)
def test_recorded_command_still_parses(path: Path):
    result = json.loads(path.read_text())
    name, argv = script_and_argv(result["command"])
    assert path.stem.startswith(name)  # the result is where its script writes
    module = importlib.import_module(f"benchmarks.{name}")
    parser = module.build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "replay", ""):  # a replay's options are its original run's
        args = module.replay_args(args, parser)
    recorded = result.get("settings", {})
    if "member_settings" in recorded:  # an ensemble: its settings merge its members'
        return
    parsed = vars(args)
    # scalars only: some scripts store an option parsed further (a list of shots or graph seeds)
    shared = [k for k in recorded if k in parsed and not isinstance(recorded[k], (list, dict))]
    assert shared or not recorded
    assert {k: parsed[k] for k in shared} == {k: recorded[k] for k in shared}
