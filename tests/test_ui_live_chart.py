"""ui.live_chart: a poll reads only the new progress records and updates the one figure in place, and what
it draws equals a figure built from the whole history."""

from __future__ import annotations

import json

import plotly.io as pio

from ui import figures
from ui.jobs import empty_history, extend_history, merge_histories
from ui.live_chart import LiveTrainingChart


class Records:
    """The worker's side: its progress records, and which ranges the chart asked for."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.asked: list[int] = []

    def add(self, run: str, start: int, n: int, metric: str = "accuracy") -> None:
        for i in range(start, start + n):
            val = {"val_loss": 1.0 / (i + 2), "val_metric": 0.5} if i % 3 == 0 else {}
            self.records.append(
                {"run": run, "iteration": i, "train_loss": 1.0 / (i + 1), "train_metric": 0.4, "metric_name": metric}
                | val
            )

    def records_from(self, start: int) -> list[dict]:
        self.asked.append(start)
        return self.records[start:]


class FakeWorker:
    def __init__(self, rec: Records) -> None:
        self.rec = rec

    def records(self, start: int = 0) -> list[dict]:
        return self.rec.records_from(start)


def spec(fig) -> dict:
    return json.loads(pio.to_json(fig))


def test_each_poll_reads_only_new_records_and_draws_what_a_new_figure_would():
    rec, chart = Records(), LiveTrainingChart(generation=1, run="a")
    worker = FakeWorker(rec)
    rec.add("a", 0, 5)
    first = chart.draw(chart.read(worker), "a: 5")
    rec.add("a", 5, 7)
    rec.add("b", 0, 2)  # another run's records are skipped
    hist = chart.read(worker)
    assert rec.asked == [0, 5]
    fig = chart.draw(hist, "a: 12")
    assert fig is first  # updated in place, not rebuilt
    whole = extend_history(empty_history(), rec.records, "a")
    assert hist == whole and len(hist["iteration"]) == 12
    assert spec(fig) == spec(figures.training_figure(whole, title="a: 12"))


def test_a_poll_with_nothing_new_changes_nothing():
    rec, chart = Records(), LiveTrainingChart(generation=1, run="a")
    rec.add("a", 0, 4)
    before = spec(chart.draw(chart.read(FakeWorker(rec)), "t"))
    drawn = chart.drawn
    fig = chart.draw(chart.read(FakeWorker(rec)), "t")
    assert rec.asked == [0, 4] and chart.drawn == drawn and spec(fig) == before


def test_a_continued_run_draws_after_the_history_it_continues_and_a_new_kind_gets_a_new_figure():
    rec = Records()
    rec.add("old", 0, 6)
    base = extend_history(empty_history(), rec.records, "old")
    rec.records.clear()
    rec.add("a", 6, 3)
    chart = LiveTrainingChart(generation=2, run="a", base=base)
    hist = chart.read(FakeWorker(rec))
    assert hist["iteration"] == list(range(9)) and hist == merge_histories(base, chart.history)
    two_panels = chart.draw(hist, "t")
    assert len(two_panels.data) == 6
    regression = extend_history(
        empty_history(), [{"run": "r", "iteration": 0, "train_loss": 1.0, "metric_name": "mse"}]
    )
    one_panel = chart.draw(regression, "t")  # classification's two panels cannot hold it: built anew
    assert one_panel is not two_panels and len(one_panel.data) == 3
    assert chart.matches(2, "a") and not chart.matches(3, "a") and not chart.matches(2, "b")
