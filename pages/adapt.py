"""One-shot adapt: one example per class (image upload), one (x, y) point, or one CSV row."""

from pathlib import Path

import numpy as np
import streamlit as st

from engine.algorithms import learner_class
from engine.tasks import TaskError
from ui import canvas, components, figures, session
from ui.adaptation import adapt_images, episode_occlusion
from ui.episodes import image_episode, make_episode, sample_vector_episode, vector_task_choices
from ui.fixed_episodes import FIXED_HELP, confusion_frame, fixed_episode_table
from ui.images import ImageInputError, images_to_batch
from ui.sources import source_label
from ui.tables import predictions_table, rows_to_support, support_rows
from ui.text import md_escape

st.title("One-shot adapt")
src = session.source()
kind = src.name
st.caption(f"Task source: **{md_escape(source_label(src))}**")

DRAW = "Draw symbols"
if kind == "images":
    modes = ["A held-out task from the data", DRAW, "My own images", "Fixed episodes (a zip)"]
    mode = st.radio("examples", modes, horizontal=True, key="img_mode", label_visibility="collapsed")
else:
    with st.expander("Draw symbols: one-shot adaptation on your own drawings"):
        canvas.draw_to_adapt("adapt_draw_other")
if kind == "images" and mode == DRAW:
    st.markdown("Draw **one example** of each new symbol, then a test symbol: it is labelled after every stroke.")
    canvas.draw_to_adapt("adapt_draw")
    st.stop()
if not components.require_engine(src):
    st.stop()
eng = session.engine()
ss = st.session_state
learner = learner_class(eng.config.algorithm)
if eng.config.transductive_steps and learner.supports_transductive:
    st.caption(
        f"Transductive labelling is on (transductive_steps = {eng.config.transductive_steps}): the pictures to "
        "label are labelled together, the prototypes refined over all of them, so each label also depends on "
        "the others."
    )

# ------------------------------------------------------------------------------ sinusoid
if kind == "sinusoid":
    st.markdown("Give the meta-trained model **one point** of a held-out sinusoid and see the whole curve it infers.")
    components.sinusoid_point_panel("adapt_sine", src)

# ------------------------------------------------------------------------------ images
elif kind == "images":
    if mode == "A held-out task from the data":
        ss.setdefault("img_seed", 0)
        c = st.columns([3, 1])
        c[0].markdown(
            f"{src.n_way} characters the model never saw in training, **one drawing each**; it then labels other "
            "drawings of the same characters."
        )
        if c[1].button("Draw another task", key="img_new", width="stretch"):
            ss["img_seed"] += 1
            ss.pop("img_result", None)
        queries = min(5, max(1, eng.config.query_shots))
        try:
            task, ep = image_episode(src, 1, queries, "test", int(ss["img_seed"]))
        except TaskError as exc:
            st.error(md_escape(exc))
            st.stop()
        names = [n.split("/")[-1] for n in (task.class_names or [])]
        sx, sy = ep.support_x.numpy(), ep.support_y.numpy()
        order = np.argsort(sy)
        st.markdown("**The one example per class**")
        components.image_row(sx[order], [names[int(sy[i])] for i in order])
        if st.button("Adapt and label the query drawings", type="primary", key="img_adapt"):
            try:
                ss["img_result"] = adapt_images(
                    eng, sx, sy.tolist(), ep.query_x.numpy(), ep.query_y.numpy().tolist(), names, task.name
                )
                ss["img_result"].update(
                    query_x=ep.query_x.numpy(),
                    query_y=ep.query_y.numpy().tolist(),
                    support_x=sx,
                    support_y=sy.tolist(),
                    mode=mode,
                )
            except (ValueError, RuntimeError) as exc:
                components.error_box(exc)
    elif mode == "My own images":
        embedding = learner.embedding_only
        limit = "any number of classes" if embedding else f"at most {eng.output_dim} classes (the model's output size)"
        st.markdown(
            "Upload **one picture per class** (PNG or JPEG; dark strokes on light paper or the reverse; it is "
            f"converted to 28×28 grayscale). The file name is the class name. This model takes {limit}. "
            "Then upload pictures to label."
        )
        c = st.columns(2)
        sup = c[0].file_uploader(
            "one picture per class", type=["png", "jpg", "jpeg"], accept_multiple_files=True, key="own_support"
        )
        qry = c[1].file_uploader(
            "pictures to label", type=["png", "jpg", "jpeg"], accept_multiple_files=True, key="own_query"
        )
        sx = qx = None
        try:
            sx = images_to_batch([(f.name, f.getvalue()) for f in sup or []], src.image_size)
            qx = images_to_batch([(f.name, f.getvalue()) for f in qry or []], src.image_size)
        except ImageInputError as exc:
            st.error(md_escape(exc))
        class_names = [Path(f.name).stem for f in sup or []]
        if sx is not None and len(sx):
            components.image_row(sx, class_names)
        ok = sx is not None and qx is not None and len(sx) >= 2
        if sx is not None and 0 < len(sx) < 2:
            st.warning("Upload at least two pictures: one per class, two classes or more.")
        if ok and not embedding and len(sx) > eng.output_dim:
            st.error(f"This model has {eng.output_dim} outputs: upload at most {eng.output_dim} classes.")
            ok = False
        if len(set(class_names)) != len(class_names):
            st.error("Two support pictures have the same file name: each class needs its own name.")
            ok = False
        if st.button("Adapt and label my pictures", type="primary", disabled=not ok, key="own_adapt"):
            try:
                ss["img_result"] = adapt_images(eng, sx, list(range(len(sx))), qx, None, class_names)
                ss["img_result"].update(
                    query_x=qx, query_y=None, support_x=sx, support_y=list(range(len(sx))), mode=mode
                )
            except (ValueError, RuntimeError) as exc:
                components.error_box(exc)
    else:
        st.markdown(FIXED_HELP)
        upload = st.file_uploader("fixed-episode zip", type=["zip"], key="fixed_zip")
        swap = st.checkbox("swap roles: adapt on the queries, label the support pictures", key="fixed_swap")
        if st.button("Score every episode", type="primary", disabled=upload is None, key="fixed_score"):
            try:
                ss["fixed_result"] = eng.evaluate_fixed_sync(upload.getvalue(), swap_roles=swap)
            except (ValueError, RuntimeError) as exc:
                components.error_box(exc)
        fixed = ss.get("fixed_result")
        if fixed is not None:
            st.subheader("Result")
            st.metric(
                "accuracy, mean over episodes (95% interval)",
                f"{fixed['accuracy']:.1%} ± {fixed['accuracy_ci95']:.1%}",
                help=f"{fixed['queries']} queries in {fixed['episodes']} episodes; pooled: {fixed['query_accuracy']:.1%}",
            )
            st.dataframe(fixed_episode_table(fixed), hide_index=True, width="stretch")
            rows = {row["episode"]: row for row in fixed["per_episode"]}
            chosen = st.selectbox("confusions of episode", list(rows), key="fixed_episode")
            st.dataframe(confusion_frame(rows[chosen]), width="stretch")
    res = ss.get("img_result")
    if res is not None and res.get("mode") == mode:
        st.subheader("Result")
        components.show_adaptation(res["result"], key="img_res", scored=res["labelled"])
        if not res["labelled"]:
            st.caption("Your pictures to label have no labels, so no accuracy can be measured on them.")
        if res.get("predicted") is not None:
            names = res["class_names"]
            truth = res.get("query_y")
            caps = []
            for i, p in enumerate(res["predicted"]):
                cap = f"→ {names[p]} ({res['probabilities'][i][p]:.0%})"
                if truth is not None:
                    cap = ("✓ " if p == truth[i] else "✗ ") + cap
                caps.append(cap)
            st.markdown("**Predictions on the query pictures**")
            components.image_row(res["query_x"], caps, width=84)
            if st.toggle("Show occlusion maps of the support pictures and the first 5 queries", key="img_occ"):
                shown = slice(0, 5)
                qy = (truth if truth is not None else res["predicted"])[shown]
                maps = episode_occlusion(
                    eng, res["support_x"], res["support_y"], res["query_x"][shown], qy, len(names), patch=4
                )
                components.occlusion_row(
                    "img_occ", maps, res["support_x"], res["query_x"][shown],
                    [names[y] for y in res["support_y"]], caps[shown],
                )  # fmt: skip
                if truth is None:
                    st.caption("Your pictures have no labels: each query's loss is taken against its predicted label.")

# ------------------------------------------------------------------------------ vectors
elif kind in ("tabular", "scm"):
    choices = vector_task_choices(src, n=8, seed=0)
    c = st.columns([2, 1])
    task_name = c[0].selectbox("held-out task", list(choices), key="vec_task")
    seed = c[1].number_input("episode seed", 0, 10_000, 0, key="vec_seed")
    task = choices[task_name]
    queries = max(1, eng.config.query_shots)
    try:
        ep = sample_vector_episode(task, 1, queries, seed=int(seed))
    except TaskError as exc:
        st.error(md_escape(exc))
        st.stop()
    one = "one row per class" if src.task_type == "classification" else "one row"
    st.markdown(
        f"The support set is **{one}** of this task; edit any value (in the CSV's units) and adapt. The query rows "
        "are other rows of the same task."
    )
    if kind == "scm":
        st.caption(f"Intervened variables in this task: {', '.join(task.truth.get('intervened', [])) or 'none'}")
    rows = st.data_editor(
        support_rows(src, ep),
        hide_index=True,
        key=f"vec_rows_{task_name}_{seed}",
        width="stretch",
        num_rows="fixed",
    )
    if st.button(
        "Adapt to this row" if src.task_type == "regression" else "Adapt to these rows", type="primary", key="vec_adapt"
    ):
        try:
            sx, sy = rows_to_support(src, rows)
            episode = make_episode(
                sx, sy, ep.query_x.numpy(), ep.query_y.numpy(), src.task_type, ep.num_classes, task.name
            )
            ss["vec_result"] = {"result": eng.one_shot_adapt_sync(episode), "task": task_name}
        except (TaskError, ValueError, RuntimeError) as exc:
            components.error_box(exc)
    res = ss.get("vec_result")
    if res is not None and res["task"] == task_name:
        r = res["result"]
        st.subheader("Result")
        components.show_adaptation(r, key="vec_res")
        unstd = src.unstandardise_target if kind == "tabular" else None
        table = predictions_table(r["predictions"], r["targets"], src.class_names, unstd)
        if src.task_type == "regression":
            left, right = st.columns(2)
            left.dataframe(table, hide_index=True, width="stretch")
            with right:
                components.plot(
                    figures.values_figure(
                        table["true"].tolist(), table["predicted"].tolist(), title="query rows: predicted against true"
                    ),
                    key="vec_values",
                )
        else:
            st.dataframe(table, hide_index=True, width="stretch")
else:
    st.info("One-shot adaptation is shown for sinusoid, image, SCM and CSV tasks.")
