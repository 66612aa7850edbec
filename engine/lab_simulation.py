"""Simulated interventional lab data with a known graph, made to look like real measurements.

Log-scale, heavy-tailed levels; saturating nonlinear mechanisms; one observational regime
and several soft interventions (an inhibitor damps a variable's effect on its children and
may leave its own level unchanged or raised; an activator raises it), some with off-target
effects nobody listed; multiplicative measurement noise. Used by the graph-learning
benchmark and tests (docs/DESIGN.md section 3, "Graphs from data").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class LabData:
    """One simulated data set: the table (a ``regime`` column), the truth and the targets."""

    frame: pd.DataFrame
    names: list[str]
    adjacency: np.ndarray  # adjacency[u, v] = 1 for u -> v
    nominal_targets: dict[str, list[str]]  # what an experimenter would write down
    true_targets: dict[str, list[str]] = field(default_factory=dict)  # including off-target effects

    @property
    def truth_edges(self) -> list[tuple[str, str]]:
        return [(self.names[u], self.names[v]) for u, v in zip(*np.nonzero(self.adjacency), strict=True)]


def _random_dag(rng: np.random.Generator, d: int, mean_parents: float) -> np.ndarray:
    order = rng.permutation(d)
    p = min(1.0, 2 * mean_parents / max(d - 1, 1))
    adj = np.zeros((d, d), dtype=int)
    for a in range(d):
        for b in range(a + 1, d):
            if rng.random() < p:
                adj[order[a], order[b]] = 1
    return adj


def simulate_lab_data(
    seed: int = 0,
    num_variables: int | None = None,
    num_interventions: int | None = None,
    rows: tuple[int, int] = (700, 900),
    mean_parents: float = 1.5,
    off_target_rate: float = 0.3,
) -> LabData:
    """A random graph over 10-12 variables (unless given) and 6-8 soft interventions."""
    rng = np.random.default_rng(seed)
    d = int(num_variables or rng.integers(10, 13))
    k = int(num_interventions or rng.integers(6, 9))
    adj = _random_dag(rng, d, mean_parents)
    order = _topological_order(adj)
    weight = adj * rng.uniform(0.8, 1.6, (d, d)) * rng.choice([-1.0, 1.0], (d, d))
    centre = rng.normal(0, 0.5, (d, d))
    slope = rng.uniform(1.0, 2.5, (d, d))
    log_mean, log_sd = rng.uniform(2, 6, d), rng.uniform(0.5, 1.0, d)
    names = [f"x{i + 1}" for i in range(d)]
    regimes = [("observational", {}, {}, set(), set())]
    for r in range(k):
        u = int(rng.integers(d))
        scale, shift = np.ones(d), np.zeros(d)
        if rng.random() < 0.5:  # inhibitor: damps u's effect on its children
            scale[u] = rng.uniform(0.05, 0.4)
            shift[u] = rng.choice([0.0, rng.uniform(0.3, 1.2)])  # own level unchanged or raised
        else:  # activator
            shift[u] = rng.uniform(1.0, 2.0)
        hit = {u}
        if rng.random() < off_target_rate:
            w = int(rng.integers(d))
            shift[w] += rng.choice([-1.0, 1.0]) * rng.uniform(0.7, 1.5)
            hit.add(w)
        regimes.append((f"regime{r + 1}", scale, shift, {u}, hit))
    blocks, nominal, true = [], {}, {}
    for name, scale, shift, listed, hit in regimes:
        n = int(rng.integers(rows[0], rows[1] + 1))
        z = np.zeros((n, d))
        for v in order:
            noise = 0.6 * rng.standard_t(5, n)
            drive = np.zeros(n)
            for u in np.flatnonzero(adj[:, v]):
                f = scale[u] if len(scale) else 1.0
                drive += f * weight[u, v] * np.tanh(slope[u, v] * (z[:, u] - centre[u, v]))
            z[:, v] = drive + noise + (shift[v] if len(shift) else 0.0)
        level = np.exp(log_mean + log_sd * z) * np.exp(rng.normal(0, 0.15, (n, d)))
        block = pd.DataFrame(level, columns=names)
        block.insert(0, "regime", name)
        blocks.append(block)
        if listed:
            nominal[name] = [names[i] for i in sorted(listed)]
            true[name] = [names[i] for i in sorted(hit)]
    return LabData(pd.concat(blocks, ignore_index=True), names, adj, nominal, true)


def _topological_order(adj: np.ndarray) -> list[int]:
    indeg = adj.sum(0).tolist()
    ready = [v for v in range(len(adj)) if indeg[v] == 0]
    out = []
    while ready:
        u = ready.pop()
        out.append(u)
        for v in np.flatnonzero(adj[u]):
            indeg[v] -= 1
            if indeg[v] == 0:
                ready.append(int(v))
    return out
