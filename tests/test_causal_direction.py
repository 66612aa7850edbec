"""Causal direction from adaptation speed: Bengio et al.'s two variables, and scm graphs."""

from __future__ import annotations

import threading

import numpy as np

from engine.causal_direction import (
    learn_scm_graph,
    run_two_variable_experiment,
    structural_hamming_distance,
)
from engine.tasks import SCMTaskSource


def test_two_variable_belief_in_the_true_direction_grows_fast() -> None:
    """The short curve: over 6 seeds the median sigma(gamma) passes 0.9 within 200 episodes
    (the full run, 10 seeds x 1000 episodes, is benchmarks/bench_causal_direction.py)."""
    out = run_two_variable_experiment(seeds=6, episodes=200)
    median = np.array(out["median"])
    assert median[9] < median[49] < median[199]  # it keeps growing
    assert out["median_at"]["200"] >= 0.9
    assert min(out["final_sigmas"]) > 0.8  # every seed, not only the median


def test_wrong_direction_loses_when_the_effect_is_intervened() -> None:
    """Sanity of the sign: the regret gradient favours A -> B, so gamma never drifts negative
    for long (the median stays above 0.5 from the start)."""
    out = run_two_variable_experiment(seeds=4, episodes=30)
    assert all(m > 0.5 for m in out["median"][5:])


def test_streaming_callback_and_stop() -> None:
    seen: list[tuple[int, list[float]]] = []
    stop = threading.Event()

    def callback(episode: int, sigmas: list[float]) -> None:
        seen.append((episode, sigmas))
        if episode >= 30:
            stop.set()

    out = run_two_variable_experiment(seeds=[3, 4], episodes=500, callback=callback, callback_every=10, stop=stop)
    assert [e for e, _ in seen] == [10, 20, 30]
    assert all(len(s) == 2 for _, s in seen)
    assert out["stopped_early"] and out["episodes"] == 30
    again = run_two_variable_experiment(seeds=[3, 4], episodes=30)
    assert again["sigma"] == out["sigma"]  # seeded: the same run twice


def test_structural_hamming_distance() -> None:
    truth = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    assert structural_hamming_distance(truth, truth) == 0
    assert structural_hamming_distance(truth.T, truth) == 2  # two reversed edges
    undirected = truth + truth.T
    assert structural_hamming_distance(undirected, truth) == 2  # two unoriented edges
    extra = truth.copy()
    extra[0, 2] = 1
    assert structural_hamming_distance(extra, truth) == 1
    assert structural_hamming_distance(np.zeros((3, 3)), truth) == 2


def test_scm_graph_is_learned_from_interventional_tasks() -> None:
    source = SCMTaskSource(num_variables=5, seed=0)
    out = learn_scm_graph(source, n_tasks=30, samples_per_task=150, seed=0, compare_pc=False)
    assert out["shd"] <= 1
    assert out["target_accuracy"] >= 0.8


def test_scm_graph_beats_pc_on_the_same_data() -> None:
    source = SCMTaskSource(num_variables=6, seed=2)
    out = learn_scm_graph(source, n_tasks=30, samples_per_task=150, seed=0, compare_pc=True)
    assert out["shd"] < out["pc_shd"]
