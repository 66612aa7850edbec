"""The README's set-up commands are the ones CI and the app really use: an edit to one side
without the other fails here (no network, no install: the files are only read)."""

import re
import shlex
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CI_RUN = ROOT / ".ci" / "run"
FULL_SUITE = ".venv/bin/python -m pytest -q"


def setup_blocks() -> list[str]:
    """The fenced bash blocks of the README's "Set up" section, each as one stripped line."""
    section = re.search(r"^## Set up.*?$(.*?)(?=^## )", README, re.M | re.S)
    assert section, "README.md has no '## Set up' section"
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section.group(1), re.S)]


def commands(script: str) -> list[str]:
    """A shell script's lines without comments and blank lines, stripped."""
    return [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_setup_section_has_the_app_the_test_and_the_quick_loop_commands_in_order():
    app, tests, quick = setup_blocks()
    assert "streamlit run" in app and tests.startswith("bash ") and "pytest" in quick


def test_the_test_command_is_ci_run():
    _, tests, _ = setup_blocks()
    assert tests == "bash .ci/run"
    assert CI_RUN.is_file()


def test_ci_run_ends_with_the_full_suite_and_never_needs_sudo_as_root():
    lines = commands(CI_RUN.read_text())
    assert lines[-1] == FULL_SUITE  # every test, no marker filter
    assert "-m" not in shlex.split(lines[-1])[3:]
    # sudo only through $SUDO, which is set only for a user who is not root and has sudo
    assert not [line for line in lines if re.match(r"(sudo|.*&&\s*sudo)\b", line)]
    assert 'SUDO="sudo"' in lines and "command -v sudo" in CI_RUN.read_text()


def test_the_app_command_installs_the_requirements_and_runs_the_app():
    app, _, _ = setup_blocks()
    steps = [step.strip() for step in app.split("&&")]
    assert steps == [
        "python3 -m venv .venv",
        ".venv/bin/pip install -r requirements.txt",
        ".venv/bin/streamlit run app.py",
    ]
    assert "sudo" not in app  # the app needs no root
    assert (ROOT / "requirements.txt").is_file() and (ROOT / "app.py").is_file()


def test_the_quick_loop_filters_the_full_suite_by_registered_markers():
    _, _, quick = setup_blocks()
    words = shlex.split(quick)
    assert " ".join(words[:4]) == FULL_SUITE and words[4] == "-m" and len(words) == 6
    expression = words[5]
    named = set(re.findall(r"[A-Za-z_]\w*", expression)) - {"not", "and", "or"}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    registered = {m.split(":")[0].strip() for m in pyproject["tool"]["pytest"]["ini_options"]["markers"]}
    assert named and named <= registered
    assert expression == "not slow and not browser"
