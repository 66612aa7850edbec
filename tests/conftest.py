"""Shared fixtures. Torch runs on 2 threads so tests behave alike on the CI machine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from engine.tasks import OMNIGLOT_DIR as OMNIGLOT  # noqa: E402  (assets/omniglot, a copy of the shared sets)

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _run_store_in_tmp(tmp_path_factory, monkeypatch):
    """The app's run store (ui.run_store) writes under a temporary folder, never under ~/.cache."""
    monkeypatch.setenv("CAUSAL_EXPLORER_STORE", str(tmp_path_factory.mktemp("workspaces")))


@pytest.fixture(scope="session")
def omniglot_dir() -> Path:
    return OMNIGLOT
