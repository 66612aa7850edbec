"""Server memory while browser sessions come and go (Debian's Chromium through Playwright).

Starts ``streamlit run app.py``, warms it up with one session (the Home demo trains for a
moment and adapts once), then records the server's RSS (VmRSS of /proc/<pid>/status) and
thread count. Then, ``--sessions`` times: a new browser context (a new Streamlit session)
loads Home, meta-trains the demo for ``--train-seconds``, presses Stop, adapts to one
typed point, and is closed; RSS and threads are read after each. At the end, after
``--final-wait`` seconds and one more page load (which lets Streamlit drop expired
sessions), they are read once more.

Streamlit keeps a closed session's state (engine, runs) for ``server.disconnectedSessionTTL``
seconds (120 by default; ``--session-ttl`` sets it) in case the browser reconnects. The
sessions open at once are read from the server's /_stcore/metrics (``active_sessions``).

    python -m engine bench session_memory --sessions 20
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from .browser import CHROMIUM, CHROMIUM_ARGS, IDLE, free_port, streamlit_command
from .common import ROOT, machine_line, update_markdown_section, write_result

START = "Meta-train your own (replaces the ready model for this session)"


def _server(port: int, session_ttl: int | None) -> subprocess.Popen:
    cmd = streamlit_command(port)
    if session_ttl is not None:
        cmd += ["--server.disconnectedSessionTTL", str(session_ttl)]
    env = {**os.environ, "CAUSAL_EXPLORER_THREADS": os.environ.get("CAUSAL_EXPLORER_THREADS", "1")}
    # A demo too long to end by itself: every session trains until its Stop, whatever the machine's speed.
    env["CAUSAL_EXPLORER_DEMO_ITERATIONS"] = "1000000"
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def active_sessions(url: str) -> int | None:
    """The server's own count of connected sessions (None if the metrics are unavailable)."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    m = re.search(r"^active_sessions(?:\{[^}]*\})? (\d+)", text, re.M)
    return int(m.group(1)) if m else None


def _button(pg, name: str):
    return pg.locator('[data-testid="stMain"]').get_by_role("button", name=name, exact=True)


def _idle(pg) -> None:
    pg.wait_for_timeout(300)
    pg.wait_for_selector(IDLE)
    pg.wait_for_timeout(300)
    pg.wait_for_selector(IDLE)


def one_session(browser, url: str, train_seconds: float, on_open=None) -> None:
    """A session's life: load Home, train the demo a little, stop, adapt once, close."""
    ctx = browser.new_context(viewport={"width": 1300, "height": 1000})
    try:
        pg = ctx.new_page()
        pg.set_default_timeout(120_000)
        pg.goto(url)
        _idle(pg)
        _button(pg, START).click()
        _button(pg, "Stop").wait_for(state="visible")
        pg.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0")
        pg.wait_for_timeout(int(1000 * train_seconds))
        _button(pg, "Stop").click()
        pg.wait_for_selector("text=Training stopped")
        _idle(pg)
        _button(pg, "Adapt to this point").click()
        pg.wait_for_function(
            """() => [...document.querySelectorAll('.js-plotly-plot')].some(el =>
                 (el.data || []).some(t => t.name === 'your point'))"""
        )
        _idle(pg)
        if on_open is not None:
            on_open()
    finally:
        ctx.close()


def measure(sessions: int, train_seconds: float, final_wait: float, session_ttl: int | None) -> dict:
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _server(port, session_ttl)
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the app did not start in 2 minutes")
        pid = proc.pid
        held: list[int] = []

        def count_open() -> None:
            n = active_sessions(url)
            if n is not None:
                held.append(n)

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            one_session(browser, url, train_seconds)  # warm-up: imports, first allocations
            time.sleep(1.0)
            start = {"rss_mb": rss_mb(pid), "threads": threads(pid)}
            print(f"after warm-up: {start['rss_mb']:.0f} MB, {start['threads']} threads", flush=True)
            rows = []
            t0 = time.monotonic()
            closed: list[float] = []
            ttl = 120 if session_ttl is None else session_ttl
            for i in range(1, sessions + 1):
                one_session(browser, url, train_seconds, on_open=count_open)
                closed.append(time.monotonic())
                time.sleep(0.5)
                now = time.monotonic()
                rows.append(
                    {
                        "session": i,
                        "rss_mb": rss_mb(pid),
                        "threads": threads(pid),
                        "t_s": now - t0,
                        # closed less than the TTL ago: Streamlit may still hold their state
                        "closed_within_ttl": sum(now - c < ttl for c in closed),
                    }
                )
                print(f"session {i}: {rows[-1]['rss_mb']:.0f} MB, {rows[-1]['threads']} threads", flush=True)
            time.sleep(final_wait)
            # one more page load lets Streamlit drop sessions whose reconnection time is over
            ctx = browser.new_context()
            pg = ctx.new_page()
            pg.goto(url)
            _idle(pg)
            ctx.close()
            time.sleep(1.0)
            end = {"rss_mb": rss_mb(pid), "threads": threads(pid), "after_s": final_wait}
            print(f"end: {end['rss_mb']:.0f} MB, {end['threads']} threads", flush=True)
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    growth = rows[-1]["rss_mb"] - start["rss_mb"] if rows else 0.0
    return {
        "sessions": sessions,
        "train_seconds": train_seconds,
        "session_ttl_s": 120 if session_ttl is None else session_ttl,
        "start": start,
        "per_session": rows,
        "end": end,
        "max_sessions_open": max(held) if held else None,
        "max_closed_within_ttl": max((x["closed_within_ttl"] for x in rows), default=0),
        "rss_growth_mb": growth,
        "rss_growth_per_session_mb": growth / sessions if sessions else 0.0,
    }


def markdown(r: dict) -> str:
    rows = [("after warm-up", r["start"])]
    rows += [(f"after session {x['session']}", x) for x in r["per_session"] if x["session"] % 5 == 0]
    if r["per_session"] and r["per_session"][-1]["session"] % 5:
        rows.append((f"after session {r['per_session'][-1]['session']}", r["per_session"][-1]))
    rows.append((f"end ({r['end']['after_s']:g} s later, one more page load)", r["end"]))
    lines = [
        "## Server memory while sessions come and go",
        "",
        f"{r['sessions']} browser sessions one after another, each: load Home, meta-train the demo "
        f"{r['train_seconds']:g} s, Stop, adapt to one point, close. RSS of the `streamlit run` process.",
        "",
        "| when | server RSS | server threads | closed sessions younger than the TTL |",
        "|---|---|---|---|",
        *[
            f"| {name} | {x['rss_mb']:.0f} MB | {x['threads']} | {x.get('closed_within_ttl', '–')} |"
            for name, x in rows
        ],
        "",
        f"Growth over {r['sessions']} sessions: {r['rss_growth_mb']:+.0f} MB "
        f"({r['rss_growth_per_session_mb']:+.1f} MB per session). Sessions open at once (server's "
        f"`active_sessions`): at most {r['max_sessions_open']}. Streamlit keeps a closed session's state "
        f"(engine, runs) for `server.disconnectedSessionTTL` = {r['session_ttl_s']} s in case the browser "
        f"reconnects, so up to {r['max_closed_within_ttl']} closed sessions could be held at once here (the "
        "last column; Streamlit drops expired ones lazily, when another session disconnects). Python seldom "
        "returns freed memory to the system, so RSS is a high-water mark rather than what is live.",
        "",
        *_plateau(r),
        *([r["note"], ""] if r.get("note") else []),
        f"Machine: {machine_line(r['machine'])}. Command: `{r['command']}`.",
    ]
    return "\n".join(lines)


def _plateau(r: dict) -> list[str]:
    """Growth while closed sessions pile up within the TTL, and after their number stops growing."""
    per = r.get("per_session") or []
    held = [x.get("closed_within_ttl") for x in per]
    if len(per) < 3 or None in held:
        return []
    first_full = held.index(max(held))  # the first session after which the held number is at its most
    if first_full >= len(per) - 1:
        return []
    rise = per[first_full]["rss_mb"] - r["start"]["rss_mb"]
    after = per[-1]["rss_mb"] - per[first_full]["rss_mb"]
    return [
        f"While closed sessions pile up within the TTL (to session {first_full + 1}, {held[first_full]} held) "
        f"RSS grows {rise:+.0f} MB, about {rise / max(1, held[first_full]):.1f} MB per held session; from there "
        f"to session {len(per)}, with old sessions expiring as new ones close, {after:+.0f} MB.",
        "",
    ]


def build_parser() -> argparse.ArgumentParser:
    """The script's options (also used to check that recorded commands still parse)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--train-seconds", type=float, default=3.0)
    ap.add_argument("--final-wait", type=float, default=10.0, help="seconds to wait before the last reading")
    ap.add_argument("--session-ttl", type=int, default=None, help="server.disconnectedSessionTTL (default 120)")
    ap.add_argument("--note", default="", help="conditions of the run, printed under the table")
    ap.add_argument("--no-write", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():  # a kill still stops the server
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = measure(args.sessions, args.train_seconds, args.final_wait, args.session_ttl)
    if args.note:
        result["note"] = args.note
    print(json.dumps({k: v for k, v in result.items() if k != "per_session"}))
    if not args.no_write:
        write_result("session_memory", result, 0)
        saved = json.loads((ROOT / "benchmarks" / "results" / "session_memory.json").read_text())
        update_markdown_section("session_memory", markdown(saved))
    return result


if __name__ == "__main__":
    main()
