"""The engine's causal state and its measuring instrument (docs/DESIGN.md section 3)."""

from .probe import FeatureUnit, Measured, Probe, feature_units
from .store import MechanismStore

__all__ = ["FeatureUnit", "Measured", "MechanismStore", "Probe", "feature_units"]
