"""The live training chart of a session's job, cheap to refresh on every poll: each poll reads only the
progress records that arrived since the last one and moves the curves into the same figure in place
(``figures.update_training_figure``); a poll with nothing new changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go

from . import figures
from .jobs import empty_history, extend_history, merge_histories


@dataclass
class LiveTrainingChart:
    """The curves of one run of one job (``generation`` of the worker, ``run`` name)."""

    generation: int
    run: str | None
    base: dict[str, Any] | None = None  # the history a continued run continues
    seen: int = 0  # worker records read so far
    history: dict[str, Any] = field(default_factory=empty_history)
    figure: go.Figure | None = None
    drawn: tuple[int, str | None] | None = None  # (iterations, title) in the figure

    def matches(self, generation: int, run: str | None) -> bool:
        return self.generation == generation and self.run == run

    def read(self, worker: Any) -> dict[str, Any]:
        """The run's history so far, after reading the worker's new records."""
        new = worker.records(self.seen)
        self.seen += len(new)
        extend_history(self.history, new, self.run)
        return merge_histories(self.base, self.history) if self.base else self.history

    def draw(self, history: dict[str, Any], title: str | None) -> go.Figure:
        """The figure with ``history`` in it: built once, then updated in place when something changed."""
        stamp = (len(history["iteration"]), title)
        if self.figure is None or not figures.training_figure_fits(self.figure, history):
            self.figure = figures.training_figure(history, title=title)
        elif stamp != self.drawn:
            figures.update_training_figure(self.figure, history, title)
        self.drawn = stamp
        return self.figure
