"""Causal structure from adaptation speed (docs/DESIGN.md section 3).

Two-variable experiment of Bengio et al. 2019, "A Meta-Transfer Objective for Learning to
Disentangle Causal Mechanisms" (ICLR 2020), section 3:

* A and B categorical with N values; truth A -> B: p(A) ~ Dirichlet(1), each row of
  p(B | A) ~ Dirichlet(1).
* Two models, A -> B (p(A) p(B|A)) and B -> A (p(B) p(A|B)), each a pair of categorical
  tables parameterised by logits. Both are pre-trained on the training distribution; we
  use its exact tables (the limit of maximum likelihood on unlimited data).
* Each episode intervenes on the cause: a new p(A) ~ Dirichlet(1), p(B|A) unchanged.
  ``transfer_samples`` points are drawn; both models adapt online from their pre-trained
  tables by one SGD step per point (rate ``adapt_lr``), and the online log-likelihood
  L_M = sum_t log p_M(x_t; theta_{t-1}) is the adaptation speed of model M.
* The structural parameter gamma (sigma(gamma) = belief in A -> B) descends the regret
  R = -log[sigma(gamma) e^{L_AB} + (1 - sigma(gamma)) e^{L_BA}], whose gradient is
  sigma(gamma) - sigma(gamma + L_AB - L_BA) (step ``meta_lr``). Models reset each episode.

A -> B adapts faster because only its p(A) table moved; B -> A must move both tables.

Extension to graphs (``learn_scm_graph``): the same principle over many variables, in its
statistical form. Under the true factorisation only the intervened variable's mechanism
changes in a task, so the tasks' marginal shifts order the variables, a regression of each
variable on its candidate causes picks its parents, and each task's target is the variable
whose mechanism (residual given its parents) shifted (``engine.invariance``). Scored by
structural Hamming distance against the truth, beside causal-learn's PC on the same pooled
data (PC sees the data as one i.i.d. sample; it is given no task labels).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .invariance import learn_interventional_graph
from .training import should_stop


# ------------------------------------------------------------------ two-variable experiment
def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def _sample(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One draw per row of ``probs`` (rows sum to 1) from uniforms ``u`` (one per row)."""
    return np.minimum((probs.cumsum(-1) < u[:, None]).sum(-1), probs.shape[-1] - 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pretrained_tables(rngs: list[np.random.Generator], n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per seed, the true p(B | A) (S, A, B) and both models' log-tables fitted to the training
    distribution: ``ab_a`` = log p(A), ``ab_ba`` = log p(B | A), ``ba_b`` = log p(B), ``ba_ab`` = log p(A | B)."""
    pi_a = np.stack([r.dirichlet(np.ones(n)) for r in rngs])  # (S, N)
    p_b_a = np.stack([r.dirichlet(np.ones(n), size=n) for r in rngs])  # (S, N, N) rows: a
    joint = pi_a[:, :, None] * p_b_a  # (S, A, B)
    p_b = joint.sum(1)
    p_a_b = np.transpose(joint / p_b[:, None, :], (0, 2, 1))  # (S, B, A)
    pre = {"ab_a": np.log(pi_a), "ab_ba": np.log(p_b_a), "ba_b": np.log(p_b), "ba_ab": np.log(p_a_b)}
    return p_b_a, pre


def _transfer_episode(
    rngs: list[np.random.Generator],
    p_b_a: np.ndarray,
    pre: dict[str, np.ndarray],
    transfer_samples: int,
    adapt_lr: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One intervention on A: both models adapt online from ``pre``; returns their online
    log-likelihoods (L_AB, L_BA) per seed."""
    s_count, n = p_b_a.shape[0], p_b_a.shape[1]
    rows = np.arange(s_count)
    new_pi = np.stack([r.dirichlet(np.ones(n)) for r in rngs])
    ab_a, ab_ba = pre["ab_a"].copy(), pre["ab_ba"].copy()
    ba_b, ba_ab = pre["ba_b"].copy(), pre["ba_ab"].copy()
    l_ab = np.zeros(s_count)
    l_ba = np.zeros(s_count)
    for _ in range(transfer_samples):
        a = _sample(new_pi, np.array([r.random() for r in rngs]))
        b = _sample(p_b_a[rows, a], np.array([r.random() for r in rngs]))  # p(B | a) unchanged
        # Online log-likelihood with the current (not yet updated) parameters.
        lp_a = _log_softmax(ab_a)
        lp_ba = _log_softmax(ab_ba[rows, a])
        lp_b = _log_softmax(ba_b)
        lp_ab = _log_softmax(ba_ab[rows, b])
        l_ab += lp_a[rows, a] + lp_ba[rows, b]
        l_ba += lp_b[rows, b] + lp_ab[rows, a]
        # One SGD step on log p(x_t): grad of log-softmax = onehot - softmax.
        oh_a, oh_b = np.eye(n)[a], np.eye(n)[b]
        ab_a += adapt_lr * (oh_a - np.exp(lp_a))
        ab_ba[rows, a] += adapt_lr * (oh_b - np.exp(lp_ba))
        ba_b += adapt_lr * (oh_b - np.exp(lp_b))
        ba_ab[rows, b] += adapt_lr * (oh_a - np.exp(lp_ab))
    return l_ab, l_ba


def run_two_variable_experiment(
    seeds: int | Sequence[int] = 10,
    episodes: int = 1000,
    n: int = 10,
    transfer_samples: int = 20,
    adapt_lr: float = 1.0,
    meta_lr: float = 0.2,
    callback: Callable[[int, list[float]], None] | None = None,
    callback_every: int = 10,
    stop: Any = None,
) -> dict[str, Any]:
    """Bengio et al. 2019's two-variable experiment, one run per seed (vectorised).

    ``callback(episode, sigmas)`` gets the 1-based episode number and sigma(gamma) of every
    seed, every ``callback_every`` episodes and at the end; ``stop`` (threading.Event or
    callable) ends early. Returns per-episode sigma(gamma) per seed, the median curve and
    the median at episodes 100, 200, 400, 1000 (when reached)."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("need at least one seed")
    if n < 2 or transfer_samples < 1 or episodes < 1:
        raise ValueError("need n >= 2, transfer_samples >= 1 and episodes >= 1")
    t0 = time.perf_counter()
    rngs = [np.random.default_rng([s, 2019]) for s in seed_list]
    p_b_a, pre = _pretrained_tables(rngs, n)
    gamma = np.zeros(len(seed_list))
    curve = np.zeros((episodes, len(seed_list)))
    done = episodes
    for ep in range(episodes):
        if should_stop(stop):
            done = ep
            break
        l_ab, l_ba = _transfer_episode(rngs, p_b_a, pre, transfer_samples, adapt_lr)
        grad = _sigmoid(gamma) - _sigmoid(gamma + l_ab - l_ba)
        gamma -= meta_lr * grad
        curve[ep] = _sigmoid(gamma)
        if callback is not None and ((ep + 1) % callback_every == 0 or ep == episodes - 1):
            callback(ep + 1, curve[ep].tolist())
    curve = curve[:done]
    median = np.median(curve, axis=1) if done else np.zeros(0)
    return {
        "seeds": seed_list,
        "episodes": done,
        "n": n,
        "transfer_samples": transfer_samples,
        "adapt_lr": adapt_lr,
        "meta_lr": meta_lr,
        "sigma": curve.tolist(),
        "median": median.tolist(),
        "median_at": {str(e): float(median[e - 1]) for e in (100, 200, 400, 1000) if e <= done},
        "final_sigmas": curve[-1].tolist() if done else [],
        "stopped_early": done < episodes,
        "elapsed_s": time.perf_counter() - t0,
    }


# ------------------------------------------------------------------------ graph learning
def structural_hamming_distance(predicted: np.ndarray, truth: np.ndarray) -> int:
    """SHD between a predicted graph and the true DAG, counted per unordered pair.

    ``predicted[i, j] = 1`` means an edge i -> j; an undirected (or bidirected) edge is
    1 both ways. A pair counts 1 when its state (none, i -> j, j -> i, undirected) differs
    from the truth's, so a missing, an extra, a reversed and an unoriented edge each cost 1.
    """
    p, t = np.asarray(predicted) != 0, np.asarray(truth) != 0
    d = len(t)
    cost = 0
    for i in range(d):
        for j in range(i + 1, d):
            if (p[i, j], p[j, i]) != (t[i, j], t[j, i]):
                cost += 1
    return cost


def pc_adjacency(data: np.ndarray, alpha: float = 0.05, indep_test: str = "fisherz") -> np.ndarray:
    """causal-learn's PC on ``data``; returns the CPDAG as a 0/1 matrix (undirected = both)."""
    from causallearn.search.ConstraintBased.PC import pc  # dev dependency, imported lazily

    cg = pc(np.asarray(data, dtype=float), alpha=alpha, indep_test=indep_test, show_progress=False)
    g = cg.G.graph
    d = g.shape[0]
    adj = np.zeros((d, d), dtype=int)
    for i in range(d):
        for j in range(d):
            if i == j:
                continue
            if g[j, i] == 1 and g[i, j] == -1:  # i -> j
                adj[i, j] = 1
            elif g[i, j] == -1 and g[j, i] == -1:  # i - j
                adj[i, j] = adj[j, i] = 1
            elif g[i, j] == 1 and g[j, i] == 1:  # i <-> j
                adj[i, j] = adj[j, i] = 1
    return adj


def interventional_data(
    tasks: Sequence[Any],
    samples_per_task: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled samples of every variable from tasks with ``sample_data(n, rng)`` (scm tasks),
    and the task index of each row."""
    rng = np.random.default_rng(seed)
    blocks, env = [], []
    for i, task in enumerate(tasks):
        if not hasattr(task, "sample_data"):
            raise ValueError(f"task {getattr(task, 'name', i)!r} cannot sample all variables (not an scm task)")
        blocks.append(task.sample_data(samples_per_task, rng))
        env.append(np.full(samples_per_task, i))
    return np.concatenate(blocks), np.concatenate(env)


def learn_scm_graph(
    source: Any,
    n_tasks: int = 40,
    samples_per_task: int = 200,
    seed: int = 0,
    alpha: float = 0.01,
    compare_pc: bool = True,
    pc_alpha: float = 0.05,
    split: str = "train",
) -> dict[str, Any]:
    """Learn an scm family's graph from ``n_tasks`` of its interventional tasks.

    Returns the predicted adjacency, its SHD against ``source.adjacency``, the identified
    target of each task with its accuracy, and (``compare_pc``) PC's CPDAG and SHD on the
    same pooled data."""
    t0 = time.perf_counter()
    tasks = source.tasks(split, n_tasks, seed=seed)
    data, env = interventional_data(tasks, samples_per_task, seed=seed + 1)
    learned = learn_interventional_graph(data, env, alpha=alpha)
    truth = np.asarray(source.adjacency)
    names = list(source.variable_names)
    hits = [
        set(found["targets"]) == set(t.truth["intervened_indices"])
        for found, t in zip(learned["targets"], tasks, strict=True)
    ]
    out: dict[str, Any] = {
        "num_variables": len(names),
        "variable_names": names,
        "true_edges": int(truth.sum()),
        "n_tasks": n_tasks,
        "samples_per_task": samples_per_task,
        "adjacency": learned["adjacency"].tolist(),
        "shd": structural_hamming_distance(learned["adjacency"], truth),
        "target_accuracy": float(np.mean(hits)),
        "elapsed_s": time.perf_counter() - t0,
    }
    if compare_pc:
        t1 = time.perf_counter()
        pc = pc_adjacency(data, alpha=pc_alpha)
        out["pc_adjacency"] = pc.tolist()
        out["pc_shd"] = structural_hamming_distance(pc, truth)
        out["pc_elapsed_s"] = time.perf_counter() - t1
    return out
