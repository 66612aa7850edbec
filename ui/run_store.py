"""A local run store on disk: one folder per workspace, so a reload or a reopened link finds its work.

No Streamlit here (unit-tested on its own). Layout under the root (``CAUSAL_EXPLORER_STORE``, else
``~/.cache/causal-explorer/workspaces``)::

    <workspace id>/index.json            runs (id, name, created, bytes), the engine and source entries
    <workspace id>/runs/<run id>/run.json       settings and curves
    <workspace id>/runs/<run id>/checkpoint/    engine.save_sync: model.safetensors + config.json + mechanisms.json
    <workspace id>/engine/checkpoint/           the session's current model (with its discovered mechanisms)
    <workspace id>/engine/report.json           the last discovery report
    <workspace id>/source/<upload>              an uploaded CSV or image zip the task source was built from

Every JSON file is written to a temporary sibling and renamed into place. Paths are built only from
ids that match ``WORKSPACE_ID`` / ``RUN_ID``. A workspace is bounded (``MAX_RUNS`` runs,
``MAX_BYTES`` bytes): saving past the bound deletes the oldest runs and says which.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.checkpoint import CheckpointError, history_from_meta
from engine.mechanisms import finite_or_null

if TYPE_CHECKING:
    from engine import OneShotMetaLearningEngine

STORE_ENV = "CAUSAL_EXPLORER_STORE"
DEFAULT_ROOT = Path("~/.cache/causal-explorer/workspaces")
WORKSPACE_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
RUN_ID = re.compile(r"r[0-9]{13,20}-[0-9a-f]{6}")
MAX_RUNS = 20
MAX_BYTES = 500 * 1024**2
MAX_UPLOAD_BYTES = 50 * 1024**2  # as .streamlit/config.toml maxUploadSize
MAX_JSON_BYTES = 20 * 1024**2
UPLOAD_SUFFIXES = (".csv", ".zip")
INDEX_VERSION = 1

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class StoreError(ValueError):
    """A store operation was refused (the message says why, for the page)."""


def store_root() -> Path:
    """The folder that holds every workspace (read at call time, so tests can point it elsewhere)."""
    return Path(os.environ.get(STORE_ENV) or DEFAULT_ROOT).expanduser()


def new_workspace_id() -> str:
    """16 URL-safe random characters (96 bits)."""
    return secrets.token_urlsafe(12)


def workspace_id_problem(ws_id: Any) -> str | None:
    """Why ``ws_id`` is not a workspace id, in words; None when it is one."""
    if not isinstance(ws_id, str) or not ws_id:
        return "the workspace id is empty"
    if len(ws_id) > 64:
        return f"the workspace id is {len(ws_id)} characters long (at most 64)"
    if not WORKSPACE_ID.fullmatch(ws_id):
        return "a workspace id has 8 to 64 characters, each a letter, a digit, '-' or '_'"
    return None


@dataclass
class StoredRun:
    """One run as the store holds it; ``entry`` is None when its files could not be read."""

    run_id: str
    name: str
    created: float
    bytes: int
    has_checkpoint: bool
    entry: dict[str, Any] | None = None
    problem: str | None = None


@dataclass
class Restored:
    """What a workspace holds, read back; ``problems`` lists what could not be read."""

    runs: list[StoredRun] = field(default_factory=list)
    engine_path: Path | None = None
    engine_name: str | None = None
    report: dict[str, Any] | None = None
    source: dict[str, Any] | None = None
    source_file: Path | None = None
    problems: list[str] = field(default_factory=list)


class RunStore:
    """The store of one workspace. Writers in one process take the workspace's lock."""

    def __init__(
        self, ws_id: str, root: Path | None = None, max_runs: int = MAX_RUNS, max_bytes: int = MAX_BYTES
    ) -> None:
        problem = workspace_id_problem(ws_id)
        if problem:
            raise StoreError(problem)
        base = (root or store_root()).expanduser().resolve()
        self.path = base / ws_id
        if self.path.parent != base:  # the id regex already rules this out; paths stay under the root
            raise StoreError("the workspace id does not name a folder under the store")
        self.ws_id = ws_id
        self.max_runs = int(max_runs)
        self.max_bytes = int(max_bytes)
        with _locks_guard:
            self._lock = _locks.setdefault(str(self.path), threading.Lock())

    # ---- reading ----------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return self.path.is_dir()

    def index(self) -> tuple[dict[str, Any], list[str]]:
        """The index (rebuilt from the run folders when it is missing or unreadable) and problems."""
        try:
            data = _read_json(self.path / "index.json")
            if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
                raise StoreError("index.json is not a workspace index")
            return data, []
        except FileNotFoundError:
            problems = []
        except (StoreError, OSError) as exc:
            problems = [f"the workspace index was unreadable ({exc}); it was rebuilt from the run folders"]
        idx: dict[str, Any] = {"version": INDEX_VERSION, "runs": self._scan_runs()}
        if (self.path / "engine" / "checkpoint").is_dir():
            idx["engine"] = {}
        return idx, problems

    def _scan_runs(self) -> list[dict[str, Any]]:
        out = []
        runs = self.path / "runs"
        for d in sorted(runs.iterdir()) if runs.is_dir() else []:
            if not RUN_ID.fullmatch(d.name):
                continue
            try:
                entry = _read_json(d / "run.json")
                name, created = str(entry["name"]), float(entry["created"])
            except (OSError, StoreError, KeyError, TypeError, ValueError):
                name, created = d.name, d.stat().st_mtime
            out.append(_index_row(d.name, name, created, _size(d), (d / "checkpoint").is_dir()))
        return out

    def load(self) -> Restored:
        """Everything the workspace holds; an unreadable part is reported, the rest still loads."""
        idx, problems = self.index()
        out = Restored(problems=problems)
        for row in idx["runs"]:
            out.runs.append(self._load_run(row))
        out.problems += [f"run {r.name!r} is unreadable: {r.problem}" for r in out.runs if r.problem]
        eng = idx.get("engine")
        if isinstance(eng, dict) and (self.path / "engine" / "checkpoint").is_dir():
            out.engine_path = self.path / "engine" / "checkpoint"
            out.engine_name = eng.get("checkpoint_name") if isinstance(eng.get("checkpoint_name"), str) else None
            try:
                report = _read_json(self.path / "engine" / "report.json")
                out.report = report if isinstance(report, dict) else None
            except (OSError, StoreError):
                out.report = None
        src = idx.get("source")
        if isinstance(src, dict):
            out.source = src
            upload = src.get("file")
            if upload is not None:
                path = self._upload_path(upload)
                if path is None or not path.is_file():
                    out.problems.append("the uploaded file of the task source is missing from the store")
                    out.source = None
                else:
                    out.source_file = path
        return out

    def listing(self) -> list[StoredRun]:
        """The stored runs from the index alone (cheap: no curves are read); a run whose folder is
        gone is marked unreadable."""
        idx, _ = self.index()
        out = []
        for row in idx["runs"]:
            stored = _row_run(row)
            if stored.problem is None and not (self.path / "runs" / stored.run_id / "run.json").is_file():
                stored.problem = "run.json is missing"
            out.append(stored)
        return out

    def _load_run(self, row: Any) -> StoredRun:
        stored = _row_run(row)
        if stored.problem:
            return stored
        run_id = stored.run_id
        try:
            entry = _normalised(_read_json(self.path / "runs" / run_id / "run.json"))
        except FileNotFoundError:
            stored.problem = "run.json is missing"
        except (OSError, StoreError) as exc:
            stored.problem = str(exc)
        else:
            stored.entry = entry
        return stored

    def run_checkpoint(self, run_id: str) -> Path:
        """The checkpoint folder of a stored run (raises StoreError when it has none)."""
        path = self._run_dir(run_id) / "checkpoint"
        if not path.is_dir():
            raise StoreError("this run has no stored checkpoint")
        return path

    def total_bytes(self) -> int:
        return _size(self.path) if self.path.is_dir() else 0

    # ---- writing ------------------------------------------------------------------------------
    def save_run(self, entry: dict[str, Any], eng: OneShotMetaLearningEngine | None = None) -> list[str]:
        """Store a run (settings, curves, and ``eng``'s checkpoint when given). A stored run of the same
        name is replaced. Returns the names of older runs deleted to stay within the bound."""
        _check_entry(entry)
        with self._lock:
            idx, _ = self.index()
            run_id = f"r{time.time_ns()}-{secrets.token_hex(3)}"
            d = self.path / "runs" / run_id
            d.mkdir(parents=True, exist_ok=True)
            created = time.time()
            if eng is not None and eng.is_initialized:
                _save_engine(eng, d / "checkpoint")
            _write_json(d / "run.json", {**entry, "created": created})
            same = [r for r in idx["runs"] if r.get("name") == entry["name"]]
            idx["runs"] = [r for r in idx["runs"] if r.get("name") != entry["name"]]
            for r in same:
                self._remove_run_dir(r.get("id"))
            idx["runs"].append(_index_row(run_id, str(entry["name"]), created, _size(d), (d / "checkpoint").is_dir()))
            deleted = self._enforce_bound(idx, keep=run_id)
            self._write_index(idx)
        return deleted

    def delete_run(self, run_id: str) -> bool:
        """Delete a stored run; False when there is no such run."""
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            return False
        with self._lock:
            idx, _ = self.index()
            before = len(idx["runs"])
            idx["runs"] = [r for r in idx["runs"] if r.get("id") != run_id]
            self._remove_run_dir(run_id)
            if len(idx["runs"]) == before:
                return False
            self._write_index(idx)
        return True

    def save_engine(
        self, eng: OneShotMetaLearningEngine, checkpoint_name: str | None, report: dict[str, Any] | None
    ) -> list[str]:
        """Store the session's current model (and its discovery report); older runs may go (returned)."""
        with self._lock:
            idx, _ = self.index()
            _save_engine(eng, self.path / "engine" / "checkpoint")
            try:
                _write_json(self.path / "engine" / "report.json", report)
            except (TypeError, ValueError):  # a report that is not JSON: the mechanisms themselves are saved
                (self.path / "engine" / "report.json").unlink(missing_ok=True)
            idx["engine"] = {"checkpoint_name": checkpoint_name, "saved": time.time()}
            deleted = self._enforce_bound(idx)
            self._write_index(idx)
        return deleted

    def save_source(self, recipe: dict[str, Any], upload: tuple[str, bytes] | None = None) -> None:
        """Store the task source's recipe; ``upload`` (file name, bytes) is the file it was built from."""
        recipe = dict(recipe)
        with self._lock:
            idx, _ = self.index()
            src_dir = self.path / "source"
            if upload is not None:
                name, data = upload
                if len(data) > MAX_UPLOAD_BYTES:
                    raise StoreError(
                        f"the uploaded file is {len(data) / 1024**2:.0f} MB; the store keeps uploads up to "
                        f"{MAX_UPLOAD_BYTES // 1024**2} MB, so this task source will not survive a reload"
                    )
                suffix = Path(str(name)).suffix.lower()
                fname = "upload" + (suffix if suffix in UPLOAD_SUFFIXES else ".bin")
                shutil.rmtree(src_dir, ignore_errors=True)
                _write_bytes(src_dir / fname, data)
                recipe["file"] = fname
            else:
                shutil.rmtree(src_dir, ignore_errors=True)
                recipe.pop("file", None)
            idx["source"] = recipe
            self._write_index(idx)

    def clear(self) -> None:
        """Delete the whole workspace folder."""
        with self._lock:
            shutil.rmtree(self.path, ignore_errors=True)

    # ---- internals ----------------------------------------------------------------------------
    def _run_dir(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            raise StoreError("not a run id")
        return self.path / "runs" / run_id

    def _remove_run_dir(self, run_id: Any) -> None:
        if isinstance(run_id, str) and RUN_ID.fullmatch(run_id):
            shutil.rmtree(self.path / "runs" / run_id, ignore_errors=True)

    def _upload_path(self, name: Any) -> Path | None:
        if not isinstance(name, str) or name not in {"upload" + s for s in (*UPLOAD_SUFFIXES, ".bin")}:
            return None
        return self.path / "source" / name

    def _enforce_bound(self, idx: dict[str, Any], keep: str | None = None) -> list[str]:
        """Delete the oldest runs (never ``keep``) while the workspace is over its bound."""
        deleted = []
        runs = sorted(idx["runs"], key=lambda r: float(r.get("created", 0)))
        while runs and (len(runs) > self.max_runs or self.total_bytes() > self.max_bytes):
            victim = next((r for r in runs if r.get("id") != keep), None)
            if victim is None:
                break
            runs.remove(victim)
            self._remove_run_dir(victim.get("id"))
            deleted.append(str(victim.get("name")))
        idx["runs"] = [r for r in idx["runs"] if r in runs]
        return deleted

    def _write_index(self, idx: dict[str, Any]) -> None:
        idx["version"] = INDEX_VERSION
        _write_json(self.path / "index.json", idx)


def _index_row(run_id: str, name: str, created: float, size: int, has_checkpoint: bool) -> dict[str, Any]:
    return {"id": run_id, "name": name, "created": created, "bytes": size, "has_checkpoint": has_checkpoint}


def _row_run(row: Any) -> StoredRun:
    """An index row as a StoredRun (its problem set when the row is malformed)."""
    try:
        stored = StoredRun(
            str(row["id"]), str(row["name"]), float(row["created"]), int(row["bytes"]), bool(row["has_checkpoint"])
        )
    except (KeyError, TypeError, ValueError):
        return StoredRun("?", "?", 0.0, 0, False, problem="its index entry is malformed")
    if not RUN_ID.fullmatch(stored.run_id):
        stored.problem = "its id is not a run id"
    return stored


def _check_entry(entry: Any) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise StoreError("run.json is not a run (no name)")
    hist = entry.get("history")
    if not isinstance(hist, dict) or not isinstance(hist.get("iteration"), list):
        raise StoreError("run.json has no training curves")
    if not isinstance(entry.get("config"), dict):
        raise StoreError("run.json has no settings")


def _normalised(entry: Any) -> dict[str, Any]:
    """A run read back, checked as a checkpoint's curves are, with the fields the pages read."""
    _check_entry(entry)
    try:
        history = history_from_meta(entry["history"], "run.json")
    except CheckpointError as exc:
        raise StoreError(str(exc)) from None
    if history is None:
        raise StoreError("run.json has no training curves")
    config = entry["config"]
    return {
        "name": entry["name"],
        "history": history.to_dict(),
        "algorithm": str(entry.get("algorithm") or config.get("algorithm") or "?"),
        "plain": bool(entry.get("plain", False)),
        "config": config,
        "note": str(entry.get("note") or ""),
        "created": entry.get("created"),
    }


def _save_engine(eng: OneShotMetaLearningEngine, path: Path) -> None:
    """``eng.save_sync`` without renaming the engine's checkpoint (the sidebar shows that name)."""
    name = eng.checkpoint_name
    try:
        eng.save_sync(path)
    finally:
        eng.checkpoint_name = name


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(path)
    if path.stat().st_size > MAX_JSON_BYTES:
        raise StoreError(f"{path.name} is larger than {MAX_JSON_BYTES // 1024**2} MB")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path.name} is not valid JSON ({exc})") from None


def _write_json(path: Path, data: Any) -> None:
    _write_bytes(path, json.dumps(finite_or_null(data), allow_nan=False, default=_plain).encode())


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as plain numbers and lists (anything else is refused)."""
    if hasattr(value, "tolist"):
        return finite_or_null(value.tolist())
    raise TypeError(f"{type(value).__name__} is not JSON")


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


__all__ = [
    "MAX_BYTES",
    "MAX_RUNS",
    "Restored",
    "RunStore",
    "StoreError",
    "StoredRun",
    "new_workspace_id",
    "store_root",
    "workspace_id_problem",
]
