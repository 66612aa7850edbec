"""Two browser sessions at once, and what closing one does to the server, in headless Chromium.

One app server; two browser contexts (two Streamlit sessions, each with its own engine and
worker). Session A runs the Home demo (MAML_CAUSAL, 400 meta-iterations); session B runs
GRADIENT_CAUSAL for 5000 iterations under its own run name on the Meta-train page. Each page
must show its own run (iteration total, run name, algorithm), both curves grow at once,
stopping A leaves B training, and closing B's context stops B's worker thread after the
heartbeat timeout. Threads are read from /proc/<pid>/task of the server: job threads by their
OS name (ui/worker.py names them; none may be left), and the total count, which must come
back to about the idle count.

The app's heartbeat timeout (30 s) is set to HEARTBEAT_S here with
CAUSAL_EXPLORER_HEARTBEAT_TIMEOUT. Needs Debian's Chromium (skipped otherwise).
"""

from __future__ import annotations

import os
import re
import time

import pytest

from benchmarks.browser import CHROMIUM, CHROMIUM_ARGS, process_tree
from tests.browser_helpers import goto, main_button, require_browser, streamlit_app, wait_idle
from ui.ready import TRAIN_YOUR_OWN
from ui.worker import OS_THREAD_NAME

pytestmark = pytest.mark.browser

# Long enough for a poll on a loaded 2-core machine, where a session's first poll after Start can
# come more than 6 s later while both sessions train; short for the test.
HEARTBEAT_S = 12
RUN_B = "session B run"
DEMO_ITERATIONS = 4000
SLACK = 2  # server threads above the idle count still accepted at the end (see below)
# Keep timers running in both pages as in two visible tabs.
ARGS = [*CHROMIUM_ARGS, "--disable-background-timer-throttling", "--disable-renderer-backgrounding"]
CHART_POINTS = """() => { for (const el of document.querySelectorAll('.js-plotly-plot')) {
    const t = (el.data || [])[0]; if (t && t.name === 'train') return (t.x || []).length; } return 0; }"""


def thread_count(pid: int) -> int:
    """Threads of the server process and of any process below it."""
    total = 0
    for p in process_tree(pid):
        try:
            total += len(os.listdir(f"/proc/{p}/task"))
        except OSError:
            pass
    return total


def worker_threads(pid: int) -> set[int]:
    """Threads named OS_THREAD_NAME: the job threads (ui/worker.py names them) and the helper
    threads they start (which inherit the name and end with them)."""
    out = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as fh:
                if fh.read().strip() == OS_THREAD_NAME:
                    out.add(int(tid))
        except OSError:
            pass
    return out


def wait_ended(pid: int, tids: set[int], timeout_s: float, all_of_them: bool = False) -> set[int]:
    """Poll until some (or all) of the job threads ``tids`` have ended; returns those that ended."""
    t0 = time.monotonic()
    while True:
        ended = tids - worker_threads(pid)
        if (ended == tids if all_of_them else ended) or time.monotonic() - t0 > timeout_s:
            return ended
        time.sleep(0.2)


def idle_thread_count(pid: int) -> int:
    """The server's thread count with nothing running (the least of a few readings: the server
    starts short-lived threads for script runs and lets idle pool threads go after a while)."""
    counts = []
    for _ in range(6):
        counts.append(thread_count(pid))
        time.sleep(0.2)
    return min(counts)


def progress(pg) -> tuple[int, int, str]:
    """(done, total, run name) from the page's training progress bar."""
    text = pg.locator('[data-testid="stMain"]').inner_text()
    m = re.search(r"Training (\d+) / (\d+) · (.+?) ·", text)
    assert m, f"no training progress shown:\n{text[:1500]}"
    return int(m.group(1)), int(m.group(2)), m.group(3)


def sidebar_algorithm(pg) -> str:
    text = pg.locator('[data-testid="stSidebar"]').inner_text()
    m = re.search(r"Algorithm: (\S+)", text)
    assert m, text
    return m.group(1)


def wait_points(pg, more_than: int, timeout_ms: int = 30_000) -> int:
    """The curve's point count once it exceeds ``more_than``, as the wait saw it: a separate read
    can land while Streamlit redraws the chart and find no plot (0 points)."""
    handle = pg.wait_for_function(
        f"() => {{ const n = ({CHART_POINTS})(); return n > {more_than} ? n : false; }}", timeout=timeout_ms
    )
    return handle.json_value()


def test_two_sessions_train_apart_and_a_closed_session_stops_its_worker(tmp_path):
    require_browser()
    from playwright.sync_api import sync_playwright

    # A long demo: on an idle machine 400 iterations end before the checks below.
    env = {
        # Jobs in server threads (the pool's fallback): this test follows them by their OS thread names.
        # The default, jobs in worker processes, is tested in tests/test_job_pool.py.
        "CAUSAL_EXPLORER_WORKERS": "0",
        "CAUSAL_EXPLORER_HEARTBEAT_TIMEOUT": str(HEARTBEAT_S),
        "CAUSAL_EXPLORER_DEMO_ITERATIONS": str(DEMO_ITERATIONS),
    }
    with streamlit_app(tmp_path / "server.log", env=env) as (pid, url), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx_a = browser.new_context(viewport={"width": 1300, "height": 1000})
        ctx_b = browser.new_context(viewport={"width": 1300, "height": 1000})
        a, b = ctx_a.new_page(), ctx_b.new_page()
        for pg in (a, b):
            pg.set_default_timeout(60_000)
            pg.goto(url)
            wait_idle(pg)

        # B: GRADIENT_CAUSAL, 5000 iterations, its own run name (set up before anything trains)
        goto(b, "Meta-train")
        b.locator('[data-testid="stSelectbox"]', has_text="Learner").first.click()
        b.get_by_role("option", name="GRADIENT_CAUSAL", exact=True).click()
        wait_idle(b)
        iterations = b.get_by_label("Meta-training iterations", exact=True)
        iterations.fill("5000")
        iterations.press("Enter")
        wait_idle(b)
        name = b.get_by_label("run name", exact=True)
        name.fill(RUN_B)
        name.press("Enter")
        wait_idle(b)
        idle_threads = idle_thread_count(pid)
        assert worker_threads(pid) == set()

        # both start training at once
        main_button(a, TRAIN_YOUR_OWN).click()
        main_button(b, "Start").click()
        for pg in (a, b):
            main_button(pg, "Stop").wait_for(state="visible")
            pg.wait_for_function("() => /Training \\d+ \\/ \\d+ · .+ ·/.test(document.body.innerText)")

        # each page shows its own run
        done_a, total_a, run_a = progress(a)
        done_b, total_b, run_b = progress(b)
        assert (total_a, run_a) == (DEMO_ITERATIONS, "demo: sinusoid MAML"), (total_a, run_a)
        assert (total_b, run_b) == (5000, RUN_B), (total_b, run_b)
        assert sidebar_algorithm(a) == "MAML_CAUSAL" and sidebar_algorithm(b) == "GRADIENT_CAUSAL"
        # both curves grow while both train
        pa, pb = wait_points(a, 2), wait_points(b, 2)
        pa2, pb2 = wait_points(a, pa), wait_points(b, pb)
        assert pa2 > pa and pb2 > pb
        assert progress(a)[0] > done_a and progress(b)[0] > done_b
        both_threads = thread_count(pid)
        named = worker_threads(pid)
        assert len(named) >= 2, f"two sessions train, but the server has job threads {named}"

        # stopping A does not stop B
        main_button(a, "Stop").click()
        a.wait_for_selector("text=Training stopped", timeout=20_000)
        wait_idle(a)
        ended_a = wait_ended(pid, named, 15)
        assert ended_a, f"no job thread ended after A's Stop (job threads {named})"
        stopped_at = wait_points(a, 0)
        pb3 = wait_points(b, 0)
        wait_points(b, pb3)  # B's curve keeps growing ...
        a.wait_for_timeout(1500)
        assert wait_points(a, 0) == stopped_at  # ... A's does not
        assert main_button(b, "Stop").is_visible()
        assert progress(b)[2] == RUN_B
        named_b = worker_threads(pid)  # B's job thread and its helpers: the only job left
        assert named_b, "B trains, but the server has no job thread"
        one_threads = thread_count(pid)

        # closing B's browser session: no more heartbeats, so its worker stops itself
        ctx_b.close()
        t_closed = time.monotonic()
        a.wait_for_timeout(1000)
        assert worker_threads(pid), "B's worker ended at once, not by the missing heartbeat"
        wait_ended(pid, named_b, HEARTBEAT_S + 20, all_of_them=True)
        waited = time.monotonic() - t_closed
        assert worker_threads(pid) == set(), f"B's worker still runs {waited:.0f} s after its session closed"
        after = thread_count(pid)
        # The total also counts the server's own short-lived and pooled threads (script runs,
        # I/O pools that retire idle threads after about 10 s): "about the idle count". On a busy
        # machine a pool can also grow while the sessions run (CI: idle 12, after closing B 16
        # with no job thread left), and Python's executor pools never shrink; so the count may
        # instead end at most at what it was while B trained, less B's job threads: closing B
        # released B's threads and left none of its own behind.
        limit = max(idle_threads + SLACK, one_threads - len(named_b))
        deadline = time.monotonic() + 15
        while after > limit and time.monotonic() < deadline:
            time.sleep(0.25)
            after = thread_count(pid)
        print(
            f"server threads: idle {idle_threads}, both training {both_threads}, B training {one_threads}, "
            f"after closing B {after}; B's worker ended {waited:.1f} s after the close "
            f"(heartbeat timeout {HEARTBEAT_S} s); named job/pool threads: both training {len(named)}, "
            f"B training {len(named_b)}, after {len(worker_threads(pid))}"
        )
        assert waited >= HEARTBEAT_S - 1.5, waited  # it stopped by the missing heartbeat
        assert after <= limit, (idle_threads, one_threads, len(named_b), after)
        ctx_a.close()
        browser.close()
