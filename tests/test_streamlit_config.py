"""The app's Streamlit settings that safety and live training depend on (.streamlit/config.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml"


def settings() -> dict:
    with open(CONFIG, "rb") as fh:
        return tomllib.load(fh)


def test_uploads_are_capped_and_xsrf_protection_is_on():
    server = settings()["server"]
    assert 0 < server["maxUploadSize"] <= 50
    assert server["enableXsrfProtection"] is True


def test_error_details_stay_off_the_page():
    assert settings()["client"]["showErrorDetails"] == "none"


def test_no_full_garbage_collection_after_every_script_run():
    # Streamlit's default gc.collect(2) after each run holds the GIL ~0.2 s with torch loaded;
    # with live fragments rerunning every 0.5 s, two training sessions starved their workers.
    assert settings()["runner"]["postScriptGC"] is False
