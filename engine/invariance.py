"""Invariance and shift tests on pooled interventional data (numpy only).

Used by discovery (which features are causes of the output, which variables each task
intervened on) and by the structure learner of ``engine.causal_direction``.

* Regressions are additive: each input column is expanded into itself plus ``n_bumps``
  Gaussian bumps centred at its quantiles, then ridge-fitted. The scm mechanisms are
  additive in their parents, so the regression on a parent set is well specified.
* ``invariant_causal_prediction``: Peters, Buehlmann & Meinshausen (2016). A set S is
  accepted when the residuals of y ~ X_S, pooled over tasks, have the same mean and spread
  in every task; the causal set is the intersection of the accepted sets. The parents of
  y are accepted (their relation to y survives interventions on other variables); a set
  that holds a child of y is rejected once the child is intervened on, and a set that
  misses a parent is rejected once that parent (or an ancestor) shifts.
* p-values use normal approximations (Wilson-Hilferty for chi-square), so no scipy.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np


# ------------------------------------------------------------------------ distributions
def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def chi2_sf(x: float, k: float) -> float:
    """P(chi2_k > x), Wilson-Hilferty approximation (good for k >= 1 in the tails we use)."""
    if x <= 0:
        return 1.0
    h = 2.0 / (9.0 * k)
    z = ((x / k) ** (1.0 / 3.0) - (1.0 - h)) / math.sqrt(h)
    return normal_sf(z)


# ----------------------------------------------------------------------- regressions
@dataclass
class AdditiveBasis:
    """Per-column ``[z, |z|, bump_1(z), ..., bump_m(z)]`` (z standardised), bumps at quantiles."""

    mean: np.ndarray
    std: np.ndarray
    centers: np.ndarray  # (columns, m) in standardised units
    width: float

    @classmethod
    def fit(cls, x: np.ndarray, n_bumps: int = 6) -> AdditiveBasis:
        x = np.asarray(x, dtype=float)
        mean = x.mean(0) if x.size else np.zeros(x.shape[1])
        std = x.std(0) if x.size else np.ones(x.shape[1])
        std = np.where(std > 1e-9, std, 1.0)
        z = (x - mean) / std
        qs = np.linspace(0.05, 0.95, n_bumps)
        centers = np.quantile(z, qs, axis=0).T if z.size else np.zeros((x.shape[1], n_bumps))
        return cls(mean, std, np.atleast_2d(centers), 1.5 * 3.6 / max(n_bumps, 1))

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, dtype=float) - self.mean) / self.std
        cols = [np.ones((len(z), 1))]
        for j in range(z.shape[1]):
            zj = z[:, [j]]
            # z and |z| extrapolate odd and even shapes linearly beyond the bumps.
            cols.append(zj)
            cols.append(np.abs(zj))
            cols.append(np.exp(-0.5 * ((zj - self.centers[j][None, :]) / self.width) ** 2))
        return np.concatenate(cols, axis=1)

    @property
    def block(self) -> int:
        return 2 + self.centers.shape[1]


def fit_additive(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3, n_bumps: int = 6):
    """Ridge fit of y on the additive basis of x; returns a predict function."""
    x = np.asarray(x, dtype=float).reshape(len(y), -1)
    y = np.asarray(y, dtype=float).reshape(-1)
    if x.shape[1] == 0:
        mu = float(y.mean())
        return lambda xn: np.full(len(xn), mu)
    basis = AdditiveBasis.fit(x, n_bumps)
    b = basis.transform(x)
    reg = ridge * len(y) * np.eye(b.shape[1])
    reg[0, 0] = 0.0  # no penalty on the intercept
    coef = np.linalg.solve(b.T @ b + reg, b.T @ y)
    return lambda xn: basis.transform(np.asarray(xn, dtype=float).reshape(len(xn), -1)) @ coef


def residuals(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    return np.asarray(y, dtype=float).reshape(-1) - fit_additive(x, y, ridge)(x)


# --------------------------------------------------------------------------- tests
def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v))
    r[order] = np.arange(1, len(v) + 1)
    return r


def group_difference_pvalue(values: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """(p of equal locations, p of equal spreads) across groups: Kruskal-Wallis on the values
    and on their absolute deviations from the group median, chi-square approximation.

    Rank tests, so that a few points far outside the fitted range (an intervention pushing
    a parent to -7 where an additive fit must extrapolate) do not reject an invariant set."""
    values = np.asarray(values, dtype=float)
    labels = np.unique(groups)
    if len(labels) < 2 or len(values) < 3:
        return 1.0, 1.0

    def kruskal(v: np.ndarray) -> float:
        n = len(v)
        r = _ranks(v)
        mid = (n + 1) / 2.0
        h = sum(int((groups == g).sum()) * (r[groups == g].mean() - mid) ** 2 for g in labels)
        h *= 12.0 / (n * (n + 1))
        return chi2_sf(h, len(labels) - 1)

    dev = np.empty_like(values)
    for g in labels:
        m = groups == g
        dev[m] = np.abs(values[m] - np.median(values[m]))
    return kruskal(values), kruskal(dev)


def two_sample_pvalue(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(p of equal means, p of equal spreads, signed z of the mean difference) for a vs b.

    Means: Welch z. Spreads: z of the difference in mean absolute deviation from the median."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return 1.0, 1.0, 0.0
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) or 1e-12
    z_mean = (a.mean() - b.mean()) / se
    da, db = np.abs(a - np.median(a)), np.abs(b - np.median(b))
    se_d = math.sqrt(da.var(ddof=1) / len(da) + db.var(ddof=1) / len(db)) or 1e-12
    z_spread = (da.mean() - db.mean()) / se_d
    return 2 * normal_sf(abs(z_mean)), 2 * normal_sf(abs(z_spread)), float(z_mean)


def invariance_pvalue(x: np.ndarray, y: np.ndarray, env: np.ndarray, ridge: float = 1e-3) -> float:
    """p-value of 'y given x has the same residual distribution in every environment'."""
    r = residuals(x, y, ridge)
    p_mean, p_spread = group_difference_pvalue(r, env)
    return min(1.0, 2 * min(p_mean, p_spread))


def invariant_causal_prediction(
    x: np.ndarray,
    y: np.ndarray,
    env: np.ndarray,
    alpha: float = 0.01,
    max_set_size: int | None = None,
) -> dict:
    """ICP over all subsets of the columns of ``x`` (up to ``max_set_size``).

    Returns ``causal`` (column indices in the intersection of accepted sets), ``accepted``
    (the accepted sets), ``pvalues`` (set -> p), ``fallback`` (True when no set was accepted;
    then the sets with the highest p-value stand in for the accepted ones, and ``causal``
    is their intersection: a best guess, marked as such).
    """
    x = np.asarray(x, dtype=float)
    d = x.shape[1]
    top = d if max_set_size is None else min(d, max_set_size)
    pvalues: dict[tuple[int, ...], float] = {}
    for size in range(top + 1):
        for s in itertools.combinations(range(d), size):
            pvalues[s] = invariance_pvalue(x[:, list(s)], y, env)
    accepted = [s for s, p in pvalues.items() if p > alpha]
    fallback = not accepted
    if fallback:
        best = max(pvalues.values())
        accepted = [s for s, p in pvalues.items() if p >= best * 0.1]
    causal = set(accepted[0])
    for s in accepted[1:]:
        causal &= set(s)
    # Per column: the largest p among sets without it (small = needed for invariance).
    need = {j: max(p for s, p in pvalues.items() if j not in s) for j in range(d)}
    return {
        "causal": sorted(causal),
        "accepted": [list(s) for s in accepted],
        "pvalues": {",".join(map(str, s)): p for s, p in pvalues.items()},
        "pvalue_without": need,
        "fallback": fallback,
        "alpha": alpha,
    }


def _drop_one_pvalues(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """p-value per column of 'the column adds nothing to the additive fit of y on the rest'
    (nested-model F test, chi-square approximation)."""
    n, d = x.shape
    full = y - fit_additive(x, y, ridge)(x)
    rss = float(full @ full)
    block = AdditiveBasis.fit(x).block if d else 0
    dof = max(n - 1 - d * block, 1)
    out = np.ones(d)
    for j in range(d):
        rest = np.delete(x, j, axis=1)
        r = y - fit_additive(rest, y, ridge)(rest)
        f = max(float(r @ r) - rss, 0.0) / block / (rss / dof + 1e-300)
        out[j] = chi2_sf(f * block, block)
    return out


def reference_environments(values: np.ndarray, env: np.ndarray, envs: np.ndarray, level: float = 0.05) -> np.ndarray:
    """Boolean mask over ``envs`` of the largest group of environments in which ``values``
    look alike: the environment indistinguishable (mean and spread, p > ``level``) from the
    most others, plus those others.

    The pooled data of all tasks is a mixture (each intervention shifts its variables in
    its own direction), so "this task vs all the others" is biased; the tasks in which a
    variable was not shifted share one distribution and form the largest such group."""
    groups = [values[env == e] for e in envs]
    n = len(groups)
    alike = np.eye(n, dtype=bool)
    for a in range(n):
        for b in range(a + 1, n):
            pm, ps, _ = two_sample_pvalue(groups[a], groups[b])
            alike[a, b] = alike[b, a] = min(pm, ps) * 2 > level
    best = int(np.argmax(alike.sum(1)))
    return alike[best]


def marginal_shifts(data: np.ndarray, env: np.ndarray, alpha: float = 0.01) -> tuple[list, np.ndarray]:
    """Per environment (sorted), the columns whose marginal differs from the reference
    environments of that column (``reference_environments``; mean or spread; Bonferroni
    over columns), and the unadjusted p-value matrix (environments x columns)."""
    envs = np.unique(env)
    v = data.shape[1]
    pvals = np.ones((len(envs), v))
    for j in range(v):
        ref = reference_environments(data[:, j], env, envs)
        for i, e in enumerate(envs):
            others = np.isin(env, envs[ref & (envs != e)])
            if others.sum() < 2:
                others = env != e
            inside = env == e
            pm, ps, _ = two_sample_pvalue(data[inside, j], data[others, j])
            pvals[i, j] = min(1.0, 2 * min(pm, ps))
    return [set(np.flatnonzero(row * v < alpha).tolist()) for row in pvals], pvals


def learn_interventional_graph(
    data: np.ndarray,
    env: np.ndarray,
    alpha: float = 0.01,
    edge_alpha: float = 0.001,
    iterations: int = 3,
) -> dict:
    """Graph and per-environment intervention targets from unlabelled interventional data.

    The sparse-mechanism-shift principle: under the true factorisation only the
    intervened variable's mechanism p(x_v | parents) changes in a task, so

    1. marginal shifts per environment: M_e = targets and their descendants;
    2. first guess of each environment's target: the element of M_e shifted in the fewest
       environments overall (the most upstream one: every intervention that shifts it also
       shifts its descendants);
    3. ancestry: u is an ancestor of v when the environments targeting u shift v; u is
       *not* an ancestor of v when they do not; candidates for v's parents are the
       variables not excluded by either fact;
    4. parents: an additive regression of v on its candidates, pooled over environments
       that do not target v; a candidate stays when dropping it worsens the fit
       (p < edge_alpha, Bonferroni over candidates); two-cycles keep the stronger edge;
    5. targets again: v is a target of environment e when v's marginal shifts in e and the
       residual of v given its parents differs in e from the reference environments (mean
       or spread); an environment with none keeps its step-2 guess. Steps 3-5 repeat
       ``iterations`` times with the new targets.

    Returns ``adjacency`` (adj[u][v] = 1 for u -> v), ``targets`` (per sorted environment:
    dicts with ``targets`` and per-column p-values), ``first_targets`` (step 2),
    ``marginal_shifts``, ``edge_pvalues`` and ``candidates``.
    """
    data = np.asarray(data, dtype=float)
    env = np.asarray(env)
    envs = np.unique(env)
    v_count = data.shape[1]
    shifted, marginal_p = marginal_shifts(data, env, alpha)
    counts = np.zeros(v_count)
    for s in shifted:
        for j in s:
            counts[j] += 1
    first = [({min(s, key=lambda j: (counts[j], j))} if s else set()) for s in shifted]
    current = [set(t) for t in first]
    adjacency = np.zeros((v_count, v_count), dtype=int)
    edge_p = np.ones((v_count, v_count))
    candidates: dict[int, list[int]] = {}
    found: list[dict] = []
    for _ in range(max(1, iterations)):
        adjacency, edge_p, candidates, ancestor = _parents_given_targets(
            data, env, envs, marginal_p, current, edge_alpha
        )
        reach = _descendants(adjacency) | ancestor
        found = _mechanism_shift_targets(data, env, envs, adjacency, current, alpha)
        new = []
        for i, f in enumerate(found):
            hit = set(f["targets"]) & shifted[i]
            # A variable downstream of another target shifts through it: not a target itself.
            hit = {v for v in hit if not any(reach[u, v] for u in hit if u != v)}
            new.append(hit if hit else set(first[i]))
            f["targets"] = sorted(new[-1])
        if new == current:
            break
        current = new
    return {
        "adjacency": adjacency,
        "targets": found,
        "first_targets": [sorted(t) for t in first],
        "marginal_shifts": [sorted(s) for s in shifted],
        "edge_pvalues": edge_p,
        "candidates": candidates,
    }


def _parents_given_targets(data, env, envs, marginal_p, targets, edge_alpha, ancestry_alpha=0.01):
    v_count = data.shape[1]
    targeted_by: dict[int, list[int]] = {j: [i for i, t in enumerate(targets) if j in t] for j in range(v_count)}
    ancestor = np.zeros((v_count, v_count), dtype=bool)  # ancestor[u, v]: u ~> v
    not_ancestor = np.zeros((v_count, v_count), dtype=bool)
    for u, idx in targeted_by.items():
        if not idx:
            continue
        for v in range(v_count):
            if v == u:
                continue
            # Fisher's combination of v's marginal-shift p-values over the environments that
            # target u: more power than counting single detections.
            stat = -2.0 * np.log(np.clip(marginal_p[idx, v], 1e-300, 1.0)).sum()
            if chi2_sf(stat, 2 * len(idx)) < ancestry_alpha:
                ancestor[u, v] = True
            else:
                not_ancestor[u, v] = True
    adjacency = np.zeros((v_count, v_count), dtype=int)
    edge_p = np.ones((v_count, v_count))
    candidates: dict[int, list[int]] = {}
    for v in range(v_count):
        cand = [u for u in range(v_count) if u != v and not not_ancestor[u, v] and not ancestor[v, u]]
        candidates[v] = cand
        if not cand:
            continue
        rows = ~np.isin(env, envs[targeted_by[v]]) if targeted_by[v] else np.ones(len(env), dtype=bool)
        if rows.sum() < 10:
            rows[:] = True
        p = _drop_one_pvalues(data[rows][:, cand], data[rows, v])
        for u, pu in zip(cand, p, strict=True):
            edge_p[u, v] = pu
            if pu * len(cand) < edge_alpha:
                adjacency[u, v] = 1
    for u in range(v_count):
        for v in range(u + 1, v_count):
            if adjacency[u, v] and adjacency[v, u]:
                if edge_p[u, v] <= edge_p[v, u]:
                    adjacency[v, u] = 0
                else:
                    adjacency[u, v] = 0
    return adjacency, edge_p, candidates, ancestor


def _descendants(adjacency: np.ndarray) -> np.ndarray:
    """reach[u, v]: a directed path u -> ... -> v exists (transitive closure)."""
    reach = adjacency.astype(bool)
    for k in range(len(reach)):
        reach = reach | (reach[:, [k]] & reach[[k], :])
    return reach


def _mechanism_shift_targets(data, env, envs, adjacency, first, alpha) -> list[dict]:
    v_count = data.shape[1]
    out = []
    resid = np.zeros_like(data)
    for v in range(v_count):
        parents = np.flatnonzero(adjacency[:, v])
        rows = np.ones(len(env), dtype=bool)
        for i, t in enumerate(first):
            if v in t:
                rows &= env != envs[i]
        if rows.sum() < 10:
            rows[:] = True
        predict = fit_additive(data[rows][:, parents], data[rows, v])
        resid[:, v] = data[:, v] - predict(data[:, parents])
    refs = [reference_environments(resid[:, v], env, envs) for v in range(v_count)]
    for e in envs:
        inside = env == e
        cols = []
        hit = []
        for v in range(v_count):
            others = np.isin(env, envs[refs[v] & (envs != e)])
            if others.sum() < 2:
                others = ~inside
            pm, ps, z = two_sample_pvalue(resid[inside, v], resid[others, v])
            p = min(1.0, 2 * min(pm, ps) * v_count)
            cols.append({"mechanism_p": p, "mean_shift_z": z})
            if p < alpha:
                hit.append(v)
        out.append({"env": e.item() if hasattr(e, "item") else e, "targets": hit, "columns": cols})
    return out
