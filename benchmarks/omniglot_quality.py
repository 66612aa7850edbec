"""Omniglot minimal-background one-shot quality, with error against training time.

Train on one 5-alphabet set (default small1, all its characters; 10% held out for the
validation curve), evaluate 20-way and 5-way within-alphabet one-shot classification on the
alphabets of the other set that the training set lacks (small2: Japanese_(katakana),
Sanskrit, Tagalog; mirror: Balinese, Early_Aramaic, Korean). Evaluations happen at the
given training-time marks (evaluation time is not counted as training time).

Reference (Lake et al. 2019, minimal setting, 20-way within-alphabet): Prototypical
Networks 30.1% error, BPL 4.2%, people 4.5%.

    python -m engine bench omniglot_quality --minutes 15,60 --episodes 400
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel

from engine import create_one_shot_meta_learning_engine
from engine.algorithms.image_views import image_views
from engine.config import VIEW_KINDS
from engine.tasks import OMNIGLOT_DIR, ImageTaskSource

from .common import RESULTS, ROOT, machine_line, mean_ci95, pick_device, update_markdown_section, write_result

RUNS_MD = ROOT / "docs" / "omniglot_runs.md"  # every saved run; BENCHMARKS.md keeps the headline numbers
SETS = {
    "small1": ("images_background_small1.zip", ["Japanese_(katakana)", "Sanskrit", "Tagalog"], "small2"),
    "small2": ("images_background_small2.zip", ["Balinese", "Early_Aramaic", "Korean"], "small1"),
}


def ensemble_accuracy(learners: list, episode) -> float:
    """Query accuracy of the members' mean class probabilities (one member: its own accuracy)."""
    probs = 0
    for learner in learners:
        state, outputs = learner.episode_outputs(episode)
        probs = probs + outputs.softmax(-1)
    return float((learners[0].predict_labels(state, probs) == episode.query_y).float().mean())


def unseen_alphabets_source(test_zip: str, groups: list[str], ways: int, image_size: int) -> ImageTaskSource:
    """The unseen alphabets' within-alphabet episodes (all their characters are test characters)."""
    return ImageTaskSource(
        OMNIGLOT_DIR / test_zip,
        n_way=ways,
        within_group=True,
        split_fractions=(0, 0, 1),
        include_groups=groups,
        image_size=image_size,
    )


def evaluate_within_alphabet(engines: list, source: ImageTaskSource, ways: int, episodes: int, seed: int) -> dict:
    learners = [eng.learner for eng in engines]
    accs = [
        ensemble_accuracy(learners, ep.to(engines[0].device))
        for ep in source.episodes("test", episodes, 1, 1 if ways == 20 else 4, seed=seed)
    ]
    acc, ci = mean_ci95(accs)
    return {"accuracy": acc, "error": 1 - acc, "ci95": ci, "episodes": episodes}


def evaluate_point(
    engines: list,
    test_zip: str,
    groups: list[str],
    args: argparse.Namespace,
    ways_list: tuple[int, ...] = (20, 5),
    transductive: bool = True,
) -> dict:
    """20- and 5-way errors, plainly and (with --test-time-shifts) with shifted views; with
    --transductive-steps also both 20-way errors with prototypes refined over the queries."""
    size = engines[0].source_info["image_size"]
    sources = {ways: unseen_alphabets_source(test_zip, groups, ways, size) for ways in ways_list}  # once per point
    variants = [(0, 0, "")] + ([(args.test_time_shifts, 0, "_views")] if args.test_time_shifts else [])
    if transductive and args.transductive_steps and 20 in ways_list:
        variants += [(shifts, args.transductive_steps, f"{suffix}_trans") for shifts, _, suffix in variants]
    point = {}
    for shifts, steps, suffix in variants:
        for eng in engines:
            eng.learner.config = eng.config.replace(
                test_time_shifts=shifts, test_time_views=args.test_time_views, transductive_steps=steps
            )
        for ways in (20,) if steps else ways_list:
            point[f"{ways}way{suffix}"] = evaluate_within_alphabet(
                engines, sources[ways], ways, args.episodes, args.seed + ways
            )
    for eng in engines:
        eng.learner.config = eng.config
    return point


@contextmanager
def averaged_weights(model: torch.nn.Module, average: AveragedModel | None):
    """Within the block, ``model`` holds the running average's weights (the model has no buffers:
    GroupNorm keeps no statistics); afterwards its own weights, so training goes on unchanged."""
    if average is None:
        yield
        return
    own = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p, a in zip(model.parameters(), average.module.parameters(), strict=True):
            p.copy_(a)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, o in zip(model.parameters(), own, strict=True):
                p.copy_(o)


def training_setup(args: argparse.Namespace) -> tuple[ImageTaskSource, Any]:
    """The training source and the engine, untrained, of a run with these options."""
    train = ImageTaskSource(
        OMNIGLOT_DIR / SETS[args.train][0],
        n_way=args.train_way,
        rotations=args.rotations,
        mirrors=args.mirrors,
        within_group=args.train_within,
        split_fractions=(0.9, 0.1, 0.0),
        seed=args.seed,
        augment_shift=args.augment_shift,
        augment_affine=args.augment_affine,
        augment_elastic=args.augment_elastic,
        image_size=args.image_size,
    )
    eng = create_one_shot_meta_learning_engine(
        algorithm=args.algorithm,
        n_way=args.train_way,
        support_shots=1,
        query_shots=args.train_queries,
        meta_batch_size=args.meta_batch,
        outer_lr=args.outer_lr,
        hidden_dim=args.hidden_dim,
        conv_channels=args.channels,
        num_mechanisms=4,
        causal_weight=args.causal_weight,
        enable_causal_priors=False,
        num_inner_steps=1,
        adaptation_steps=args.adaptation_steps,
        inner_lr=args.inner_lr,
        first_order=True,
        # The engine's validation curve is not used here (the benchmark scores its own test
        # episodes off the clock); 20 episodes after every chunk took a third of the training time.
        eval_interval=100_000,
        val_episodes=1,
        seed=args.seed,
        device=args.device,
    )
    eng.initialize_for_source(train)
    return train, eng


def run(args: argparse.Namespace) -> dict:
    _, test_groups, other = SETS[args.train]
    test_zip = SETS[other][0]
    train, eng = training_setup(args)
    # Process CPU time (one thread) makes runs that share the machine comparable; wall
    # time is the default for an idle machine.
    clock = time.process_time if args.cpu_time else time.perf_counter
    marks = sorted(float(m) * 60 for m in args.minutes.split(","))
    replay = getattr(args, "replay_plan", None)  # iterations at each of the marks, decay iteration
    curve = []
    trained = 0.0
    # Stochastic weight averaging (Izmailov et al. 2018): from --average-from on, a uniform
    # running mean of the weights after every chunk; it is what gets evaluated and saved.
    average = None

    def steps_done() -> int:
        return len(eng.history.iteration) if eng.history else 0

    for i, mark in enumerate(marks):
        target = replay["iterations"][i] if replay else None
        while (steps_done() < target) if replay else (trained < mark):
            done = steps_done()
            eng.config = eng.config.replace(
                num_meta_iterations=min(args.chunk, target - done) if replay else args.chunk
            )
            eng.learner.config = eng.config
            t0 = clock()
            eng.meta_train_sync(train)
            trained += clock() - t0
            decay_now = steps_done() >= replay["decay_iteration"] if replay else trained >= args.decay_at * 60
            if args.cosine:  # cosine annealing to 0 at the last mark (Loshchilov & Hutter 2017)
                for g in eng.optimizer.param_groups:
                    g["lr"] = args.outer_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, trained / marks[-1])))
            elif args.decay_at and decay_now and eng.optimizer.param_groups[0]["lr"] == args.outer_lr:
                for g in eng.optimizer.param_groups:
                    g["lr"] = args.outer_lr / 10
            if args.average_from and trained >= args.average_from * 60:
                if average is None:
                    average = AveragedModel(eng.model, use_buffers=False)
                average.update_parameters(eng.model)
        point = {"train_minutes": trained / 60, "iterations": steps_done()}
        if average is not None:  # the last weights too, to measure what averaging changed
            point["averaged_chunks"] = int(average.n_averaged)
            last = evaluate_point([eng], test_zip, test_groups, args, ways_list=(20,), transductive=False)
            point.update({f"{k}_last": v for k, v in last.items()})
        with averaged_weights(eng.model, average):
            if args.save_checkpoints:
                eng.save_sync(checkpoint_path(args.train, args.tag, mark / 60))
            point.update(evaluate_point([eng], test_zip, test_groups, args))
        curve.append(point)
        print(json.dumps(point), flush=True)
    return {
        "train_set": args.train,
        "test_alphabets": test_groups,
        "settings": {k: v for k, v in vars(args).items() if k not in ("no_write", "replay_plan")},
        "curve": curve,
    }


def replay_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The options of the saved run ``args.replay``, set to train to the same meta-iteration at
    each of its marks instead of the same time, so a machine of any speed takes the same steps
    (same seed, same episodes, same learning-rate drop). On a CPU with the same vector kernels
    (the results' ``cpu_kernels``) the numbers repeat exactly; on another, float rounding differs
    and over thousands of steps the run drifts like a new seed would.

    Only schedules fixed by iterations can be replayed: a cosine rate or weight averaging
    followed the clock between marks, and a rate drop must fall on a mark (where the saved
    curve says which iteration it was)."""
    path = RESULTS / f"omniglot_quality_{args.train}_{args.replay}.json"
    if not path.exists():
        raise SystemExit(f"--replay {args.replay}: no saved run {path.name}")
    saved = json.loads(path.read_text())
    s = saved["settings"]
    if s.get("ensemble_of") or s.get("replay"):
        raise SystemExit(f"--replay {args.replay}: not a training run (an ensemble or a replay)")
    if s.get("cosine") or s.get("average_from"):
        raise SystemExit(f"--replay {args.replay}: its cosine rate or weight averaging followed the clock")
    minutes = [float(m) for m in s["minutes"].split(",")]
    if len(minutes) != len(saved["curve"]):
        raise SystemExit(f"--replay {args.replay}: the saved curve does not match its marks")
    iterations = dict(zip(sorted(minutes), (p["iterations"] for p in saved["curve"]), strict=True))
    if s.get("decay_at") and s["decay_at"] not in iterations:
        raise SystemExit(f"--replay {args.replay}: its rate drop at {s['decay_at']:g} min fell between marks")
    chosen = sorted(float(m) for m in args.marks.split(",")) if args.marks else sorted(minutes)
    if unknown := set(chosen) - set(minutes):
        raise SystemExit(f"--marks: the run has no mark {', '.join(f'{m:g}' for m in sorted(unknown))} min")
    replayed = {
        **vars(parser.parse_args([])),  # today's defaults for options the saved run predates
        **s,
        "minutes": ",".join(f"{m:g}" for m in chosen),
        "replay": args.replay,
        "tag": args.tag or f"{args.replay}r",
        "threads": args.threads,
        "no_write": args.no_write,
    }
    # by position, like run's sorted marks (no float round trip through a dict key)
    plan = {
        "iterations": [iterations[m] for m in chosen],
        "decay_iteration": iterations.get(s.get("decay_at"), math.inf),
    }
    return argparse.Namespace(**replayed, replay_plan=plan)


def checkpoint_path(train: str, tag: str, minutes: float) -> Path:
    """Where --save-checkpoints keeps a run's model at one training-time mark (git-ignored)."""
    return RESULTS / "checkpoints" / (f"{train}_{tag}" if tag else train) / f"{minutes:g}min"


def run_ensemble(args: argparse.Namespace) -> dict:
    """Score, at each training-time mark, the mean prediction of runs saved with --save-checkpoints.

    The members were trained side by side (one core each), so an ensemble of two costs the same
    wall time on this 2-core machine as one member's run.
    """
    tags = args.ensemble.split(",")
    files = [RESULTS / f"omniglot_quality_{args.train}_{t}.json" for t in tags]
    if missing := [f.name for f in files if not f.exists()]:
        raise SystemExit(f"--ensemble {args.ensemble}: no saved run {', '.join(missing)} (train with --tag first)")
    members = [json.loads(f.read_text()) for f in files]
    marks = [m["settings"]["minutes"] for m in members]
    if len(set(marks)) != 1 or any(m["settings"]["train"] != args.train for m in members):
        raise SystemExit(f"--ensemble {args.ensemble}: the runs must share --train and --minutes")
    if set(args.ways.split(",")) - {"20", "5"}:
        raise SystemExit(f"--ways: 20, 5 or both; got {args.ways}")
    ways = tuple(int(w) for w in args.ways.split(","))
    chosen = {float(m) for m in args.marks.split(",")} if args.marks else None
    if chosen and (unknown := chosen - {float(m) for m in marks[0].split(",")}):
        raise SystemExit(f"--marks: the runs have no mark {', '.join(f'{m:g}' for m in sorted(unknown))} min")
    _, test_groups, other = SETS[args.train]
    test_zip = SETS[other][0]
    curve = []
    for i, mark in enumerate(sorted(float(m) for m in marks[0].split(","))):
        if chosen is not None and mark not in chosen:
            continue
        engines = []
        for tag in tags:
            path = checkpoint_path(args.train, tag, mark)
            if not path.exists():
                raise SystemExit(
                    f"--ensemble: run {tag} kept no model at {mark:g} min (train it with --save-checkpoints)"
                )
            eng = create_one_shot_meta_learning_engine(algorithm=args.algorithm, device=args.device)
            eng.load_sync(path)
            engines.append(eng)
        points = [m["curve"][i] for m in members]
        point = {
            "train_minutes": max(p["train_minutes"] for p in points),
            "iterations": sum(p["iterations"] for p in points),
            **evaluate_point(engines, test_zip, test_groups, args, ways_list=ways),
        }
        curve.append(point)
        print(json.dumps(point), flush=True)
    settings = {
        **members[0]["settings"],
        "ensemble_of": tags,
        "transductive_steps": args.transductive_steps,
        "test_time_shifts": args.test_time_shifts,
        "test_time_views": args.test_time_views,
        "seed": [m["settings"]["seed"] for m in members],
        "member_settings": [m["settings"] for m in members],
    }
    return {"train_set": args.train, "test_alphabets": test_groups, "settings": settings, "curve": curve}


def training_line(s: dict) -> str:
    """The training choices of one run, in words (older results lack the newer keys)."""
    members = s.get("member_settings", [])
    # runs trained differently, not just with other seeds (or replaying other runs)
    if len({training_line({**m, "seed": 0, "replay": ""}) for m in members}) > 1:
        return f"ensemble of {len(members)} different runs: " + " + ".join(f"({training_line(m)})" for m in members)
    parts = [f"{s['train_way']}-way"]
    if s.get("train_within"):
        parts.append("within-alphabet")
    if s.get("rotations"):
        parts.append("rotations")
    if s.get("mirrors"):
        parts.append("mirrors")
    if s.get("augment_affine"):
        parts.append(f"affine x{s['augment_affine']:g}")
    if s.get("augment_elastic"):
        parts.append(f"elastic x{s['augment_elastic']:g}")
    if s.get("augment_shift"):
        parts.append(f"shift ±{s['augment_shift']}px")
    if s.get("image_size", 28) != 28:
        parts.append(f"{s['image_size']}px images")
    if s.get("hidden_dim", 64) != 64:
        parts.append(f"{s['hidden_dim']}-d embedding")
    if s.get("cosine"):
        parts.append("lr cosine to 0 at the last mark")
    elif s.get("decay_at"):
        parts.append(f"lr/10 at {s['decay_at']:g} min")
    if s.get("average_from"):
        parts.append(f"weights averaged from {s['average_from']:g} min")
    parts.append("CPU time" if s.get("cpu_time") else "wall time")
    if s.get("test_time_views", "plus") != "plus":  # which copies the shifted-views columns average
        views = len(image_views(torch.zeros(1, 1, 4, 4), s["test_time_shifts"], s["test_time_views"]))
        parts.append(f"test views {s['test_time_views']} ±{s['test_time_shifts']}px ({views})")
    if replays := [m["replay"] for m in members if m.get("replay")]:
        parts.append(f"replays of {', '.join(replays)} by iterations")
    elif s.get("replay"):
        parts.append(f"replay of {s['replay']} by iterations")
    if s.get("ensemble_of"):
        parts.append(f"ensemble of {len(s['ensemble_of'])} such runs (seeds {', '.join(map(str, s['seed']))})")
    elif s.get("seed"):
        parts.append(f"seed {s['seed']}")
    if s.get("device", "cpu") != "cpu":
        parts.append(f"on the GPU ({s['device']})")
    return ", ".join(parts)


def _error(point: dict, key: str) -> str:
    if key not in point:
        return "–"
    return f"{point[key]['error']:.1%} ± {point[key]['ci95']:.1%}"


def _by_mark(curve: list[dict], key: str) -> str:
    """One cell for a whole curve: the error at each mark, the interval of the last
    ("25.1 / 22.6 / 19.9% ± 0.9%"), so a run is one row however many marks it has."""
    if not curve or any(key not in p for p in curve):
        return "–"
    return " / ".join([*(f"{100 * p[key]['error']:.1f}" for p in curve[:-1]), _error(curve[-1], key)])


def _marks(curve: list[dict]) -> str:
    return " / ".join(f"{p['train_minutes']:.1f}" for p in curve)


# The curves a run can have: key in each curve point, line style, what the line shows.
CURVE_KINDS = (
    ("20way", "-o", "each query alone"),
    ("20way_views", "--s", "each query alone, test-time views"),
    ("20way_views_trans", ":^", "test-time views, transductive"),
)


def drawable_curves(results: dict[str, dict]) -> list[tuple[str, str, dict]]:
    """(result name, curve key, result) for every curve worth a line: runs with two or more marks,
    each key that all marks have; a rescored run's plain curves are its run's, so only its
    transductive one counts."""
    out = []
    for name, res in results.items():
        if len(res["curve"]) < 2:
            continue
        for key, _, _ in CURVE_KINDS:
            if is_rescoring(res) and key != "20way_views_trans":
                continue
            if all(key in p for p in res["curve"]):
                out.append((name, key, res))
    return out


def is_replay(settings: dict) -> bool:
    """A run made by --replay, or an ensemble of such runs."""
    return bool(settings.get("replay")) or any(m.get("replay") for m in settings.get("member_settings", []))


def highlighted_curves(results: dict[str, dict]) -> list[tuple[str, str]]:
    """The (result name, curve key) pairs the plot draws in colour: for each curve kind, the
    lowest final error among ensembles and among single models (the rest are drawn grey).
    Replays are checks of a run already drawn, timed on another machine, so they stay grey."""
    best: dict[tuple[str, bool], tuple[float, str]] = {}
    for name, key, res in drawable_curves(results):
        if is_replay(res["settings"]):
            continue
        group = (key, len(res["settings"].get("ensemble_of", [])) > 1)
        final = res["curve"][-1][key]["error"]
        if group not in best or final < best[group][0]:
            best[group] = (final, name)
    return sorted((name, key) for (key, _), (_, name) in best.items())


def plot(results: dict[str, dict], path) -> None:
    """20-way error against training time: the best run of each kind (:func:`highlighted_curves`)
    in colour with its interval, every other run's curves thin and grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5))
    styles = {key: (fmt, what) for key, fmt, what in CURVE_KINDS}
    chosen = highlighted_curves(results)
    colors = iter(plt.get_cmap("tab10").colors)
    grey_label = "other runs and settings (tables above)"
    for name, key, res in drawable_curves(results):
        xs = [p["train_minutes"] for p in res["curve"]]
        ys = [100 * p[key]["error"] for p in res["curve"]]
        fmt, what = styles[key]
        if (name, key) not in chosen:
            ax.plot(xs, ys, fmt[:-1], color="0.6", alpha=0.5, linewidth=0.8, label=grey_label)
            grey_label = "_nolegend_"
            continue
        run_name = name.removeprefix("omniglot_quality_")
        label = textwrap.fill(f"{run_name} ({what}): {training_line(res['settings'])}", 110, subsequent_indent="    ")
        cis = [100 * p[key]["ci95"] for p in res["curve"]]
        ax.errorbar(xs, ys, cis, fmt=fmt, capsize=3, color=next(colors), label=label, zorder=3)
    ax.axhline(30.1, color="grey", linestyle=":", label="published Prototypical Networks (30.1%)")
    ax.axhline(15.0, color="black", linestyle="-.", label="goal (15%)")
    ax.set_xlabel("training minutes (one core; CPU time for CPU-time runs)")
    ax.set_ylabel("20-way within-alphabet error, %")
    ax.set_title("Omniglot minimal: one-shot error on unseen alphabets against training time")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    # The legend below the figure, outside the axes' layout: a long legend never squeezes the plot
    # (bbox_inches="tight" grows the saved image to hold it).
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0))
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def _side_table(intro: str, header: str, rows: list[str]) -> list[str]:
    """A small table after the main one: its introduction, header and rows (nothing without rows)."""
    if not rows:
        return []
    return ["", intro, "", header, "|" + "---|" * header.count(" | ") + "---|", *rows]


def averaging_table(results: dict[str, dict]) -> list[str]:
    """Runs with --average-from: the averaged weights beside the same run's last weights."""
    rows = [
        f"| {name.removeprefix('omniglot_quality_')} | {p['train_minutes']:.1f} min | {p['averaged_chunks']} "
        f"| {_error(p, '20way_last')} | {_error(p, '20way')} | {_error(p, '20way_views_last')} "
        f"| {_error(p, '20way_views')} |"
        for name, res in results.items()
        for p in res["curve"]
        if "20way_last" in p
    ]
    return _side_table(
        "Weight averaging (`--average-from`), each run's averaged weights beside its own last weights, 20-way:",
        "| run | training time | snapshots averaged | last weights | averaged | last, shifted views "
        "| averaged, shifted views |",
        rows,
    )


def transductive_table(results: dict[str, dict]) -> list[str]:
    """Runs scored with --transductive-steps, one row each: 20-way errors with and without
    refining the prototypes over each episode's queries."""
    rows = [
        f"| {name.removeprefix('omniglot_quality_')} | {', '.join(res['settings'].get('ensemble_of', [])) or 'itself'} "
        f"| {_marks(res['curve'])} | {_by_mark(res['curve'], '20way')} | {_by_mark(res['curve'], '20way_trans')} "
        f"| {_by_mark(res['curve'], '20way_views')} | {_by_mark(res['curve'], '20way_views_trans')} |"
        for name, res in results.items()
        if res["curve"] and all("20way_trans" in p for p in res["curve"])
    ]
    return _side_table(
        "Transductive prototypes (`--transductive-steps`, the engine's `transductive_steps`): before "
        "predicting an episode's 20 queries together, the prototypes take soft k-means steps over them. "
        "Each query's label then depends on the other queries, a different protocol from the table above "
        "(and from the published 30.1%, which classifies each query alone); 20-way error at each mark:",
        "| result | checkpoints of | minutes | 20-way | transductive | shifted views | shifted views, transductive |",
        rows,
    )


def is_rescoring(res: dict) -> bool:
    """A one-member --ensemble: a saved run's checkpoints scored again (its curve is already shown)."""
    return len(res["settings"].get("ensemble_of", [])) == 1


def markdown(results: dict[str, dict]) -> str:
    lines = [
        "## Omniglot, minimal background (one 5-alphabet set), within-alphabet one-shot",
        "",
        "Trained on one minimal set only; tested on the other set's alphabets that training never saw. "
        "Error = 1 - accuracy over 400 episodes, at each training-time mark, with the 95% interval of the "
        "last mark. Reference (Lake et al. 2019, 20-way): Prototypical Networks 30.1%, BPL 4.2%, people 4.5%.",
        "",
        "| result | trained on | training | minutes | iterations | 20-way error | 5-way error "
        "| 20-way, shifted views | 5-way, shifted views |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        if is_rescoring(res):
            continue
        curve = res["curve"]
        lines.append(
            f"| {name.removeprefix('omniglot_quality_')} | {res['train_set']} | {training_line(res['settings'])} "
            f"| {_marks(curve)} | {curve[-1]['iterations'] if curve else '–'} | {_by_mark(curve, '20way')} "
            f"| {_by_mark(curve, '5way')} | {_by_mark(curve, '20way_views')} | {_by_mark(curve, '5way_views')} |"
        )
    lines += averaging_table(results)
    lines += transductive_table(results)
    lines += [
        "",
        "![Omniglot error against training time](../benchmarks/results/omniglot_quality.png)",
        "",
        "In colour, for each kind of curve (each query alone; with test-time views; transductive), the"
        " run with the lowest error at its last mark among ensembles and among single models; every"
        " other run in grey (all are in the tables above). Replays (`--replay`) stay grey, at their own"
        " CPU minutes: they repeat the steps of a run already drawn, on another machine.",
    ]
    lines += ["", "Runs (machine, then command):", ""]
    lines += [f"- {machine_line(r['machine'])}: `{r['command']}`" for r in results.values()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The script's options (also used to check that recorded commands still parse)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", choices=list(SETS), default="small1")
    p.add_argument("--algorithm", default="PROTOTYPICAL_CAUSAL")
    p.add_argument("--minutes", default="15,60", help="training-time marks at which to evaluate")
    p.add_argument("--episodes", type=int, default=400)
    p.add_argument("--train-way", type=int, default=20)
    p.add_argument("--train-queries", type=int, default=5)
    p.add_argument("--meta-batch", type=int, default=1)
    p.add_argument("--outer-lr", type=float, default=0.001)
    p.add_argument("--inner-lr", type=float, default=0.1)
    p.add_argument("--adaptation-steps", type=int, default=0)
    p.add_argument("--hidden-dim", type=int, default=64)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--causal-weight", type=float, default=0.0)
    p.add_argument("--rotations", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--mirrors", action="store_true", help="mirror images (and their rotations) as more classes")
    p.add_argument("--augment-shift", type=int, default=0, help="random training-image shifts, pixels")
    p.add_argument("--augment-affine", type=float, default=0.0, help="random rotation/shear/scale strength (0-2)")
    p.add_argument("--augment-elastic", type=float, default=0.0, help="random elastic warp strength (0-2)")
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument(
        "--test-time-shifts", type=int, default=0, help="also evaluate with embeddings averaged over views shifted N px"
    )
    p.add_argument(
        "--test-time-views",
        choices=VIEW_KINDS,
        default="plus",
        help="which copies --test-time-shifts averages (the engine's test_time_views)",
    )
    p.add_argument(
        "--transductive-steps",
        type=int,
        default=0,
        help="also score 20-way with prototypes refined by this many soft k-means steps over each episode's queries",
    )
    p.add_argument("--train-within", action="store_true", help="training episodes within one alphabet")
    p.add_argument("--cpu-time", action="store_true", help="marks in process CPU time (use with --threads 1)")
    p.add_argument("--decay-at", type=float, default=0.0, help="minutes after which outer lr drops 10x (0 = never)")
    p.add_argument(
        "--cosine", action="store_true", help="outer lr follows a cosine from --outer-lr to 0 at the last mark"
    )
    p.add_argument(
        "--average-from",
        type=float,
        default=0.0,
        help="minutes after which a running mean of the weights (one per chunk) is evaluated and saved (0 = never)",
    )
    p.add_argument("--chunk", type=int, default=25, help="iterations between time checks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--tag", default="", help="suffix of the result file (keeps variants apart)")
    p.add_argument("--save-checkpoints", action="store_true", help="keep the model at each mark (for --ensemble)")
    p.add_argument("--no-write", action="store_true")
    p.add_argument(
        "--ensemble",
        default="",
        help="no training: score the mean prediction of these saved runs' checkpoints (their tags, comma-separated)",
    )
    p.add_argument(
        "--replay",
        default="",
        help="train again like this saved run (its tag), to the same meta-iteration at each mark, not the same "
        "time: the same steps on a machine of any speed, the same numbers on the same CPU kind (its options "
        "replace those given here but --marks, "
        "--tag, --threads; result tagged TAGr unless --tag)",
    )
    p.add_argument("--marks", default="", help="with --ensemble or --replay: only these of the runs' marks (minutes)")
    p.add_argument("--ways", default="20,5", help="with --ensemble: the ways to score (20,5 or 20)")
    p.add_argument("--redraw", action="store_true", help="only rebuild the table and plot from saved results")
    return p


def main(argv: list[str] | None = None) -> dict:
    p = build_parser()
    args = p.parse_args(argv)
    if args.redraw:
        return redraw()
    if args.cosine and args.decay_at:
        p.error("--cosine and --decay-at are two learning-rate schedules: choose one")
    if args.replay and args.ensemble:
        p.error("--replay trains, --ensemble scores saved runs: choose one")
    if args.replay:
        args = replay_args(args, p)
    torch.set_num_threads(args.threads)
    pick_device(args.device)
    result = run_ensemble(args) if args.ensemble else run(args)
    if not args.no_write:
        name = f"omniglot_quality_{args.train}" + (f"_{args.tag}" if args.tag else "")
        write_result(name, result, args.seed)
        redraw()
    return result


def redraw() -> dict[str, dict]:
    """Table and plot from every saved omniglot_quality result."""
    saved = {f.stem: json.loads(f.read_text()) for f in sorted(RESULTS.glob("omniglot_quality_*.json"))}
    plot(saved, RESULTS / "omniglot_quality.png")
    update_markdown_section("omniglot_quality", markdown(saved), RUNS_MD)
    return saved


if __name__ == "__main__":
    main()
