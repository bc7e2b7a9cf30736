"""Compressors ("pair-in"): registry, neutral initialisation, pairing order (PIPO_SPEC B §2.3, §8.3)."""

import pytest
import torch
from torch.nn import functional as F

from pipo_agent.backends.model import COMPRESSORS, PAIR, ModelConfigError, PipoConfig, build_compressor

H = 8


def embeds(*lead: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*lead, H, generator=torch.Generator().manual_seed(seed))


def test_registry_names_the_valid_choices_on_an_unknown_name() -> None:
    assert COMPRESSORS.names() == ["linear", "mlp"]
    with pytest.raises(ModelConfigError, match=r"'gated'.*valid choices: linear, mlp"):
        build_compressor("gated", H)


def test_config_rejects_an_unknown_compressor_with_the_package_error() -> None:
    with pytest.raises(ModelConfigError, match=r"'gated'.*valid choices: linear, mlp"):
        PipoConfig(backbone={"model_type": "qwen3"}, pad_token_id=0, compressor_type="gated")


def test_linear_neutral_init_is_exactly_the_sum() -> None:
    e = embeds(3, 10)
    z = build_compressor("linear", H)(e)
    assert z.shape == (3, 5, H)
    assert torch.equal(z, e[:, 0::2] + e[:, 1::2])


def test_mlp_neutral_init_is_exactly_the_sum_of_silus() -> None:
    e = embeds(3, 10)
    z = build_compressor("mlp", H)(e)
    assert z.shape == (3, 5, H)
    # SiLU is evaluated on the same contiguous [B, L, 2H] layout as inside the module: torch's vectorised
    # and scalar SiLU paths may differ in the last bit, which would make a strided reference inexact.
    s = F.silu(e.reshape(3, 5, 2 * H))
    assert torch.equal(z, s[..., :H] + s[..., H:])
    torch.testing.assert_close(z, F.silu(e[:, 0::2]) + F.silu(e[:, 1::2]), rtol=0, atol=1e-6)
    # ... which is not the plain sum the published docstring claims.
    assert not torch.allclose(z, e[:, 0::2] + e[:, 1::2])


@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_reset_neutral_restores_the_neutral_map(name: str) -> None:
    compressor = build_compressor(name, H)
    e = embeds(2, 4)
    neutral = compressor(e)
    with torch.no_grad():
        for p in compressor.parameters():
            p.add_(1.0)
    assert not torch.allclose(compressor(e), neutral)
    compressor.reset_neutral()
    assert torch.equal(compressor(e), neutral)


@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_odd_length_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="multiple of 2"):
        build_compressor(name, H)(embeds(2, 7))


@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_packed_input_without_batch_dimension(name: str) -> None:
    compressor = build_compressor(name, H)
    e = embeds(6)  # [N_tok, H], the packed layout of the serving engine
    assert torch.equal(compressor(e), compressor(e[None])[0])


def test_pairing_order_is_first_then_second() -> None:
    """Latent j is W [e_{2j}; e_{2j+1}]: the first half of the input row is token 2j."""
    compressor = build_compressor("linear", H)
    eye, zero = torch.eye(H), torch.zeros(H, H)
    e = embeds(2, 8)
    with torch.no_grad():
        compressor.linear.weight.copy_(torch.cat([eye, zero], dim=1))  # keep only the first half
    assert torch.equal(compressor(e), e[:, 0::2])
    with torch.no_grad():
        compressor.linear.weight.copy_(torch.cat([zero, eye], dim=1))  # keep only the second half
    assert torch.equal(compressor(e), e[:, 1::2])


def test_mlp_pairing_order_matches_a_hand_written_concat() -> None:
    compressor = build_compressor("mlp", H)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in compressor.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    e = embeds(2, 6)
    w1, b1, w2, b2 = (t.detach() for t in compressor.parameters())
    pairs = torch.cat([e[:, 0::2], e[:, 1::2]], dim=-1)  # [B, L, 2H] = [e_{2j}; e_{2j+1}]
    expected = F.linear(F.silu(F.linear(pairs, w1, b1)), w2, b2)
    torch.testing.assert_close(compressor(e), expected, rtol=0, atol=1e-6)


def test_parameter_counts_match_the_spec() -> None:
    counts = {
        name: sum(p.numel() for p in build_compressor(name, H).parameters()) for name in COMPRESSORS.names()
    }
    assert counts == {"linear": 2 * H * H + H, "mlp": 6 * H * H + 3 * H}
    assert PAIR == 2
