"""Home: what this is, and a guided 30-second demo on sinusoids."""

import streamlit as st

from engine import OneShotMetaLearningEngine
from ui import canvas, components, ready, session
from ui.config_form import build_config, preset_values
from ui.episodes import sinusoid_grid
from ui.fit import engine_fit_problem
from ui.jobs import training_job

st.title("Causal one-shot meta-learning explorer")
st.markdown(
    "A meta-learner trains on many small tasks so that it can learn a new task from **one example**. "
    "Its network is split into mechanisms behind gates, so you can switch parts off and *measure* "
    "what each part causes, instead of trusting a label. "
    "Pick tasks, meta-train and watch the curves live, adapt in one shot, then discover and "
    "intervene on mechanisms, all in this browser session."
)

src = session.source()
eng = session.engine()
w = session.worker("train")
ready_model = ready.ready_in_use(eng)
demo_ready = src.name == "sinusoid" and engine_fit_problem(eng, src) is None and eng.is_trained


def start_demo() -> None:
    sine = session.builtin_source("sinusoid")
    session.set_source(sine)
    values = preset_values("sinusoid")
    components.apply_values(values)
    cfg = build_config(values, sine)
    fresh = OneShotMetaLearningEngine(cfg)
    fresh.initialize_for_source(sine)
    name = "demo: sinusoid MAML"
    msg = session.start_new_model(fresh, training_job(fresh, sine, name), name, "demo training", {name: fresh})
    if msg:
        st.session_state["demo_msg"] = msg


# ------------------------------------------------------------------------------ the sinusoid demo
if ready_model is not None and demo_ready:
    st.subheader("One-shot demo: a whole curve from one point")
    st.markdown(
        f"This session starts with the **{ready_model.title}**: meta-trained on 20,000 batches of random sinusoids "
        "*y = A · sin(x − phase)*, ready on this server (no training needed). Below it meets a sinusoid it has "
        "never seen and adapts from one, two and five of its points in a few milliseconds."
    )
    components.points_comparison(
        "demo",
        src,
        measured=lambda start: ready.ready_error_by_points(ready_model.name, src, sinusoid_grid(src), start),
    )
    st.markdown("**Your turn:** click the chart to give the model one point of this sinusoid (or type one).")
    components.sinusoid_point_panel("demo", src)
    st.button(
        ready.TRAIN_YOUR_OWN,
        disabled=w.running,
        on_click=start_demo,
        key="demo_start",
        help="Starts a fresh MAML_CAUSAL engine on the built-in sinusoid tasks (400 meta-iterations). The ready "
        "model stays in use until the run finishes, and on the server for other sessions.",
    )
    if st.session_state.get("demo_msg"):
        st.warning(st.session_state.pop("demo_msg"))
    components.training_status("demo", title="meta-training your own: mean squared error falls as it learns to adapt")
else:
    st.subheader("30-second demo: a whole curve from one point")
    st.markdown(
        "**1.** Meta-train a small network on random sinusoids *y = A · sin(x − phase)* for a few seconds. "
        "**2.** Give it one point of a sinusoid it has never seen, by clicking the chart or typing it. "
        "**3.** Watch the curve it adapts to in a few milliseconds. "
        "One point pins the curve through it; a sinusoid has two unknowns, so tick *keep earlier points* and add a "
        "second and third to watch it lock on (a few seconds of meta-training give a rough model; the published "
        "MAML runs 70,000 iterations)."
    )
    c1, c2 = st.columns([2, 3])
    with c1:
        st.button(
            "1 · Meta-train on sinusoids" if not demo_ready else "1 · Meta-train again from scratch",
            type="primary" if not demo_ready else "secondary",
            disabled=w.running,
            on_click=start_demo,
            key="demo_start",
            help="Starts a fresh MAML_CAUSAL engine on the built-in sinusoid tasks (400 meta-iterations). "
            "This replaces the session's engine.",
        )
    with c2:
        if st.session_state.get("demo_msg"):
            st.warning(st.session_state.pop("demo_msg"))

    components.training_status("demo", title="meta-training: mean squared error falls as the network learns to adapt")

    if w.running:
        st.info("Step 2 opens when training ends (or press Stop: a partly trained model adapts too).")
    elif demo_ready:
        st.markdown("**2 · Give one point** of a new sinusoid, **3 · watch** the adapted curve.")
        components.sinusoid_point_panel("demo", src)
        components.points_comparison("demo", src)
    elif eng.is_trained:
        st.info("The session's engine is trained on other tasks. Press step 1 to run the sinusoid demo.")

st.subheader("Draw three symbols: one-shot learning on your own drawings")
st.markdown(
    "Invent three symbols and draw **one example of each** in the boxes below, then draw a test symbol: "
    "the image model adapts to your three examples and labels the test drawing after every stroke, in "
    "milliseconds. It never saw your symbols; it learned *how to learn* characters from Omniglot's alphabets."
)
canvas.draw_to_adapt("home_draw")

st.divider()
st.markdown(
    "**Next:** choose other tasks (causal SCM tasks with a known graph, Omniglot characters, your own CSV "
    "or image zip) on **Tasks**, set every option on **Meta-train**, adapt from one image or one CSV row on "
    "**One-shot adapt**, and switch mechanisms off on **Interventions**."
)
