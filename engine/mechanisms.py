"""CausalMechanism records, the one strength map, bootstrap confidence, and the versioned
JSON exchange format (docs/DESIGN.md section 3 and section 6).

A record says: intervening on ``source`` changed ``target``'s loss by ``effect`` (mean over
tasks of the per-task mean, per query point) with spread ``effect_std`` (standard deviation
of the per-task means across tasks). The effect of X on task T is L(T | do(X)) - L(T), so a
positive effect means "the model's loss depends on X"; for STRUCTURE_TRANSFER, whose
intervention *adds* task A's gates, the effect is the gain L(B) - L(B | A's gates) so that
positive again means "A's structure helps B" (see ``engine.discovery``).

``causal_strength`` is defined once, here, by ``strength_from_effect``:

    strength = 1 - exp(-max(effect, 0) / scale)

where ``scale`` is the mean adapted query loss L(T) over the tasks of the discovery run
(stored in each record's ``details["strength_scale"]``). So strength 0 means no effect, 0.5
means the intervention raised the loss by 0.69 times the typical adapted loss, 0.7 (the
default ``mechanism_threshold``) by 1.2 times, i.e. it more than doubled it, and strength
tends to 1 as the effect grows. The map is monotone in the effect for a fixed scale.

``confidence`` is the share of bootstrap resamples (tasks, then query points within each
resampled task; at least 200) in which the mean effect is positive: ``bootstrap_confidence``.

``effectiveness`` is the gain on held-out tasks when the mechanism is used as a prior,
``(L_without - L_with) / max(L_without, L_with)`` in [-1, 1], or NaN until measured (a
numeric field is always a float). NaN is not JSON: the exchange format writes ``null`` and
reads it back as NaN; a literal NaN in a file is still refused.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import CausalMechanismType

FORMAT_NAME = "causal-mechanisms"
FORMAT_VERSION = 1
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_RECORDS = 100_000
MAX_NAME_CHARS = 500
MAX_REUSE_COUNT = 2**63 - 1  # fits an int64 column
MIN_BOOTSTRAP = 200
NOT_MEASURED = float("nan")  # effectiveness before it is measured on held-out tasks
STRENGTH_MAP = "causal_strength = 1 - exp(-max(effect, 0) / scale), scale = mean adapted query loss of the run"

NODE_KINDS = ("feature", "mechanism", "task", "prior", "optimizer", "output")


class MechanismFormatError(ValueError):
    """A mechanisms file or record is invalid (the message names the record and the field)."""


# ---------------------------------------------------------------------------- the one map
def strength_from_effect(effect: float, scale: float) -> float:
    """THE strength map of the project: ``1 - exp(-max(effect, 0) / scale)`` in [0, 1).

    ``scale`` > 0 is the typical adapted loss of the run (so strength is unit free);
    negative effects (the intervention helped) have strength 0.
    """
    if not math.isfinite(effect):
        raise ValueError(f"effect must be finite, got {effect!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    return float(1.0 - math.exp(-max(effect, 0.0) / scale))


def relative_gain(loss_without: float, loss_with: float) -> float:
    """Effectiveness: ``(L_without - L_with) / max(L_without, L_with)`` in [-1, 1] (0 if both 0)."""
    top = max(loss_without, loss_with)
    if top <= 0:
        return 0.0
    return float((loss_without - loss_with) / top)


# ------------------------------------------------------------------------------ statistics
def effect_summary(effects: Sequence[np.ndarray]) -> tuple[float, float, float]:
    """(mean effect, spread, standard error) of per-point effects grouped by task.

    mean: mean over tasks of each task's mean; spread: std of the task means across tasks
    (std over points when there is one task); se: the bootstrap-free standard error."""
    groups = [np.asarray(e, dtype=float).reshape(-1) for e in effects if np.size(e) > 0]
    if not groups:
        raise ValueError("no effects to summarise")
    means = np.array([g.mean() for g in groups])
    if len(groups) == 1:
        g = groups[0]
        spread = float(g.std(ddof=1)) if g.size > 1 else 0.0
        se = spread / math.sqrt(g.size) if g.size > 1 else 0.0
    else:
        spread = float(means.std(ddof=1))
        se = spread / math.sqrt(len(groups))
    return float(means.mean()), spread, float(se)


def bootstrap_confidence(
    effects: Sequence[np.ndarray] | np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
) -> float:
    """Share of bootstrap resamples in which the mean effect is positive.

    ``effects``: one array of per-query-point effects per task (a 1-D array is one task).
    Each resample draws tasks with replacement, then query points with replacement within
    each drawn task, and takes the mean over tasks of the per-task means.
    """
    if n_resamples < MIN_BOOTSTRAP:
        raise ValueError(f"n_resamples must be at least {MIN_BOOTSTRAP}, got {n_resamples}")
    if isinstance(effects, np.ndarray) and effects.ndim == 1:
        effects = [effects]
    groups = [np.asarray(e, dtype=float).reshape(-1) for e in effects if np.size(e) > 0]
    if not groups:
        raise ValueError("no effects to bootstrap")
    if not all(np.isfinite(g).all() for g in groups):
        raise ValueError("effects must be finite")
    rng = np.random.default_rng(seed)
    n_tasks = len(groups)
    picks = rng.integers(n_tasks, size=(n_resamples, n_tasks)) if n_tasks > 1 else np.zeros((n_resamples, 1), int)
    task_means = np.empty(picks.shape)
    for t, g in enumerate(groups):
        where = picks == t
        count = int(where.sum())
        if count == 0:
            continue
        draws = rng.integers(g.size, size=(count, g.size))
        task_means[where] = g[draws].mean(axis=1)
    stat = task_means.mean(axis=1)
    # A tiny tolerance so that effects that are exactly zero up to float noise count as 0.
    return float((stat > 1e-12).mean())


# ---------------------------------------------------------------------------------- record
@dataclass
class CausalMechanism:
    """One discovered mechanism (docs/DESIGN.md section 3). ``details`` holds anything extra
    (the strength scale, per-mechanism prior rates, invariance tests, ...)."""

    mechanism_type: CausalMechanismType
    source: str
    target: str
    causal_strength: float
    confidence: float
    effectiveness: float = NOT_MEASURED
    reuse_count: int = 0
    effect: float = 0.0
    effect_std: float = 0.0
    source_kind: str = "feature"
    target_kind: str = "output"
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clean = validate_record(self.to_dict())
        clean["mechanism_type"] = CausalMechanismType[clean["mechanism_type"]]
        if clean["effectiveness"] is None:
            clean["effectiveness"] = NOT_MEASURED
        for name, value in clean.items():
            setattr(self, name, value)

    def __eq__(self, other: object) -> bool:
        # NaN (not measured) equals NaN here, so a record equals its JSON round trip.
        if not isinstance(other, CausalMechanism):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    @property
    def effectiveness_measured(self) -> bool:
        e = self.effectiveness
        return e is not None and not isinstance(e, bool) and isinstance(e, (int, float)) and math.isfinite(e)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.mechanism_type.name, self.source, self.target)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict (for files and tables); ``mechanism_type`` is the enum
        NAME (e.g. "FEATURE_TRANSFER"); an unmeasured (NaN) effectiveness is None (null)."""
        t = self.mechanism_type
        return {
            "mechanism_type": t.name if isinstance(t, CausalMechanismType) else str(t),
            "source": self.source,
            "target": self.target,
            "causal_strength": float(self.causal_strength),
            "confidence": float(self.confidence),
            "effectiveness": float(self.effectiveness) if self.effectiveness_measured else _raw(self.effectiveness),
            "reuse_count": int(self.reuse_count),
            "effect": float(self.effect),
            "effect_std": float(self.effect_std),
            "source_kind": self.source_kind,
            "target_kind": self.target_kind,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CausalMechanism:
        """Validated record from a dict (raises MechanismFormatError naming the field)."""
        clean = validate_record(data)
        clean["mechanism_type"] = CausalMechanismType[clean["mechanism_type"]]
        return cls(**clean)


def _raw(value: Any) -> Any:
    """An unmeasured effectiveness as None; anything else as it is, for validation to name."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


# The fields every mechanism record carries, in display order (the app's table uses them).
RECORD_FIELDS = (
    "mechanism_type",
    "source",
    "target",
    "causal_strength",
    "confidence",
    "effectiveness",
    "reuse_count",
    "effect",
    "effect_std",
)
_OPTIONAL = ("source_kind", "target_kind", "details")


def _number(data: Mapping[str, Any], name: str, where: str, low: float, high: float) -> float:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MechanismFormatError(f"{where}: {name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise MechanismFormatError(f"{where}: {name} must be finite, got {value!r}")
    if not low <= value <= high:
        raise MechanismFormatError(f"{where}: {name} must be in [{low:g}, {high:g}], got {value!r}")
    return value


def _check_json_value(value: Any, where: str, depth: int = 0) -> None:
    if depth > 20:
        raise MechanismFormatError(f"{where}: details are nested too deeply")
    if isinstance(value, float) and not math.isfinite(value):
        raise MechanismFormatError(f"{where}: details contain a non-finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise MechanismFormatError(f"{where}: details keys must be strings")
            _check_json_value(v, where, depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_json_value(v, where, depth + 1)
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise MechanismFormatError(f"{where}: details hold a {type(value).__name__}, which JSON cannot")


def validate_record(data: Mapping[str, Any], index: int | None = None) -> dict[str, Any]:
    """Check one record dict; return a clean copy. Errors name the record and the field."""
    where = "mechanism" if index is None else f"mechanism #{index}"
    if not isinstance(data, Mapping):
        raise MechanismFormatError(f"{where}: expected an object, got {type(data).__name__}")
    missing = [k for k in RECORD_FIELDS if k not in data]
    if missing:
        raise MechanismFormatError(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(data) - set(RECORD_FIELDS) - set(_OPTIONAL))
    if unknown:
        raise MechanismFormatError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
    raw_type = data["mechanism_type"]
    if isinstance(raw_type, CausalMechanismType):
        type_name = raw_type.name
    elif isinstance(raw_type, str) and raw_type.upper() in CausalMechanismType.__members__:
        type_name = raw_type.upper()
    else:
        valid = ", ".join(CausalMechanismType.__members__)
        raise MechanismFormatError(f"{where}: unknown mechanism_type {raw_type!r} (valid: {valid})")
    out: dict[str, Any] = {"mechanism_type": type_name}
    for name in ("source", "target"):
        value = data[name]
        if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
            raise MechanismFormatError(f"{where}: {name} must be a non-empty string of at most {MAX_NAME_CHARS} chars")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # a lone surrogate ("\ud800") parses from JSON but cannot be written as UTF-8 later
            raise MechanismFormatError(f"{where}: {name} is not valid Unicode text") from None
        out[name] = value
    out["causal_strength"] = _number(data, "causal_strength", where, 0.0, 1.0)
    out["confidence"] = _number(data, "confidence", where, 0.0, 1.0)
    eff = data["effectiveness"]
    # null in the dict (JSON) form, NaN on the record; a record turns None into NaN
    unmeasured = eff is None or (isinstance(eff, float) and math.isnan(eff))
    out["effectiveness"] = None if unmeasured else _number(data, "effectiveness", where, -1.0, 1.0)
    reuse = data["reuse_count"]
    if isinstance(reuse, bool) or not isinstance(reuse, int) or not 0 <= reuse <= MAX_REUSE_COUNT:
        shown = reuse if not isinstance(reuse, int) or reuse.bit_length() < 100 else "a huge integer"
        raise MechanismFormatError(f"{where}: reuse_count must be an integer in [0, {MAX_REUSE_COUNT}], got {shown!r}")
    out["reuse_count"] = int(reuse)
    out["effect"] = _number(data, "effect", where, -1e12, 1e12)
    out["effect_std"] = _number(data, "effect_std", where, 0.0, 1e12)
    for name, default in (("source_kind", "feature"), ("target_kind", "output")):
        value = data.get(name, default)
        if value not in NODE_KINDS:
            raise MechanismFormatError(f"{where}: {name} must be one of {NODE_KINDS}, got {value!r}")
        out[name] = value
    details = data.get("details", {})
    if details is None:
        details = {}
    if not isinstance(details, Mapping):
        raise MechanismFormatError(f"{where}: details must be an object")
    _check_json_value(dict(details), where)
    out["details"] = dict(details)
    return out


# ------------------------------------------------------------------------------ exchange
def finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float (NaN: not measured) replaced by None, for JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def mechanisms_document(
    mechanisms: Iterable[Mapping[str, Any] | CausalMechanism],
    priors: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The versioned export document (validated before it is returned)."""
    records = [
        m.to_dict() if isinstance(m, CausalMechanism) else validate_record(m, i) for i, m in enumerate(mechanisms)
    ]
    doc: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "strength_map": STRENGTH_MAP,
        "mechanisms": records,
    }
    if priors:
        priors = finite_or_null(dict(priors))  # an interval over one held-out task is NaN: null in JSON
        _check_json_value(priors, "priors")
        doc["priors"] = priors
    if meta:
        _check_json_value(dict(meta), "meta")
        doc["meta"] = dict(meta)
    return doc


def dump_mechanisms(
    path: str | os.PathLike,
    mechanisms: Iterable[Mapping[str, Any] | CausalMechanism],
    priors: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write the versioned JSON document atomically (temporary file, then rename)."""
    doc = mechanisms_document(mechanisms, priors, meta)
    text = json.dumps(doc, indent=2, allow_nan=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _reject_constant(name: str) -> Any:
    raise MechanismFormatError(f"the file contains {name}, which is not a valid number")


_BOM_AND_SPACE = "\ufeff \t\r\n"


def _read_capped(p: Path) -> bytes:
    """The bytes of a mechanisms file, refusing it before reading when it is over the cap."""
    shown = str(p) if len(str(p)) <= 200 else str(p)[:200] + "..."
    try:
        if not p.is_file():
            raise MechanismFormatError(f"mechanisms file not found: {shown!r}")
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise MechanismFormatError(f"{p.name} is {size} bytes, more than the limit of {MAX_FILE_BYTES}")
        with open(p, "rb") as fh:
            return fh.read(MAX_FILE_BYTES + 1)  # the bytes check below catches a file that grew
    except OSError as exc:  # a name too long for the file system, no permission, ...
        raise MechanismFormatError(f"cannot read the mechanisms file {shown!r} ({exc.strerror or exc})") from None


def parse_mechanisms(source: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Validate mechanisms given as a path, JSON text/bytes, a document dict, or a list of
    records (dicts or CausalMechanism). Returns (records, priors block or None).

    All records are validated before anything is returned, so a caller that replaces its
    state only on success never half-imports."""
    doc: Any = source
    if isinstance(source, (str, os.PathLike)) and not (
        isinstance(source, str) and source.lstrip(_BOM_AND_SPACE).startswith(("{", "["))
    ):
        doc = _read_capped(Path(source))
    if isinstance(doc, (bytes, bytearray)):
        if len(doc) > MAX_FILE_BYTES:
            raise MechanismFormatError(f"the mechanisms file is larger than {MAX_FILE_BYTES} bytes")
        try:
            doc = bytes(doc).decode("utf-8-sig")  # a leading byte-order mark is allowed
        except UnicodeDecodeError:
            raise MechanismFormatError("the mechanisms file is not UTF-8 text") from None
    if isinstance(doc, str):
        if len(doc) > MAX_FILE_BYTES:
            raise MechanismFormatError(f"the mechanisms text is larger than {MAX_FILE_BYTES} bytes")
        try:
            doc = json.loads(doc.lstrip("\ufeff"), parse_constant=_reject_constant)
        except MechanismFormatError:
            raise
        except RecursionError:
            raise MechanismFormatError("the mechanisms file is nested too deeply to be a mechanisms document") from None
        except ValueError as exc:  # JSONDecodeError, or an integer with more digits than Python converts
            raise MechanismFormatError(f"the mechanisms file is not valid JSON ({exc})") from None
    priors = None
    if isinstance(doc, Mapping):
        if doc.get("format") != FORMAT_NAME:
            raise MechanismFormatError(f"not a mechanisms document: 'format' must be {FORMAT_NAME!r}")
        version = doc.get("version")
        if isinstance(version, bool) or version != FORMAT_VERSION:
            raise MechanismFormatError(
                f"unsupported mechanisms version {version!r} (this engine reads {FORMAT_VERSION})"
            )
        if "mechanisms" not in doc or not isinstance(doc["mechanisms"], list):
            raise MechanismFormatError("the document lacks a 'mechanisms' list")
        priors = doc.get("priors")
        if priors is not None:
            priors = validate_priors(priors)
        doc = doc["mechanisms"]
    if not isinstance(doc, (list, tuple)):
        raise MechanismFormatError(f"expected a mechanisms document or a list of records, got {type(doc).__name__}")
    if len(doc) > MAX_RECORDS:
        raise MechanismFormatError(f"{len(doc)} records is more than the limit of {MAX_RECORDS}")
    records = []
    for i, item in enumerate(doc):
        records.append(item.to_dict() if isinstance(item, CausalMechanism) else validate_record(item, i))
    return records, priors


def validate_priors(priors: Any) -> dict[str, Any]:
    """Check a priors block: ``mechanism_rates`` finite, >= 0 (other keys kept as data)."""
    if not isinstance(priors, Mapping):
        raise MechanismFormatError("priors must be an object")
    rates = priors.get("mechanism_rates")
    if not isinstance(rates, list) or not rates:
        raise MechanismFormatError("priors.mechanism_rates must be a non-empty list")
    for r in rates:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or not 0 <= r <= 1e3:
            raise MechanismFormatError(f"priors.mechanism_rates must hold numbers in [0, 1000], got {r!r}")
    _check_json_value(dict(priors), "priors")
    return dict(priors)
