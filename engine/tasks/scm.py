"""Tasks drawn from a random structural causal model (SCM) with known truth.

One source = one random DAG over ``X0..X{d-1}`` (fixed by ``seed``) with nonlinear
mechanisms. A target variable with at least two parents and at least one child is
chosen; the features are all the other variables. Each task is the SCM under a sparse
soft intervention, so the truth (graph, target parents, intervened variables) of every
task is known and discovery can be scored against it.

Mechanism of a non-root variable v with parents P(v)::

    X_v = (sum_{p in P(v)} w_vp * f_vp(X_p) - mu_v) / sd_v + offset_v + sigma_v * eps_v

with f_vp from {tanh, sin, identity, x*tanh(x)} and (mu_v, sd_v) measured once on a large
observational sample, so every variable stays O(1). sigma_v is ``noise_scale`` for the
target (the residual of the target given its parents has variance noise_scale**2) and
``feature_noise`` for the other non-root variables: with a small noise there, a feature
would be a near-copy of its parents and the target's true parents could not be told
apart from their ancestors by any learner. Roots are X_v = loc_v + scale_v * eps_v (0 and
1 observationally). eps are independent standard normals.

Interventions (``shift_mode``):

* ``"mechanism"``: ``intervention_size`` variables (never the target unless
  ``intervene_on_target``) get new random weights and an offset of magnitude in
  [0.5, 1.5]; an intervened root gets a new location and scale.
* Classification sources redraw an intervention under which either class would have
  a share below ``MIN_CLASS_SHARE`` (10 %), so K shots per class can always be drawn.
* ``"target_term"``: only the weight of one parent term of the target's own mechanism
  changes (a family where exactly one mechanism of the target shifts); ``intervened``
  is then ``[target]`` and ``truth["shifted_parent"]`` names the parent whose term changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .base import SPLITS, Episode, Task, TaskError, TaskSource, check_shots, check_split


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _soft_square(x: np.ndarray) -> np.ndarray:
    # Even and quadratic near 0 like x**2 but only linear growth, so values stay O(1).
    return x * np.tanh(x)


FUNCTIONS = (np.tanh, np.sin, _identity, _soft_square)
FUNCTION_NAMES = ("tanh", "sin", "identity", "x*tanh(x)")

_OBS_SAMPLES = 20000  # observational sample used for standardisation and the median
_MAX_DAG_TRIES = 2000
# Classification tasks: each class must have at least this share under the intervention.
MIN_CLASS_SHARE = 0.1


@dataclass
class Mechanism:
    """Parameters of one variable's structural equation."""

    parents: list[int]
    funcs: list[int]
    weights: np.ndarray
    mu: float = 0.0
    sd: float = 1.0
    offset: float = 0.0
    # Roots only: X = loc + scale * eps.
    loc: float = 0.0
    scale: float = 1.0
    extra: dict = field(default_factory=dict)

    def copy(self) -> Mechanism:
        return Mechanism(
            list(self.parents),
            list(self.funcs),
            self.weights.copy(),
            self.mu,
            self.sd,
            self.offset,
            self.loc,
            self.scale,
            dict(self.extra),
        )


def _random_weights(rng: np.random.Generator, n: int) -> np.ndarray:
    # Magnitudes bounded away from 0 so every edge has a visible effect.
    return rng.choice([-1.0, 1.0], size=n) * rng.uniform(0.5, 1.5, size=n)


class SCMTask(Task):
    """The SCM under one sparse intervention."""

    def __init__(
        self,
        name: str,
        source: SCMTaskSource,
        mechanisms: dict[int, Mechanism],
        truth: dict,
    ) -> None:
        super().__init__(
            name=name,
            task_type=source.task_type,
            output_dim=source.output_dim,
            group=None,
            truth=truth,
            class_names=list(source.class_names) if source.class_names else None,
        )
        self.source = source
        # Only the changed mechanisms; the rest are the source's.
        self.mechanisms = mechanisms

    def sample_data(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """All variables of ``n`` interventional samples, shape (n, d)."""
        return self.source.sample_data(self, n, rng)

    def sample_episode(self, support_shots: int, query_shots: int, rng: np.random.Generator) -> Episode:
        check_shots(support_shots, query_shots)
        src = self.source
        t = src.target_index
        if src.task_type == "regression":
            data = src.sample_data(self, support_shots + query_shots, rng)
            x = data[:, src.feature_indices].astype(np.float32)
            y = data[:, [t]].astype(np.float32)
            return Episode(
                torch.from_numpy(x[:support_shots]),
                torch.from_numpy(y[:support_shots]),
                torch.from_numpy(x[support_shots:]),
                torch.from_numpy(y[support_shots:]),
                "regression",
                None,
                self.name,
            )
        need = support_shots + query_shots
        per_class: list[list[np.ndarray]] = [[], []]
        counts = [0, 0]
        batch = max(64, 8 * need)
        # Rejection sampling: draw batches until both classes have enough rows.
        for _ in range(200):
            data = src.sample_data(self, batch, rng)
            labels = (data[:, t] > src.median).astype(np.int64)
            for c in (0, 1):
                if counts[c] < need:
                    rows = data[labels == c][: need - counts[c]]
                    per_class[c].append(rows)
                    counts[c] += len(rows)
            if min(counts) >= need:
                break
        else:
            raise TaskError(
                f"task {self.name!r}: could not draw {need} rows of each class "
                f"(got {counts[0]} low and {counts[1]} high); the intervention makes one "
                "class too rare"
            )
        sx, sy, qx, qy = [], [], [], []
        for c in (0, 1):
            rows = np.concatenate(per_class[c])[:need]
            sx.append(rows[:support_shots])
            qx.append(rows[support_shots:])
            sy.append(np.full(support_shots, c, dtype=np.int64))
            qy.append(np.full(query_shots, c, dtype=np.int64))
        s_perm = rng.permutation(2 * support_shots)
        q_perm = rng.permutation(2 * query_shots)
        s_data = np.concatenate(sx)[s_perm]
        q_data = np.concatenate(qx)[q_perm]
        return Episode(
            torch.from_numpy(s_data[:, src.feature_indices].astype(np.float32)),
            torch.from_numpy(np.concatenate(sy)[s_perm]),
            torch.from_numpy(q_data[:, src.feature_indices].astype(np.float32)),
            torch.from_numpy(np.concatenate(qy)[q_perm]),
            "classification",
            2,
            self.name,
        )


def _check_options(
    num_variables: object,
    task_type: object,
    intervention_size: object,
    intervene_on_target: bool,
    noise_scale: object,
    shift_mode: object,
    feature_noise: object,
) -> None:
    """Refuse an SCMTaskSource option out of range (TaskError naming it)."""
    if isinstance(num_variables, bool) or not isinstance(num_variables, (int, np.integer)):
        raise TaskError(f"num_variables must be an integer, got {num_variables!r}")
    if not 4 <= num_variables <= 50:
        # 4 is the smallest graph with a target that has two parents and a child.
        raise TaskError(f"num_variables must be in [4, 50], got {num_variables}")
    if task_type not in ("regression", "classification"):
        raise TaskError(f"task_type must be 'regression' or 'classification', got {task_type!r}")
    if shift_mode not in ("mechanism", "target_term"):
        raise TaskError(f"shift_mode must be 'mechanism' or 'target_term', got {shift_mode!r}")
    if not (isinstance(noise_scale, (int, float)) and 0.0 < float(noise_scale) <= 10.0):
        raise TaskError(f"noise_scale must be in (0, 10], got {noise_scale!r}")
    if not (isinstance(feature_noise, (int, float)) and 0.0 < float(feature_noise) <= 10.0):
        raise TaskError(f"feature_noise must be in (0, 10], got {feature_noise!r}")
    max_size = num_variables if intervene_on_target else num_variables - 1
    if (
        isinstance(intervention_size, bool)
        or not isinstance(intervention_size, (int, np.integer))
        or not 0 <= intervention_size <= max_size
    ):
        raise TaskError(f"intervention_size must be an integer in [0, {max_size}], got {intervention_size!r}")


class SCMTaskSource(TaskSource):
    """Random nonlinear SCM; tasks are sparse soft interventions on it."""

    name = "scm"

    def __init__(
        self,
        num_variables: int = 6,
        task_type: str = "regression",
        seed: int = 0,
        intervention_size: int = 1,
        intervene_on_target: bool = False,
        noise_scale: float = 0.1,
        shift_mode: str = "mechanism",
        feature_noise: float = 0.5,
    ) -> None:
        _check_options(
            num_variables, task_type, intervention_size, intervene_on_target, noise_scale, shift_mode, feature_noise
        )
        self.num_variables = int(num_variables)
        self.task_type = task_type  # type: ignore[assignment]
        self.seed = int(seed)
        self.intervention_size = int(intervention_size)
        self.intervene_on_target = bool(intervene_on_target)
        self.noise_scale = float(noise_scale)
        self.feature_noise = float(feature_noise)
        self.shift_mode = shift_mode
        self.variable_names = [f"X{i}" for i in range(self.num_variables)]

        rng = np.random.default_rng([self.seed, 0])
        self.adjacency, self.order, self.target_index = self._random_dag(rng)
        d = self.num_variables
        self.target = self.variable_names[self.target_index]
        self.parents_of = [[int(p) for p in np.flatnonzero(self.adjacency[:, v])] for v in range(d)]
        self.children_of = [[int(c) for c in np.flatnonzero(self.adjacency[v, :])] for v in range(d)]
        # Exogenous noise std of each non-root variable (roots use their own scale).
        self.noise_std = np.full(d, self.feature_noise)
        self.noise_std[self.target_index] = self.noise_scale
        self.mechanisms = [
            Mechanism(
                parents=ps,
                funcs=[int(f) for f in rng.integers(0, len(FUNCTIONS), size=len(ps))],
                weights=_random_weights(rng, len(ps)),
            )
            for ps in self.parents_of
        ]
        self._standardise(np.random.default_rng([self.seed, 1]))

        self.feature_indices = [i for i in range(d) if i != self.target_index]
        self.feature_names = [self.variable_names[i] for i in self.feature_indices]
        self.input_shape = (d - 1,)
        self.background_value = 0.0
        obs = self.sample_data(None, _OBS_SAMPLES, np.random.default_rng([self.seed, 2]))
        self.median = float(np.median(obs[:, self.target_index]))
        self.output_dim = 2 if task_type == "classification" else 1
        self.class_names: list[str] | None = None
        if task_type == "classification":
            self.class_names = [f"{self.target} <= {self.median:.3g}", f"{self.target} > {self.median:.3g}"]

    # ----------------------------------------------------------------- graph
    def _random_dag(self, rng: np.random.Generator) -> tuple[np.ndarray, list[int], int]:
        d = self.num_variables
        # About two parents per variable on average, denser for small graphs.
        p_edge = min(0.6, 4.0 / (d - 1))
        for _ in range(_MAX_DAG_TRIES):
            order = [int(v) for v in rng.permutation(d)]
            adj = np.zeros((d, d), dtype=np.int64)
            for i in range(d):
                for j in range(i + 1, d):
                    if rng.random() < p_edge:
                        adj[order[i], order[j]] = 1
            candidates = [v for v in range(d) if adj[:, v].sum() >= 2 and adj[v, :].sum() >= 1]
            if candidates:
                target = int(rng.choice(candidates))
                return adj, order, target
        raise TaskError(  # pragma: no cover - practically unreachable for d >= 4
            f"could not draw a DAG over {d} variables with a valid target"
        )

    def _standardise(self, rng: np.random.Generator) -> None:
        # Measure each non-root's structural part on an observational sample, in
        # topological order, so that downstream variables see standardised inputs.
        d = self.num_variables
        data = np.zeros((_OBS_SAMPLES, d))
        eps = rng.standard_normal((_OBS_SAMPLES, d))
        for v in self.order:
            m = self.mechanisms[v]
            if not m.parents:
                data[:, v] = eps[:, v]
                continue
            s = self._structural(m, data)
            m.mu = float(s.mean())
            m.sd = float(s.std()) or 1.0
            data[:, v] = (s - m.mu) / m.sd + self.noise_std[v] * eps[:, v]

    @staticmethod
    def _structural(m: Mechanism, data: np.ndarray) -> np.ndarray:
        s = np.zeros(len(data))
        for p, f, w in zip(m.parents, m.funcs, m.weights, strict=True):
            s += w * FUNCTIONS[f](data[:, p])
        return s

    def truth_graph(self) -> dict:
        """The base graph: adjacency (adj[i][j] = 1 means Xi -> Xj), names, target."""
        return {
            "adjacency": self.adjacency.tolist(),
            "variable_names": list(self.variable_names),
            "target": self.target,
            "target_index": self.target_index,
            "parents": [self.variable_names[p] for p in self.parents_of[self.target_index]],
            "children": [self.variable_names[c] for c in self.children_of[self.target_index]],
            "feature_names": list(self.feature_names),
        }

    def mechanism_description(self, v: int | str) -> dict:
        """Human-readable base mechanism of one variable (for previews)."""
        if isinstance(v, str):
            v = self.variable_names.index(v)
        m = self.mechanisms[v]
        return {
            "variable": self.variable_names[v],
            "terms": [
                {
                    "parent": self.variable_names[p],
                    "function": FUNCTION_NAMES[f],
                    "weight": w,
                }
                for p, f, w in zip(m.parents, m.funcs, m.weights.tolist(), strict=True)
            ],
            "noise_std": float(self.noise_std[v]) if m.parents else 1.0,
        }

    # ------------------------------------------------------------- sampling
    def sample_data(self, task: SCMTask | None, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` joint samples of all variables, shape (n, d), float64.

        ``task=None`` samples the observational (unintervened) SCM."""
        if n < 0:
            raise TaskError(f"n must be >= 0, got {n}")
        d = self.num_variables
        changed = task.mechanisms if task is not None else {}
        eps = rng.standard_normal((n, d))
        data = np.zeros((n, d))
        for v in self.order:
            m = changed.get(v, self.mechanisms[v])
            if not m.parents:
                data[:, v] = m.loc + m.scale * eps[:, v]
            else:
                s = self._structural(m, data)
                data[:, v] = (s - m.mu) / m.sd + m.offset + self.noise_std[v] * eps[:, v]
        return data

    def sample_task(self, split: str, rng: np.random.Generator, _depth: int = 0) -> SCMTask:
        check_split(split)
        # Mix the split into the stream so that the same caller rng state still gives
        # different interventions for train, val and test.
        task_id = int(rng.integers(0, 2**62))
        sub = np.random.default_rng([self.seed, 3, SPLITS.index(split), task_id])
        if self.shift_mode == "target_term":
            mechanisms, intervened, extra = self._shift_target_term(sub)
        else:
            mechanisms, intervened, extra = self._shift_mechanisms(sub)
        if self.task_type == "classification" and not self._classes_balanced(mechanisms, sub):
            # K-shot-per-class episodes need both classes reasonably common: redraw the task.
            if _depth >= 100:
                raise TaskError(  # pragma: no cover - needs an extreme SCM
                    "could not draw an intervention under which both classes occur"
                )
            return self.sample_task(split, rng, _depth=_depth + 1)
        names = [self.variable_names[v] for v in intervened]
        truth = self.truth_graph()
        truth.update(
            intervened=names,
            intervened_indices=list(intervened),
            shift_mode=self.shift_mode,
            split=split,
            **extra,
        )
        label = ",".join(names) if names else "none"
        name = f"scm-{split}-{task_id % 16**8:08x} do({label})"
        return SCMTask(name, self, mechanisms, truth)

    def _shift_target_term(self, sub: np.random.Generator) -> tuple[dict[int, Mechanism], list[int], dict]:
        """Change the weight of one parent term of the target's mechanism."""
        t = self.target_index
        m = self.mechanisms[t].copy()
        k = int(sub.integers(0, len(m.parents)))
        old = m.weights[k]
        # New weight at least 0.5 away from the old one, so the shift is visible.
        while True:
            new = float(_random_weights(sub, 1)[0])
            if abs(new - old) >= 0.5:
                break
        m.weights[k] = new
        extra = {"shifted_parent": self.variable_names[m.parents[k]], "old_weight": float(old), "new_weight": new}
        return {t: m}, [t], extra

    def _shift_mechanisms(self, sub: np.random.Generator) -> tuple[dict[int, Mechanism], list[int], dict]:
        """New random mechanisms for ``intervention_size`` variables."""
        t = self.target_index
        pool = [v for v in range(self.num_variables) if self.intervene_on_target or v != t]
        chosen = sorted(int(v) for v in sub.choice(pool, size=self.intervention_size, replace=False))
        mechanisms: dict[int, Mechanism] = {}
        for v in chosen:
            m = self.mechanisms[v].copy()
            sign = sub.choice([-1.0, 1.0])
            if m.parents:
                m.weights = _random_weights(sub, len(m.parents))
                m.offset = float(sign * sub.uniform(0.5, 1.5))
            else:
                m.loc = float(sign * sub.uniform(0.5, 1.5))
                m.scale = float(sub.uniform(0.5, 2.0))
            mechanisms[v] = m
        return mechanisms, chosen, {}

    def _classes_balanced(self, mechanisms: dict[int, Mechanism], sub: np.random.Generator) -> bool:
        """Both classes have a share of at least MIN_CLASS_SHARE under these mechanisms."""
        probe = SCMTask("probe", self, mechanisms, {})
        y = self.sample_data(probe, 2000, sub)[:, self.target_index] > self.median
        return MIN_CLASS_SHARE <= float(y.mean()) <= 1.0 - MIN_CLASS_SHARE

    def describe(self) -> dict:
        info = super().describe()
        info.update(
            num_variables=self.num_variables,
            seed=self.seed,
            target=self.target,
            feature_names=list(self.feature_names),
            intervention_size=self.intervention_size,
            intervene_on_target=self.intervene_on_target,
            noise_scale=self.noise_scale,
            feature_noise=self.feature_noise,
            shift_mode=self.shift_mode,
        )
        return info
