"""The mechanism graph: a networkx DiGraph of discovered mechanisms, rendered with pyvis.

Nodes are ``"<kind>:<name>"`` with attributes ``kind`` (feature, mechanism, task, prior,
optimizer, output) and ``name``; edges carry ``type`` (the mechanism type NAME), ``strength``,
``confidence``, ``effect``, ``effect_std`` and ``effectiveness`` (None = not measured; the
records' NaN becomes None so the graph's JSON and GraphML stay valid).
With a discovery report, per-task findings add ``INTERVENED`` edges feature -> task (the
variable the data say the task intervened on). With ``truth`` (an scm task's truth dict),
feature nodes get ``true_parent`` / ``true_child`` so a view can compare.

``render_graph_html`` returns self-contained HTML (vis-network inlined, no http(s) script or
stylesheet, works offline). Labels and tooltips are data, never markup: pyvis writes them
into the page as JSON with <, > and & as \\u escapes (Jinja's ``tojson``), vis-network draws
labels on its canvas and sets tooltips with ``innerText``; so a name is shown exactly as
typed (HTML-escaping it too would show "&lt;" on the graph). Nothing the user typed goes
into the heading.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx

from .mechanisms import CausalMechanism

KIND_COLORS = {
    "feature": "#4e79a7",
    "mechanism": "#f28e2b",
    "task": "#59a14f",
    "prior": "#b07aa1",
    "optimizer": "#9c755f",
    "output": "#e15759",
}
TYPE_COLORS = {
    "FEATURE_TRANSFER": "#4e79a7",
    "REPRESENTATION_TRANSFER": "#f28e2b",
    "STRUCTURE_TRANSFER": "#59a14f",
    "PRIOR_TRANSFER": "#b07aa1",
    "OPTIMIZATION_TRANSFER": "#9c755f",
    "INTERVENED": "#bab0ac",
}


def _node(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def _measured(value: Any) -> float | None:
    """A measured number, or None where it is missing or NaN (not measured)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def build_mechanism_graph(
    mechanisms: Sequence[Mapping[str, Any] | CausalMechanism],
    num_mechanisms: int | None = None,
    truth: Mapping[str, Any] | None = None,
    report: Mapping[str, Any] | None = None,
) -> nx.DiGraph:
    """The mechanism graph of records (``CausalMechanism`` or dicts as in its ``to_dict``)."""
    mechanisms = [m.to_dict() if isinstance(m, CausalMechanism) else m for m in mechanisms]
    g = nx.DiGraph()
    g.add_node(_node("output", "output"), kind="output", name="output")
    if num_mechanisms:
        for k in range(num_mechanisms):
            g.add_node(_node("mechanism", f"mechanism {k}"), kind="mechanism", name=f"mechanism {k}")
            # Structure of the model, not a measurement: every mechanism feeds the head.
            g.add_edge(
                _node("mechanism", f"mechanism {k}"),
                _node("output", "output"),
                type="MODEL_STRUCTURE",
                strength=None,
                confidence=None,
            )
    for r in mechanisms:
        sk, tk = r.get("source_kind", "feature"), r.get("target_kind", "output")
        s, t = _node(sk, r["source"]), _node(tk, r["target"])
        for node, kind, name in ((s, sk, r["source"]), (t, tk, r["target"])):
            if node not in g:
                g.add_node(node, kind=kind, name=name)
        g.add_edge(
            s,
            t,
            type=r["mechanism_type"],
            strength=float(r["causal_strength"]),
            confidence=float(r["confidence"]),
            effect=float(r["effect"]),
            effect_std=float(r["effect_std"]),
            effectiveness=_measured(r.get("effectiveness")),
            reuse_count=int(r.get("reuse_count", 0)),
        )
    if report:
        for row in (report.get("invariance") or {}).get("tasks", []):
            for var in row.get("intervened", []):
                f, t = _node("feature", var), _node("task", row["task"])
                for node, kind, name in ((f, "feature", var), (t, "task", row["task"])):
                    if node not in g:
                        g.add_node(node, kind=kind, name=name)
                p = row.get("mechanism_shift_p", {}).get(var)
                g.add_edge(
                    f,
                    t,
                    type="INTERVENED",
                    strength=1.0,
                    confidence=None if p is None else max(0.0, 1.0 - float(p)),
                )
    if truth:
        parents, children = set(truth.get("parents", [])), set(truth.get("children", []))
        for _, data in g.nodes(data=True):
            if data["kind"] == "feature":
                data["true_parent"] = data["name"] in parents
                data["true_child"] = data["name"] in children
    return g


# --------------------------------------------------------------------------------- export
def graph_to_dict(graph: nx.DiGraph) -> dict[str, Any]:
    """Node-link dict (``nodes``, ``edges``), JSON-able."""
    data = nx.node_link_data(graph, edges="edges")
    return json.loads(json.dumps(data, default=_plain))


def graph_to_json(graph: nx.DiGraph, indent: int | None = 2) -> str:
    """The graph as node-link JSON text."""
    return json.dumps(graph_to_dict(graph), indent=indent, allow_nan=False)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def graph_to_graphml(graph: nx.DiGraph) -> str:
    """The graph as GraphML text (None attributes are left out: GraphML has no null)."""
    clean = nx.DiGraph()
    for node, data in graph.nodes(data=True):
        clean.add_node(node, **_graphml_attrs(data))
    for u, v, data in graph.edges(data=True):
        clean.add_edge(u, v, **_graphml_attrs(data))
    return "\n".join(nx.generate_graphml(clean))


def _graphml_attrs(data: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, (bool, int, float, str)):
            out[k] = v
        else:
            out[k] = json.dumps(v, default=_plain)
    return out


# --------------------------------------------------------------------------------- render
_DATASETS = re.compile(r"new vis\.DataSet\((\[.*?\])\);", flags=re.DOTALL)
_EXTERNAL_TAG = re.compile(
    r"<script\b[^>]*\bsrc\s*=[^>]*>\s*</script>|<link\b[^>]*\bhref\s*=[^>]*/?>",
    flags=re.IGNORECASE | re.DOTALL,
)


def render_graph_html(
    graph: nx.DiGraph,
    height: str = "620px",
    physics: bool = True,
) -> str:
    """Self-contained interactive HTML of the graph (pyvis, vis-network inlined).

    Node size and edge width follow strength; colours follow node kind and edge type.
    Labels and tooltips go in as plain text (see the module docstring); every external
    ``<script src>`` or ``<link>`` that pyvis emits is removed, so the page loads nothing
    from the network."""
    from pyvis.network import Network

    net = Network(height=height, width="100%", directed=True, cdn_resources="in_line", notebook=False)
    ids = {node: html.escape(str(node), quote=True) for node in graph.nodes}
    for node, data in graph.nodes(data=True):
        kind = str(data.get("kind", "feature"))
        name = str(data.get("name", node))
        tip = f"{kind}: {name}"
        if data.get("true_parent"):
            tip += " (true parent)"
        if data.get("true_child"):
            tip += " (true child)"
        net.add_node(
            ids[node],
            label=name,
            title=tip,
            color=KIND_COLORS.get(kind, "#999999"),
            shape="box" if kind in ("output", "prior", "optimizer") else "dot",
            size=14 if kind != "mechanism" else 18,
        )
    for u, v, data in graph.edges(data=True):
        etype = str(data.get("type", ""))
        strength = data.get("strength")
        conf = data.get("confidence")
        parts = [etype]
        if strength is not None:
            parts.append(f"strength {float(strength):.2f}")
        if conf is not None:
            parts.append(f"confidence {float(conf):.2f}")
        if data.get("effect") is not None:
            parts.append(f"effect {float(data['effect']):.3g} ± {float(data.get('effect_std') or 0):.2g}")
        if data.get("effectiveness") is not None:
            parts.append(f"effectiveness {float(data['effectiveness']):.2f}")
        net.add_edge(
            ids[u],
            ids[v],
            title=", ".join(parts),
            width=1.0 + 5.0 * float(strength or 0.0),
            color=TYPE_COLORS.get(etype, "#cccccc"),
            dashes=etype in ("MODEL_STRUCTURE", "INTERVENED"),
        )
    net.toggle_physics(physics)
    page = net.generate_html(notebook=False)
    # The names must have gone into the script as JSON with <, > and & escaped (\\u003c...).
    data = _DATASETS.findall(page)
    if len(data) != 2 or any(c in d for d in data for c in "<>&"):
        raise RuntimeError("pyvis did not write the graph's names as escaped JSON")
    return strip_external_resources(page)


def strip_external_resources(page: str) -> str:
    """Remove ``<script src=...></script>`` and ``<link href=...>`` tags (pyvis adds a
    bootstrap CDN link and a relative vis path even with in-line resources)."""
    return _EXTERNAL_TAG.sub("", page)
