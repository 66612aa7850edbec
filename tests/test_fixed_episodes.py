import numpy as np
import pytest
import torch

from engine import ConfigError, OneShotMetaLearningConfig, OneShotMetaLearningEngine
from engine.tasks import TaskError, make_task_source
from engine.tasks.base import Episode
from engine.tasks.fixed_episodes import load_fixed_episodes
from tests.fixed_episode_data import copies_layout, pattern, write_fixed_zip


def _proto_engine(n_way: int = 3, **fields) -> OneShotMetaLearningEngine:
    cfg = OneShotMetaLearningConfig(
        algorithm="PROTOTYPICAL_CAUSAL", hidden_dim=16, conv_channels=8, n_way=n_way, device="cpu", **fields
    )
    eng = OneShotMetaLearningEngine(cfg)
    eng.initialize_sync((1, 28, 28), n_way, "classification")
    return eng


def test_roles_come_from_the_file_names(tmp_path):
    layout = {"ep0": {"a": {"support.png": 1, "q1.png": 2, "q2.png": 3}, "b": {"Support_x.png": 4, "q.png": 5}}}
    (fe,) = load_fixed_episodes(write_fixed_zip(tmp_path / "t.zip", layout))
    assert fe.class_names == ["a", "b"]
    assert [f.rsplit("/", 1)[-1] for f in fe.support_files] == ["support.png", "Support_x.png"]
    assert [f.rsplit("/", 1)[-1] for f in fe.query_files] == ["q1.png", "q2.png", "q.png"]
    assert fe.episode.support_y.tolist() == [0, 1] and fe.episode.query_y.tolist() == [0, 0, 1]
    want = torch.from_numpy(pattern(4).astype(np.float32) / 255)
    assert torch.equal(fe.episode.support_x[1, 0], want)
    (swapped,) = load_fixed_episodes(tmp_path / "t.zip", swap_roles=True)
    assert swapped.episode.support_y.tolist() == [0, 0, 1]
    assert [f.rsplit("/", 1)[-1] for f in swapped.query_files] == ["support.png", "Support_x.png"]


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ({"ep": {"a": {"q.png": 1}, "b": {"support.png": 2, "q.png": 3}}}, "class 'a' has no 'support"),
        ({"ep": {"a": {"support.png": 1}, "b": {"support.png": 2}}}, "has no query image"),
        ({"ep": {"a": {"support.png": 1, "q.png": 2}}}, "at least 2 classes"),
    ],
)
def test_malformed_episodes_are_named(tmp_path, layout, expected):
    with pytest.raises(TaskError, match=expected):
        load_fixed_episodes(write_fixed_zip(tmp_path / "t.zip", layout))


def test_every_query_is_scored_once_with_the_stated_roles(tmp_path):
    path = write_fixed_zip(tmp_path / "copies.zip", copies_layout(episodes=2, ways=3))
    eng = _proto_engine()
    result = eng.evaluate_fixed_sync(path)
    # each query is an exact copy of its own class's support image: a prototype match
    assert result["accuracy"] == 1.0 and result["query_accuracy"] == 1.0
    assert result["data"]["episodes"] == 2 and result["data"]["queries"] == 6 and result["data"]["sha256"]
    rows = result["per_episode"]
    assert [r["episode"] for r in rows] == ["ep0", "ep1"]
    assert rows[0]["confusion"] == np.eye(3, dtype=int).tolist()
    assert sorted(p["file"].rsplit("/", 1)[-1] for r in rows for p in r["predictions"]) == ["q1.png"] * 6


def test_agrees_with_adapting_on_each_episode_by_hand(tmp_path):
    layout = {
        f"ep{e}": {f"c{k}": {"support.png": 10 * e + k, "x.png": 500 + 10 * e + k, "y.png": 900 + k} for k in range(3)}
        for e in range(3)
    }
    path = write_fixed_zip(tmp_path / "t.zip", layout)
    eng = _proto_engine()
    for swap in (False, True):
        result = eng.evaluate_fixed_sync(path, swap_roles=swap)
        accs = []
        for e, row in enumerate(result["per_episode"]):
            sup = [
                (k, s) for k in range(3) for name, s in layout[f"ep{e}"][f"c{k}"].items() if (name[0] == "s") != swap
            ]
            qry = [
                (k, s) for k in range(3) for name, s in layout[f"ep{e}"][f"c{k}"].items() if (name[0] == "s") == swap
            ]

            def stack(items):
                return torch.stack([torch.from_numpy(pattern(s).astype(np.float32) / 255)[None] for _, s in items])

            ep = Episode(
                stack(sup),
                torch.tensor([k for k, _ in sup]),
                stack(qry),
                torch.tensor([k for k, _ in qry]),
                "classification",
                3,
            )
            by_hand = eng.one_shot_adapt_sync(ep)
            truth = [f"c{k}" for k, _ in qry]
            assert sorted(zip(truth, [f"c{p}" for p in by_hand["predictions"]], strict=True)) == sorted(
                (p["true"], p["predicted"]) for p in row["predictions"]
            )
            accs.append(by_hand["adaptation_quality"]["accuracy"])
        assert result["accuracy"] == pytest.approx(np.mean(accs))
        assert result["data"]["swap_roles"] is swap and result["data"]["queries"] == (3 * 3 if swap else 6 * 3)


def test_a_linear_head_needs_its_own_number_of_classes(tmp_path):
    path = write_fixed_zip(tmp_path / "t.zip", copies_layout(ways=3))
    cfg = OneShotMetaLearningConfig(hidden_dim=16, conv_channels=8, n_way=5, device="cpu")
    eng = OneShotMetaLearningEngine(cfg)
    eng.initialize_sync((1, 28, 28), 5, "classification")
    with pytest.raises(TaskError, match="3 classes, but this MAML_CAUSAL model's head has 5 outputs"):
        eng.evaluate_fixed_sync(path)


def test_set_test_time_updates_engine_and_learner_and_refuses_bad_values(tmp_path):
    eng = _proto_engine()
    assert eng.set_test_time(shifts=1, transductive_steps=2) == {
        "test_time_shifts": 1,
        "test_time_views": "plus",
        "transductive_steps": 2,
    }
    assert eng.learner.config is eng.config and eng.learner.config.test_time_shifts == 1
    with pytest.raises(ConfigError):
        eng.set_test_time(views="nonsense")
    assert eng.config.test_time_views == "plus" and eng.learner.config.transductive_steps == 2
    path = write_fixed_zip(tmp_path / "c.zip", copies_layout(episodes=1))
    assert eng.evaluate_fixed_sync(path)["settings"]["test_time_shifts"] == 1


def test_fixed_set_is_also_an_ordinary_image_set(tmp_path):
    # the same zip read as a task source: the episodes are groups, the classes are classes
    path = write_fixed_zip(tmp_path / "c.zip", copies_layout(episodes=2, ways=3))
    src = make_task_source("images", path=path, n_way=3, split_fractions=(0, 0, 1))
    assert src.num_classes("test") == 6 and set(src.class_sizes("test").values()) == {2}
