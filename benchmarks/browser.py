"""How the project drives Debian's Chromium and starts the app for it (browser tests, app benchmarks)."""

import socket
import sys

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
