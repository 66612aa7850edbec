"""A classroom on one server: N browser sessions at once (Debian's Chromium through Playwright, loopback).

For each N of ``--sessions``: one ``streamlit run app.py`` (warmed up by one page load), one Chromium and
N browser contexts (N Streamlit sessions), driven together with Playwright's async API, in three phases,
each bounded by ``--timeout`` seconds (a session that does not get through a phase in time is counted as
not finished and skips the later phases; the benchmark never waits longer):

1. Home ready: all open Home at once; seconds to an idle page with the demo's "Meta-train your own" button.
2. Training: all press that button at once (the 400-iteration sinusoid demo). Until its job ends, each
   session reads the sidebar's job line about once a second (queued with a position, running with its
   iteration count, or neither: "starting"), and once, while queued or running, switches to the Tasks page
   and back (the switch is timed until Tasks is shown and idle). Finished: Home shows "Adapt to this point"
   and no Stop. A session "waited without a queue position" if it showed neither a position nor progress
   for WAIT_GRACE_S seconds in a row, or never showed its job at all.
3. Adapt: ``--clicks`` clicks of "Adapt to this point" at different x, each timed to the adapted curve
   with that point drawn (as ``app_latency``).

The server's process tree (the server and its pool's worker processes) is read from /proc every 0.5 s:
the peak of the summed RSS, and the CPU used (utime+stime, reaped children included) over the wall time.
``--open-sessions N`` adds a row where N sessions only open Home; ``--open-clients N`` one where N
Streamlit websocket sessions without a browser open Home at once (the server's share: a class's browsers
render on the students' machines, not on the server's two cores). Chromium runs on the same cores as the
server (a real class's browsers do not): its CPU is reported beside the server's, and ``--browser-nice``
lowers its priority (kept lowered while measuring: Chromium sets its renderers' priority itself).
Before the sessions, one session per pool worker starts the demo and stops it (``--cold-pool``: none).

    python -m engine bench classroom --sessions 1,4,8,12,20 --open-sessions 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

from .browser import CHROMIUM, CHROMIUM_ARGS, IDLE, free_port, process_tree, streamlit_command, wait_healthy
from .common import ROOT, machine_line, update_markdown_section, write_result

TRAIN_YOUR_OWN = "Meta-train your own (replaces the ready model for this session)"  # ui.ready's button
ADAPT = "Adapt to this point"
# Every page's timers keep running, as in visible tabs (the jobs need their pages' heartbeats).
ARGS = [*CHROMIUM_ARGS, "--disable-background-timer-throttling", "--disable-renderer-backgrounding"]
WAIT_GRACE_S = 3.0  # a job shown as neither queued nor running for longer "waits without a queue position"
SAMPLE_S = 0.5  # the server's resources are read this often
# Goals of issue 26 (seconds).
GOAL_TRAIN_S, GOAL_TRAIN_SESSIONS = 60.0, 8
GOAL_P95_S, GOAL_P95_SESSIONS = 2.0, 12
GOAL_OPEN_S, GOAL_OPEN_SESSIONS = 5.0, 30
YOUR_POINT = """(x) => [...document.querySelectorAll('.js-plotly-plot')].some(el => (el.data || []).some(
    t => t.name === 'your point' && t.x && Math.abs(t.x[t.x.length - 1] - x) < 0.01))"""


# --------------------------------------------------------------------------------- the server
def tree_usage(root: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds) of the process tree; CPU includes reaped children, so a worker that
    ended still counts."""
    page, tick = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK")
    rss = cpu = 0.0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu += sum(int(v) for v in fields[11:15]) / tick  # utime, stime, cutime, cstime
        rss += int(fields[21]) * page / 2**20
    return rss, cpu


class TreeSampler:
    """Reads the server's tree every SAMPLE_S seconds in a thread: peak RSS and average cores used; and
    the cores used by the rest of this process's tree (the client: Playwright's driver and Chromium)."""

    def __init__(self, pid: int, client_nice: int = 0) -> None:
        self.pid, self.peak_rss_mb, self.client_nice = pid, 0.0, client_nice
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.peak_rss_mb = max(self.peak_rss_mb, tree_usage(self.pid)[0])
            renice_client(self.pid, self.client_nice)  # Chromium sets its renderers' priority itself

    def __enter__(self) -> TreeSampler:
        self.t0, (rss, self.cpu0), self.all0 = time.monotonic(), tree_usage(self.pid), tree_usage(os.getpid())[1]
        self.peak_rss_mb = rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        (rss, cpu), everything = tree_usage(self.pid), tree_usage(os.getpid())[1]
        self._stop.set()
        self._thread.join(5)
        wall = max(time.monotonic() - self.t0, 1e-9)
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        self.cpu_cores = (cpu - self.cpu0) / wall
        self.client_cpu_cores = (everything - self.all0 - (cpu - self.cpu0)) / wall


def renice_client(server: int, nice: int) -> None:
    """Lower the priority of the client (Playwright's driver and Chromium: this process's tree but this
    process and the server's tree), every thread of it; processes started later (renderers) inherit it."""
    if nice <= 0:
        return
    skip = {os.getpid(), *process_tree(server)}
    for pid in process_tree(os.getpid()):
        if pid in skip:
            continue
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                os.setpriority(os.PRIO_PROCESS, int(tid), nice)
        except OSError:  # the process or thread has ended
            pass


def start_server(workers: int | None, log: Path) -> tuple[subprocess.Popen, str]:
    """``streamlit run app.py`` on loopback, healthy; its output goes to ``log``."""
    port = free_port()
    env = dict(os.environ)
    if workers is not None:
        env["CAUSAL_EXPLORER_WORKERS"] = str(workers)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(streamlit_command(port), cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    problem = wait_healthy(url, proc, 120)
    if problem is None:
        return proc, url
    stop_server(proc)
    raise RuntimeError(f"the app did not start ({problem}):\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop the server; its worker processes, if any outlive it by ``grace`` seconds, are killed (by
    their ids), so that none takes CPU from the next row."""
    below = [(pid, _started(pid)) for pid in process_tree(proc.pid)[1:]]
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    deadline = time.monotonic() + grace
    while (
        alive := [(pid, t) for pid, t in below if t is not None and _started(pid) == t]
    ) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid, _ in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:  # it has just ended
            pass


def _started(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), None once it has ended (or is a zombie): with
    the id, it names the process even if the id is reused."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


# --------------------------------------------------------------------------------- one session
def _button(pg, name: str):
    return pg.locator('[data-testid="stMain"]').get_by_role("button", name=name, exact=True)


async def _idle(pg) -> None:
    await pg.wait_for_timeout(300)
    await pg.wait_for_selector(IDLE)


async def open_home(pg, url: str, rec: dict[str, Any]) -> None:
    """Home ready: the page idle with the demo's button. Also when the server's message that its first run
    of the page script finished arrived on the websocket: after Chromium loaded the app's JavaScript and
    connected, but before it drew the page."""
    done: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_websocket(ws) -> None:
        def on_frame(payload: str | bytes) -> None:
            if not done.done() and isinstance(payload, bytes) and script_finished(payload):
                done.set_result(time.perf_counter())
                ws.remove_listener("framereceived", on_frame)

        ws.on("framereceived", on_frame)

    pg.on("websocket", on_websocket)
    t0 = time.perf_counter()
    await pg.goto(url)
    await pg.wait_for_selector(IDLE)
    await _button(pg, TRAIN_YOUR_OWN).wait_for(state="visible")
    rec["home_ready_s"] = time.perf_counter() - t0
    pg.remove_listener("websocket", on_websocket)
    if done.done():
        rec["home_script_s"] = done.result() - t0


def script_finished(payload: bytes) -> bool:
    """Whether a Streamlit message says that a whole script run finished (not a fragment, not cut short)."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    msg = ForwardMsg()
    try:
        msg.ParseFromString(payload)
    except Exception:  # not a ForwardMsg (protobuf's DecodeError): not the message looked for
        return False
    return msg.WhichOneof("type") == "script_finished" and msg.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY


async def job_state(pg) -> str:
    """What the sidebar's job line says: queued, running (an iteration count), starting (neither) or none."""
    return job_state_of(await pg.locator('[data-testid="stSidebar"]').inner_text())


def job_state_of(sidebar: str) -> str:
    line = re.search(r"meta-training: ([^\n]*)", sidebar)
    if line is None:
        return "none"
    if line.group(1).startswith("queued, position"):
        return "queued"
    return "running" if re.match(r"\d+ / \d+", line.group(1)) else "starting"


async def page_switch(pg) -> float:
    """Seconds from clicking Tasks in the sidebar to the Tasks page shown and idle; then back to Home."""
    nav = pg.locator('[data-testid="stSidebarNav"] a')
    t0 = time.perf_counter()
    await nav.filter(has_text="Tasks").first.click()
    await pg.wait_for_selector('h1:has-text("Tasks")')
    await pg.wait_for_selector(IDLE)
    elapsed = time.perf_counter() - t0
    await nav.filter(has_text="Home").first.click()
    await pg.wait_for_selector('h1:has-text("Causal one-shot")')
    await pg.wait_for_selector(IDLE)
    return elapsed


async def train(pg, rec: dict[str, Any]) -> None:
    """Press the demo's button, follow the job (states, one page switch) until the demo is trained."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    samples = rec["samples"]
    t0 = time.perf_counter()
    await _button(pg, TRAIN_YOUR_OWN).click()
    await _button(pg, "Stop").first.wait_for(state="visible")  # the rerun with the job (queued or running) landed
    while True:
        try:
            # .first: while a rerun redraws the page, the old and the new demo panel can both be there
            await _button(pg, ADAPT).first.wait_for(state="visible", timeout=1000)
            # the ready model stays in use (its button shown) until the session's own run has finished
            if await _button(pg, "Stop").count() == 0 and await _button(pg, TRAIN_YOUR_OWN).count() == 0:
                rec["train_s"] = time.perf_counter() - t0
                await _idle(pg)
                return
        except PlaywrightTimeout:
            pass
        state = await job_state(pg)
        samples.append([round(time.perf_counter() - t0, 2), state])
        if rec["switch_s"] is None and state in ("queued", "running"):
            rec["switch_s"] = await page_switch(pg)


async def adapt(pg, rec: dict[str, Any], clicks: int, offset: float) -> None:
    """``clicks`` adaptations at different x, each timed from the click to the adapted curve."""
    await _idle(pg)
    for x in np.linspace(-4.0, 4.0, clicks) + offset:
        box = pg.get_by_label("x", exact=True)
        await box.fill(f"{x:.2f}")
        await box.press("Tab")
        await _idle(pg)
        t0 = time.perf_counter()
        await _button(pg, ADAPT).click()
        await pg.wait_for_function(YOUR_POINT, arg=float(f"{x:.2f}"))
        rec["adapt_s"].append(time.perf_counter() - t0)


async def bounded(coros: list, timeout: float) -> None:
    """Run the sessions' phase together; a session past ``timeout`` or failing is left unfinished."""

    async def one(coro) -> None:
        try:
            await asyncio.wait_for(coro, timeout)
        except Exception as exc:  # a timeout or a page error: recorded by what the session did not reach
            first = (str(exc).splitlines() or [""])[0][:200]
            print(f"  a session stopped: {type(exc).__name__} {first}", flush=True)

    await asyncio.gather(*(one(c) for c in coros))


# --------------------------------------------------------------------------------- one row
def new_record() -> dict[str, Any]:
    return {
        "home_ready_s": None,
        "home_script_s": None,
        "train_s": None,
        "switch_s": None,
        "adapt_s": [],
        "samples": [],
    }


async def warm_up(browser, url: str, trainers: int, timeout: float) -> None:
    """Imports and first render: one session loads Home. With ``trainers``, that many sessions at once
    also start the demo and stop it once it runs, so that every pool worker process has started and
    run a job (the pool starts on first use; a worker's first job imports the engine)."""

    async def one(train_too: bool) -> None:
        ctx = await browser.new_context(viewport={"width": 1300, "height": 1000})
        try:
            pg = await ctx.new_page()
            pg.set_default_timeout(1000 * timeout)
            await open_home(pg, url, new_record())
            if train_too:
                await _button(pg, TRAIN_YOUR_OWN).click()
                while await job_state(pg) != "running":
                    await pg.wait_for_timeout(500)
                await _button(pg, "Stop").click()
                await _button(pg, "Stop").wait_for(state="detached")
                await _idle(pg)
        finally:
            await ctx.close()

    await asyncio.gather(*(one(True) for _ in range(trainers))) if trainers else await one(False)


def pool_workers(workers: int | None) -> int:
    """The server's pool size: ``--workers``, else what the app reads (CAUSAL_EXPLORER_WORKERS or the cores)."""
    from ui.pooled_worker import pool_size

    return pool_size() if workers is None else workers


async def drive(browser, url: str, n: int, args: argparse.Namespace, open_only: bool) -> list[dict[str, Any]]:
    """The N sessions through the phases (each bounded by ``args.timeout``)."""
    recs = [new_record() for _ in range(n)]
    contexts = [await browser.new_context(viewport={"width": 1300, "height": 1000}) for _ in range(n)]
    pages = [await ctx.new_page() for ctx in contexts]
    for pg in pages:
        pg.set_default_timeout(1000 * args.timeout)
    await bounded([open_home(pg, url, r) for pg, r in zip(pages, recs)], args.timeout)
    if not open_only:
        ready = [i for i, r in enumerate(recs) if r["home_ready_s"] is not None]
        await bounded([train(pages[i], recs[i]) for i in ready], args.timeout)
        trained = [i for i, r in enumerate(recs) if r["train_s"] is not None]
        await bounded([adapt(pages[i], recs[i], args.clicks, 0.1 * i / n) for i in trained], args.timeout)
    for ctx in contexts:
        await ctx.close()
    return recs


async def run_row(p, n: int, args: argparse.Namespace, open_only: bool = False) -> dict[str, Any]:
    """One server, one Chromium, N sessions; the row's numbers and the server's resources."""
    print(f"{n} sessions{' (open Home only)' if open_only else ''}...", flush=True)
    load = os.getloadavg()[0]  # other work on the machine before this row
    log = Path(tempfile.mkstemp(prefix="classroom_server_", suffix=".log")[1])
    proc, url = start_server(args.workers, log)
    try:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            renice_client(proc.pid, args.browser_nice)
            trainers = 0 if open_only or args.cold_pool else max(1, pool_workers(args.workers))
            await asyncio.wait_for(warm_up(browser, url, trainers, args.timeout), 2 * args.timeout)
            with TreeSampler(proc.pid, args.browser_nice) as usage:
                t0 = time.monotonic()
                recs = await drive(browser, url, n, args, open_only)
                wall = time.monotonic() - t0
        finally:
            await browser.close()
    finally:
        stop_server(proc)
    row = summarize(recs, open_only) | {"peak_rss_mb": usage.peak_rss_mb, "cpu_cores": usage.cpu_cores, "wall_s": wall}
    row |= {"client_cpu_cores": usage.client_cpu_cores, "load_before": load}
    if "Traceback" in log.read_text(errors="replace"):
        row["server_traceback"] = log.read_text(errors="replace")[-3000:]
    log.unlink()
    print(json.dumps({k: v for k, v in row.items() if k != "per_session"}), flush=True)
    return row


async def open_without_browser(ws_url: str) -> float:
    """Seconds from connecting a Streamlit websocket session (no browser) to Home's script run finished."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    t0 = time.perf_counter()
    async with websockets.connect(ws_url, subprotocols=["streamlit"], max_size=None) as ws:
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        await ws.send(msg.SerializeToString())
        while True:
            payload = await ws.recv()
            if isinstance(payload, bytes) and script_finished(payload):
                return time.perf_counter() - t0
            fm = ForwardMsg()
            fm.ParseFromString(payload)
            if fm.WhichOneof("type") == "script_finished":
                raise RuntimeError(f"Home's script run ended with status {fm.script_finished}")


async def run_clients_row(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """One server, N websocket sessions opening Home at once without a browser: the server's own share of
    opening the app (the students' browsers render on their own machines)."""
    print(f"{n} sessions (open Home, no browser)...", flush=True)
    load = os.getloadavg()[0]
    log = Path(tempfile.mkstemp(prefix="classroom_server_", suffix=".log")[1])
    proc, url = start_server(args.workers, log)
    ws_url = url.replace("http://", "ws://", 1) + "/_stcore/stream"
    try:
        await asyncio.wait_for(open_without_browser(ws_url), 2 * args.timeout)  # imports, ready models
        with TreeSampler(proc.pid) as usage:
            t0 = time.monotonic()
            done = await asyncio.gather(
                *(asyncio.wait_for(open_without_browser(ws_url), args.timeout) for _ in range(n)),
                return_exceptions=True,
            )
            wall = time.monotonic() - t0
    finally:
        stop_server(proc)
        log.unlink()
    times = [t for t in done if isinstance(t, float)]
    row = {"sessions": n, "open_only": True, "clients": True, "home_script": stats(times)}
    row |= {"home_script_k": len(times), "per_session": [{"home_script_s": t} for t in times]}
    row |= {"peak_rss_mb": usage.peak_rss_mb, "cpu_cores": usage.cpu_cores, "wall_s": wall, "load_before": load}
    print(json.dumps({k: v for k, v in row.items() if k != "per_session"}), flush=True)
    return row


# --------------------------------------------------------------------------------- numbers and the table
def stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": median(values), "p95": float(np.percentile(values, 95)), "max": max(values)}


def longest_wait(samples: list[list], finished: bool) -> float:
    """Longest stretch (seconds) of samples showing the job neither queued nor running. A trailing
    stretch of a finished job (the job ended, the page not yet redrawn) is not a wait."""
    longest, start, last = 0.0, None, 0.0
    for t, state in samples:
        last = t
        if state in ("queued", "running"):
            if start is not None:
                longest = max(longest, t - start)
            start = None
        elif start is None:
            start = t
    if start is not None and not finished:
        longest = max(longest, last - start)
    return longest


def waited_without_position(rec: dict[str, Any]) -> bool:
    samples, finished = rec["samples"], rec["train_s"] is not None
    if not samples:
        return False
    shown = any(state in ("queued", "running") for _, state in samples)
    return not shown or longest_wait(samples, finished) >= WAIT_GRACE_S


def summarize(recs: list[dict[str, Any]], open_only: bool) -> dict[str, Any]:
    """A row: statistics over the sessions, and each session's own numbers (its samples counted)."""
    per_session = []
    for r in recs:
        states = [s for _, s in r["samples"]]
        first_run = next((t for t, s in r["samples"] if s == "running"), None)
        per_session.append(
            {k: r.get(k) for k in ("home_ready_s", "home_script_s", "train_s", "switch_s", "adapt_s")}
            | {"states": {s: states.count(s) for s in sorted(set(states))}, "first_seen_running_s": first_run}
            | {"longest_wait_s": longest_wait(r["samples"], r["train_s"] is not None)}
        )
    keys = ("home_ready_s", "home_script_s", "train_s", "switch_s")
    values = {k: [r[k] for r in recs if r.get(k) is not None] for k in keys}
    row = {"sessions": len(recs), "open_only": open_only, "home_ready": stats(values["home_ready_s"])}
    row |= {"home_ready_k": len(values["home_ready_s"]), "home_script": stats(values["home_script_s"])}
    if not open_only:
        row |= {"train": stats(values["train_s"]), "trained_k": len(values["train_s"])}
        row |= {"switch": stats(values["switch_s"]), "switch_k": len(values["switch_s"])}
        row["adapt"] = stats([t for r in recs for t in r["adapt_s"]])
        row["waited_without_position"] = sum(waited_without_position(r) for r in recs)
    return row | {"per_session": per_session}


def _pair(s: dict[str, float] | None, k: int | None = None, n: int | None = None) -> str:
    """'1.2 s, 2.0 s' (median, p95), with '(k of N)' when some sessions did not get there."""
    if s is None:
        return "–" if not n else f"0 of {n}"
    text = f"{s['median']:.1f} s, {s['p95']:.1f} s"
    return text + (f" ({k} of {n})" if n is not None and k != n else "")


def table_row(row: dict[str, Any], timeout: float) -> str:
    n = row["sessions"]
    if "error" in row:
        return f"| {n} | failed: {row['error']} | | | | | | | |"
    client = f"{row['client_cpu_cores']:.2f} cores" if "client_cpu_cores" in row else "–"
    usage = f"{row['peak_rss_mb']:.0f} MB | {row['cpu_cores']:.2f} cores | {client}"
    if row.get("clients"):
        home = _pair(row["home_script"], row["home_script_k"], n)
        usage = f"{row['peak_rss_mb']:.0f} MB | {row['cpu_cores']:.2f} cores | none"
        return (
            f"| {n}, opening Home without a browser | the server's script run done: {home} | – | – | – | – | {usage} |"
        )
    if row["open_only"]:
        h = row["home_ready"]
        home = _pair(h, row["home_ready_k"], n) + (f", max {h['max']:.1f} s" if h else "")
        if row.get("home_script"):
            home += f" (the server's script run done: {_pair(row['home_script'])})"
        return f"| {n}, opening Home only | {home} | – | – | – | – | {usage} |"
    t = row["train"]
    trained = f"{row['trained_k']} of {n} within {timeout:g} s" + (
        f", {t['median']:.1f} s, {t['max']:.1f} s" if t else ""
    )
    switch = _pair(row["switch"], row["switch_k"], n)
    cells = [_pair(row["home_ready"], row["home_ready_k"], n), trained, str(row["waited_without_position"])]
    return f"| {n} | {' | '.join(cells)} | {switch} | {_pair(row['adapt'])} | {usage} |"


def _row_for(result: dict[str, Any], n: int, open_only: bool, clients: bool = False) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in result["rows"]
            if r["sessions"] == n
            and r["open_only"] == open_only
            and r.get("clients", False) == clients
            and "error" not in r
        ),
        None,
    )


def goals(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(goal, measured, met) for the issue's three goals; 'not measured' without the row."""
    out = []
    row = _row_for(result, GOAL_TRAIN_SESSIONS, False)
    goal = f"{GOAL_TRAIN_SESSIONS} sessions training the demo at once: all finish within {GOAL_TRAIN_S:g} s, none waits without a queue position"
    if row is None:
        out.append((goal, "not measured", "–"))
    else:
        times = [s["train_s"] for s in row["per_session"] if s["train_s"] is not None]
        k = sum(t <= GOAL_TRAIN_S for t in times)
        slowest = f" (slowest {max(times):.1f} s)" if times else ""
        waited = row["waited_without_position"]
        met = k == row["sessions"] and waited == 0
        out.append((goal, f"{k} of {row['sessions']} within {GOAL_TRAIN_S:g} s{slowest}; {waited} waited", _yes(met)))
    row = _row_for(result, GOAL_P95_SESSIONS, False)
    goal = f"{GOAL_P95_SESSIONS} sessions: page switch during training and adaptation under {GOAL_P95_S:g} s (p95)"
    if row is None:
        out.append((goal, "not measured", "–"))
    else:
        sw, ad = row["switch"], row["adapt"]
        every = row["switch_k"] == row["sessions"] and row["trained_k"] == row["sessions"]
        met = every and sw is not None and ad is not None and max(sw["p95"], ad["p95"]) < GOAL_P95_S
        out.append((goal, f"switch {_pair(sw, row['switch_k'], row['sessions'])}; adapt {_pair(ad)}", _yes(met)))
    row = _row_for(result, GOAL_OPEN_SESSIONS, True)
    goal = f"{GOAL_OPEN_SESSIONS} sessions opening the app get Home within {GOAL_OPEN_S:g} s"
    if row is None:
        out.append((goal, "not measured", "–"))
    else:
        h = row["home_ready"]
        k = sum(s["home_ready_s"] is not None and s["home_ready_s"] <= GOAL_OPEN_S for s in row["per_session"])
        measured = f"{k} of {row['sessions']} within {GOAL_OPEN_S:g} s" + (f" (slowest {h['max']:.1f} s)" if h else "")
        out.append((goal, measured, _yes(k == row["sessions"])))
    row = _row_for(result, GOAL_OPEN_SESSIONS, True, clients=True)
    goal = f"the same, the server's share: {GOAL_OPEN_SESSIONS} sessions without a browser get Home's script run done"
    if row is None:
        out.append((goal, "not measured", "–"))
    else:
        times = [s["home_script_s"] for s in row["per_session"]]
        k = sum(t <= GOAL_OPEN_S for t in times)
        slowest = f" (slowest {max(times):.1f} s)" if times else ""
        out.append((goal, f"{k} of {row['sessions']} within {GOAL_OPEN_S:g} s{slowest}", _yes(k == row["sessions"])))
    return out


def _yes(met: bool) -> str:
    return "yes" if met else "no"


def method_text(result: dict[str, Any]) -> str:
    """What the table measures, and how this run was set up."""
    s, rows = result["settings"], result["rows"]
    workers = s["workers"] if s["workers"] is not None else f"the app's default ({result['machine']['cores']} cores)"
    warm = "a cold pool" if s["cold_pool"] else "warmed up first (one session per worker trained briefly)"
    nice = f"; Chromium at nice {s['browser_nice']}" if s.get("browser_nice") else ""
    loads = ", ".join(f"{r['load_before']:.1f}" for r in rows if "load_before" in r)
    return (
        f"N browser sessions at once on one server (one Chromium, one context per session, on the same machine). "
        f"Times are median, p95 over the sessions (adapt: over {s['clicks']} clicks of each session); "
        f"each phase is bounded by {s['timeout']:g} s. Training: every session presses *Meta-train your own* at once "
        f"(the 400-iteration demo); finished when Home shows *Adapt to this point*. Page switch: Tasks and back "
        f"once while the session's job is queued or running, timed to Tasks shown. Waited without a queue "
        f"position: the sidebar showed the job neither queued nor running for {WAIT_GRACE_S:g} s or more. "
        f"Peak RSS and CPU: the server and its worker processes (CPU in cores busy on average); browser CPU: "
        f"Chromium and Playwright on the same cores, the classroom's load on the machine; for the sessions that "
        f"only open Home, also when the server's message that the page's script run finished arrived (after "
        f"Chromium loaded the app's JavaScript and connected, before it drew the page). Pool workers: "
        f"{workers}; {warm}{nice}. Load average (1 min) before each row: {loads or '–'}."
    )


def markdown(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            "## A classroom on one server",
            "",
            method_text(result),
            "",
            "| sessions | Home ready (median, p95) | demo training finished (k of N, median, max) | waited without a "
            "queue position | page switch during training (median, p95) | adapt (median, p95) | peak RSS | CPU | "
            "browser CPU |",
            "|---|---|---|---|---|---|---|---|---|",
            *(table_row(r, result["settings"]["timeout"]) for r in result["rows"]),
            "",
            "| goal | measured | met |",
            "|---|---|---|",
            *(f"| {g} | {m} | {y} |" for g, m, y in goals(result)),
            "",
            f"Machine: {machine_line(result['machine'])}. Command: `{result['command']}`.",
        ]
    )


# --------------------------------------------------------------------------------- command line
def session_counts(text: str) -> list[int]:
    """'1,4,8' -> [1, 4, 8] (each 1-100)."""
    try:
        counts = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected session counts like 1,4,8, got {text!r}") from None
    if not counts or any(not 1 <= c <= 100 for c in counts):
        raise argparse.ArgumentTypeError(f"session counts must be 1 to 100, got {text!r}")
    return counts


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600 s, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The script's options (also used to check that recorded commands still parse)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=session_counts, default=[1, 4, 8, 12, 20], help="e.g. 1,4,8,12,20")
    ap.add_argument("--open-sessions", type=int, default=30, choices=range(0, 101), metavar="0-100",
                    help="a row where this many sessions only open Home (0: none)")  # fmt: skip
    ap.add_argument("--open-clients", type=int, default=30, choices=range(0, 201), metavar="0-200",
                    help="a row where this many websocket sessions without a browser open Home (0: none)")  # fmt: skip
    ap.add_argument("--timeout", type=_positive, default=120.0, help="seconds each phase may take")
    ap.add_argument(
        "--clicks", type=int, default=3, choices=range(1, 21), metavar="1-20", help="adapt clicks per session"
    )
    ap.add_argument("--workers", type=int, default=None, choices=range(0, 65), metavar="0-64",
                    help="CAUSAL_EXPLORER_WORKERS for the server (default: the app's own)")  # fmt: skip
    ap.add_argument("--cold-pool", action="store_true", help="no warm-up training (the pool starts with the sessions)")
    ap.add_argument("--browser-nice", type=int, default=0, choices=range(0, 20), metavar="0-19",
                    help="run Chromium at this nice value, so that the server, not the client, gets the cores first "
                    "(students' browsers run on their own machines)")  # fmt: skip
    ap.add_argument("--no-write", action="store_true")
    return ap


async def run_all(args: argparse.Namespace, save) -> list[dict[str, Any]]:
    from playwright.async_api import async_playwright

    plan = [(n, False) for n in args.sessions] + ([(args.open_sessions, True)] if args.open_sessions else [])
    rows: list[dict[str, Any]] = []
    async with async_playwright() as p:
        for n, open_only in plan:
            try:
                rows.append(await run_row(p, n, args, open_only))
            except Exception as exc:  # one broken row (the server did not start...) leaves the others
                print(f"{n} sessions failed: {type(exc).__name__}: {exc}", flush=True)
                rows.append({"sessions": n, "open_only": open_only, "error": f"{type(exc).__name__}"})
            save(rows)
    if args.open_clients:
        try:
            rows.append(await run_clients_row(args.open_clients, args))
        except Exception as exc:
            print(f"{args.open_clients} sessions without a browser failed: {type(exc).__name__}: {exc}", flush=True)
            rows.append(
                {"sessions": args.open_clients, "open_only": True, "clients": True, "error": type(exc).__name__}
            )
        save(rows)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    settings = {k: v for k, v in vars(args).items() if k != "no_write"}

    def save(rows: list[dict[str, Any]]) -> None:  # after every row: a run cut short keeps what it measured
        if not args.no_write:
            saved = json.loads(write_result("classroom", {"settings": settings, "rows": rows}, 0).read_text())
            update_markdown_section("classroom", markdown(saved))

    rows = asyncio.run(run_all(args, save))
    return {"settings": settings, "rows": rows}


if __name__ == "__main__":
    main()
