"""Causal direction (teaching): the right causal direction adapts faster after an intervention."""

import streamlit as st

from engine.causal_direction import learn_scm_graph
from engine.tasks import TaskError
from ui import components, figures, session
from ui import graph_from_data as gfd
from ui.direction import belief_curves, learned_graph_views, live_belief
from ui.jobs import direction_job
from ui.text import md_escape

st.title("Causal direction from adaptation speed")
st.markdown(
    """
Two variables A and B are dependent. Is it **A → B** or **B → A**? Observational data cannot tell:
both factorisations, P(A)·P(B | A) and P(B)·P(A | B), fit it equally well.

The idea of Bengio et al. (2019, *A meta-transfer objective for learning to disentangle causal
mechanisms*) is to watch what happens **after an intervention**. If the truth is A → B and someone
changes the distribution of the cause A, then in the correct factorisation only one module, P(A),
has to change; P(B | A) stays right. In the wrong factorisation both P(B) and P(A | B) change.
So the model that factorises along the true direction **adapts faster** to the new distribution:
its likelihood after a few adaptation steps is higher.

A structural parameter γ holds the belief: σ(γ) is the probability of A → B. Meta-training γ on
the adaptation likelihood over many interventions (episodes) pushes σ(γ) towards 1 when A → B is
true. In the paper, with categorical A and B of N = 10 values, the median σ(γ) passes about 0.9
near 400 episodes and about 0.99 near 1000.

The same principle is what the meta-learners in this app use: a model whose mechanisms line up
with the causal ones needs to change few of them for a new task (sparse mechanism shift), so it
adapts from one example.
"""
)

st.subheader("Run the two-variable experiment")
st.markdown(
    "Each **episode** intervenes on the cause A (a new random P(A)), both models adapt on a few samples, "
    "and γ moves towards the model that adapted better. Each **run** is one random pair of mechanisms "
    "(one seed); the red line is their median."
)
w = session.worker("direction")
busy = session.running_job() is not None
session.keep_inputs(
    {"cd_episodes": 1000, "cd_runs": 10, "cd_n": 10, "cd_scm_vars": 6, "cd_scm_tasks": 40, "cd_scm_seed": 0}
)
c = st.columns(4)
episodes = c[0].number_input("episodes", 50, 5000, step=50, key="cd_episodes")
runs = c[1].number_input("runs (seeds)", 1, 50, key="cd_runs")
n_cat = c[2].number_input("categories N", 2, 50, key="cd_n")
c[3].markdown("&nbsp;")
if c[3].button("Run", type="primary", disabled=busy, key="cd_run", width="stretch"):
    msg = session.start_job("direction", direction_job(int(episodes), int(runs), int(n_cat)), label="causal direction")
    if msg:
        st.warning(msg)
    st.rerun()


def live(records):
    curves = live_belief(records)
    if curves is not None:
        components.plot(figures.belief_figure(curves["episodes"], curves["curves"], curves["median"]), key="cd_live")


components.job_progress("direction", "cd", "Experiment", live=live)
curves = belief_curves(w.result) if not w.running and w.result is not None else None
if curves is not None:
    components.plot(figures.belief_figure(curves["episodes"], curves["curves"], curves["median"]), key="cd_fig")
    marks = w.result["median_at"]
    if marks:
        st.markdown(
            "Median σ(γ) here: "
            + ", ".join(f"**{float(v):.3f}** at {k} episodes" for k, v in marks.items())
            + ". Published: about 0.9 at 400 and 0.99 at 1000 (black crosses)."
        )
    else:
        st.caption("Black crosses: the published median (about 0.9 at 400 episodes, 0.99 at 1000).")

# ------------------------------------------------------------------------------ the whole graph
st.subheader("The whole graph of an SCM family, from its interventional tasks")
st.markdown(
    "Each SCM task intervenes on one variable. The engine finds which variable each task changed (its "
    "distribution shifts while the others' mechanisms stay invariant) and orients edges away from "
    "intervened variables; PC sees the same pooled samples without the task labels. Scored by the "
    "structural Hamming distance (SHD) to the true graph: lower is better."
)
c = st.columns(4)
n_vars = c[0].number_input("variables", 4, 10, key="cd_scm_vars")
n_tasks = c[1].number_input("tasks", 5, 200, key="cd_scm_tasks")
graph_seed = c[2].number_input("graph seed", 0, 10_000, key="cd_scm_seed")
c[3].markdown("&nbsp;")
if c[3].button("Learn the graph", key="cd_scm_run", width="stretch"):
    scm = session.builtin_source("scm", num_variables=int(n_vars), seed=int(graph_seed))
    with st.spinner("learning the graph and running PC ..."):
        try:
            st.session_state["cd_scm_result"] = (learn_scm_graph(scm, n_tasks=int(n_tasks)), scm.truth_graph())
        except (ValueError, RuntimeError, ImportError) as exc:  # PC needs causal-learn, a dev dependency
            components.error_box(exc)
if st.session_state.get("cd_scm_result"):
    result, truth = st.session_state["cd_scm_result"]
    m = st.columns(3)
    m[0].metric("true edges", result["true_edges"])
    m[1].metric("SHD, learned from interventions", result["shd"])
    m[2].metric("SHD, PC", result.get("pc_shd", "n/a"))
    views = learned_graph_views(result, truth)
    cols = st.columns(len(views))
    for col, (name, graph) in zip(cols, views.items(), strict=True):
        with col:
            components.plot(figures.scm_graph_figure(graph, title=name, height=320), key=f"cd_scm_{name}")
    st.caption(
        f"Tasks' intervened variables identified: {result['target_accuracy']:.0%}. "
        "PC's undirected edges are drawn both ways."
    )

# ------------------------------------------------------------------------------ graph from your data
st.subheader("Graph from your data")
st.markdown(
    "A table of measurements with a **task column**: each value is one regime, for example an observational "
    "one and several with an inhibitor or activator added. The engine learns a graph over the numeric columns "
    "(a skeleton from within-regime partial correlations; each edge oriented the way whose mechanism stays "
    "the same across regimes, docs/DESIGN.md) and runs PC, GES, GIES and the empty graph on the same table. "
    'Optional: a **targets JSON** mapping regimes to the variables they act on (`{"regime": ["x3"]}`; '
    "GIES needs every regime's) and a **truth CSV** with columns cause,effect to score every graph."
)
tasks_csv = st.session_state.get("tasks_csv") if session.source().name == "tabular" else None
session.keep_inputs({"gd_origin": gfd.SIMULATED, "gd_seed": 0, "gd_listed": True})
origin = st.radio("data", gfd.data_choices(tasks_csv is not None), key="gd_origin", horizontal=True)
frame, truth, targets, default_task = None, None, None, None
try:
    if origin == gfd.SIMULATED:
        c = st.columns(2)
        seed = c[0].number_input("simulation seed", 0, 10_000, key="gd_seed")
        listed = c[1].checkbox("give the listed targets", key="gd_listed")
        sim = gfd.simulated_example(int(seed))
        frame, truth, default_task = sim["frame"], sim["truth"], sim["task_column"]
        targets = sim["targets"] if listed else None
        st.caption("8 variables, 6 soft interventions, 300-400 rows per regime; its true graph scores the results.")
    elif origin == gfd.TASKS_CSV:
        frame, default_task = tasks_csv["frame"], tasks_csv["task_column"]
    elif origin == gfd.EXAMPLE:
        frame = gfd.example_frame()
    else:
        up = st.file_uploader("data CSV", type=["csv"], key="gd_upload")
        if up is not None:
            frame = gfd.read_upload(up.getvalue(), up.name)
except TaskError as exc:
    st.error(md_escape(exc))
if frame is not None:
    cols = list(frame.columns)
    guess = default_task if default_task in cols else gfd.task_column_guess(frame)
    c = st.columns(2)
    task_col = c[0].selectbox(
        "task column (one regime per value)", cols, index=cols.index(guess), key=f"gd_task_{hash(tuple(cols))}"
    )
    regimes = [gfd.NO_OBSERVATIONAL, *gfd.regimes(frame, task_col)]
    obs_guess = "observational" if "observational" in regimes else gfd.NO_OBSERVATIONAL
    observational = c[1].selectbox(
        "observational regime", regimes, index=regimes.index(obs_guess), key=f"gd_obs_{task_col}"
    )
    c = st.columns(2)
    targets_up = c[0].file_uploader("targets JSON (optional)", type=["json"], key="gd_targets")
    truth_up = c[1].file_uploader("truth CSV: cause,effect (optional)", type=["csv"], key="gd_truth")
    busy = session.running_job() is not None
    if st.button("Learn the graph from this table", type="primary", key="gd_run", disabled=busy):
        obs = None if observational == gfd.NO_OBSERVATIONAL else observational
        try:
            if targets_up is not None:
                targets = gfd.read_targets_upload(targets_up.getvalue(), targets_up.name)
            if truth_up is not None:
                truth = gfd.read_upload(truth_up.getvalue(), truth_up.name)
            gfd.check_inputs(frame, task_col, obs, targets, truth)
        except TaskError as exc:
            st.error(md_escape(exc))
        else:
            msg = session.start_job("graph", gfd.graph_job(frame, task_col, obs, targets, truth), label="graph")
            if msg:
                st.warning(msg)
            else:
                st.rerun()

components.job_progress("graph", "gd", "Graph from data")
gw = session.worker("graph")
if not gw.running and gw.result is not None:
    result = gw.result
    st.markdown(
        f"**{len(result['edges'])}** directed and **{len(result['undirected'])}** undirected edges over "
        f"{len(result['variables'])} variables and {len(result['regimes'])} regimes."
    )
    st.dataframe(gfd.scores_table(result), hide_index=True, key="gd_scores")
    views = list(gfd.graph_views(result))
    other = st.selectbox(
        "compare with", [v for v in views if v != "ours"], format_func=gfd.METHOD_LABELS.get, key="gd_view"
    )
    cols = st.columns(2)
    for col, view in zip(cols, ["ours", other], strict=True):
        if view is None:
            continue
        with col:
            fig = figures.edge_classes_figure(
                result["variables"], gfd.edge_rows(result, view), gfd.METHOD_LABELS.get(view, view)
            )
            components.plot(fig, key=f"gd_fig_{view}")
    if "truth" in result:
        st.caption(
            "Green: a true edge in the right direction; orange: a true edge reversed; purple dots: a true edge "
            "left undirected; red: an edge the truth does not have; grey dashes: a true edge not found."
        )
    else:
        st.caption("No truth given: blue edges are directed, grey dots undirected.")
    st.markdown("**Intervention targets per regime** (inferred: the variables whose mechanism changed)")
    st.dataframe(gfd.targets_table(result), hide_index=True, key="gd_targets_table")
    st.download_button(
        "Download the result (JSON)",
        gfd.result_json(result),
        file_name="graph_from_data.json",
        mime="application/json",
        key="gd_download",
    )
