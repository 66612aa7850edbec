"""UI helpers of the Streamlit app.

Plain Python (no Streamlit imports), unit-tested on their own: ``config_form`` (config field
specs, presets, building the config), ``fit`` (can the engine serve a source), ``sources``
(naming sources, CSV uploads), ``episodes``, ``tables``, ``adaptation``, ``jobs`` (worker
jobs and their progress), ``discovery`` and ``direction`` (results of the Mechanisms and
Causal direction pages), ``figures``, ``images``, ``text`` and ``worker``.
``session`` and ``components`` hold the Streamlit parts shared by the pages.
"""
