"""Ready-trained models shipped in ``assets/models/`` so the app shows one-shot learning on first open.

Each ready model is an ordinary checkpoint folder (``model.safetensors`` + ``config.json``
[+ ``mechanisms.json``]) made by a committed command (``assets/models/README.md``). The app
loads them read-only; training your own replaces the ready model for that session only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .engine import OneShotMetaLearningEngine

READY_DIR: Path = Path(__file__).resolve().parents[1] / "assets" / "models"


@dataclass(frozen=True)
class ReadyModel:
    name: str  # folder under READY_DIR
    title: str  # what the sidebar says
    source: str  # the task source kind it was trained on: "images", "sinusoid", "scm"

    @property
    def path(self) -> Path:
        return READY_DIR / self.name

    def exists(self) -> bool:
        return (self.path / "model.safetensors").is_file() and (self.path / "config.json").is_file()


READY_MODELS: dict[str, ReadyModel] = {
    m.name: m
    for m in (
        ReadyModel("omniglot_proto", "ready Omniglot prototypical network", "images"),
        ReadyModel("sinusoid_metasgd", "ready sinusoid Meta-SGD model", "sinusoid"),
        ReadyModel("scm_mechanisms", "ready SCM model with discovered mechanisms", "scm"),
    )
}


def ready_model(name: str) -> ReadyModel:
    """The registry entry ``name`` (a clear error naming the known ones otherwise)."""
    try:
        return READY_MODELS[name]
    except KeyError:
        raise ValueError(f"no ready model {name!r}; known: {', '.join(READY_MODELS)}") from None


def load_ready_model(name: str, device: str = "cpu") -> OneShotMetaLearningEngine:
    """A fresh engine holding the ready model ``name`` (FileNotFoundError when it was not made)."""
    model = ready_model(name)
    if not model.exists():
        raise FileNotFoundError(
            f"ready model {name!r} is missing from {model.path}; make it with the command in assets/models/README.md"
        )
    return OneShotMetaLearningEngine.from_checkpoint(model.path, device=device)
