"""Occlusion maps (engine.occlusion): each patch's measured effect on the query loss."""

import numpy as np
import pytest
import torch

from engine import OneShotMetaLearningConfig, OneShotMetaLearningEngine
from engine.occlusion import occlusion_maps
from engine.tasks.base import Episode


def engine(algorithm: str = "PROTOTYPICAL_CAUSAL") -> OneShotMetaLearningEngine:
    cfg = OneShotMetaLearningConfig(algorithm=algorithm, hidden_dim=16, conv_channels=8, n_way=2, device="cpu", seed=0)
    eng = OneShotMetaLearningEngine(cfg)
    eng.initialize_sync((1, 28, 28), 2, "classification")
    return eng


def evidence_episode() -> Episode:
    """Both classes share a vertical bar; only class 0 also has a blob in rows 4-7, cols 4-7.
    The query is class 0 (bar and blob): the blob is the only evidence for its class."""
    bar = np.zeros((1, 28, 28), dtype=np.float32)
    bar[0, 6:22, 13:15] = 1.0
    with_blob = bar.copy()
    with_blob[0, 4:8, 4:8] = 1.0
    sx = torch.tensor(np.stack([with_blob, bar]))
    qx = torch.tensor(np.stack([with_blob]))
    return Episode(sx, torch.tensor([0, 1]), qx, torch.tensor([0]), "classification", 2, "blob")


def test_largest_effect_lands_on_the_evidence():
    """A prototypical network (untrained: its random conv embedding still keeps pixel differences)."""
    eng = engine()
    maps = occlusion_maps(eng.learner, evidence_episode(), patch=4)
    assert maps.support.shape == (2, 7, 7) and maps.query.shape == (1, 7, 7)
    # blanking the blob (patch row 1, col 1) of the query makes it look like class 1: the loss rises most there
    q = maps.query[0]
    assert np.unravel_index(np.argmax(q), q.shape) == (1, 1)
    assert q[1, 1] > 0
    # the same for the class-0 support picture: without its blob the two classes look alike
    s = maps.support[0]
    assert np.unravel_index(np.argmax(s), s.shape) == (1, 1)
    # blank patches change nothing: blanking paper is no intervention
    assert np.allclose(q[5:, :3], 0.0, atol=1e-6) and np.allclose(s[5:, :3], 0.0, atol=1e-6)


def test_patch_grid_and_errors():
    eng = engine()
    maps = occlusion_maps(eng.learner, evidence_episode(), patch=8)  # edge patches take the remainder
    assert maps.query.shape == (1, 4, 4) and maps.support.shape == (2, 4, 4) and np.isfinite(maps.base_loss)
    with pytest.raises(ValueError, match="patch"):
        occlusion_maps(eng.learner, evidence_episode(), patch=0)
    ep = evidence_episode()
    flat = Episode(ep.support_x.reshape(2, -1), ep.support_y, ep.query_x.reshape(1, -1), ep.query_y, "classification")
    with pytest.raises(ValueError, match="pictures"):
        occlusion_maps(eng.learner, flat)
