"""Causal priors: discovered mechanisms -> per-mechanism adaptation rates (docs/DESIGN.md section 3).

The learner's hook is ``set_mechanism_rates(r)``: mechanism k's inner-loop rates are
multiplied by r_k (every parameter block mechanism k owns: its gate, input gates, weights
and head columns; shared parameters such as the head bias keep their rate).

How the rates are found (``search_prior_rates``), by intervention on the optimiser:
for each mechanism k the discovery run measures do(rate_k := 0), i.e. the one-shot query
loss when mechanism k is held still during adaptation. A mechanism whose holding lowers
the loss is *invariant* across the source tasks (adapting it from one example only
overfits); one whose holding raises the loss is *task-specific*. The rates are then set by
coordinate descent over {held, damped, adapting} per mechanism on the source tasks'
one-shot loss, and a common scale of the adapting rates is tried. Effectiveness is then
measured on held-out tasks, never assumed: ``relative_gain(loss without, loss with)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .algorithms.base import CausalMetaLearner
from .mechanisms import relative_gain
from .tasks.base import Episode


def adapts_by_gradient(learner: CausalMetaLearner, episode: Episode, steps: int) -> bool:
    """Whether adaptation takes gradient steps (rates matter) for this learner and support."""
    if steps <= 0:
        return False
    if not learner.embedding_only:
        return True
    counts = torch.bincount(episode.support_y)
    return int(counts[counts > 0].min()) >= 2  # embedding learners step gates only then


def one_shot_losses(
    learner: CausalMetaLearner,
    episodes: Sequence[Episode],
    multipliers: Sequence[float] | torch.Tensor | None,
    steps: int,
) -> np.ndarray:
    """Query loss per episode after adapting with the given mechanism multipliers."""
    params = {n: p.detach() for n, p in learner.meta_params().items()}
    out = []
    rates = learner.scaled_rates(multipliers)
    with torch.no_grad():
        for ep in episodes:
            state = learner.adapt(ep.support_x, ep.support_y, steps, params=params, rates=rates)
            outputs = learner(state, ep.query_x)
            out.append(float(learner.query_loss(state, outputs, ep.query_y)))
    return np.asarray(out)


def search_prior_rates(
    evaluate: Callable[[np.ndarray], float],
    num_mechanisms: int,
    tolerance: float = 0.01,
    levels: Sequence[float] = (0.0, 0.25, 1.0),
    scales: Sequence[float] = (0.5, 2.0, 4.0),
    passes: int = 2,
    progress: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Per-mechanism rates by coordinate descent on the source tasks' one-shot loss.

    Starting from all rates 1, each mechanism in turn tries every rate in ``levels``
    (0 = held still, 0.25 = damped, 1 = adapts) and keeps the best when it lowers the loss
    by more than ``tolerance`` (relative); ``passes`` sweeps. Then a common scale in
    ``scales`` of the adapting mechanisms' rates is tried. Every mechanism may end up held:
    then only the shared parameters (the head bias) adapt, which is what the source tasks
    asked for. ``evaluate(rates) -> mean one-shot loss``. Returns the rates and the log of
    every setting tried with its loss."""
    rates = np.ones(num_mechanisms)
    best = evaluate(rates)
    log = [{"rates": rates.tolist(), "loss": best, "step": "all mechanisms adapt"}]
    for sweep in range(passes):
        changed = False
        for k in range(num_mechanisms):
            for level in levels:
                if rates[k] == level:
                    continue
                cand = rates.copy()
                cand[k] = level
                loss = evaluate(cand)
                log.append(
                    {"rates": cand.tolist(), "loss": loss, "step": f"pass {sweep + 1}: mechanism {k} -> {level:g}"}
                )
                if loss < best * (1 - tolerance):
                    rates, best, changed = cand, loss, True
                    if progress:
                        progress(f"mechanism {k} rate {level:g}: source one-shot loss {loss:.4g}")
        if not changed:
            break
    if rates.any():
        for s in scales:
            cand = rates * s
            loss = evaluate(cand)
            log.append({"rates": cand.tolist(), "loss": loss, "step": f"scale adapting rates by {s:g}"})
            if loss < best * (1 - tolerance):
                rates, best = cand, loss
    return rates, log


def measure_effectiveness(
    learner: CausalMetaLearner,
    episodes: Sequence[Episode],
    rates: Sequence[float],
    steps: int,
) -> dict[str, Any]:
    """Held-out one-shot loss without priors (all rates 1) vs with ``rates``, the relative
    gain, its 95% interval over tasks, and each mechanism's share (reverting its rate)."""
    rates = np.asarray(rates, dtype=float)
    without = one_shot_losses(learner, episodes, np.ones_like(rates), steps)
    with_p = one_shot_losses(learner, episodes, rates, steps)
    diff = without - with_p
    half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    per_mechanism: list[float | None] = []
    for k in range(len(rates)):
        if rates[k] == 1.0:
            per_mechanism.append(None)  # this mechanism's prior changes nothing
            continue
        reverted = rates.copy()
        reverted[k] = 1.0
        loss_rev = float(one_shot_losses(learner, episodes, reverted, steps).mean())
        per_mechanism.append(relative_gain(loss_rev, float(with_p.mean())))
    return {
        "held_out_tasks": len(episodes),
        "loss_without_priors": float(without.mean()),
        "loss_with_priors": float(with_p.mean()),
        "gain": float(diff.mean()),
        "gain_ci95": float(half),
        "effectiveness": relative_gain(float(without.mean()), float(with_p.mean())),
        "per_mechanism_effectiveness": per_mechanism,
    }


def rates_from_records(records: Sequence[dict[str, Any]], num_mechanisms: int) -> np.ndarray | None:
    """Rates stored on REPRESENTATION_TRANSFER records (``details["prior_rate"]``), 1 for
    mechanisms without one; None when no record carries a rate."""
    rates = np.ones(num_mechanisms)
    found = False
    for r in records:
        if r.get("mechanism_type") != "REPRESENTATION_TRANSFER":
            continue
        k = (r.get("details") or {}).get("mechanism_index")
        rate = (r.get("details") or {}).get("prior_rate")
        if isinstance(k, int) and 0 <= k < num_mechanisms and isinstance(rate, (int, float)):
            rates[k] = float(rate)
            found = True
    return rates if found else None
