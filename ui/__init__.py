"""UI helpers of the Streamlit app.

``figures``, ``worker``, ``images`` and ``logic`` are plain Python (no Streamlit imports) and
unit-tested on their own; ``session`` and ``components`` hold the Streamlit parts shared by
the pages.
"""
