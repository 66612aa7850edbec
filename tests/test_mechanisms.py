"""CausalMechanism records, the strength map, bootstrap confidence, JSON exchange."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import mechanisms as mech
from engine.config import CausalMechanismType
from engine.mechanisms import (
    CausalMechanism,
    MechanismFormatError,
    bootstrap_confidence,
    dump_mechanisms,
    parse_mechanisms,
    strength_from_effect,
)


def record(**over) -> dict:
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
        "source_kind": "feature",
        "target_kind": "output",
        "details": {"strength_scale": 0.25},
    }
    base.update(over)
    return base


# ---------------------------------------------------------------------------- strength map
def test_strength_map_is_zero_for_no_effect_and_monotone() -> None:
    assert strength_from_effect(0.0, 1.0) == 0.0
    assert strength_from_effect(-3.0, 1.0) == 0.0  # an intervention that helps has no strength
    values = [strength_from_effect(e, 0.5) for e in np.linspace(0, 5, 50)]
    assert all(b > a for a, b in zip(values, values[1:], strict=False))
    assert 0.0 <= min(values) and max(values) < 1.0
    # The documented anchor: an effect of 1.2 x the scale is strength 0.7 (the default threshold).
    assert strength_from_effect(1.2 * 0.3, 0.3) == pytest.approx(1 - math.exp(-1.2))


@pytest.mark.parametrize("bad", [(float("nan"), 1.0), (1.0, 0.0), (1.0, -1.0), (1.0, float("inf"))])
def test_strength_map_rejects_bad_input(bad) -> None:
    with pytest.raises(ValueError):
        strength_from_effect(*bad)


# ---------------------------------------------------------------------------- bootstrap
def test_bootstrap_confidence_matches_known_answer() -> None:
    """Two-stage bootstrap (tasks, then points within each drawn task): its statistic has
    variance (mean_t (m_t - m)^2 + mean_t s_t^2 / n) / T, so for a normal-looking case the
    confidence is Phi(m / sqrt(that)). Built so that the answer is about Phi(1) = 0.841."""
    rng = np.random.default_rng(0)
    tasks, points = 40, 50
    groups = [rng.standard_normal(points) for _ in range(tasks)]
    means = np.array([g.mean() for g in groups])
    var_star = (np.mean((means - means.mean()) ** 2) + np.mean([g.var() for g in groups]) / points) / tasks
    groups = [g - means.mean() + math.sqrt(var_star) for g in groups]  # mean effect = 1 sd
    expected = 0.5 * math.erfc(-1 / math.sqrt(2))
    conf = bootstrap_confidence(groups, n_resamples=4000, seed=1)
    assert conf == pytest.approx(expected, abs=0.03)


def test_bootstrap_confidence_extremes() -> None:
    assert bootstrap_confidence([np.full(10, 0.3)] * 5, 200) == 1.0
    assert bootstrap_confidence([np.full(10, -0.3)] * 5, 200) == 0.0
    assert bootstrap_confidence([np.zeros(10)] * 5, 200) == 0.0  # no effect is not a positive effect
    sym = [np.array([-1.0, 1.0])] * 20
    assert 0.3 < bootstrap_confidence(sym, 2000) < 0.7


def test_bootstrap_needs_200_resamples_and_finite_values() -> None:
    with pytest.raises(ValueError):
        bootstrap_confidence([np.ones(3)], n_resamples=199)
    with pytest.raises(ValueError):
        bootstrap_confidence([np.array([1.0, np.nan])], n_resamples=200)


def test_bootstrap_resamples_tasks_not_only_points() -> None:
    # Every task has a tiny point spread but the tasks disagree in sign: resampling tasks
    # must give an uncertain answer, resampling points alone would say 1.0.
    groups = [np.full(100, 1.0) + 0.001 * np.arange(100) for _ in range(3)]
    groups += [np.full(100, -1.2) for _ in range(3)]
    conf = bootstrap_confidence(groups, 2000, seed=0)
    assert 0.1 < conf < 0.9


# ---------------------------------------------------------------------------- records
def test_record_round_trip_and_enum_name() -> None:
    r = CausalMechanism.from_dict(record())
    assert r.mechanism_type is CausalMechanismType.FEATURE_TRANSFER
    d = r.to_dict()
    assert d["mechanism_type"] == "FEATURE_TRANSFER"
    assert CausalMechanism.from_dict(d) == r
    assert json.loads(json.dumps(d)) == d


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("mechanism_type", "TELEPATHY", "unknown mechanism_type"),
        ("causal_strength", 1.5, "causal_strength"),
        ("causal_strength", float("nan"), "finite"),
        ("confidence", -0.1, "confidence"),
        ("effectiveness", 2.0, "effectiveness"),
        ("reuse_count", -1, "reuse_count"),
        ("reuse_count", 1.5, "reuse_count"),
        ("effect_std", -0.2, "effect_std"),
        ("source", "", "source"),
        ("source_kind", "planet", "source_kind"),
        ("effect", "big", "effect"),
    ],
)
def test_bad_records_are_rejected_with_the_field_named(field, value, words) -> None:
    with pytest.raises(MechanismFormatError, match=words):
        CausalMechanism.from_dict(record(**{field: value}))


def test_missing_and_unknown_fields_are_rejected() -> None:
    r = record()
    del r["confidence"]
    with pytest.raises(MechanismFormatError, match="missing field"):
        parse_mechanisms([r])
    with pytest.raises(MechanismFormatError, match="unknown field"):
        parse_mechanisms([record(colour="red")])


# ---------------------------------------------------------------------------- JSON files
def test_json_file_round_trip(tmp_path) -> None:
    recs = [record(), record(source="X2", mechanism_type="REPRESENTATION_TRANSFER", source_kind="mechanism")]
    priors = {"mechanism_rates": [1.0, 0.0, 1.0, 0.5], "effectiveness": 0.2}
    path = dump_mechanisms(tmp_path / "m.json", recs, priors)
    doc = json.loads(path.read_text())
    assert doc["format"] == mech.FORMAT_NAME and doc["version"] == mech.FORMAT_VERSION
    back, back_priors = parse_mechanisms(path)
    assert back == [CausalMechanism.from_dict(r).to_dict() for r in recs]
    assert back_priors["mechanism_rates"] == priors["mechanism_rates"]


def _write(tmp_path, text: str):
    p = tmp_path / "bad.json"
    p.write_text(text)
    return p


def _doc(records, version=1) -> dict:
    return {"format": mech.FORMAT_NAME, "version": version, "mechanisms": records}


def test_bad_files_are_rejected(tmp_path, monkeypatch) -> None:
    good = json.dumps(_doc([record()]))
    cases = {
        "not valid JSON": "{oops",
        "NaN": good.replace("0.8", "NaN"),
        "unsupported mechanisms version": json.dumps(_doc([record()], version=2)),
        "not a mechanisms document": json.dumps({"format": "something else", "version": 1, "mechanisms": []}),
        "unknown mechanism_type": json.dumps(_doc([record(mechanism_type="X")])),
        "causal_strength": json.dumps(_doc([record(causal_strength=7)])),
        "missing field": json.dumps(_doc([{k: v for k, v in record().items() if k != "effect"}])),
    }
    for words, text in cases.items():
        with pytest.raises(MechanismFormatError, match=words):
            parse_mechanisms(_write(tmp_path, text))
    monkeypatch.setattr(mech, "MAX_FILE_BYTES", 100)
    with pytest.raises(MechanismFormatError, match="bytes"):
        parse_mechanisms(_write(tmp_path, good + " " * 200))
    with pytest.raises(MechanismFormatError, match="not found"):
        parse_mechanisms(tmp_path / "nope.json")


def test_one_bad_record_rejects_the_whole_file() -> None:
    with pytest.raises(MechanismFormatError, match="mechanism #2"):
        parse_mechanisms([record(), record(source="X3"), record(confidence=3.0)])


def test_priors_block_is_validated() -> None:
    doc = _doc([record()])
    doc["priors"] = {"mechanism_rates": [1.0, -1.0]}
    with pytest.raises(MechanismFormatError, match="mechanism_rates"):
        parse_mechanisms(doc)


names = st.text(min_size=1, max_size=30)
unit = st.floats(0.0, 1.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    t=st.sampled_from(list(CausalMechanismType)),
    source=names,
    target=names,
    strength=unit,
    confidence=unit,
    effectiveness=st.none() | st.floats(-1.0, 1.0, allow_nan=False),
    reuse=st.integers(0, 10**6),
    effect=st.floats(-1e6, 1e6, allow_nan=False),
    spread=st.floats(0.0, 1e6, allow_nan=False),
)
def test_any_valid_record_survives_json(
    t, source, target, strength, confidence, effectiveness, reuse, effect, spread
) -> None:
    r = CausalMechanism(t, source, target, strength, confidence, effectiveness, reuse, effect, spread)
    text = json.dumps(mech.mechanisms_document([r]))
    back, _ = parse_mechanisms(text)
    assert CausalMechanism.from_dict(back[0]) == r


def test_mechanism_store_holds_typed_records_and_keeps_its_state_consistent(tmp_path) -> None:
    import networkx as nx

    from engine.causal.store import MechanismStore

    priors = {"mechanism_rates": [1.0, 0.5], "effectiveness": 0.2}
    store = MechanismStore([record(), record(source="X2")], priors)
    assert all(isinstance(r, CausalMechanism) for r in store.records)
    assert [r.key for r in store.records] == [("FEATURE_TRANSFER", s, "output") for s in ("X1", "X2")]
    snapshot = store.as_dicts()
    snapshot[0]["reuse_count"] = 99  # the dicts are copies: the store is unchanged
    assert store.records[0].reuse_count == 2 and store.strength_scale() == 0.25
    # a discovery run that measured no priors keeps the current ones; its report replaces the last
    store.take_discovery([CausalMechanism.from_dict(record(source="X3"))], {"kept": 1}, None)
    assert [r.source for r in store.records] == ["X3"] and store.priors == priors and store.report == {"kept": 1}
    # export -> import round trip, and priors for another mechanism count are refused whole
    path = store.export(tmp_path / "m.json", {"algorithm": "MAML_CAUSAL"})
    other = MechanismStore()
    assert other.import_records(path, 2) == 1 and other.as_dicts() == store.as_dicts() and other.priors == priors
    with pytest.raises(MechanismFormatError, match="2 rates but the model has 3"):
        MechanismStore().import_records(path, 3)
    # a known graph keeps only the output's parents among feature -> output records
    both = MechanismStore([record(), record(source="X2")])
    out = both.enhance_with_graph(nx.DiGraph([("X2", "output")]), [None, "output"])
    assert out["removed"] == ["X1"] and [r.source for r in both.records] == ["X2"]
    assert both.records[0].details["graph_parent"] is True
    np.testing.assert_array_equal(both.prior_rates(2), np.ones(2))
