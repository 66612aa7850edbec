"""Sinusoid regression tasks: the benchmark of Finn et al. 2017 (MAML).

Each task is y = A * sin(x - phase) with A ~ U[0.1, 5], phase ~ U[0, pi] and
x ~ U[-5, 5]. Train, validation and test draw from the same distribution; they differ
only through the random generator the caller passes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import Episode, Task, TaskError, TaskSource, check_shots, check_split


def _check_range(name: str, value: tuple[float, float]) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise TaskError(f"{name} must be a pair (low, high), got {value!r}") from exc
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise TaskError(f"{name} must be finite with low <= high, got {value!r}")
    return low, high


class SinusoidTask(Task):
    """One sinusoid y = amplitude * sin(x - phase)."""

    def __init__(
        self,
        name: str,
        amplitude: float,
        phase: float,
        x_range: tuple[float, float] = (-5.0, 5.0),
    ) -> None:
        super().__init__(
            name=name,
            task_type="regression",
            output_dim=1,
            truth={"amplitude": float(amplitude), "phase": float(phase)},
        )
        self.amplitude = float(amplitude)
        self.phase = float(phase)
        self.x_range = (float(x_range[0]), float(x_range[1]))

    def function(self, x: np.ndarray) -> np.ndarray:
        """The noiseless task function, elementwise (any shape)."""
        return self.amplitude * np.sin(np.asarray(x, dtype=np.float64) - self.phase)

    def sample_episode(self, support_shots: int, query_shots: int, rng: np.random.Generator) -> Episode:
        check_shots(support_shots, query_shots)
        n = support_shots + query_shots
        x = rng.uniform(self.x_range[0], self.x_range[1], size=(n, 1))
        y = self.function(x)
        x_t = torch.from_numpy(x.astype(np.float32))
        y_t = torch.from_numpy(y.astype(np.float32))
        return Episode(
            support_x=x_t[:support_shots],
            support_y=y_t[:support_shots],
            query_x=x_t[support_shots:],
            query_y=y_t[support_shots:],
            task_type="regression",
            num_classes=None,
            task_name=self.name,
        )


class SinusoidTaskSource(TaskSource):
    """The MAML sinusoid family; every split has the same task distribution."""

    name = "sinusoid"
    task_type = "regression"
    input_shape = (1,)
    output_dim = 1
    background_value = 0.0

    def __init__(
        self,
        amplitude_range: tuple[float, float] = (0.1, 5.0),
        phase_range: tuple[float, float] = (0.0, math.pi),
        x_range: tuple[float, float] = (-5.0, 5.0),
    ) -> None:
        self.amplitude_range = _check_range("amplitude_range", amplitude_range)
        self.phase_range = _check_range("phase_range", phase_range)
        self.x_range = _check_range("x_range", x_range)
        self.feature_names = ["x"]

    def sample_task(self, split: str, rng: np.random.Generator) -> SinusoidTask:
        check_split(split)
        amplitude = float(rng.uniform(*self.amplitude_range))
        phase = float(rng.uniform(*self.phase_range))
        return SinusoidTask(
            name=f"sinusoid(A={amplitude:.3f}, phase={phase:.3f})",
            amplitude=amplitude,
            phase=phase,
            x_range=self.x_range,
        )

    def describe(self) -> dict:
        info = super().describe()
        info.update(
            amplitude_range=list(self.amplitude_range),
            phase_range=list(self.phase_range),
            x_range=list(self.x_range),
        )
        return info
