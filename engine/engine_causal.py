"""Causal methods of the engine (discovery, priors, interventions, mechanism graph).

``OneShotMetaLearningEngine`` inherits this mixin so the causal API lives in one file of
its own. Filled in by the causal mechanisms work (DESIGN section 3).
"""

from __future__ import annotations


class CausalEngineMixin:
    """Mechanism discovery and intervention methods of OneShotMetaLearningEngine."""
