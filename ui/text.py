"""Text from users made safe to show as Streamlit markdown."""

from __future__ import annotations

import re
from typing import Any

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md_escape(text: Any) -> str:
    """Text from users (file, column, class and task names; messages that quote them) made
    inert for Streamlit's markdown: every markdown, HTML and LaTeX special character is escaped."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))
