"""Unit-level checks of the helpers that put user names (files, columns, tasks, classes, runs)
into markdown, Plotly text and the mechanism graph. tests/test_browser_injection.py checks the
same names in a real browser."""

from __future__ import annotations

import json
import re

import pytest
from streamlit.testing.v1 import AppTest

from engine.mechanism_graph import build_mechanism_graph, render_graph_html
from ui import figures
from ui.text import md_escape

PAYLOADS = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=1</script>",
    '"><b>bold</b>',
    "{{7*7}}",
    "**strong** ![pic](x) [link](https://example.invalid/) $x^2$ :red[red]",
    "_em_ `code` # heading | a | ~~s~~ <!-- c -->",
]
MD_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:")


@pytest.mark.parametrize("text", PAYLOADS)
def test_md_escape_leaves_no_special_character_unescaped(text):
    out = md_escape(text)
    i = 0
    while i < len(out):  # every special character comes as a backslash pair
        if out[i] == "\\":
            assert out[i + 1] in MD_SPECIAL, out
            i += 2
        else:
            assert out[i] not in MD_SPECIAL, (out, i)
            i += 1
    assert re.sub(r"\\(.)", r"\1", out) == text  # and it reads back as the name


def test_plotly_names_are_entities_that_plotly_shows_as_typed():
    name = '<b>bold</b> & <a href="javascript:x">a</a>'
    assert figures.plotly_text(name) == '&lt;b&gt;bold&lt;/b&gt; &amp; &lt;a href="javascript:x"&gt;a&lt;/a&gt;'
    probs = figures.probabilities_figure([name, "<br>"], [0.5, 0.5], [0.4, 0.6])
    assert all("<" not in x for t in probs.data for x in t.x)
    hist = {"iteration": [0, 1], "val_iteration": [1], "val_metric": [0.5], "metric_name": "mse"}
    hist.update(train_loss=[1, 0.5], val_loss=[0.4], train_metric=[1, 0.5])
    overlay = figures.runs_overlay_figure([{"name": name, "history": hist, "plain": False}], "val_metric")
    assert overlay.data[0].name == figures.plotly_text(name)


def test_image_captions_are_escaped_markdown():
    def app():
        import numpy as np

        from ui import components

        components.image_row([np.zeros((8, 8)), np.ones((8, 8))], ["**strong** a", "<b>b</b>"])

    at = AppTest.from_function(app).run()
    assert not at.exception
    captions = [img.caption for img in at.get("image")[0].proto.imgs]
    assert captions == [md_escape("**strong** a"), md_escape("<b>b</b>")]


def test_mechanism_graph_names_reach_vis_as_text_inside_escaped_json():
    recs = [
        {
            "mechanism_type": "FEATURE_TRANSFER",
            "source": name,
            "target": "output",
            "causal_strength": 0.5,
            "confidence": 0.9,
            "effect": 0.1,
            "effect_std": 0.01,
        }
        for name in PAYLOADS
    ]
    page = render_graph_html(build_mechanism_graph(recs, num_mechanisms=2))
    for name in PAYLOADS[:3]:
        assert name not in page
    data = re.findall(r"new vis\.DataSet\((\[.*?\])\);", page, re.S)
    nodes = json.loads(data[0])
    assert set(PAYLOADS) <= {n["label"] for n in nodes}  # drawn on the canvas as typed
    assert {f"feature: {p}" for p in PAYLOADS} <= {n["title"] for n in nodes}  # tooltips use innerText
    assert not any(c in d for d in data for c in "<>&")
