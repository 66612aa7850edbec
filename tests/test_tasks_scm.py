"""SCM task source: the exposed truth must agree with the data it generates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.tasks import SCMTask, SCMTaskSource, TaskError, make_task_source
from engine.tasks.scm import FUNCTIONS


def _is_acyclic(adj: np.ndarray) -> bool:
    adj = adj.copy()
    remaining = list(range(len(adj)))
    while remaining:
        roots = [v for v in remaining if adj[remaining, v].sum() == 0]
        if not roots:
            return False
        remaining = [v for v in remaining if v not in roots]
    return True


def _descendants(adj: np.ndarray, v: int) -> set[int]:
    out, stack = set(), [v]
    while stack:
        u = stack.pop()
        for c in np.flatnonzero(adj[u]):
            if c not in out:
                out.add(int(c))
                stack.append(int(c))
    return out


def _basis(data: np.ndarray, cols: list[int]) -> np.ndarray:
    # The mechanism family is linear in these features, so least squares fits it exactly.
    feats = [np.ones(len(data))]
    for c in cols:
        feats += [f(data[:, c]) for f in FUNCTIONS]
    return np.stack(feats, axis=1)


def _residual_var(fit_data: np.ndarray, eval_data: np.ndarray, target: int, cols: list[int]) -> float:
    coef, *_ = np.linalg.lstsq(_basis(fit_data, cols), fit_data[:, target], rcond=None)
    resid = eval_data[:, target] - _basis(eval_data, cols) @ coef
    return float(np.mean(resid**2))


@pytest.mark.parametrize("seed", range(8))
def test_graph_truth_is_valid(seed: int) -> None:
    src = SCMTaskSource(num_variables=6, seed=seed)
    g = src.truth_graph()
    adj = np.array(g["adjacency"])
    assert adj.shape == (6, 6) and set(np.unique(adj)) <= {0, 1}
    assert _is_acyclic(adj)
    t = g["target_index"]
    assert g["target"] == f"X{t}" == g["variable_names"][t]
    assert len(g["parents"]) >= 2 and len(g["children"]) >= 1
    assert g["parents"] == [f"X{i}" for i in np.flatnonzero(adj[:, t])]
    assert g["children"] == [f"X{i}" for i in np.flatnonzero(adj[t])]
    assert g["feature_names"] == [f"X{i}" for i in range(6) if i != t]
    assert src.input_shape == (5,) and src.output_dim == 1


def test_same_seed_same_graph_other_seed_other_graph() -> None:
    a, b, c = SCMTaskSource(seed=3), SCMTaskSource(seed=3), SCMTaskSource(seed=4)
    assert a.truth_graph() == b.truth_graph()
    assert a.truth_graph() != c.truth_graph()


def test_variables_are_order_one_and_target_depends_on_parents_only() -> None:
    rng = np.random.default_rng(0)
    checked = 0
    for seed in range(12):
        src = SCMTaskSource(seed=seed, noise_scale=0.1)
        obs = src.sample_data(None, 4000, rng)
        assert obs.shape == (4000, 6)
        assert np.all(np.abs(obs.mean(0)) < 0.5) and np.all(obs.std(0) < 3.0)
        t = src.target_index
        parents = src.parents_of[t]
        res = _residual_var(obs, obs, t, parents)
        assert res < 2.0 * 0.1**2  # only the noise is left
        # A variable that is neither a parent nor a descendant adds nothing.
        others = set(range(6)) - set(parents) - _descendants(src.adjacency, t) - {t}
        if others:
            res_more = _residual_var(obs, obs, t, parents + sorted(others))
            assert res_more > 0.8 * res
            checked += 1
        # Every parent matters: dropping any one leaves much more unexplained.
        drops = [_residual_var(obs, obs, t, [p for p in parents if p != q]) for q in parents]
        assert min(drops) > 2 * res and max(drops) > 5 * res
    assert checked >= 3


@pytest.mark.parametrize("seed", range(4))
def test_intervened_mechanisms_change_and_others_do_not(seed: int) -> None:
    src = SCMTaskSource(seed=seed, intervention_size=2)
    rng = np.random.default_rng(seed)
    obs = src.sample_data(None, 3000, rng)
    for task in src.tasks("train", 3, seed=seed):
        assert isinstance(task, SCMTask)
        truth = task.truth
        assert len(truth["intervened"]) == 2
        assert src.target not in truth["intervened"]
        assert truth["intervened"] == [f"X{i}" for i in truth["intervened_indices"]]
        data = task.sample_data(3000, rng)
        for v in range(6):
            ps = src.parents_of[v]
            if ps:
                # Fit on observational data, evaluate on interventional data.
                shift = _residual_var(obs, data, v, ps)
            else:
                shift = abs(data[:, v].mean() - obs[:, v].mean()) + abs(data[:, v].std() - obs[:, v].std())
            noise_var = src.noise_std[v] ** 2
            if v in truth["intervened_indices"]:
                # The offset alone is at least 0.5, adding >= 0.25 to the residual.
                assert shift > (noise_var + 0.15 if ps else 0.3), (v, shift)
            else:
                assert shift < (1.3 * noise_var if ps else 0.15), (v, shift)


def test_target_term_shift_changes_one_term_only() -> None:
    src = SCMTaskSource(seed=1, shift_mode="target_term")
    rng = np.random.default_rng(0)
    t = src.target_index
    for task in src.tasks("train", 4, seed=2):
        assert task.truth["intervened"] == [src.target]
        m = task.mechanisms[t]
        base = src.mechanisms[t]
        diff = np.flatnonzero(m.weights != base.weights)
        assert len(diff) == 1
        assert task.truth["shifted_parent"] == f"X{base.parents[diff[0]]}"
        assert abs(task.truth["new_weight"] - task.truth["old_weight"]) >= 0.5
        data = task.sample_data(2000, rng)
        # Still a function of the parents only, but a different one.
        assert _residual_var(data, data, t, src.parents_of[t]) < 2 * 0.1**2
        obs = src.sample_data(None, 2000, rng)
        assert _residual_var(obs, data, t, src.parents_of[t]) > 0.05


def test_intervene_on_target_is_possible() -> None:
    src = SCMTaskSource(seed=0, intervention_size=5, intervene_on_target=True)
    task = src.sample_task("train", np.random.default_rng(0))
    assert src.target in task.truth["intervened"]


def test_splits_draw_different_interventions() -> None:
    src = SCMTaskSource(seed=0, intervention_size=2)
    names = {s: [tuple(t.truth["intervened"]) for t in src.tasks(s, 20, seed=0)] for s in ("train", "val", "test")}
    assert names["train"] != names["val"] != names["test"]


def test_regression_episode_shapes_and_reproducibility() -> None:
    src = SCMTaskSource(seed=2)
    a = src.episodes("train", 2, 5, 7, seed=11)
    b = src.episodes("train", 2, 5, 7, seed=11)
    ep = a[0]
    assert ep.support_x.shape == (5, 5) and ep.support_y.shape == (5, 1)
    assert ep.query_x.shape == (7, 5) and ep.query_y.shape == (7, 1)
    assert ep.support_x.dtype == torch.float32 and ep.support_y.dtype == torch.float32
    for ea, eb in zip(a, b, strict=True):
        assert torch.equal(ea.support_x, eb.support_x) and torch.equal(ea.query_y, eb.query_y)


def test_classification_episodes() -> None:
    src = SCMTaskSource(seed=5, task_type="classification")
    assert src.output_dim == 2 and len(src.class_names) == 2
    eps = src.episodes("val", 3, 4, 6, seed=1)
    for ep in eps:
        assert ep.task_type == "classification" and ep.num_classes == 2
        assert ep.support_y.dtype == torch.int64
        assert set(ep.support_y.tolist()) == {0, 1}
        assert torch.bincount(ep.support_y).tolist() == [4, 4]
        assert torch.bincount(ep.query_y).tolist() == [6, 6]
        assert ep.support_x.shape == (8, 5) and ep.query_x.shape == (12, 5)
    # Labels are the target thresholded at the observational median.
    task = src.sample_task("train", np.random.default_rng(0))
    ep = task.sample_episode(20, 0, np.random.default_rng(3))
    assert torch.equal(ep.support_y, ep.support_y.clamp(0, 1))
    again = task.sample_episode(20, 0, np.random.default_rng(3))
    assert torch.equal(ep.support_x, again.support_x)


def test_noise_levels() -> None:
    src = SCMTaskSource(seed=0, noise_scale=0.2, feature_noise=0.3)
    t = src.target_index
    obs = src.sample_data(None, 4000, np.random.default_rng(1))
    assert _residual_var(obs, obs, t, src.parents_of[t]) == pytest.approx(0.04, rel=0.2)
    for v in range(6):
        if src.parents_of[v] and v != t:
            res = _residual_var(obs, obs, v, src.parents_of[v])
            assert res == pytest.approx(0.09, rel=0.2)


def test_errors_and_factory() -> None:
    with pytest.raises(TaskError, match="num_variables"):
        SCMTaskSource(num_variables=3)
    with pytest.raises(TaskError, match="task_type"):
        SCMTaskSource(task_type="ranking")
    with pytest.raises(TaskError, match="intervention_size"):
        SCMTaskSource(num_variables=5, intervention_size=5)
    with pytest.raises(TaskError, match="noise_scale"):
        SCMTaskSource(noise_scale=0)
    with pytest.raises(TaskError, match="shift_mode"):
        SCMTaskSource(shift_mode="everything")
    src = make_task_source("scm", num_variables=8, seed=1)
    assert isinstance(src, SCMTaskSource) and src.input_shape == (7,)
    assert src.describe()["target"] == src.target
