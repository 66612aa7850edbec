"""Meta-train: every config field, Start / Stop, live curves, run overlays, checkpoints."""

import re

import streamlit as st

from engine import CheckpointError, ConfigError, OneShotMetaLearningEngine
from engine.checkpoint import checkpoint_zip_bytes
from ui import components, figures, session, workspace
from ui.config_form import build_config, plain_baseline, preset_values
from ui.fit import check_algorithm_fits, engine_fit_problem
from ui.jobs import evolve_job, training_job
from ui.sources import source_label
from ui.text import md_escape

st.title("Meta-train")
src = session.source()
eng = session.engine()
w = session.worker("train")
busy = session.running_job() is not None  # any job of this session (training, discovery, ...)
kind = src.name
st.caption(f"Task source: **{md_escape(source_label(src))}** (change it on the Tasks page)")

# ------------------------------------------------------------------------------ settings
head = st.columns([3, 1])
head[0].subheader("Settings")


def use_preset() -> None:
    components.apply_values(preset_values(kind, session.config_values()))


head[1].button(
    "Recommended settings",
    on_click=use_preset,
    key="preset",
    width="stretch",
    help=f"Fast settings for {kind} tasks that learn visibly within seconds on a CPU.",
)
values = components.config_form(src, disabled=busy)

config, problem = None, None
try:
    config = build_config(values, src)
    problem = check_algorithm_fits(config, src)
except ConfigError as exc:
    problem = str(exc)
if problem:
    st.error(md_escape(problem))

# ------------------------------------------------------------------------------ run controls
st.subheader("Run")
n_runs = len(session.runs())
c = st.columns([2, 2, 1, 1])
default_name = f"{values['algorithm'].lower()} #{n_runs + 1}"
run_name = c[0].text_input("run name", value=default_name, key=f"run_name_{n_runs}", disabled=w.running)
with_baseline = c[1].checkbox(
    "then train its plain baseline",
    key="with_baseline",
    help="After this run, train the same learner with causal_weight = 0 and no causal priors, "
    "so the two curves can be overlaid below.",
    disabled=w.running,
)
start = c[2].button("Start", type="primary", disabled=busy or config is None or bool(problem), width="stretch")
can_continue = eng.is_trained and engine_fit_problem(eng, src) is None and not busy
cont = c[3].button(
    "Continue",
    disabled=not can_continue,
    width="stretch",
    help="Train the session's engine further with its own settings (the curves continue).",
)

if eng.is_trained and not busy:
    st.caption(
        f"Start trains a new model. It replaces the session's trained model ({eng.config.algorithm.name}, "
        f"{len(eng.history.iteration) if eng.history else 0} iterations) when its run finishes; a run stopped "
        "before its end leaves that model in place. Save a checkpoint below to keep it."
    )

if start and config is not None:
    name = run_name.strip() or default_name
    fresh = OneShotMetaLearningEngine(config)
    try:
        fresh.initialize_for_source(src)
    except ValueError as exc:
        st.error(md_escape(exc))
    else:
        engines = {name: fresh}
        baseline = None
        if with_baseline:
            bname = f"{name} (plain baseline)"
            beng = OneShotMetaLearningEngine(plain_baseline(config))
            baseline = (beng, bname)
            engines[bname] = beng
        msg = session.start_new_model(fresh, training_job(fresh, src, name, baseline), name, name, engines)
        if msg:
            st.warning(msg)
        st.rerun()

if cont:
    name = next((r["name"] for r in reversed(session.runs()) if r["config"] == eng.config.to_dict()), None)
    name = name or f"{eng.config.algorithm.name.lower()} (continued)"
    base = eng.history.to_dict() if eng.history else None
    msg = session.start_job(
        "train",
        training_job(eng, src, name),
        label=name,
        run_name=name,
        engines={name: eng},
        base_histories={name: base} if base else {},
    )
    if msg:
        st.warning(msg)
    st.rerun()

components.training_status("train")
unfinished = st.session_state.get("unfinished_engine")
if unfinished is not None and not busy:
    done = len(unfinished.history.iteration) if unfinished.history else 0
    c = st.columns([3, 1])
    c[0].info(
        f"The last run stopped after {done} of {unfinished.config.num_meta_iterations} iterations, so the session "
        "keeps its earlier trained model."
    )
    if c[1].button("Use the stopped run's model", key="use_unfinished", disabled=not done):
        session.set_engine(st.session_state.pop("unfinished_engine"))
        st.rerun()

# ------------------------------------------------------------------------------ evolve settings
st.subheader("Evolve settings")
st.caption(
    "An Optuna study from the settings above: each trial meta-trains a fresh model with other rates, steps, "
    "causal_weight, num_mechanisms and hidden_dim for a short budget and is scored on validation tasks; weak "
    "trials are pruned from their validation curve. The first trial is the settings as they are."
)
ev = session.worker("evolve")
metric = "accuracy" if src.task_type == "classification" else "mse"
c = st.columns([1, 1, 2])
ev_trials = c[0].number_input("trials", 2, 200, 8, key="evolve_trials", disabled=busy)
ev_budget = c[1].number_input("meta-iterations per trial", 2, 5000, 100, key="evolve_budget", disabled=busy)
c[2].markdown("&nbsp;")
if c[2].button("Evolve settings", disabled=busy or config is None or bool(problem), key="evolve_start"):
    msg = session.start_job("evolve", evolve_job(config, src, int(ev_trials), int(ev_budget)), label="evolution")
    if msg:
        st.warning(msg)
    st.rerun()


def evolution_history(records: list) -> None:
    components.plot(figures.evolution_figure(records, metric), key="evolve_live")


components.job_progress("evolve", key="evolve", what="Evolution", live=evolution_history)
if not ev.running and ev.generation:
    if ev.records():
        components.plot(figures.evolution_figure(ev.records(), metric), key="evolve_history")
    best = ev.result
    if best is not None:
        searched = best.trials[0]["params"]
        values = {k: v for k, v in best.config.to_dict().items() if k in searched}
        st.markdown(
            f"Best validation {figures.metric_label(best.metric)}: **{best.value:.4g}** (trial {best.best_trial + 1} "
            f"of {len(best.trials)}; {best.counts()['PRUNED']} pruned)"
        )
        st.dataframe(
            [{"setting": k, "now": session.config_values().get(k), "best": v} for k, v in values.items()],
            hide_index=True,
        )
        st.button(
            "Apply the best settings",
            on_click=components.apply_values,
            args=(values,),
            key="evolve_apply",
            disabled=busy,
            help="Put the best trial's settings into the form above (then Start trains with them).",
        )

# ------------------------------------------------------------------------------ overlay
rs = session.runs()
st.subheader("Compare runs")
if not rs:
    st.caption("Finished runs are kept in this session; overlay a causal learner and its plain baseline here.")
else:
    c = st.columns([3, 1, 1])
    names = [r["name"] for r in rs]
    # By default the latest runs that share the newest run's metric (MSE and accuracy do not overlay).
    metric = rs[-1]["history"].get("metric_name")
    same = [r["name"] for r in rs if r["history"].get("metric_name") == metric]
    chosen = c[0].multiselect("runs", names, default=same[-4:], key=f"overlay_runs_{len(rs)}")
    key = c[1].selectbox(
        "curve",
        ["val_metric", "val_loss", "train_metric", "train_loss"],
        format_func=lambda k: k.replace("val_", "validation ").replace("train_", "train ").replace("metric", "metric"),
        key="overlay_key",
    )
    smooth = c[2].number_input("smoothing window", 1, 200, 1, key="overlay_smooth")
    picked = [r for r in rs if r["name"] in chosen]
    if picked:
        components.plot(figures.runs_overlay_figure(picked, key, int(smooth)), key="overlay_fig")
        st.dataframe(
            [
                {
                    "run": r["name"],
                    "algorithm": r["algorithm"],
                    "plain baseline": r["plain"],
                    "iterations": len(r["history"]["iteration"]),
                    f"last validation {figures.metric_label(r['history'].get('metric_name'))}": (
                        r["history"]["val_metric"][-1] if r["history"].get("val_metric") else None
                    ),
                    "note": r.get("note") or "",
                }
                for r in picked
            ],
            hide_index=True,
            width="stretch",
        )

workspace.stored_runs_panel(busy)

# ------------------------------------------------------------------------------ checkpoints
st.subheader("Checkpoints")
left, right = st.columns(2)
with left:
    st.markdown("**Save** the session's engine (safetensors weights + JSON config, in a zip)")
    default_ck = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{kind}-{eng.config.algorithm.name.lower()}")
    ck_name = st.text_input(
        "checkpoint name", value=default_ck, key=f"ck_name_{st.session_state.get('engine_version', 0)}"
    )
    if st.button("Save checkpoint", disabled=not eng.is_initialized or busy, key="ck_save"):
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", ck_name).strip(".-") or "checkpoint"
        try:
            path = eng.save_sync(session.session_dir() / f"{safe}.zip")
            st.session_state["ck_bytes"] = (f"{safe}.zip", checkpoint_zip_bytes(path))
            st.session_state["ck_bytes_engine"] = st.session_state.get("engine_version", 0)
        except (OSError, ValueError, RuntimeError) as exc:
            st.error(f"Could not save the checkpoint: {md_escape(exc)}")
    if st.session_state.get("ck_bytes_engine") != st.session_state.get("engine_version", 0):
        st.session_state.pop("ck_bytes", None)  # saved from an earlier model: not this one's checkpoint
    if st.session_state.get("ck_bytes"):
        fname, data = st.session_state["ck_bytes"]
        st.download_button(
            f"Download {fname} ({len(data) / 1024:.0f} KB)", data, file_name=fname, mime="application/zip", key="ck_dl"
        )
with right:
    st.markdown("**Load** a checkpoint zip (only safetensors-based checkpoints are read; nothing is unpickled)")
    up = st.file_uploader("checkpoint (.zip)", type=["zip"], key="ck_upload")
    if up is not None and st.button("Load checkpoint", disabled=busy, key="ck_load"):
        loaded = OneShotMetaLearningEngine(eng.config)
        try:
            loaded.load_bytes_sync(up.getvalue(), up.name)
        except (CheckpointError, ConfigError, ValueError) as exc:
            st.error(md_escape(exc))
        else:
            session.set_engine(loaded)
            if loaded.history is not None and loaded.history.iteration:
                session.add_run(f"checkpoint {up.name}", loaded.history.to_dict(), loaded.config)
            trained_on = (loaded.source_info or {}).get("name")
            note = ""
            if trained_on == "sinusoid" and kind != "sinusoid":
                session.set_source(session.builtin_source("sinusoid"))
                note = " The task source was switched to sinusoid to match it."
            elif engine_fit_problem(loaded, src):
                note = f" It was trained on '{md_escape(trained_on)}' tasks: choose matching tasks on the Tasks page."
            st.session_state["ck_msg"] = f"Loaded {md_escape(up.name)} ({loaded.config.algorithm.name}).{note}"
            st.rerun()
    if st.session_state.get("ck_msg"):
        st.success(st.session_state.pop("ck_msg"))
