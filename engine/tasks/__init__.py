"""Tasks, episodes and the built-in task sources (sinusoid, scm, images, tabular)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from .base import SPLITS, Episode, Task, TaskError, TaskSource, check_shots, check_split, split_rng
from .image_archive import clear_image_cache, load_images
from .images import ImageTask, ImageTaskSource
from .scm import SCMTask, SCMTaskSource
from .sinusoid import SinusoidTask, SinusoidTaskSource
from .tabular import TabularTask, TabularTaskSource, make_example_csv

_REPO = Path(__file__).resolve().parents[2]
_OMNIGLOT_CANDIDATES = (
    _REPO / "assets" / "omniglot",
    _REPO.parent / "shared" / "data" / "omniglot",
)
# The app may ship its own copy under assets/; otherwise use the shared data folder.
# Falls back to the assets path (which then does not exist) so errors name a real place.
OMNIGLOT_DIR: Path = next((p for p in _OMNIGLOT_CANDIDATES if p.is_dir()), _OMNIGLOT_CANDIDATES[0])
EXAMPLE_CSV: Path = _REPO / "assets" / "example_tasks.csv"

TASK_SOURCES: dict[str, type[TaskSource]] = {
    "sinusoid": SinusoidTaskSource,
    "scm": SCMTaskSource,
    "images": ImageTaskSource,
    "tabular": TabularTaskSource,
}


def make_task_source(name: str, **kwargs: Any) -> TaskSource:
    """Build a task source by name ("sinusoid", "scm", "images", "tabular"); ``kwargs`` are the
    source's constructor arguments, and the source's ``name`` attribute is ``name``.

    "images" without ``path`` reads the Omniglot minimal set ``images_background_small1.zip``
    in ``OMNIGLOT_DIR``. "tabular" takes ``data`` as a path, CSV bytes, a file object or a
    DataFrame, and optionally ``feature_columns``."""
    key = str(name).strip().lower()
    if key not in TASK_SOURCES:
        raise TaskError(f"unknown task source {name!r}; valid names: {sorted(TASK_SOURCES)}")
    if key == "images" and "path" not in kwargs:
        kwargs["path"] = OMNIGLOT_DIR / "images_background_small1.zip"
    cls = TASK_SOURCES[key]
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:
        # Wrong or missing keyword: report it as a task error naming the source.
        raise TaskError(f"bad arguments for task source {key!r}: {exc}") from exc
    return cls(**kwargs)


__all__ = [
    "EXAMPLE_CSV",
    "OMNIGLOT_DIR",
    "SPLITS",
    "TASK_SOURCES",
    "Episode",
    "ImageTask",
    "ImageTaskSource",
    "SCMTask",
    "SCMTaskSource",
    "SinusoidTask",
    "SinusoidTaskSource",
    "TabularTask",
    "TabularTaskSource",
    "Task",
    "TaskError",
    "TaskSource",
    "check_shots",
    "check_split",
    "split_rng",
    "clear_image_cache",
    "load_images",
    "make_example_csv",
    "make_task_source",
]
