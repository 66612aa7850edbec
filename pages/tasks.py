"""Tasks: choose a built-in task source or upload a CSV / an image zip, and preview episodes."""

import numpy as np
import pandas as pd
import streamlit as st

from engine.tasks import EXAMPLE_CSV, OMNIGLOT_DIR, TaskError, make_task_source
from ui import components, figures, session
from ui.config_form import preset_values
from ui.episodes import image_episode, sample_vector_episode, sinusoid_preview
from ui.source_recipe import upload_recipe
from ui.sources import guess_columns, read_csv_upload, source_label, tabular_source
from ui.tables import episode_table, scm_graph_table, target_name
from ui.text import md_escape

st.title("Tasks")
st.markdown(
    "A **task source** yields many small learning problems (tasks). Meta-training samples episodes from its "
    "training tasks; validation and one-shot adaptation use held-out tasks."
)

CHOICES = {
    "sinusoid": "Sinusoid regression",
    "scm": "SCM tasks (true causal graph known)",
    "images": "Omniglot characters (minimal sets)",
    "example_csv": "Example CSV (plants)",
    "upload_csv": "Upload a CSV",
    "upload_zip": "Upload an image zip",
}
current = session.source()
st.caption(f"In use now: **{md_escape(source_label(current))}**")

kind = st.radio(
    "Task source",
    list(CHOICES),
    format_func=CHOICES.get,
    horizontal=True,
    key="tasks_kind",
    label_visibility="collapsed",
)


def build(fn, *args, **kwargs):
    """(source, None) or (None, message); upload problems become messages, never tracebacks."""
    try:
        return fn(*args, **kwargs), None
    except TaskError as exc:
        return None, str(exc)
    except (ValueError, OSError, MemoryError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


candidate, problem, frame = None, None, None
stored = {}  # an upload's recipe and file, so the workspace keeps the source over a reload
if kind == "sinusoid":
    st.markdown("The MAML benchmark: y = A · sin(x − phase), A in [0.1, 5], phase in [0, π], x in [−5, 5].")
    candidate, problem = build(session.builtin_source, "sinusoid")
elif kind == "scm":
    st.markdown(
        "A random nonlinear structural causal model over d variables. The target has at least two parents "
        "and one child; every task is the SCM under a sparse intervention, so the truth of each task is known."
    )
    c = st.columns(4)
    d = c[0].number_input("variables d", 4, 50, 6, key="scm_d")
    ttype = c[1].selectbox("task type", ["regression", "classification"], key="scm_type")
    seed = c[2].number_input("graph seed", 0, 10_000, 0, key="scm_seed")
    size = c[3].number_input("variables intervened per task", 0, int(d) - 1, 1, key="scm_size")
    candidate, problem = build(
        session.builtin_source,
        "scm",
        num_variables=int(d),
        task_type=ttype,
        seed=int(seed),
        intervention_size=int(size),
    )
elif kind == "images":
    zips = session.omniglot_zips()
    if not zips:
        problem = "The Omniglot minimal sets are not installed (expected them in the data folder)."
    else:
        st.markdown(
            "Omniglot: handwritten characters of many alphabets, 20 drawings each (MIT license). Classes, "
            "not drawings, are split into train / validation / test."
        )
        c = st.columns(4)
        zip_name = c[0].selectbox("set", zips, key="img_zip")
        n_way = c[1].number_input("classes per task (N-way)", 2, 20, 5, key="img_nway")
        within = c[2].checkbox("within one alphabet", key="img_within")
        rot = c[3].checkbox("rotations as extra classes", key="img_rot")
        c2 = st.columns(4)
        mirrors = c2[0].checkbox("mirror images as extra classes", key="img_mirror")
        distort = c2[1].checkbox(
            "distort training images",
            key="img_distort",
            help="Training tasks only: random shifts of up to 2 pixels and small rotations, shears and scalings "
            "(Koch et al. 2015). Validation and test images are never changed.",
        )
        augment = {"augment_shift": 2, "augment_affine": 1.0} if distort else {}
        candidate, problem = build(
            session.builtin_source,
            "images",
            path=OMNIGLOT_DIR / zip_name,
            n_way=int(n_way),
            within_group=within,
            rotations=rot,
            mirrors=mirrors,
            **augment,
        )
elif kind == "example_csv":
    st.markdown(
        "Six plants, 40 rows each: yield is caused by temperature and pressure (with plant-specific "
        "coefficients); humidity is correlated but not a cause; failure (0/1) is caused by vibration and humidity."
    )
    target = st.selectbox("target", ["yield", "failure"], key="ex_target")
    candidate, problem = build(
        session.builtin_source, "tabular", data=EXAMPLE_CSV, target_column=target, task_column="plant"
    )
    frame = pd.read_csv(EXAMPLE_CSV)
elif kind == "upload_csv":
    st.markdown(
        "A CSV with a header row: numeric feature columns, one **target** column and one **task** column "
        "(each value of the task column is one task)."
    )
    up = st.file_uploader("CSV file", type=["csv"], key="csv_upload")
    if up is not None:
        try:
            frame = read_csv_upload(up.getvalue(), up.name)
        except TaskError as exc:
            st.error(md_escape(exc))
        if frame is not None:
            tgt0, task0 = guess_columns(frame)
            cols = list(frame.columns)
            c = st.columns(3)
            target = c[0].selectbox("target column", cols, index=cols.index(tgt0), key="csv_target")
            task_col = c[1].selectbox("task column", cols, index=cols.index(task0), key="csv_task")
            ttype = c[2].selectbox("task type", ["auto", "classification", "regression"], key="csv_type")
            feats_all = [x for x in cols if x not in (target, task_col)]
            feats = st.multiselect(
                "feature columns", feats_all, default=feats_all, key=f"csv_feats_{target}_{task_col}"
            )
            candidate, problem = build(tabular_source, frame, target, task_col, feats, ttype)
            params = {"target_column": target, "task_column": task_col, "task_type": ttype, "feature_columns": feats}
            stored = {"recipe": upload_recipe("tabular", params), "upload": (up.name, up.getvalue())}
            if problem:
                st.error(md_escape(problem))
                problem = None
elif kind == "upload_zip":
    st.markdown(
        "A zip of PNG/JPEG images in class folders (Omniglot layout): `<root>/<alphabet>/<character>/*.png` or "
        "`<root>/<class>/*.png`. Every class needs at least 2 images, and the test split needs N classes."
    )
    up = st.file_uploader("image zip", type=["zip"], key="zip_upload")
    c = st.columns(2)
    n_way = c[0].number_input("classes per task (N-way)", 2, 20, 5, key="zip_nway")
    within = c[1].checkbox("within one group", key="zip_within")
    if up is not None:
        candidate, problem = build(
            make_task_source, "images", path=up.getvalue(), n_way=int(n_way), within_group=within
        )
        params = {"n_way": int(n_way), "within_group": within}
        stored = {"recipe": upload_recipe("images", params), "upload": (up.name, up.getvalue())}
        if candidate is not None:
            try:  # a held-out episode must be drawable, else the source is not usable
                image_episode(candidate, 1, 1, "test", 0)
            except TaskError as exc:
                candidate, problem = None, str(exc)
        if problem:
            st.error(md_escape(problem))
            problem = None

if problem:
    st.error(md_escape(problem))

if candidate is not None:
    in_use = candidate is current
    b1, b2 = st.columns([1, 3])
    if b1.button(
        "Use this task source" if not in_use else "In use",
        type="primary",
        disabled=in_use or session.running_job() is not None,
        key="use_source",
    ):
        session.set_source(candidate, **stored)
        if candidate.name == "tabular" and frame is not None:  # the Causal direction page learns a graph from it
            st.session_state["tasks_csv"] = {"frame": frame, "task_column": candidate.task_column}
        components.apply_values(preset_values(candidate.name, session.config_values()))
        st.session_state["source_msg"] = (
            f"Now using {md_escape(source_label(candidate))}. The Meta-train page got recommended settings for it."
        )
        st.rerun()
    if st.session_state.get("source_msg"):
        b2.success(st.session_state.pop("source_msg"))
    if session.running_job() is not None:
        b2.caption("A job is running: the task source can change when it ends.")

    # ---------------------------------------------------------------- preview
    st.subheader("Preview")
    info = candidate.describe()
    st.caption(f"{info['task_type']} · input shape {tuple(info['input_shape'])} · output size {info['output_dim']}")
    pseed = st.session_state.setdefault("preview_seed", 0)
    if st.button("Draw other episodes", key="preview_again"):
        st.session_state["preview_seed"] = pseed + 1
        st.rerun()
    ck = candidate.name
    try:
        if ck == "sinusoid":
            curves, points = sinusoid_preview(candidate, 4, 5, seed=pseed)
            components.plot(
                figures.curves_figure(curves, points, title="four training tasks, each with a 5-point support set"),
                key="prev_sine",
            )
        elif ck == "scm":
            task = candidate.tasks("train", 1, seed=pseed)[0]
            left, right = st.columns([1, 1])
            with left:
                components.plot(
                    figures.scm_graph_figure(candidate.truth_graph(), task.truth.get("intervened", [])),
                    key="prev_scm",
                )
                st.caption(
                    f"Red: the target {candidate.target}; green: its parents; orange: its children. "
                    f"Task {task.name} intervenes on {', '.join(task.truth.get('intervened', [])) or 'nothing'} "
                    "(thick black ring). The model sees every variable except the target."
                )
            with right:
                ep = task.sample_episode(3, 5, np.random.default_rng(pseed))
                st.dataframe(
                    episode_table(ep, candidate.feature_names, candidate.class_names, target_name(candidate)),
                    hide_index=True,
                    width="stretch",
                )
                if len(candidate.variable_names) > 12:
                    st.markdown("**The true graph as a table**, in causal order (roots first)")
                    st.dataframe(scm_graph_table(candidate.truth_graph()), hide_index=True, width="stretch")
                with st.expander("structural equations (base SCM)"):
                    for v in candidate.variable_names:
                        m = candidate.mechanism_description(v)
                        terms = " + ".join(f"{t['weight']:+.2f}·{t['function']}({t['parent']})" for t in m["terms"])
                        st.markdown(f"`{v} = {terms or 'noise'}` (noise sd {m['noise_std']:.2g})")
        elif ck == "images":
            task, ep = image_episode(candidate, 1, 3, "train", pseed)
            st.caption(
                f"{info['images']} images, classes train/val/test = {info['classes']['train']}/"
                f"{info['classes']['val']}/{info['classes']['test']}, groups: {md_escape(', '.join(info['groups']))}"
            )
            sx, sy = ep.support_x.numpy(), ep.support_y.numpy()
            qx, qy = ep.query_x.numpy(), ep.query_y.numpy()
            names = task.class_names or []
            st.markdown("**Support set: one image per class** (what one-shot adaptation sees)")
            order = np.argsort(sy)
            components.image_row(sx[order], [names[int(sy[i])].split("/")[-1] for i in order])
            st.markdown("**Query set** (what it is scored on)")
            order = np.argsort(qy)
            components.image_row(qx[order], [names[int(qy[i])].split("/")[-1] for i in order], width=64)
        elif ck == "tabular":
            st.dataframe(
                pd.DataFrame(
                    [
                        {"split": s, "tasks": ", ".join(info["tasks"][s]), "count": len(info["tasks"][s])}
                        for s in ("train", "val", "test")
                    ]
                ),
                hide_index=True,
            )
            task = candidate.all_tasks("train")[0]
            ep = sample_vector_episode(task, 2, 4, seed=pseed)
            st.markdown(
                f"One episode of task **{md_escape(task.name)}** (standardised features, as the model sees them):"
            )
            st.dataframe(
                episode_table(ep, candidate.feature_names, candidate.class_names, target_name(candidate)),
                hide_index=True,
                width="stretch",
            )
            if frame is not None:
                with st.expander("the CSV's first rows"):
                    st.dataframe(frame.head(20), hide_index=True)
    except TaskError as exc:
        st.error(md_escape(exc))
