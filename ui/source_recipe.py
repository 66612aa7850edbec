"""A task source as a recipe (its kind and parameters, JSON) that ``make_task_source`` rebuilds.

The run store keeps the recipe, and the uploaded file for an uploaded CSV or image zip, so a
reload rebuilds the same source. A built-in Omniglot set is named by its file name only and must
lie in ``OMNIGLOT_DIR``; the example CSV is a flag; an uploaded file is handed in by the store,
never named by the recipe.

>>> r = recipe_for_call("scm", {"num_variables": 6, "seed": 3})
>>> r
{'kind': 'scm', 'params': {'num_variables': 6, 'seed': 3}}
>>> call_of(r)
('scm', {'num_variables': 6, 'seed': 3})
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from engine.tasks import EXAMPLE_CSV, OMNIGLOT_DIR, TASK_SOURCES, TaskError, TaskSource

_recipes: weakref.WeakKeyDictionary[TaskSource, dict[str, Any]] = weakref.WeakKeyDictionary()
_FILE_PARAMS = ("path", "data")


def remember(src: TaskSource, recipe: dict[str, Any] | None) -> None:
    """Keep the recipe a source was built from (the store asks for it when the source is chosen)."""
    if recipe is not None:
        _recipes[src] = recipe


def recipe_of(src: TaskSource) -> dict[str, Any] | None:
    return _recipes.get(src)


def recipe_for_call(name: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """The recipe of ``make_task_source(name, **params)`` over built-in data; None when a
    parameter is not plain JSON or names a file that is not built in."""
    out: dict[str, Any] = {"kind": name, "params": {}}
    for key, value in params.items():
        if key in _FILE_PARAMS:
            if Path(str(value)) == Path(EXAMPLE_CSV):
                out["example_csv"] = True
            elif isinstance(value, (str, Path)) and Path(value).parent == Path(OMNIGLOT_DIR):
                out["builtin_zip"] = Path(value).name
            else:
                return None
        elif _plain(value):
            out["params"][key] = list(value) if isinstance(value, tuple) else value
        else:
            return None
    return out


def upload_recipe(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The recipe of a source built from an uploaded file (the store keeps the file beside it)."""
    return {"kind": kind, "params": dict(params), "upload": True}


def call_of(recipe: Any, upload: Path | None = None) -> tuple[str, dict[str, Any]]:
    """(name, params) for ``make_task_source`` from a stored recipe (raises TaskError naming the problem)."""
    if not isinstance(recipe, dict) or not isinstance(recipe.get("params"), dict):
        raise TaskError("the stored task source is not a recipe")
    kind, params = recipe.get("kind"), dict(recipe["params"])
    if kind not in TASK_SOURCES:
        raise TaskError(f"the stored task source has an unknown kind {str(kind)[:40]!r}")
    if set(_FILE_PARAMS) & params.keys() or not all(_plain(v) for v in params.values()):
        raise TaskError("the stored task source's parameters are not plain values")
    for key in ("amplitude_range", "phase_range", "x_range", "split_fractions"):
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    file_key = "path" if kind == "images" else "data"
    if recipe.get("upload"):
        if upload is None:
            raise TaskError("the uploaded file of the stored task source is missing")
        params[file_key] = upload
    elif recipe.get("example_csv"):
        params[file_key] = EXAMPLE_CSV
    elif "builtin_zip" in recipe:
        params[file_key] = _builtin_zip(recipe["builtin_zip"])
    return str(kind), params


def _builtin_zip(name: Any) -> Path:
    zips = {p.name: p for p in Path(OMNIGLOT_DIR).glob("*.zip")} if Path(OMNIGLOT_DIR).is_dir() else {}
    if not isinstance(name, str) or name not in zips:
        raise TaskError(f"the Omniglot set {str(name)[:80]!r} of the stored task source is not installed")
    return zips[name]


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return False
