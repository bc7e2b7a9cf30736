"""SGLang's own Qwen3.5 text model served on the CPU through the `sgl_kernel` stand-in (`backends/sglang/cpu_shims`).

A tiny random `Qwen3_5ForCausalLM` (three Gated DeltaNet layers, then full attention) goes to plain
`python -m sglang.launch_server` from the SGLang environment that `scripts/install_sglang_cpu.sh` makes; `.ci/run`
sets `PIPO_TEST_SGLANG_PYTHON`, elsewhere these tests skip. transformers' `generate`, in this process, is the
oracle: greedy output through SGLang must equal it token for token.

The server runs what a Qwen3.5 CPU server needs: the stand-ins first on `PYTHONPATH`, `SGLANG_USE_CPU_ENGINE=1`,
`torch_native` attention, no CUDA graphs, float32 (conv states too: `SGLANG_MAMBA_CONV_DTYPE=float32`), and a radix
cache whose linear-attention states are kept only at the end of requests (`--mamba-radix-cache-strategy no_buffer`,
which needs `--disable-overlap-schedule`): the default strategy snapshots states mid-prefill, which SGLang's CPU
platform refuses. Prefill chunks of 96
tokens make prompts longer than the GDN chunk (64) run both several chunks in one call and a resumed prefill.
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from pipo_agent.backends.sglang.launch import CPU_SHIMS
from tests.sglang.conftest import NEEDS_SGLANG, SGLANG_PYTHON, server_process

pytestmark = NEEDS_SGLANG

VOCAB = 384
MAX_NEW = 16
PREFILL_CHUNK = 96
SERVER_FLAGS = (
    "--device", "cpu",
    "--attention-backend", "torch_native",
    "--disable-cuda-graph",
    "--dtype", "float32",
    "--sampling-backend", "pytorch",
    "--skip-tokenizer-init",  # the checkpoint has no tokenizer: requests send token ids
    "--mamba-radix-cache-strategy", "no_buffer",
    "--disable-overlap-schedule",
    "--chunked-prefill-size", str(PREFILL_CHUNK),
    "--max-running-requests", "8",
    "--max-total-tokens", "8192",
    "--mem-fraction-static", "0.05",
    "--skip-server-warmup",
    "--log-level", "warning",
)  # fmt: skip


def _prompt(length: int, seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(2, VOCAB, (length,), generator=generator).tolist()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    torch.manual_seed(0)
    config = Qwen3_5TextConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        layer_types=["linear_attention"] * 3 + ["full_attention"],
        full_attention_interval=4,  # SGLang derives the layer types from it
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        linear_num_key_heads=2,
        linear_num_value_heads=4,  # two value heads per key head, as in the published models
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    )
    config.architectures = ["Qwen3_5ForCausalLM"]
    model = Qwen3_5ForCausalLM(config).eval()
    with torch.no_grad():  # large random weights: peaked logits, so float noise cannot flip an argmax
        generator = torch.Generator().manual_seed(1)
        for name, param in model.named_parameters():
            if not name.endswith(("A_log", "dt_bias")):  # keep the decays in their trained range
                param.add_(torch.randn(param.shape, generator=generator) * 0.5)
    directory = tmp_path_factory.mktemp("qwen35") / "tiny"
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def reference(checkpoint: Path) -> Any:
    from transformers import Qwen3_5ForCausalLM

    return Qwen3_5ForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()


def _greedy(model: Any, ids: list[int], max_new: int = MAX_NEW) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=max_new, do_sample=False, pad_token_id=0)
    return out[0, len(ids) :].tolist()


@pytest.fixture(scope="module")
def server(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert SGLANG_PYTHON is not None
    command = [SGLANG_PYTHON, "-m", "sglang.launch_server", "--model-path", str(checkpoint)]
    env = {
        **os.environ,
        "SGLANG_USE_CPU_ENGINE": "1",
        "PYTHONPATH": str(CPU_SHIMS),
        "OMP_NUM_THREADS": "1",
        # SGLang keeps the conv states in bfloat16 whatever --dtype says: rounding them at every prefill chunk
        # and decode step moves logits by ~1e-2, enough to flip a near-tie against transformers
        "SGLANG_MAMBA_CONV_DTYPE": "float32",
    }
    log = tmp_path_factory.mktemp("qwen35-server") / "server.log"
    with server_process(
        lambda port: [*command, "--host", "127.0.0.1", "--port", str(port), *SERVER_FLAGS], log, env
    ) as url:
        yield url


def _generate(url: str, prompts: list[list[int]], max_new: int = MAX_NEW) -> list[dict[str, Any]]:
    """One batch request: SGLang admits its prompts together and decodes them as one batch."""
    params = {"temperature": 0, "max_new_tokens": max_new, "ignore_eos": True}
    response = httpx.post(
        f"{url}/generate", json={"input_ids": prompts, "sampling_params": params}, timeout=600
    )
    assert response.status_code == 200, response.text
    results = response.json()
    assert isinstance(results, list) and len(results) == len(prompts)
    return results


def test_greedy_output_equals_transformers_for_a_batch_of_short_and_long_prompts(
    server: str, reference: Any
) -> None:
    """Prompts from 1 token to past several GDN chunks and prefill chunks, served as one batch: batched decode,
    chunked GDN prefill, prefill resumed from the conv and recurrent states, and requests prefilling while
    others decode."""
    lengths = (1, 5, 40, 64, 65, 130, 290)
    prompts = [_prompt(length, seed=length) for length in lengths]
    served = _generate(server, prompts)
    mismatches = []
    for ids, got in zip(prompts, served, strict=True):
        want = _greedy(reference, ids)
        assert got["meta_info"]["completion_tokens"] == MAX_NEW
        if got["output_ids"] != want:
            mismatches.append((len(ids), got["output_ids"], want))
    assert not mismatches, mismatches


def test_a_prefix_from_the_radix_cache_continues_from_its_linear_attention_state(
    server: str, reference: Any
) -> None:
    """A follow-up turn: the prompt plus its answer comes back with new tokens. The radix cache holds the KV of
    every token but the last, and the layers' conv and recurrent states at that point; the follow-up starts
    there and must continue exactly as transformers does over the whole sequence."""
    prompt = _prompt(150, seed=1000)
    (first,) = _generate(server, [prompt])
    follow_up = prompt + first["output_ids"] + _prompt(7, seed=1001)
    (second,) = _generate(server, [follow_up])
    assert second["meta_info"]["cached_tokens"] == len(prompt) + MAX_NEW - 1
    assert second["output_ids"] == _greedy(reference, follow_up)
