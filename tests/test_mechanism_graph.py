"""The mechanism graph: networkx structure, safe offline HTML, JSON and GraphML export."""

from __future__ import annotations

import json
import re

import networkx as nx

from engine.mechanism_graph import build_mechanism_graph, graph_to_graphml, graph_to_json, render_graph_html

EVIL = "<script>alert(1)</script>"


def records() -> list[dict]:
    def rec(t, s, tgt, sk, tk, strength=0.9):
        return {
            "mechanism_type": t,
            "source": s,
            "target": tgt,
            "causal_strength": strength,
            "confidence": 0.97,
            "effectiveness": None,
            "reuse_count": 1,
            "effect": 0.3,
            "effect_std": 0.05,
            "source_kind": sk,
            "target_kind": tk,
            "details": {},
        }

    return [
        rec("FEATURE_TRANSFER", "X1", "output", "feature", "output"),
        rec("FEATURE_TRANSFER", EVIL, "output", "feature", "output"),
        rec("FEATURE_TRANSFER", 'a" onmouseover="x', "mechanism 1", "feature", "mechanism"),
        rec("REPRESENTATION_TRANSFER", "mechanism 0", "tasks", "mechanism", "task"),
        rec("STRUCTURE_TRANSFER", "task <b>A</b>", "task B", "task", "task", 0.75),
        rec("PRIOR_TRANSFER", "meta-learned initialisation", "tasks", "prior", "task"),
        rec("OPTIMIZATION_TRANSFER", "learned inner-loop rates", "tasks", "optimizer", "task"),
    ]


def test_graph_nodes_have_kinds_and_edges_carry_measurements() -> None:
    report = {"invariance": {"tasks": [{"task": "task B", "intervened": ["X1"], "mechanism_shift_p": {"X1": 1e-5}}]}}
    g = build_mechanism_graph(records(), num_mechanisms=2, truth={"parents": ["X1"], "children": []}, report=report)
    assert isinstance(g, nx.DiGraph)
    kinds = {d["kind"] for _, d in g.nodes(data=True)}
    assert kinds == {"feature", "mechanism", "task", "prior", "optimizer", "output"}
    e = g.edges["feature:X1", "output:output"]
    assert e["type"] == "FEATURE_TRANSFER" and e["strength"] == 0.9 and e["confidence"] == 0.97
    assert g.nodes["feature:X1"]["true_parent"] is True
    assert g.edges["feature:X1", "task:task B"]["type"] == "INTERVENED"
    assert g.has_edge("mechanism:mechanism 1", "output:output")


def test_html_is_offline_and_escapes_every_name() -> None:
    page = render_graph_html(build_mechanism_graph(records(), num_mechanisms=2))
    assert "vis.DataSet" in page and "new vis.Network" in page  # vis-network is inlined
    assert not re.search(r"<script[^>]+src\s*=", page, re.I)
    assert not re.search(r"<link[^>]+href\s*=", page, re.I)
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", page, re.I)
    assert EVIL not in page and "<b>A</b>" not in page
    assert 'onmouseover="x' not in page
    data = re.findall(r"new vis\.DataSet\((\[.*?\])\);", page, re.S)
    assert len(data) == 2 and not any(c in d for d in data for c in "<>&")  # JSON with \u003c escapes
    nodes, edges = (json.loads(d) for d in data)
    labels = {n["label"] for n in nodes}
    # names go to vis-network as text (canvas labels, innerText tooltips): exactly as typed
    assert {EVIL, "task <b>A</b>", 'a" onmouseover="x'} <= labels
    assert "feature: " + EVIL in {n["title"] for n in nodes}
    assert all("&lt;" not in n["label"] + n["title"] for n in nodes)
    assert all("<" not in e["title"] for e in edges)
    heading = re.findall(r"<h1>(.*?)</h1>", page, re.S)
    assert all("alert" not in h and "X1" not in h for h in heading)


def test_json_and_graphml_round_trip() -> None:
    g = build_mechanism_graph(records(), num_mechanisms=2)
    data = json.loads(graph_to_json(g))
    back = nx.node_link_graph(data, edges="edges")
    assert set(back.nodes) == set(g.nodes) and set(back.edges) == set(g.edges)
    gm = nx.parse_graphml(graph_to_graphml(g))
    assert set(gm.nodes) == set(g.nodes)
    assert gm.edges["feature:X1", "output:output"]["strength"] == 0.9
    assert gm.nodes["feature:" + EVIL]["kind"] == "feature"
