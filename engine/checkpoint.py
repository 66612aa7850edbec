"""Checkpoints: a directory (or .zip) with ``model.safetensors``, ``config.json`` and
``mechanisms.json``. Tensors only, so loading never unpickles. Writes are atomic: the files
go to a temporary sibling first and are renamed into place. Reading checks every part
(weights against the model config.json describes, the history, the descriptive fields)
before the engine swaps anything in.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from .mechanisms import finite_or_null
from .training import TrainingHistory

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
MECHANISMS = "mechanisms.json"
OPTIMIZER = "optimizer.safetensors"  # the outer optimiser's state, so a resumed run continues it
MAX_JSON_BYTES = 50 * 1024 * 1024
MAX_WEIGHTS_BYTES = 2 * 1024**3


class CheckpointError(ValueError):
    """A checkpoint cannot be read (the message says which file and why)."""


@dataclass
class CheckpointData:
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]  # config.json contents
    mechanisms: list[dict[str, Any]]
    optimizer: dict[str, torch.Tensor] | None = None  # optimizer.safetensors, when saved


def save_checkpoint(
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    mechanisms: list[dict[str, Any]],
    optimizer: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint directory, or a zip when ``path`` ends in .zip. Returns the path."""
    path = Path(path)
    files = {
        WEIGHTS: save_safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()}),
        # allow_nan=False: the reader refuses NaN, so a non-finite number (an overflowed
        # validation loss in the history) is written as null rather than as unreadable JSON.
        CONFIG: json.dumps(
            {"format_version": FORMAT_VERSION, **finite_or_null(meta)}, indent=2, allow_nan=False
        ).encode(),
        MECHANISMS: json.dumps(finite_or_null(mechanisms), indent=2, allow_nan=False).encode(),
    }
    if optimizer:
        files[OPTIMIZER] = save_safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in optimizer.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".zip":
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with (
                os.fdopen(fd, "wb") as fh,
                zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf,
            ):
                for name, data in files.items():
                    zf.writestr(name, data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        for name, data in files.items():
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        if path.exists():
            old = previous_copy(path)
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
            shutil.rmtree(previous_copy(path), ignore_errors=True)  # left by a save killed mid-swap
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def checkpoint_zip_bytes(path: str | Path) -> bytes:
    """The checkpoint at ``path`` as zip bytes (for a download button)."""
    files = _read_files(Path(path))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def previous_copy(path: Path) -> Path:
    """Where ``save_checkpoint`` parks the previous checkpoint folder while it swaps in the new."""
    return path.with_name(f".{path.name}.old")


def _read_files(path: Path) -> dict[str, bytes]:
    if not path.exists() and previous_copy(path).is_dir():
        # A save was killed between its two renames: the last complete checkpoint is here.
        path = previous_copy(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        out = {}
        for name in (WEIGHTS, CONFIG, MECHANISMS, OPTIMIZER):
            f = path / name
            if not f.exists():
                continue
            if not f.is_file():
                raise CheckpointError(f"{path}: {name} is not a regular file")
            cap = MAX_WEIGHTS_BYTES if name in (WEIGHTS, OPTIMIZER) else MAX_JSON_BYTES
            try:
                if f.stat().st_size > cap:
                    raise CheckpointError(f"{path}: {name} is larger than {cap} bytes")
                with open(f, "rb") as fh:
                    data = fh.read(cap + 1)
            except OSError as exc:
                raise CheckpointError(f"{path}: cannot read {name} ({exc.strerror or exc})") from None
            if len(data) > cap:
                raise CheckpointError(f"{path}: {name} is larger than {cap} bytes")
            out[name] = data
        return out
    if not path.is_file():
        raise CheckpointError(f"{path.name} is neither a checkpoint folder nor a zip file")
    return read_checkpoint_zip(path, path.name)


def _unsafe_member(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":")


def read_checkpoint_zip(data: bytes | Path, label: str = "checkpoint") -> dict[str, bytes]:
    """The checkpoint files inside a zip (bytes, or a path opened in place); other members
    are ignored, sizes are capped, member paths that climb out ("..", absolute) and a
    checkpoint file given twice are refused. Nothing is ever extracted to disk."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError):
        raise CheckpointError(f"{label} is neither a checkpoint folder nor a zip file") from None
    out = {}
    with zf:
        infos = zf.infolist()
        for info in infos:
            if _unsafe_member(info.filename):
                raise CheckpointError(f"{label}: the zip holds an unsafe member path {info.filename[:200]!r}")
        for info in infos:
            name = info.filename.rsplit("/", 1)[-1]
            if name not in (WEIGHTS, CONFIG, MECHANISMS, OPTIMIZER) or info.is_dir():
                continue
            if name in out:
                raise CheckpointError(f"{label}: the zip holds more than one {name}")
            cap = MAX_WEIGHTS_BYTES if name in (WEIGHTS, OPTIMIZER) else MAX_JSON_BYTES
            if info.file_size > cap:
                raise CheckpointError(f"{label}: {name} is larger than {cap} bytes")
            try:
                out[name] = zf.read(info)
            except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError, ValueError) as exc:
                raise CheckpointError(f"{label}: {name} is damaged ({exc})") from None
    return out


def load_checkpoint(path: str | Path) -> CheckpointData:
    return parse_checkpoint_files(_read_files(Path(path)), str(path))


def parse_checkpoint_files(files: dict[str, bytes], label: str = "checkpoint") -> CheckpointData:
    """Validate and decode checkpoint files; never unpickles."""
    for name in (WEIGHTS, CONFIG):
        if name not in files:
            raise CheckpointError(f"{label}: {name} is missing (a checkpoint holds {WEIGHTS} and {CONFIG})")
    try:
        tensors = load_safetensors_bytes(files[WEIGHTS])
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{label}: {WEIGHTS} is not a valid safetensors file ({exc})") from None
    meta = _parse_json(files[CONFIG], CONFIG, label)
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{label}: {CONFIG} has no supported format_version (expected {FORMAT_VERSION})")
    for key in ("config", "model", "task_type"):
        if key not in meta:
            raise CheckpointError(f"{label}: {CONFIG} lacks the field {key!r}")
    mechanisms = _parse_json(files[MECHANISMS], MECHANISMS, label) if MECHANISMS in files else []
    if isinstance(mechanisms, dict):  # versioned export format
        mechanisms = mechanisms.get("mechanisms", [])
    if not isinstance(mechanisms, list):
        raise CheckpointError(f"{label}: {MECHANISMS} must hold a list of mechanisms")
    optimizer = None
    if OPTIMIZER in files:
        try:
            optimizer = load_safetensors_bytes(files[OPTIMIZER])
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{label}: {OPTIMIZER} is not a valid safetensors file ({exc})") from None
    return CheckpointData(tensors, meta, mechanisms, optimizer)


def _parse_json(data: bytes, name: str, label: str) -> Any:
    if len(data) > MAX_JSON_BYTES:
        raise CheckpointError(f"{label}: {name} is larger than {MAX_JSON_BYTES} bytes")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError:
        raise CheckpointError(f"{label}: {name} is nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise CheckpointError(f"{label}: {name} is not valid JSON ({exc})") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


# ------------------------------------------------------------------------------ validation
def check_tensors(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], name: str) -> None:
    """The weights must be exactly the tensors of the model config.json describes: same names,
    shapes and dtypes (no silent casts of int or bool data into weights), all finite."""
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:5])}"] if missing else []) + (
            [f"unexpected {', '.join(extra[:5])}"] if extra else []
        )
        raise CheckpointError(f"{name}: the weights do not match the model in config.json ({'; '.join(parts)})")
    for key, want in expected.items():
        got = tensors[key]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{name}: the weights do not match the model in config.json "
                f"({key} has shape {list(got.shape)}, the model needs {list(want.shape)})"
            )
        if got.dtype != want.dtype:
            raise CheckpointError(f"{name}: {key} has dtype {got.dtype}, the model needs {want.dtype}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise CheckpointError(f"{name}: {key} holds NaN or infinite values")


def history_from_meta(raw: Any, name: str) -> TrainingHistory | None:
    """The training curves stored in config.json, checked (resuming appends to them)."""
    if not raw:
        return None

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{name}: config.json history is malformed ({why})")

    if not isinstance(raw, dict) or not isinstance(raw.get("metric_name"), str):
        raise bad("an object with a metric_name is expected")
    history = TrainingHistory.from_dict(raw)
    for key in ("iteration", "val_iteration", "train_loss", "train_metric", "elapsed", "val_loss", "val_metric"):
        values = getattr(history, key)
        integral = key.endswith("iteration")
        kinds = (int,) if integral else (int, float)
        if not isinstance(values, list):
            raise bad(f"{key} must be a list")
        if not integral:  # a loss that was not finite is saved as null: read it back as NaN
            values = [float("nan") if v is None else v for v in values]
            setattr(history, key, values)
        if not all(isinstance(v, kinds) and not isinstance(v, bool) for v in values):
            raise bad(f"{key} must be a list of {'integers' if integral else 'numbers'}")
    if any(b <= a for a, b in zip(history.iteration, history.iteration[1:], strict=False)):
        raise bad("iteration must increase")
    for keys, ref in (
        (("train_loss", "train_metric", "elapsed"), "iteration"),
        (("val_loss", "val_metric"), "val_iteration"),
    ):
        for key in keys:
            if len(getattr(history, key)) != len(getattr(history, ref)):
                raise bad(f"{key} and {ref} differ in length")
    return history


def descriptive_fields(meta: dict[str, Any], name: str) -> tuple[list[str] | None, dict[str, Any]]:
    """config.json's feature names (a list of strings or null) and source (an object), checked."""
    feature_names = meta.get("feature_names")
    if feature_names is not None and (
        not isinstance(feature_names, list) or not all(isinstance(f, str) for f in feature_names)
    ):
        raise CheckpointError(f"{name}: config.json feature_names must be a list of strings")
    source_info = meta.get("source") or {}
    if not isinstance(source_info, dict):
        raise CheckpointError(f"{name}: config.json source must be an object")
    return feature_names, source_info


# ------------------------------------------------------------------------------ optimiser state
def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """The optimiser's per-parameter state as named tensors (``"<param index>.<key>"``) and its
    parameter groups as JSON-able dicts."""
    state = optimizer.state_dict()
    tensors = {
        f"{index}.{key}": torch.as_tensor(value)
        for index, slots in state["state"].items()
        for key, value in slots.items()
    }
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, groups


def restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: Any, name: str
) -> None:
    """Load a saved state into ``optimizer`` (built over the same parameters), checked first:
    every slot names a parameter, moment tensors have its shape, everything is finite."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    bad = CheckpointError(f"{name}: {OPTIMIZER} does not match the model's parameters")
    if not isinstance(groups, list) or len(groups) != len(optimizer.param_groups):
        raise bad
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, _, slot = key.partition(".")
        if not index.isdigit() or int(index) >= len(params) or not slot:
            raise bad
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{name}: {OPTIMIZER} holds NaN or infinite values")
        if slot != "step" and tuple(value.shape) != tuple(params[int(index)].shape):
            raise bad
        state.setdefault(int(index), {})[slot] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{name}: {OPTIMIZER} cannot be loaded ({exc})") from None
