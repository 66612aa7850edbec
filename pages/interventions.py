"""Interventions: switch mechanisms off or scale them, and see what changes."""

import numpy as np
import streamlit as st

from engine.tasks import TaskError
from ui import components, figures, session
from ui.adaptation import accuracy, masked_outputs, mse
from ui.episodes import image_episode, make_episode, sample_vector_episode, sinusoid_grid, vector_task_choices
from ui.tables import effects_table, support_rows
from ui.text import md_escape

st.title("Interventions")
st.markdown(
    "Each slider sets c_k, the causal mask of mechanism k: the model computes with gate g_k · c_k, so "
    "**c_k = 0 is do(mechanism k off)** and values in between scale it. The model is first adapted to a "
    "held-out task without intervention; the sliders then change only its predictions."
)
src = session.source()
kind = src.name
if not components.require_engine(src):
    st.stop()
eng = session.engine()
ss = st.session_state
K = eng.model.num_mechanisms
cfg = eng.config

# ------------------------------------------------------------------------------ the held-out task
c = st.columns([3, 1])
ss.setdefault("iv_seed", 0)
if c[1].button("Draw another task", key="iv_new", width="stretch"):
    ss["iv_seed"] += 1
seed = int(ss["iv_seed"])
grid = truth = None
class_names = None
try:
    if kind == "sinusoid":
        task = src.tasks("test", 1, seed=seed)[0]
        sup = task.sample_episode(cfg.support_shots, 0, np.random.default_rng(seed))
        grid = sinusoid_grid(src)
        truth = task.function(grid)
        episode = make_episode(sup.support_x, sup.support_y, grid, truth, "regression", None, task.name)
        what = f"y = {task.amplitude:.2f} · sin(x − {task.phase:.2f}) from {cfg.support_shots} point(s)"
    elif kind == "images":
        task, episode = image_episode(src, 1, 3, "test", seed)
        class_names = [n.split("/")[-1] for n in task.class_names or []]
        what = f"{src.n_way}-way one-shot task over {', '.join(class_names)}"
    elif kind in ("tabular", "scm"):
        choices = vector_task_choices(src, n=8, seed=0)
        names = list(choices)
        task = choices[names[seed % len(names)]]
        episode = sample_vector_episode(task, cfg.support_shots, cfg.query_shots, seed=seed)
        class_names = src.class_names
        what = (
            f"task {task.name}, {cfg.support_shots} support row(s) per class"
            if class_names
            else (f"task {task.name}, {cfg.support_shots} support row(s)")
        )
    else:
        st.info("Interventions are shown for sinusoid, image, SCM and CSV tasks.")
        st.stop()
    eng.one_shot_adapt_sync(episode)  # the sliders below change only this adapted model's predictions
except (TaskError, ValueError, RuntimeError) as exc:
    components.error_box(exc)
    st.stop()
c[0].markdown(f"Held-out task: **{md_escape(what)}**.")  # task and class names

# ------------------------------------------------------------------------------ the mask


def reset_mask() -> None:
    for k in range(K):
        ss[f"iv_mask_{k}"] = 1.0


st.subheader("Causal mask")
cols = st.columns(min(K, 8))
mask = []
for k in range(K):
    ss.setdefault(f"iv_mask_{k}", 1.0)
    mask.append(
        cols[k % len(cols)].slider(
            f"mechanism {k}", 0.0, 1.0, step=0.05, key=f"iv_mask_{k}", help=f"c_{k}: 1 = as learned, 0 = switched off"
        )
    )
st.button("All mechanisms on", on_click=reset_mask, key="iv_reset")

# ------------------------------------------------------------------------------ before / after
st.subheader("Predictions without and with the intervention")
qx = episode.query_x.numpy()
qy = episode.query_y.numpy()
before = masked_outputs(eng, qx, None)
after = masked_outputs(eng, qx, mask)


def delta(a: float, b: float, scale: float = 1.0, unit: str = "") -> str | None:
    """The change shown under a metric, or None when nothing changed."""
    d = (a - b) * scale
    return None if abs(d) < 1e-9 else f"{d:+.3g}{unit}"


def mse_metrics() -> None:
    m = st.columns(2)
    m[0].metric("MSE without intervention", f"{mse(before, qy):.3g}")
    m[1].metric(
        "MSE with intervention",
        f"{mse(after, qy):.3g}",
        delta=delta(mse(after, qy), mse(before, qy)),
        delta_color="inverse",
    )


if kind == "sinusoid":
    mse_metrics()
    components.plot(
        figures.sinusoid_figure(
            grid.ravel(),
            truth=np.ravel(truth),
            prior=before.ravel(),
            adapted=after.ravel(),
            support=(episode.support_x.numpy().ravel(), episode.support_y.numpy().ravel()),
            names={"prior": "adapted, no intervention", "adapted": "adapted, with the mask"},
        ),
        key="iv_sine",
    )
elif eng.task_type == "classification":
    m = st.columns(2)
    acc_b, acc_a = accuracy(before, qy), accuracy(after, qy)
    m[0].metric("query accuracy without intervention", f"{acc_b:.1%}")
    m[1].metric("query accuracy with intervention", f"{acc_a:.1%}", delta=delta(acc_a, acc_b, 100, " points"))
    names = class_names or [str(i) for i in range(before.shape[1])]
    left, right = st.columns([1, 3])
    with left:
        i = st.number_input("query example", 0, len(qx) - 1, 0, key="iv_query")
        if kind == "images":
            components.image_row([qx[i]], [f"true: {names[int(qy[i])]}"], width=140)
        else:
            st.dataframe(
                support_rows(
                    src, make_episode(qx[i : i + 1], qy[i : i + 1], qx[:1], qy[:1], "classification", len(names))
                ),
                hide_index=True,
            )
    with right:
        components.plot(
            figures.probabilities_figure(names[: before.shape[1]], before[i], after[i], title="class probabilities"),
            key="iv_probs",
        )
else:
    unstd = src.unstandardise_target if kind == "tabular" else (lambda v: v)
    t, b, a = (np.ravel(unstd(np.ravel(v))) for v in (qy, before, after))
    mse_metrics()
    left, right = st.columns(2)
    with left:
        components.plot(figures.values_figure(t.tolist(), b.tolist(), a.tolist()), key="iv_values")
    with right:
        st.dataframe({"true": t, "no intervention": b, "with the mask": a}, hide_index=True, width="stretch")

# ------------------------------------------------------------------------------ effect per mechanism
st.subheader("Effect of each mechanism")
st.markdown(
    "For each k alone: adapt to the task with do(c_k = 0) and score the query set; the effect is that query "
    "loss minus the loss without intervention. Positive means the mechanism helps on this task."
)
ctx = (id(eng), ss.get("engine_version", 0), kind, seed, ss.get("source_version", 0))
if st.button("Measure the effect of each mechanism", key="iv_effects"):
    try:
        _, rows = eng.mechanism_effects_sync(episode)
        ss["iv_effects_data"] = {"ctx": ctx, "rows": rows}
    except (ValueError, RuntimeError) as exc:
        components.error_box(exc)
eff = ss.get("iv_effects_data")
if eff and eff["ctx"] == ctx:
    left, right = st.columns([1, 1])
    with left:
        components.plot(figures.effects_figure(eff["rows"]), key="iv_eff_fig")
    with right:
        st.dataframe(effects_table(eff["rows"]), hide_index=True, width="stretch")

# ------------------------------------------------------------------------------ hierarchical adaptation
st.subheader("Hierarchical adaptation levels")
st.markdown(
    "Adapt one level at a time, in order: **feature** (the input gates: which variables feed which "
    "mechanism), **structure** (the mechanism gates), **optimization** (all weights, with the learned "
    "rates). Each level's gain is the drop in query loss it caused."
)
levels = st.multiselect(
    "levels, in order",
    ["feature", "structure", "optimization"],
    default=["feature", "structure", "optimization"],
    key="iv_levels",
)
if st.button("Adapt level by level", key="iv_hier", disabled=not levels):
    try:
        res = eng.hierarchical_adapt_sync(episode, adaptation_levels=levels)
        ss["iv_hier_data"] = {"ctx": ctx, "res": res}
    except (ValueError, RuntimeError, KeyError) as exc:
        components.error_box(exc)
    eng.one_shot_adapt_sync(episode)  # leave the engine adapted as above
hier = ss.get("iv_hier_data")
if hier and hier["ctx"] == ctx:
    rows = hier["res"]["levels"]
    metric = eng.learner.metric_name()
    cols = st.columns(len(rows))
    for col, row in zip(cols, rows, strict=True):
        with col:
            st.markdown(f"**{row['level']}**")
            # For regression the query loss is the MSE: one number, not the same one twice.
            st.metric(
                "query MSE" if metric == "mse" else "query loss",
                f"{row['loss_after']:.3g}",
                delta=delta(row["loss_after"], row["loss_before"]),
                delta_color="inverse",
            )
            if metric != "mse":
                st.metric(metric, f"{row[f'{metric}_after']:.3g}")
            if row["skipped"]:
                st.caption(f"skipped: {row['reason']}")
            elif row.get("note"):
                st.caption(row["note"])
    components.plot(figures.levels_figure({r["level"]: r for r in rows}, "gain"), key="iv_levels_fig")
