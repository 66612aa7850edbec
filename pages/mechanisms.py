"""Mechanisms: discovery by intervention, the mechanism table, insights and the graph."""

import streamlit as st

from engine.discovery import invariance_fallback_note
from engine.mechanism_graph import graph_to_graphml, graph_to_json, render_graph_html
from ui import components, session
from ui.discovery import effectiveness_text, filter_mechanisms, mechanisms_frame, score_discovery
from ui.jobs import discovery_job
from ui.text import md_escape

st.title("Mechanisms")
st.markdown(
    "A mechanism is *causal* here only when an intervention shows it: the engine switches a part of the "
    "model or the data off, adapts again, and measures the change in query loss, "
    "L(T | do(X)) − L(T). Strength maps the mean effect into [0, 1]; confidence is the share of bootstrap "
    "resamples in which the effect is positive."
)

src = session.source()
eng = session.engine()
w = session.worker("discovery")

# ------------------------------------------------------------------------------ discovery
st.subheader("Discover")
usable = components.require_engine(src) if not w.running else True
c = st.columns([1, 1, 1, 1])
n_tasks = c[0].slider("tasks", 4, 64, 16, step=4, key="disc_tasks", help="Source tasks to intervene on.")
split = c[1].selectbox("from split", ["train", "val", "test"], key="disc_split")
n_held = c[2].slider(
    "held-out tasks",
    0,
    32,
    8,
    step=4,
    key="disc_held",
    help="Test tasks on which the discovered priors' effectiveness is measured "
    "(0: a quarter of the tasks above is held out instead).",
)
c[3].markdown("&nbsp;")
if c[3].button("Run discovery", type="primary", disabled=not usable or w.running, key="disc_run", width="stretch"):
    try:
        tasks = src.tasks(split, int(n_tasks), seed=0)
        held = src.tasks("test", int(n_held), seed=1) if n_held else None
    except ValueError as exc:
        components.error_box(exc)
    else:
        st.session_state["disc_tasks_used"] = tasks
        msg = session.start_job("discovery", discovery_job(eng, tasks, held), label="mechanism discovery")
        if msg:
            st.warning(msg)
        st.rerun()
components.job_progress("discovery", "disc", "Discovery")

# ------------------------------------------------------------------------------ table
st.subheader("Discovered mechanisms")
mechanisms = eng.discovered_mechanisms if not w.running else []
if not mechanisms:
    st.caption("None yet: run discovery (after meta-training), or import a mechanisms JSON below.")
else:
    df = mechanisms_frame(mechanisms)
    types = sorted({str(t) for t in df["mechanism_type"].dropna()})
    c = st.columns([2, 1, 1])
    chosen = c[0].multiselect("types", types, default=types, key="mech_types")
    threshold = c[1].slider(
        "least causal strength",
        0.0,
        1.0,
        float(eng.config.mechanism_threshold),
        0.05,
        key="mech_threshold",
        help="Rows below this strength are hidden (the engine keeps those above mechanism_threshold).",
    )
    min_conf = c[2].slider("least confidence", 0.0, 1.0, 0.0, 0.05, key="mech_conf")
    shown = filter_mechanisms(df, chosen, threshold, min_conf)
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={
            "causal_strength": st.column_config.ProgressColumn("causal_strength", min_value=0.0, max_value=1.0),
            "confidence": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0),
        },
    )
    st.caption(
        f"{len(shown)} of {len(df)} mechanisms shown. Effectiveness is empty where not measured on held-out tasks."
    )

# ------------------------------------------------------------------------------ report and truth
report = eng.discovery_report if not w.running else None
if report:
    st.caption(
        f"Last discovery: {report['kept']} of {report['measured']} measured effects kept "
        f"(threshold {report['threshold']}), {report['elapsed_s']:.1f} s."
        + (" Stopped early." if report["stopped_early"] else "")
    )
    fallback_note = invariance_fallback_note(report)
    if fallback_note:
        st.warning(fallback_note)
used = st.session_state.get("disc_tasks_used") or []
if mechanisms and used:
    try:
        score = score_discovery(eng, used)
    except (ValueError, KeyError) as exc:
        score = None
        st.caption(f"Not scored against the truth: {md_escape(exc)}")
    if score:
        st.markdown(
            "**Against the known truth** (SCM tasks): features found to cause the output vs the target's true parents"
        )
        c = st.columns(4)
        c[0].metric("precision", f"{score['precision']:.2f}")
        c[1].metric("recall", f"{score['recall']:.2f}")
        c[2].metric("F1", f"{score['f1']:.2f}")
        acc = score["intervened_accuracy"]
        c[3].metric("intervened variables found", "–" if acc is None else f"{acc:.0%}")
        st.caption(
            f"true parents: {', '.join(score['true_parents'])} · found: {', '.join(score['predicted_parents']) or 'none'}"
        )

# ------------------------------------------------------------------------------ insights
if mechanisms:
    try:
        insights = eng.get_mechanism_insights()
    except (ValueError, RuntimeError) as exc:
        components.error_box(exc)
    else:
        c = st.columns(2)
        c[0].metric("mechanisms", insights["total_mechanisms"])
        shown_eff, eff_note = effectiveness_text(insights)
        c[1].metric("average effectiveness", shown_eff, help=eff_note or None)
        if eff_note:
            st.caption(f"Effectiveness: {md_escape(eff_note)}.")
        if insights["strongest_mechanisms"]:
            st.markdown("**Strongest**")
            st.dataframe(insights["strongest_mechanisms"], hide_index=True, width="stretch")

# ------------------------------------------------------------------------------ graph
st.subheader("Mechanism graph")
if not mechanisms:
    st.caption("The graph appears once mechanisms are discovered.")
else:
    try:
        truth = src.truth_graph() if src.name == "scm" else None
        graph = eng.mechanism_graph(truth) if truth is not None else eng.mechanism_graph()
        html = render_graph_html(graph)
    except (ValueError, RuntimeError, KeyError) as exc:
        components.error_box(exc)
    else:
        st.iframe(html, height=620)
        d = st.columns(3)
        d[0].download_button("Download graph (HTML)", html, file_name="mechanism_graph.html", mime="text/html")
        d[1].download_button(
            "Download graph (GraphML)",
            graph_to_graphml(graph),
            file_name="mechanism_graph.graphml",
            mime="application/xml",
        )
        d[2].download_button(
            "Download graph (JSON)",
            graph_to_json(graph),
            file_name="mechanism_graph.json",
            mime="application/json",
        )

# ------------------------------------------------------------------------------ export / import
st.subheader("Export and import")
left, right = st.columns(2)
with left:
    if mechanisms:
        path = session.session_dir() / "mechanisms.json"
        try:
            eng.export_mechanisms_sync(path)
            data = path.read_bytes()
        except (OSError, ValueError) as exc:
            components.error_box(exc)
            data = None
        if data:
            st.download_button(
                "Download mechanisms JSON", data, file_name="mechanisms.json", mime="application/json", key="mech_dl"
            )
    else:
        st.caption("Nothing to export yet.")
with right:
    up = st.file_uploader("mechanisms JSON", type=["json"], key="mech_upload")
    if up is not None and st.button("Import", key="mech_import", disabled=w.running):
        path = session.session_dir() / "import-mechanisms.json"
        path.write_bytes(up.getvalue())
        try:
            n = eng.import_mechanisms(path)
        except (ValueError, KeyError, TypeError, OSError) as exc:
            components.error_box(exc)
        else:
            st.session_state["mech_msg"] = f"Imported {n} mechanisms."
            st.rerun()
    if st.session_state.get("mech_msg"):
        st.success(st.session_state.pop("mech_msg"))
