"""How the project drives Debian's Chromium (browser tests and the app-latency benchmark)."""

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
