"""Fixed-episode results as the One-shot adapt page shows them: a row per episode and each
episode's confusion matrix (the numbers are ``engine.evaluate_fixed``'s)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

FIXED_HELP = (
    "Upload a **zip of fixed one-shot trials**: one folder per episode, in it one folder per class; in each "
    "class folder the pictures whose file names start with `support` are the examples the model adapts on, "
    "every other picture is a query it labels (each exactly once). Example: `assets/fixed_episodes_example.zip`."
)


def fixed_episode_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per episode: its classes, support and query counts, correct queries and accuracy."""
    return pd.DataFrame(
        [
            {
                "episode": row["episode"],
                "classes": len(row["classes"]),
                "support pictures": row["support"],
                "queries": row["queries"],
                "correct": row["correct"],
                "accuracy": row["accuracy"],
            }
            for row in result["per_episode"]
        ]
    )


def confusion_frame(row: Mapping[str, Any]) -> pd.DataFrame:
    """An episode's confusion matrix: rows are the true classes, columns the predicted ones."""
    names = list(row["classes"])
    frame = pd.DataFrame(row["confusion"], index=names, columns=names)
    frame.index.name = "true \\ predicted"
    return frame
