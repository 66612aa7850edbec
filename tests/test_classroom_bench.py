"""The classroom benchmark's pure parts (no browser, no server): reading the sidebar's job line,
counting sessions that waited without a queue position, the row statistics, the table and the goals."""

import os
import subprocess
import sys
import time

import pytest

from benchmarks import classroom

SIDEBAR = (
    "This session's engine\n\nTasks: sinusoid\nAlgorithm: MAML_CAUSAL\n\n{line}\n\nStop\n\nWorkspace ab12cd34: kept"
)
MACHINE = {"cpu": "a CPU", "cpu_kernels": "AVX2", "cores": 2, "torch": "2.13.0", "torch_threads": 2}
MACHINE |= {"commit": "abc1234", "date": "today"}


@pytest.mark.parametrize(
    ("line", "state"),
    [
        ("meta-training: queued, position 3 · starts in about 20 s", "queued"),
        ("meta-training: 12 / 400 · demo: sinusoid MAML · 3 s elapsed · ETA 9 s", "running"),
        ("meta-training: starting…", "starting"),  # the workspace id's digits below are not a count
        ("", "none"),
    ],
)
def test_job_state_reads_the_sidebar_line(line, state):
    assert classroom.job_state_of(SIDEBAR.format(line=line)) == state


def test_a_long_start_without_position_counts_as_waiting():
    queued_then_ran = [[0.5, "queued"], [1.5, "queued"], [2.5, "starting"], [3.5, "running"], [20.0, "none"]]
    assert classroom.longest_wait(queued_then_ran, finished=True) == pytest.approx(1.0)
    assert not classroom.waited_without_position({"samples": queued_then_ran, "train_s": 21.0})
    stuck = [[0.5, "starting"], [1.5, "starting"], [5.0, "starting"], [6.0, "running"]]
    assert classroom.longest_wait(stuck, finished=True) == pytest.approx(5.5)
    assert classroom.waited_without_position({"samples": stuck, "train_s": 30.0})
    never_shown = [[0.5, "none"], [1.5, "none"]]
    assert classroom.waited_without_position({"samples": never_shown, "train_s": None})
    # The job ended and the page was not yet redrawn: not a wait; unfinished, the same stretch is one.
    ended = [[0.5, "running"], [1.5, "none"], [9.0, "none"]]
    assert classroom.longest_wait(ended, finished=True) == 0.0
    assert classroom.longest_wait(ended, finished=False) == pytest.approx(7.5)


def session(home: float | None, train: float | None, switch: float | None, adapt: list[float], samples) -> dict:
    return {"home_ready_s": home, "train_s": train, "switch_s": switch, "adapt_s": adapt, "samples": samples}


def made_up_rows() -> list[dict]:
    running = [[1.0, "running"], [2.0, "running"]]
    eight = [session(1.0 + i / 5, 20.0 + 5 * i, 0.5, [0.3, 0.5], running) for i in range(8)]
    eight[7] = session(1.9, None, 0.6, [], [[1.0, "starting"], [2.0, "starting"], [6.0, "starting"]])
    twelve = [session(2.0, 30.0, 0.5 + i / 20, [0.5, 0.6, 0.7], running) for i in range(12)]
    rows = [{"sessions": 1, "open_only": False, "error": "RuntimeError"}]
    rows += [classroom.summarize(eight, False), classroom.summarize(twelve, False)]
    opened = [session(1.0 + i / 25, None, None, [], []) | {"home_script_s": 0.5} for i in range(30)]
    rows.append(classroom.summarize(opened, True))
    for r in rows[1:]:
        r |= {"peak_rss_mb": 1234.4, "cpu_cores": 1.73, "wall_s": 80.0, "client_cpu_cores": 0.25, "load_before": 1.5}
    return rows


def test_summarize_counts_what_the_sessions_reached():
    eight = made_up_rows()[1]
    assert eight["home_ready_k"] == 8 and eight["trained_k"] == 7 and eight["switch_k"] == 8
    assert eight["train"]["median"] == 35.0 and eight["train"]["max"] == 50.0
    assert eight["adapt"]["median"] == pytest.approx(0.4)  # over every click of every session
    assert eight["waited_without_position"] == 1
    assert eight["per_session"][0]["states"] == {"running": 2}
    assert eight["per_session"][7]["longest_wait_s"] == pytest.approx(5.0)
    assert "samples" not in eight["per_session"][0]


def test_table_and_goals():
    result = {"settings": {"timeout": 120.0, "clicks": 3, "workers": None, "cold_pool": False, "browser_nice": 10}}
    result |= {"machine": MACHINE, "command": "python -m engine bench classroom", "rows": made_up_rows()}
    text = classroom.markdown(result)
    assert "| 1 | failed: RuntimeError | | | | | | | |" in text
    assert "| 8 | 1.7 s, 2.1 s | 7 of 8 within 120 s, 35.0 s, 50.0 s | 1 | 0.5 s, 0.6 s | 0.4 s, 0.5 s |" in text
    assert "1234 MB | 1.73 cores | 0.25 cores |" in text
    assert "Pool workers: the app's default (2 cores); warmed up first" in text and "Chromium at nice 10." in text
    assert "before each row: 1.5, 1.5, 1.5." in text  # the failed row has no reading
    assert (
        "| 30, opening Home only | 1.6 s, 2.1 s, max 2.2 s (the server's script run done: 0.5 s, 0.5 s) | – |" in text
    )
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| sessions |"))
    table = lines[start : lines.index("", start)]
    assert len(table) == 6 and {line.count("|") for line in table} == {10}  # header, rule and 4 rows alike
    met = {goal.split(":")[0]: (measured, yes) for goal, measured, yes in classroom.goals(result)}
    assert met["8 sessions training the demo at once"] == ("7 of 8 within 60 s (slowest 50.0 s); 1 waited", "no")
    switch, adapt = met["12 sessions"][0].split("; ")
    assert switch == "switch 0.8 s, 1.0 s" and adapt == "adapt 0.6 s, 0.7 s" and met["12 sessions"][1] == "yes"
    assert met["30 sessions opening the app get Home within 5 s"] == ("30 of 30 within 5 s (slowest 2.2 s)", "yes")
    result["rows"] = result["rows"][:2]
    assert [y for _, m, y in classroom.goals(result)][1:] == ["–", "–", "–"]


def test_the_row_of_sessions_without_a_browser_and_its_goal():
    times = [0.9] * 29 + [5.5]
    row = {"sessions": 30, "open_only": True, "clients": True, "home_script": classroom.stats(times)}
    row |= {"home_script_k": 30, "per_session": [{"home_script_s": t} for t in times]}
    row |= {"peak_rss_mb": 430.0, "cpu_cores": 1.02, "wall_s": 6.0, "load_before": 0.5}
    line = classroom.table_row(row, 120)
    assert line.startswith("| 30, opening Home without a browser | the server's script run done: 0.9 s")
    assert line.count("|") == 10 and "430 MB | 1.02 cores | none |" in line
    result = {"rows": [row]}
    (goal, measured, met) = classroom.goals(result)[-1]
    assert "without a browser" in goal and measured == "29 of 30 within 5 s (slowest 5.5 s)" and met == "no"


def test_options():
    args = classroom.build_parser().parse_args(["--sessions", "1,4,8", "--open-sessions", "0", "--timeout", "90"])
    assert args.sessions == [1, 4, 8] and args.open_sessions == 0 and args.timeout == 90.0 and args.workers is None
    for bad in (["--sessions", "1,x"], ["--sessions", "0"], ["--timeout", "-1"], ["--timeout", "nan"]):
        with pytest.raises(SystemExit):
            classroom.build_parser().parse_args(bad)


def test_the_server_tree_includes_its_children():
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert {os.getpid(), child.pid} <= set(classroom.process_tree(os.getpid()))
        rss_mb, cpu_s = classroom.tree_usage(os.getpid())
        assert rss_mb > classroom.tree_usage(child.pid)[0] > 0 and cpu_s > 0
    finally:
        child.kill()
        child.wait()


def test_stopping_the_server_ends_the_processes_it_started():
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    server = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(100):  # until its child runs
        if len(classroom.process_tree(server.pid)) == 2:
            break
        time.sleep(0.05)
    child = classroom.process_tree(server.pid)[1]
    classroom.stop_server(server, grace=0.5)
    assert server.returncode is not None
    for _ in range(100):  # a killed process ends a moment after the signal
        if classroom._started(child) is None:
            break
        time.sleep(0.05)
    assert classroom._started(child) is None


def test_script_finished_reads_streamlit_messages():
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    def message(status: int) -> bytes:
        msg = ForwardMsg()
        msg.script_finished = status
        return msg.SerializeToString()

    assert classroom.script_finished(message(ForwardMsg.FINISHED_SUCCESSFULLY))
    assert not classroom.script_finished(message(ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY))
    assert not classroom.script_finished(message(ForwardMsg.FINISHED_EARLY_FOR_RERUN))
    other = ForwardMsg()
    other.page_info_changed.query_string = "ws=abc"
    assert not classroom.script_finished(other.SerializeToString())
    assert not classroom.script_finished(b"\xff\x00 not a message")
