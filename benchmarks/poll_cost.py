"""Server time per poll of a live training chart (what every session watching a run costs the server).

A page watching a training run reruns its chart fragment every 0.5 s. This replays a run's progress
records in polls of ``--per-poll`` new records and times, per poll, what the server does for the chart:

- rebuilt: the history from all records and a new plotly figure every poll (how the app drew it before);
- live: ``ui.live_chart.LiveTrainingChart`` (only the new records read, the one figure updated in place);

each followed by Streamlit's own marshalling of the figure (``st.plotly_chart``'s validation and JSON).

    python -m engine bench poll_cost --iterations 400,5000
"""

from __future__ import annotations

import argparse
import json
import time
from statistics import mean

import plotly.io as pio
import plotly.tools

from ui import figures
from ui.jobs import empty_history, extend_history
from ui.live_chart import LiveTrainingChart

from .common import RESULTS, machine_line, update_markdown_section, write_result


def progress_records(n: int) -> list[dict]:
    """A classification run's records as a training job reports them (validation every 20 iterations)."""
    return [
        {"run": "run", "iteration": i, "train_loss": 1.0 / (i + 1), "train_metric": 0.5, "metric_name": "accuracy"}
        | ({"val_loss": 0.9 / (i + 1), "val_metric": 0.6} if i % 20 == 0 else {})
        for i in range(n)
    ]


def _marshal(fig) -> None:
    pio.to_json(plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True), validate=False)


class _Replay:
    def __init__(self, records: list[dict]) -> None:
        self.all, self.upto = records, 0

    def records(self, start: int = 0) -> list[dict]:
        return self.all[start : self.upto]


def measure(iterations: int, per_poll: int) -> dict:
    replay, chart = _Replay(progress_records(iterations)), LiveTrainingChart(1, "run")
    rebuilt, live = [], []
    for upto in range(per_poll, iterations + per_poll, per_poll):
        replay.upto = min(upto, iterations)
        title = f"run: {replay.upto} iterations"
        t0 = time.perf_counter()
        _marshal(figures.training_figure(extend_history(empty_history(), replay.records(), "run"), title=title))
        t1 = time.perf_counter()
        _marshal(chart.draw(chart.read(replay), title))
        t2 = time.perf_counter()
        rebuilt.append(t1 - t0)
        live.append(t2 - t1)
    return {
        "iterations": iterations,
        "polls": len(live),
        "rebuilt_ms": 1000 * mean(rebuilt),
        "live_ms": 1000 * mean(live),
    }


def markdown(r: dict) -> str:
    rows = [
        f"| {m['iterations']} | {m['polls']} | {m['rebuilt_ms']:.1f} ms | {m['live_ms']:.1f} ms |" for m in r["runs"]
    ]
    return "\n".join(
        [
            "## Server time per poll of a live training chart",
            "",
            f"Mean server time per poll (every 0.5 s per watching session), chart only, {r['per_poll']} new records a poll:",
            "",
            "| iterations | polls | new figure every poll | live chart (new records, figure updated in place) |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Machine: {machine_line(r['machine'])}. Command: `{r['command']}`.",
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", default="400,5000", help="comma-separated run lengths")
    ap.add_argument("--per-poll", type=int, default=20, help="new records per poll (400 iterations in 10 s: 20)")
    ap.add_argument("--no-write", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    try:
        lengths = [int(v) for v in args.iterations.split(",")]
    except ValueError:
        raise SystemExit(f"--iterations: comma-separated whole numbers, got {args.iterations!r}") from None
    if args.per_poll < 1 or any(n < 1 for n in lengths):
        raise SystemExit("--iterations and --per-poll must be at least 1")
    result = {"per_poll": args.per_poll, "runs": [measure(n, args.per_poll) for n in lengths]}
    print(json.dumps(result["runs"]))
    if not args.no_write:
        write_result("poll_cost", result, 0)
        saved = json.loads((RESULTS / "poll_cost.json").read_text())
        update_markdown_section("poll_cost", markdown(saved))
    return result


if __name__ == "__main__":
    main()
