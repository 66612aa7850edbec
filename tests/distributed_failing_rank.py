"""A torchrun entry point for tests/test_distributed.py: ``python -m engine`` whose rank 1 raises at
its third meta-step, to check that a failing rank ends the whole run with a clear message."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine.training as training  # noqa: E402
from engine.cli import main  # noqa: E402

FAIL_AT = 3

if os.environ.get("RANK") == "1":
    real_step = training.meta_step
    calls = []

    def failing_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == FAIL_AT:
            raise RuntimeError("injected failure on rank 1")
        return real_step(*args, **kwargs)

    training.meta_step = failing_step

sys.exit(main(sys.argv[1:]))
