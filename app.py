"""Causal one-shot meta-learning explorer: the Streamlit app's router.

Run with ``streamlit run app.py``. Each page is a file in ``pages/``; the sidebar shows this
browser session's engine (every session has its own, in ``st.session_state``).
"""

import streamlit as st

from ui import session, workspace

st.set_page_config(page_title="Causal one-shot meta-learning explorer", page_icon="🧠", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/tasks.py", title="Tasks", icon=":material/dataset:"),
    st.Page("pages/train.py", title="Meta-train", icon=":material/model_training:"),
    st.Page("pages/adapt.py", title="One-shot adapt", icon=":material/bolt:"),
    st.Page("pages/mechanisms.py", title="Mechanisms", icon=":material/hub:"),
    st.Page("pages/interventions.py", title="Interventions", icon=":material/tune:"),
    st.Page("pages/causal_direction.py", title="Causal direction", icon=":material/swap_horiz:"),
]

session.configure_torch()
page = st.navigation(PAGES)
workspace.open_workspace()  # ?ws=<id>: this session's workspace, restored from the run store on a reload
session.sidebar()
workspace.sidebar_note()
page.run()
workspace.save_engine()  # a model changed on this run (loaded, discovered) is stored for the next reload
# A finished script run is proof of life too: a run slowed by a loaded machine (a Start that
# begins training, then draws the page) heartbeats its jobs again before the first poll.
session.heartbeat_all()
