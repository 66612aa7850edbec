"""How the project drives Debian's Chromium and starts the app for it (browser tests, app benchmarks)."""

import os
import socket
import sys
import time
import urllib.request

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright cannot download a browser here
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",  # this machine refuses Chromium's background connections
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Streamlit is connected and no script run is in progress (how Streamlit's own e2e tests wait).
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"][data-test-connection-state="CONNECTED"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def streamlit_command(port: int, *extra: str) -> list[str]:
    """``streamlit run app.py`` on 127.0.0.1:port, headless (run it from the repository root)."""
    return [
        sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
        "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false", *extra,
    ]  # fmt: skip


def wait_healthy(url: str, proc, timeout_s: float) -> str | None:
    """Wait until the app at ``url`` (run by the Popen ``proc``) answers its health check; None when it
    does, else what went wrong (the process ended, or the time ran out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            return f"streamlit exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return None
        except OSError:
            pass
        if time.monotonic() > deadline:
            return f"streamlit did not come up in {timeout_s:g} s"
        time.sleep(0.3)


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (the app's pool workers are the server's children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


# Draw to adapt: fabric.js draws on each canvas's lower <canvas> and listens on the upper one.
DRAWING_CANVAS = "canvas.upper-canvas"


def circle_points(cx: float, cy: float, r: float, n: int = 40) -> list[tuple[float, float]]:
    """A closed circle as points, in fractions of the canvas."""
    import math

    return [(cx + r * math.cos(2 * math.pi * i / n), cy + r * math.sin(2 * math.pi * i / n)) for i in range(n + 2)]


def line_points(a: tuple[float, float], b: tuple[float, float], n: int = 10) -> list[tuple[float, float]]:
    return [(a[0] + (b[0] - a[0]) * t / n, a[1] + (b[1] - a[1]) * t / n) for t in range(n + 1)]


def mouse_stroke(pg, canvas, points: list[tuple[float, float]], release: bool = True) -> None:
    """Press the mouse on ``canvas`` (a Playwright locator) and move it through ``points``
    (fractions of its box); ``release=False`` leaves the button down (the caller times mouse-up)."""
    box = canvas.bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    pg.mouse.move(*xy[0])
    pg.mouse.down()
    for x, y in xy[1:]:
        pg.mouse.move(x, y, steps=2)
    if release:
        pg.mouse.up()
