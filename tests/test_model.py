import pytest
import torch

from engine import CausalMetaModel


@pytest.mark.parametrize(
    "kwargs,x",
    [
        (
            dict(input_dim=1, hidden_dim=40, output_dim=1, num_mechanisms=4),
            torch.randn(7, 1),
        ),
        (
            dict(
                input_dim=5,
                hidden_dim=24,
                output_dim=3,
                num_mechanisms=3,
                input_gates=True,
            ),
            torch.randn(7, 5),
        ),
        (
            dict(
                input_dim=(1, 28, 28),
                hidden_dim=32,
                output_dim=5,
                num_mechanisms=4,
                conv_channels=16,
            ),
            torch.rand(7, 1, 28, 28),
        ),
    ],
)
def test_zero_mask_removes_exactly_mechanism_k(kwargs, x):
    torch.manual_seed(0)
    m = CausalMetaModel(**kwargs).double()
    x = x.double()
    K, d = m.num_mechanisms, m.mechanism_dim
    full = m(x)
    mech = m.mechanism_outputs(x) * m.gates()[:, None]
    for k in range(K):
        mask = torch.ones(K, dtype=torch.float64)
        mask[k] = 0
        contribution = mech[:, k] @ m.head.weight[:, k * d : (k + 1) * d].T
        torch.testing.assert_close(full - m(x, causal_mask=mask), contribution, rtol=0, atol=1e-10)
        # the other mechanisms' contributions are untouched: removing all but k leaves only k
        only_k = torch.zeros(K, dtype=torch.float64)
        only_k[k] = 1
        torch.testing.assert_close(m(x, causal_mask=only_k) - m.head.bias, contribution, rtol=0, atol=1e-10)


def test_sinusoid_model_is_the_maml_mlp_plus_gates():
    m = CausalMetaModel(1, 40, 1, 4)
    plain = 1 * 40 + 40 + 40 * 40 + 40 + 40 * 1 + 1
    assert sum(p.numel() for p in m.parameters()) == plain + 4


def test_input_gates_are_per_mechanism_and_in_unit_interval():
    m = CausalMetaModel(6, 24, 1, 3, input_gates=True)
    g = m.input_gates()
    assert g.shape == (3, 6) and bool(((g > 0) & (g < 1)).all())
    # closing feature j's gate for every mechanism makes the output ignore feature j
    with torch.no_grad():
        m.input_gate_logits[:, 2] = -1e4
    x = torch.randn(4, 6)
    x2 = x.clone()
    x2[:, 2] += 10
    torch.testing.assert_close(m(x), m(x2))


def test_embedding_model_has_no_head_and_bad_shapes_are_clear():
    m = CausalMetaModel((1, 28, 28), 64, 0, 4)
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 64)
    with pytest.raises(ValueError, match="too small"):
        CausalMetaModel((1, 8, 8), 64, 5, 4)
    with pytest.raises(ValueError, match="num_mechanisms"):
        CausalMetaModel(3, 2, 1, 4)
