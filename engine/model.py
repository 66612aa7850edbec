"""CausalMetaModel: an encoder feeding K gated mechanism modules and a head (docs/DESIGN.md section 3).

Layout of the hidden representation: mechanism k owns a block of ``mechanism_dim`` units;
the blocks are scaled by the structure gate g_k = sigmoid(gate_logits_k) times the causal mask
c_k and concatenated. The head is linear, so the output is a sum of per-mechanism contributions
plus a bias: setting c_k = 0 (do(mechanism k off)) removes exactly mechanism k's contribution.

With K mechanisms of width hidden_dim // K on an MLP encoder, the network is the plain
``input-hidden-hidden-output`` MLP (1-40-40-1 for the sinusoid protocol) plus K gates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .pooling import MaxPool2x2

GATE_INIT_LOGIT = 2.0  # sigmoid(2) ~ 0.88: gates start open and can move either way
INPUT_GATE_INIT_LOGIT = 1.0


def reset_layers_(modules: Iterable[nn.Module], generator: torch.Generator) -> None:
    """PyTorch's default init of every Linear and Conv2d among ``modules``, in order, drawn from
    ``generator``: with a generator seeded like the process-wide one was, the same values, but
    no other thread's draws can come between (a model is built the same way under concurrency)."""
    for m in modules:
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    # GroupNorm (not BatchNorm): per-example statistics, so one query image predicts alone,
    # and second-order gradients stay exact under vmap (docs/DESIGN.md section 10). Pooling before the
    # ReLU gives the same outputs and gradients (both are monotone) with a quarter of the ReLU work.
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.GroupNorm(min(8, cout), cout),
        MaxPool2x2(),
        nn.ReLU(),
    )


def _check_layout(
    input_dim: int | Sequence[int], hidden_dim: int, num_mechanisms: int, encoder: str, input_gates: bool
) -> tuple[tuple[int, ...], str]:
    """The input shape and the encoder kind ("auto" resolved); ValueError for a mismatch."""
    shape = (input_dim,) if isinstance(input_dim, int) else tuple(int(s) for s in input_dim)
    if encoder == "auto":
        encoder = "conv4" if len(shape) == 3 else "mlp"
    if encoder not in ("mlp", "conv4"):
        raise ValueError(f"encoder must be 'mlp' or 'conv4', got {encoder!r}")
    if encoder == "conv4" and len(shape) != 3:
        raise ValueError(f"conv4 needs an image shape (C, H, W); got input_dim={input_dim!r}")
    if encoder == "mlp" and len(shape) != 1:
        raise ValueError(f"mlp needs a feature count; got input shape {shape}")
    if input_gates and encoder != "mlp":
        raise ValueError("input_gates apply to feature vectors (mlp encoder) only")
    if hidden_dim < num_mechanisms:
        raise ValueError(f"hidden_dim ({hidden_dim}) must be >= num_mechanisms ({num_mechanisms})")
    return shape, encoder


class CausalMetaModel(nn.Module):
    """Encoder -> K gated mechanisms -> linear head.

    Args:
        input_dim: number of features, or an image shape ``(channels, height, width)``.
        hidden_dim: width of the mechanism layer (split into K blocks).
        output_dim: head outputs; 0 means no head (embedding learners).
        num_mechanisms: K.
        encoder: "auto" (conv4 for image shapes, else mlp), "mlp" or "conv4".
        input_gates: per-mechanism sparse gates over input features (tabular inputs).
        generator: draws the initial weights (None: torch's process-wide generator).

    >>> m = CausalMetaModel(1, 40, 1, 4)
    >>> m(torch.zeros(3, 1), causal_mask=torch.tensor([1., 0., 1., 1.])).shape
    torch.Size([3, 1])
    """

    def __init__(
        self,
        input_dim: int | Sequence[int],
        hidden_dim: int,
        output_dim: int,
        num_mechanisms: int,
        encoder: str = "auto",
        input_gates: bool = False,
        conv_channels: int = 64,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        shape, encoder = _check_layout(input_dim, hidden_dim, num_mechanisms, encoder, input_gates)
        self.input_shape = shape
        self.encoder_kind = encoder
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.num_mechanisms = num_mechanisms
        self.mechanism_dim = hidden_dim // num_mechanisms
        self.has_input_gates = input_gates
        self.conv_channels = conv_channels
        self._build_mechanism_layer()
        self.gate_logits = nn.Parameter(torch.full((num_mechanisms,), GATE_INIT_LOGIT))
        self.head = nn.Linear(self.embedding_dim, output_dim) if output_dim > 0 else None
        if generator is not None:  # redraw in construction order: encoder, head, then the blocks
            reset_layers_(
                [*getattr(self, "encoder", nn.Sequential()).modules(), self.head or nn.Sequential()], generator
            )
        self._reset_block_weights(generator)

    def _build_mechanism_layer(self) -> None:
        """The encoder and the K mechanism blocks over its output."""
        shape, K, m = self.input_shape, self.num_mechanisms, self.mechanism_dim
        if self.encoder_kind == "conv4":
            c = self.conv_channels
            self.encoder = nn.Sequential(
                _conv_block(shape[0], c),
                _conv_block(c, c),
                _conv_block(c, c),
                _conv_block(c, c),
            )
            side_h, side_w = shape[1], shape[2]
            for _ in range(4):
                side_h, side_w = side_h // 2, side_w // 2
            if side_h < 1 or side_w < 1:
                raise ValueError(f"images of {shape[1]}x{shape[2]} are too small for Conv-4 (need >= 16)")
            emb = c * side_h * side_w
            self.mech_weight = nn.Parameter(torch.empty(K, m, emb))
        elif self.has_input_gates:
            d = shape[0]
            # Each mechanism has its own first layer over its own gated view of the inputs.
            self.input_gate_logits = nn.Parameter(torch.full((K, d), INPUT_GATE_INIT_LOGIT))
            self.enc_weight = nn.Parameter(torch.empty(K, m, d))
            self.enc_bias = nn.Parameter(torch.zeros(K, m))
            self.mech_weight = nn.Parameter(torch.empty(K, m, m))
        else:
            self.encoder = nn.Sequential(nn.Linear(shape[0], self.hidden_dim), nn.ReLU())
            self.mech_weight = nn.Parameter(torch.empty(K, m, self.hidden_dim))
        self.mech_bias = nn.Parameter(torch.zeros(K, m))

    def _reset_block_weights(self, generator: torch.Generator | None) -> None:
        # Same init as nn.Linear would give each block (kaiming-uniform with a=sqrt(5)).
        for name in ("enc_weight", "mech_weight"):
            w = getattr(self, name, None)
            if w is None:
                continue
            fan_in = w.shape[-1]
            bound = 1.0 / math.sqrt(fan_in)
            with torch.no_grad():
                w.uniform_(-bound, bound, generator=generator)
                getattr(self, name.replace("weight", "bias")).uniform_(-bound, bound, generator=generator)

    # ---- structure -------------------------------------------------------------------------
    @property
    def embedding_dim(self) -> int:
        return self.num_mechanisms * self.mechanism_dim

    def gates(self) -> torch.Tensor:
        return torch.sigmoid(self.gate_logits)

    def input_gates(self) -> torch.Tensor | None:
        return torch.sigmoid(self.input_gate_logits) if self.has_input_gates else None

    def mechanism_axes(self) -> dict[str, tuple[int, int]]:
        """name -> (axis, block) for parameters split across mechanisms: mechanism k owns
        indices [k*block, (k+1)*block) along ``axis``. Parameters not listed are shared."""
        axes = {"gate_logits": (0, 1), "mech_weight": (0, 1), "mech_bias": (0, 1)}
        if self.has_input_gates:
            axes.update({"input_gate_logits": (0, 1), "enc_weight": (0, 1), "enc_bias": (0, 1)})
        if self.head is not None:
            axes["head.weight"] = (1, self.mechanism_dim)
        return axes

    # ---- forward ---------------------------------------------------------------------------
    def mechanism_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Ungated mechanism activations, shape (batch, K, mechanism_dim)."""
        if self.has_input_gates:
            gated = x.unsqueeze(1) * torch.sigmoid(self.input_gate_logits)  # (B, K, d)
            h = F.relu(torch.einsum("bkd,kmd->bkm", gated, self.enc_weight) + self.enc_bias)
            return F.relu(torch.einsum("bkh,kmh->bkm", h, self.mech_weight) + self.mech_bias)
        z = self.encoder(x).flatten(1)
        return F.relu(torch.einsum("be,kme->bkm", z, self.mech_weight) + self.mech_bias)

    def embed(self, x: torch.Tensor, causal_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Gated, concatenated mechanism outputs, shape (batch, K * mechanism_dim)."""
        gate = torch.sigmoid(self.gate_logits)
        if causal_mask is not None:
            gate = gate * causal_mask.to(gate.dtype)
        return (self.mechanism_outputs(x) * gate[:, None]).flatten(1)

    def forward(self, x: torch.Tensor, causal_mask: torch.Tensor | None = None) -> torch.Tensor:
        e = self.embed(x, causal_mask)
        return e if self.head is None else self.head(e)

    def describe(self) -> dict:
        """Constructor arguments, to rebuild the same model from a checkpoint."""
        return {
            "input_dim": list(self.input_shape) if len(self.input_shape) > 1 else self.input_shape[0],
            "hidden_dim": self.hidden_dim,
            "output_dim": self.output_dim,
            "num_mechanisms": self.num_mechanisms,
            "encoder": self.encoder_kind,
            "input_gates": self.has_input_gates,
            "conv_channels": self.conv_channels,
        }
