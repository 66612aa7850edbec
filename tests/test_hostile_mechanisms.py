"""Hostile mechanisms JSON: every bad document is refused with a MechanismFormatError that
names the problem, whether it comes as a file, as bytes or as text, and an engine that
refuses an import keeps the mechanisms and priors it had.

The documents are generated here (no fixture files): each case is (id, payload, match).
"""

from __future__ import annotations

import copy
import json
import pickle
import time

import pytest

from engine import create_one_shot_meta_learning_engine
from engine import mechanisms as mech
from engine.mechanisms import MechanismFormatError, parse_mechanisms


def rec(**over) -> dict:
    base = {
        "mechanism_type": "FEATURE_TRANSFER",
        "source": "X1",
        "target": "output",
        "causal_strength": 0.8,
        "confidence": 0.95,
        "effectiveness": None,
        "reuse_count": 2,
        "effect": 0.4,
        "effect_std": 0.1,
    }
    base.update(over)
    return base


def without(field: str) -> dict:
    r = rec()
    del r[field]
    return r


def doc(records=None, **over) -> dict:
    d = {
        "format": mech.FORMAT_NAME,
        "version": mech.FORMAT_VERSION,
        "mechanisms": [rec()] if records is None else records,
    }
    d.update(over)
    return d


def dumps(d) -> str:
    return json.dumps(d)


def nested(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


GOOD = dumps(doc())
RECORD_TEXT = json.dumps(rec())

# (id, payload, match): text payloads go in as a file, as bytes and (when they look like
# JSON) as text; bytes payloads as a file and as bytes.
CASES: list[tuple[str, str | bytes, str]] = [
    # --- version and format
    ("version-2", dumps(doc(version=2)), r"unsupported mechanisms version 2 \(this engine reads 1\)"),
    ("version-0", dumps(doc(version=0)), "unsupported mechanisms version 0"),
    ("version-string", dumps(doc(version="1")), "unsupported mechanisms version '1'"),
    ("version-true", dumps(doc(version=True)), "unsupported mechanisms version True"),
    (
        "version-missing",
        dumps({k: v for k, v in doc().items() if k != "version"}),
        "unsupported mechanisms version None",
    ),
    ("format-missing", dumps({k: v for k, v in doc().items() if k != "format"}), "not a mechanisms document"),
    ("format-other", dumps(doc(format="checkpoint")), "'format' must be 'causal-mechanisms'"),
    # --- mechanism type
    (
        "type-unknown",
        dumps(doc([rec(mechanism_type="TELEPORT_TRANSFER")])),
        "unknown mechanism_type 'TELEPORT_TRANSFER'",
    ),
    ("type-number", dumps(doc([rec(mechanism_type=3)])), "unknown mechanism_type 3"),
    ("type-null", dumps(doc([rec(mechanism_type=None)])), "unknown mechanism_type None"),
    # --- non-finite and out-of-range numbers
    ("NaN", GOOD.replace("0.8", "NaN"), "contains NaN, which is not a valid number"),
    ("Infinity", GOOD.replace("0.95", "Infinity"), "contains Infinity, which is not a valid number"),
    ("-Infinity", GOOD.replace("0.4", "-Infinity"), "contains -Infinity, which is not a valid number"),
    ("overflow-1e999", GOOD.replace("0.4", "1e999"), "effect must be finite, got inf"),
    ("strength-2", dumps(doc([rec(causal_strength=2.0)])), r"causal_strength must be in \[0, 1\], got 2.0"),
    ("strength-negative", dumps(doc([rec(causal_strength=-0.1)])), r"causal_strength must be in \[0, 1\]"),
    ("confidence-negative", dumps(doc([rec(confidence=-0.5)])), r"confidence must be in \[0, 1\], got -0.5"),
    ("confidence-over-1", dumps(doc([rec(confidence=1.01)])), r"confidence must be in \[0, 1\]"),
    ("effectiveness-over", dumps(doc([rec(effectiveness=1.5)])), r"effectiveness must be in \[-1, 1\]"),
    ("effect-std-negative", dumps(doc([rec(effect_std=-1)])), r"effect_std must be in \[0, 1e\+12\]"),
    ("effect-huge", dumps(doc([rec(effect=1e300)])), r"effect must be in \[-1e\+12, 1e\+12\]"),
    ("reuse-negative", dumps(doc([rec(reuse_count=-1)])), "reuse_count must be an integer in"),
    ("reuse-huge", dumps(doc([rec(reuse_count=10**30)])), "reuse_count must be an integer in"),
    ("reuse-float", dumps(doc([rec(reuse_count=2.5)])), "reuse_count must be an integer in"),
    ("integer-5000-digits", GOOD.replace("0.4", "1" * 5000), r"not valid JSON \(.*digits"),
    # --- missing / unknown fields, wrong field types
    ("missing-confidence", dumps(doc([without("confidence")])), r"mechanism #0: missing field\(s\) confidence"),
    ("missing-everything", dumps(doc([{}])), r"missing field\(s\) mechanism_type, source, target"),
    ("unknown-field", dumps(doc([rec(colour="red")])), r"unknown field\(s\) colour"),
    ("strength-string", dumps(doc([rec(causal_strength="0.8")])), "causal_strength must be a number, got '0.8'"),
    ("strength-bool", dumps(doc([rec(causal_strength=True)])), "causal_strength must be a number, got True"),
    ("confidence-null", dumps(doc([rec(confidence=None)])), "confidence must be a number, got None"),
    ("effect-list", dumps(doc([rec(effect=[1])])), r"effect must be a number, got \[1\]"),
    ("source-number", dumps(doc([rec(source=5)])), "source must be a non-empty string"),
    ("target-empty", dumps(doc([rec(target="")])), "target must be a non-empty string"),
    ("source-too-long", dumps(doc([rec(source="x" * 501)])), "source must be a non-empty string of at most 500"),
    ("source-lone-surrogate", dumps(doc([rec(source="\ud800")])), "source is not valid Unicode text"),
    ("kind-unknown", dumps(doc([rec(source_kind="planet")])), "source_kind must be one of"),
    ("details-list", dumps(doc([rec(details=[1, 2])])), "details must be an object"),
    ("details-25-deep", dumps(doc([rec(details=json.loads(nested(25)))])), "details are nested too deeply"),
    ("record-is-list", dumps(doc([[1, 2]])), "mechanism #0: expected an object, got list"),
    ("record-is-string", dumps(doc(["FEATURE_TRANSFER"])), "mechanism #0: expected an object, got str"),
    ("second-record-bad", dumps(doc([rec(), rec(confidence=3.0)])), r"mechanism #1: confidence must be in"),
    ("mechanisms-object", dumps(doc({"0": rec()})), "lacks a 'mechanisms' list"),
    ("mechanisms-missing", dumps({"format": mech.FORMAT_NAME, "version": 1}), "lacks a 'mechanisms' list"),
    ("priors-string", dumps(doc(priors="fast")), "priors must be an object"),
    ("priors-negative-rate", dumps(doc(priors={"mechanism_rates": [1.0, -2.0]})), r"mechanism_rates must hold numbers"),
    ("priors-empty-rates", dumps(doc(priors={"mechanism_rates": []})), "mechanism_rates must be a non-empty list"),
    (
        "too-many-records",
        dumps(doc([{}] * (mech.MAX_RECORDS + 1))),
        f"{mech.MAX_RECORDS + 1} records is more than the limit of {mech.MAX_RECORDS}",
    ),
    # --- not a JSON object / not JSON at all
    ("top-level-number", "42", "expected a mechanisms document or a list of records, got int"),
    ("top-level-string", '"mechanisms"', "got str"),
    ("top-level-null", "null", "got NoneType"),
    ("top-level-true", "true", "got bool"),
    ("not-json", "{oops", "not valid JSON"),
    ("empty", "", "not valid JSON"),
    ("whitespace", " \n\t ", "not valid JSON"),
    ("trailing-garbage", GOOD + " }", "not valid JSON"),
    ("truncated", GOOD[: len(GOOD) // 2], "not valid JSON"),
    # --- deeply nested JSON (would blow Python's recursion limit)
    ("deep-array", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("deep-object", nested(100_000), "nested too deeply"),
    (
        "deep-details",
        GOOD.replace(RECORD_TEXT, RECORD_TEXT[:-1] + ', "details": ' + nested(50_000) + "}"),
        "nested too deeply",
    ),
    # --- bytes that are not UTF-8 text
    ("invalid-utf8", b'{"format": "\xff\xfe"}', "not UTF-8 text"),
    ("utf16", GOOD.encode("utf-16"), "not UTF-8 text"),
    ("latin1", GOOD.replace("X1", "caf\u00e9").encode("latin-1"), "not UTF-8 text"),
    ("pickle", pickle.dumps({"mechanisms": [rec()]}), "not UTF-8 text"),
    ("binary", bytes(range(256)) * 4, "not UTF-8 text"),
    ("nul-bytes", b"\x00" * 64, "not valid JSON"),
]
IDS = [c[0] for c in CASES]
assert len(set(IDS)) == len(IDS)


def _as_bytes(payload: str | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")


def test_the_generated_good_document_is_accepted(tmp_path) -> None:
    # The cases differ from GOOD in one thing, so GOOD itself must pass (else every case "passes").
    records, priors = parse_mechanisms(GOOD)
    assert len(records) == 1 and priors is None
    (tmp_path / "good.json").write_text(GOOD)
    assert parse_mechanisms(tmp_path / "good.json")[0] == records
    assert parse_mechanisms(GOOD.encode())[0] == records
    # and the documented leniencies: a UTF-8 byte-order mark, unicode names
    assert parse_mechanisms(b"\xef\xbb\xbf" + GOOD.encode())[0] == records
    assert parse_mechanisms(GOOD.replace("X1", "caf\u00e9").encode())[0][0]["source"] == "caf\u00e9"


@pytest.mark.parametrize(("case_id", "payload", "match"), CASES, ids=IDS)
def test_hostile_document_is_refused_by_name(tmp_path, case_id, payload, match) -> None:
    raw = _as_bytes(payload)
    path = tmp_path / f"{case_id}.json"
    path.write_bytes(raw)
    with pytest.raises(MechanismFormatError, match=match):
        parse_mechanisms(path)
    with pytest.raises(MechanismFormatError, match=match):
        parse_mechanisms(str(path))
    with pytest.raises(MechanismFormatError, match=match):
        parse_mechanisms(raw)
    if isinstance(payload, str) and payload.lstrip().startswith(("{", "[")):
        with pytest.raises(MechanismFormatError, match=match):
            parse_mechanisms(payload)


# ------------------------------------------------------------------------------ size cap
def test_size_cap_is_checked_before_reading_or_parsing(tmp_path) -> None:
    cap = mech.MAX_FILE_BYTES
    assert cap == 10 * 1024 * 1024
    # A valid document padded with spaces to exactly the cap is accepted ...
    at_cap = GOOD + " " * (cap - len(GOOD))
    assert len(at_cap.encode()) == cap
    (tmp_path / "at_cap.json").write_text(at_cap)
    assert len(parse_mechanisms(tmp_path / "at_cap.json")[0]) == 1
    assert len(parse_mechanisms(at_cap.encode())[0]) == 1
    # ... one byte more is refused, for a path, for bytes and for text.
    over = at_cap + " "
    (tmp_path / "over.json").write_text(over)
    with pytest.raises(MechanismFormatError, match=rf"over.json is {cap + 1} bytes, more than the limit of {cap}"):
        parse_mechanisms(tmp_path / "over.json")
    with pytest.raises(MechanismFormatError, match=f"larger than {cap} bytes"):
        parse_mechanisms(over.encode())
    with pytest.raises(MechanismFormatError, match=f"larger than {cap} bytes"):
        parse_mechanisms(over)
    # A (sparse) 1 GiB file of zero bytes: refused by its size at once, so never read in:
    # reading it would take seconds and a gigabyte, and its error would be "not JSON".
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as fh:
        fh.truncate(1024**3)
    t0 = time.perf_counter()
    with pytest.raises(MechanismFormatError, match="more than the limit"):
        parse_mechanisms(huge)
    assert time.perf_counter() - t0 < 0.5


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: d / "missing.json", "mechanisms file not found"),
        (lambda d: d, "mechanisms file not found"),  # a directory
        (lambda d: d / ("n" * 5000 + ".json"), "mechanisms file not found|cannot read the mechanisms file"),
    ],
    ids=["missing", "directory", "name-too-long"],
)
def test_unreadable_paths_are_refused_by_name(tmp_path, make, match) -> None:
    with pytest.raises(MechanismFormatError, match=match):
        parse_mechanisms(make(tmp_path))
    with pytest.raises(MechanismFormatError, match=match):
        parse_mechanisms(str(make(tmp_path)))


# ------------------------------------------------------------------------------ engine state
KEPT = doc(
    [rec(), rec(source="X2", mechanism_type="PRIOR_TRANSFER", confidence=0.7)],
    priors={"mechanism_rates": [1.0, 0.5, 0.0, 2.0], "effectiveness": 0.1},
)


@pytest.fixture(scope="module")
def built_engine():
    eng = create_one_shot_meta_learning_engine(hidden_dim=8, num_mechanisms=4, device="cpu")
    eng.initialize_sync(1, 1)
    return eng


@pytest.fixture
def engine(built_engine):
    # each test starts from the same two mechanisms, so one failure cannot leak into the next
    assert built_engine.import_mechanisms(dumps(KEPT)) == 2
    return built_engine


def _engine_state(eng) -> tuple:
    return copy.deepcopy(eng.discovered_mechanisms), copy.deepcopy(eng.causal_priors)


@pytest.mark.parametrize(("case_id", "payload", "match"), CASES, ids=IDS)
def test_failed_import_keeps_the_engine_mechanisms(engine, tmp_path, case_id, payload, match) -> None:
    before = _engine_state(engine)
    assert len(before[0]) == 2 and before[1]["mechanism_rates"] == [1.0, 0.5, 0.0, 2.0]
    path = tmp_path / "m.json"
    path.write_bytes(_as_bytes(payload))
    for source in (path, _as_bytes(payload)):
        with pytest.raises(MechanismFormatError, match=match):
            engine.import_mechanisms(source)
        assert _engine_state(engine) == before


def test_priors_for_another_model_size_are_refused_and_state_kept(engine) -> None:
    before = _engine_state(engine)
    wrong = doc(priors={"mechanism_rates": [1.0, 1.0, 1.0]})
    with pytest.raises(MechanismFormatError, match="the priors hold 3 rates but the model has 4 mechanisms"):
        engine.import_mechanisms(dumps(wrong))
    assert _engine_state(engine) == before
    # a valid import still works after all the refusals (the engine is not wedged)
    assert engine.import_mechanisms(GOOD) == 1
    assert engine.discovered_mechanisms[0].source == "X1"
    engine.import_mechanisms(dumps(doc([r.to_dict() for r in before[0]], priors=before[1])))
    assert _engine_state(engine) == before
