"""SGLang serving PIPO end to end on loopback: `pipo-agent serve --engine sglang` on the default model, in the
SGLang virtual environment that `scripts/install_sglang_cpu.sh` makes (SGLang pins transformers==5.19.0, so it
does not share this one). `.ci/run` makes it and sets `PIPO_TEST_SGLANG_PYTHON`; elsewhere these tests skip.

The embedded engine, in this process, is the oracle: greedy output through SGLang must equal it token for
token, for prompts of odd and even length and for tau < 0, in between, and >= 1, with the same PIPO stats."""

import asyncio
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipo_agent.backends.decode.sampling import SamplingParams
from pipo_agent.backends.engine.llm_engine import LLMEngine, load_engine
from pipo_agent.backends.sglang import TOKEN1_NO_DRAFT, TOKEN_KIND_KEY, stats_from_kinds
from pipo_agent.chat_format import render_prompt
from pipo_agent.messages import UserMessage
from tests.sglang.conftest import NEEDS_SGLANG, SGLANG_PYTHON, server_process

pytestmark = NEEDS_SGLANG

MODEL = "pipo-default"
# On a GPU machine, PIPO_TEST_SGLANG_DEVICE=cuda serves through the Triton kernels; the oracle stays on the CPU.
DEVICE = os.environ.get("PIPO_TEST_SGLANG_DEVICE", "cpu")
TAUS = (-1.0, 0.5, 0.9, 1.0)
TASKS = (
    "What is 17 * 23?",
    "Convert 3 miles to kilometers.",
    "Reverse the list: apple, pear, fig",
    "A box holds 12 eggs. How many eggs are in 7 boxes, minus 5 broken ones?",
)
MAX_NEW = 40


@dataclass(frozen=True)
class Live:
    url: str
    log: Path


@contextmanager
def serving(log: Path, *extra: str) -> Iterator[Live]:
    """`pipo-agent serve --engine sglang` from the SGLang environment, on a free loopback port, until the block ends."""
    assert SGLANG_PYTHON is not None
    serve = [str(Path(SGLANG_PYTHON).parent / "pipo-agent"), "serve", "--engine", "sglang"]

    def command(port: int) -> list[str]:
        options = ["--port", str(port), "--threads", "1", "--tau", "0.9", "--log-level", "warning"]
        return [*serve, *options, "--device", DEVICE, *extra]

    with server_process(command, log) as url:
        yield Live(url, log)


@pytest.fixture(scope="module")
def sglang_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with serving(tmp_path_factory.mktemp("sglang") / "server.log") as live:
        yield live


@pytest.fixture(scope="module")
def embedded() -> tuple[LLMEngine, Any]:
    return load_engine()


@pytest.fixture(scope="module")
def prompts(embedded: tuple[LLMEngine, Any]) -> list[list[int]]:
    _, tokenizer = embedded
    chats = [
        tokenizer.encode(render_prompt([UserMessage(content=t)]), add_special_tokens=False) for t in TASKS
    ]
    plain = [tokenizer.encode(t, add_special_tokens=False) for t in TASKS[:2]]
    out = chats + plain
    assert {len(p) % 2 for p in out} == {0, 1}, "the prompts must include odd and even lengths"
    return out


def _expected_ids(result: Any) -> list[int]:
    """What SGLang returns for an embedded-engine result: its real tokens, then the EOS that stopped it."""
    return list(result.token_ids) + ([result.stop_token_id] if result.stop_token_id is not None else [])


def _generate(url: str, ids: list[int], tau: float, max_new: int = MAX_NEW, **extra: Any) -> dict[str, Any]:
    body = {
        "input_ids": ids,
        "sampling_params": {"temperature": 0, "max_new_tokens": max_new, "custom_params": {"tau": tau}},
        **extra,
    }
    response = httpx.post(f"{url}/generate", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


async def _generate_all(
    url: str, cases: list[tuple[list[int], float]], max_new: int = MAX_NEW
) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=300) as client:

        async def one(ids: list[int], tau: float) -> dict[str, Any]:
            body = {
                "input_ids": ids,
                "sampling_params": {
                    "temperature": 0,
                    "max_new_tokens": max_new,
                    "custom_params": {"tau": tau},
                },
            }
            response = await client.post(f"{url}/generate", json=body)
            assert response.status_code == 200, response.text
            return response.json()

        return await asyncio.gather(*(one(ids, tau) for ids, tau in cases))


def test_greedy_output_equals_the_embedded_engine_under_concurrent_requests(
    sglang_server: Live, embedded: tuple[LLMEngine, Any], prompts: list[list[int]]
) -> None:
    engine, _ = embedded
    cases = [(ids, tau) for ids in prompts for tau in TAUS]
    served = asyncio.run(_generate_all(sglang_server.url, cases))  # all at once: SGLang batches them
    expected = engine.generate(
        [ids for ids, _ in cases], [SamplingParams(max_new_tokens=MAX_NEW, tau=t) for _, t in cases]
    )
    mismatches = []
    for (ids, tau), got, want in zip(cases, served, expected, strict=True):
        want_ids = _expected_ids(want)
        stats = stats_from_kinds(got["meta_info"][TOKEN_KIND_KEY])
        want_stats = {
            "steps": want.stats.steps,
            "drafts_proposed": want.stats.drafts_proposed,
            "drafts_committed": want.stats.drafts_committed,
        }
        if got["output_ids"] != want_ids or {k: stats[k] for k in want_stats} != want_stats:
            mismatches.append((len(ids), tau, got["output_ids"], want_ids, stats, want_stats))
        assert got["meta_info"]["finish_reason"]["type"] == (
            "length" if want.finish_reason == "length" else "stop"
        )
        assert got["meta_info"]["completion_tokens"] == len(want_ids)
    assert not mismatches, json.dumps(mismatches)[:3000]
    committed = [stats_from_kinds(g["meta_info"][TOKEN_KIND_KEY])["drafts_committed"] for g in served]
    assert any(committed) and not all(committed)  # tau >= 1 commits none, tau < 0 commits every draft


def test_pad_is_never_output_nor_counted(sglang_server: Live, prompts: list[list[int]]) -> None:
    got = _generate(sglang_server.url, prompts[0], tau=1.0, max_new=10, ignore_eos=False)
    kinds = got["meta_info"][TOKEN_KIND_KEY]
    assert all(kind == TOKEN1_NO_DRAFT for kind in kinds)  # every pair's second slot was PAD
    assert 0 not in got["output_ids"] and "<|pad|>" not in got["text"]
    if got["meta_info"]["finish_reason"]["type"] == "length":
        assert len(got["output_ids"]) == got["meta_info"]["completion_tokens"] == 10


def test_streaming_generate_and_chat(sglang_server: Live, prompts: list[list[int]]) -> None:
    whole = _generate(sglang_server.url, prompts[1], tau=0.9)
    chunks = []
    body = {
        "input_ids": prompts[1],
        "stream": True,
        "sampling_params": {"temperature": 0, "max_new_tokens": MAX_NEW, "custom_params": {"tau": 0.9}},
    }
    with httpx.stream("POST", f"{sglang_server.url}/generate", json=body, timeout=120) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line.removeprefix("data: ")))
    assert len(chunks) > 2
    assert chunks[-1]["output_ids"] == whole["output_ids"] and chunks[-1]["text"] == whole["text"]
    assert chunks[-1]["meta_info"][TOKEN_KIND_KEY] == whole["meta_info"][TOKEN_KIND_KEY]

    from openai import OpenAI

    client = OpenAI(base_url=f"{sglang_server.url}/v1", api_key="none", max_retries=0)
    messages = [{"role": "user", "content": TASKS[0]}]
    extra = {"custom_params": {"tau": 0.9}}
    full = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=MAX_NEW, temperature=0, extra_body=extra
    )
    streamed = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=MAX_NEW, temperature=0, extra_body=extra, stream=True
    )
    reasoning, text = "", ""
    for chunk in streamed:
        if chunk.choices:
            delta = chunk.choices[0].delta
            reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
            text += delta.content or ""
    message = full.choices[0].message
    assert reasoning and reasoning == (message.model_extra or {}).get("reasoning_content")  # SGLang's parser
    assert text == (message.content or "")
    assert full.usage is not None and full.usage.completion_tokens > 0


def test_bad_requests_get_a_4xx_with_the_reason_and_the_server_keeps_serving(
    sglang_server: Live, prompts: list[list[int]]
) -> None:
    url = sglang_server.url
    broken = httpx.post(f"{url}/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert 400 <= broken.status_code < 500
    cases = [
        ({"custom_params": {"tau": 3}}, {}, "tau"),
        ({"custom_params": {"tau": "high"}}, {}, "custom_params.tau must be a number"),
        ({}, {"return_logprob": True}, "logprobs are not supported"),
        ({"regex": "[0-9]+"}, {}, "constrained decoding"),
    ]
    for params, extra, reason in cases:
        body = {"input_ids": prompts[0], "sampling_params": {"max_new_tokens": 4, **params}, **extra}
        response = httpx.post(f"{url}/generate", json=body, timeout=60)
        assert response.status_code == 400 and reason in response.text, (params, extra, response.text)
    chat = httpx.post(
        f"{url}/v1/chat/completions", json={"model": MODEL, "messages": "not a list"}, timeout=60
    )
    assert 400 <= chat.status_code < 500 and "messages" in chat.text
    after = _generate(url, prompts[0], tau=0.9, max_new=8)
    assert len(after["output_ids"]) > 0


def test_the_agent_runs_on_sglang_through_the_http_backend(sglang_server: Live, tmp_path: Path) -> None:
    """The whole stack: the agent loop, SQLite memory and real tools, with SGLang serving the model; SGLang's
    parsers give the reasoning and the tool calls back in OpenAI form."""
    from pipo_agent.agent import Agent, AgentConfig
    from pipo_agent.backend import ChatRequest, SamplingSettings
    from pipo_agent.backends.http import HttpChatBackend
    from pipo_agent.memory import MemoryStore
    from pipo_agent.messages import SystemMessage, ToolCall
    from pipo_agent.tasks import SYSTEM_PROMPT
    from pipo_agent.tools import calculator_tool, lookup_tool

    lookup = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look up a price or a unit.",
            "parameters": {
                "type": "object",
                "properties": {"item": {"type": "string"}},
                "required": ["item"],
            },
        },
    }
    question = [
        SystemMessage(content="You solve tasks step by step and call tools when they help."),
        UserMessage(content="How many dollars do 9 kg of garlic cost?"),
    ]

    async def main() -> tuple[Any, Any, int]:
        backend = HttpChatBackend.connect(f"{sglang_server.url}/v1", MODEL, dialect="sglang")
        sampling = SamplingSettings(max_tokens=160, tau=0.8, temperature=0.0)
        async with backend, MemoryStore.open(tmp_path / "agent.db") as store:
            turn = await backend.complete(ChatRequest(messages=question, tools=[lookup], sampling=sampling))
            config = AgentConfig(
                max_steps=3, task_type="arithmetic", sampling=SamplingSettings(max_tokens=64)
            )
            agent = Agent(
                backend,
                tools=[calculator_tool(), lookup_tool()],
                system_prompt=SYSTEM_PROMPT,
                config=config,
                memory=store,
            )
            result = await agent.run("What is 12*7? Use the calculator.")
            steps = len(await store.list_steps(result.run_id or ""))
        return turn, result, steps

    turn, result, steps = asyncio.run(main())
    assert turn.message.reasoning and turn.usage.reasoning_tokens > 0
    assert turn.message.tool_calls and isinstance(turn.message.tool_calls[0], ToolCall)
    assert turn.message.tool_calls[0].name == "lookup"
    assert result.steps >= 1 and steps == result.steps and result.usage.completion_tokens > 0
    assert result.tau is not None  # the agent's per-task tau went to SGLang in custom_params


def test_requests_retracted_for_kv_space_resume_with_the_same_output(
    embedded: tuple[LLMEngine, Any], tmp_path: Path
) -> None:
    """A pool of 480 KV slots, an optimistic admission and 64-token prefill chunks: SGLang runs out of KV
    mid-decode, retracts requests and readmits them later; the worker recomputes their pairs (PADs included)
    from its history."""
    engine, _ = embedded
    prompts = [[(7 * i + 3 * j) % 500 + 10 for j in range(30 + i)] for i in range(8)]
    cases = [(ids, (0.9, -1.0, 1.0, 0.5)[i % 4]) for i, ids in enumerate(prompts)]
    expected = engine.generate(
        [ids for ids, _ in cases], [SamplingParams(max_new_tokens=150, tau=t) for _, t in cases]
    )
    # Each KV slot holds one pair: the batch must need more slots than the pool has, whatever the model.
    pool = 480
    demand = sum(len(ids) + len(want.token_ids) for (ids, _), want in zip(cases, expected, strict=True)) // 2
    assert demand > pool, (
        f"the outputs are too short ({demand} pair slots) to run a {pool}-slot pool out of KV"
    )
    extra = (
        f"--sglang-arg=--max-total-tokens={pool}",
        "--sglang-arg=--schedule-conservativeness=0.02",
        "--sglang-arg=--chunked-prefill-size=64",  # prompts of 30+ tokens come in several chunks too
    )
    body = {
        "input_ids": [ids for ids, _ in cases],  # one batch request: SGLang admits them together
        "sampling_params": [
            {"temperature": 0, "max_new_tokens": 150, "custom_params": {"tau": tau}} for _, tau in cases
        ],
    }
    with serving(tmp_path / "server.log", *extra) as live:
        response = httpx.post(f"{live.url}/generate", json=body, timeout=600)
    assert response.status_code == 200, response.text
    served = response.json()
    assert sum(got["meta_info"]["num_retractions"] for got in served) > 0
    for got, want in zip(served, expected, strict=True):
        want_ids = _expected_ids(want)
        assert got["output_ids"] == want_ids


@pytest.mark.parametrize("backbone", ["llama", "qwen2"])
def test_other_backbones_through_sglang(
    backbone: str, tmp_path: Path, embedded: tuple[LLMEngine, Any]
) -> None:
    """The dense backbones the embedded engine serves, as tiny random PIPO checkpoints with grouped-query
    attention (4 query heads, 2 KV heads): SGLang's greedy output equals the embedded engine's."""
    import shutil

    import torch

    from pipo_agent.backends.checkpoints import default_model_dir
    from pipo_agent.backends.engine.llm_engine import engine_config_for
    from pipo_agent.backends.model import PipoConfig, PipoModel, save_pipo

    _, tokenizer = embedded
    torch.manual_seed(7)
    backbone_config = {
        "model_type": backbone,
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_hidden_layers": 2,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": backbone == "qwen2",
    }
    model = PipoModel(PipoConfig(backbone=backbone_config, pad_token_id=0, eos_token_ids=(1, 3))).eval()
    with torch.no_grad():  # large random weights: peaked logits, so float noise cannot flip an argmax
        generator = torch.Generator().manual_seed(7)
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.5)
    directory = save_pipo(model, tmp_path / backbone)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(default_model_dir() / name, directory / name)
    prompts = [[(11 * i + 5 * j) % 900 + 20 for j in range(9 + 4 * i)] for i in range(3)]
    cases = [(ids, tau) for ids in prompts for tau in (-1.0, 0.5, 1.0)]
    engine = LLMEngine(
        model,
        engine_config_for(model, kv_cache_bytes=8 << 20),
        eos_token_ids=(1, 3),
        pad_token_id=0,
    )
    expected = engine.generate(
        [ids for ids, _ in cases], [SamplingParams(max_new_tokens=24, tau=t) for _, t in cases]
    )
    with serving(tmp_path / "server.log", "--model", str(directory), "--kv-cache-mb", "8") as live:
        served = asyncio.run(_generate_all(live.url, cases, max_new=24))
    for (ids, tau), got, want in zip(cases, served, expected, strict=True):
        want_ids = _expected_ids(want)
        assert got["output_ids"] == want_ids, (len(ids), tau)
        assert (
            stats_from_kinds(got["meta_info"][TOKEN_KIND_KEY])["drafts_committed"]
            == want.stats.drafts_committed
        )


def test_seeded_sampling_equals_the_embedded_engine(
    sglang_server: Live, embedded: tuple[LLMEngine, Any], prompts: list[list[int]]
) -> None:
    """Temperature, top-p, top-k and a seed: the worker samples token1 and the draft with the request's own
    generator, in the engine's order, so a seeded request draws the same tokens in both engines."""
    engine, _ = embedded
    settings = [(0.8, 0.9, 0, 11), (1.0, 1.0, 20, 5)]
    cases = [(ids, s) for ids in prompts[:3] for s in settings]
    served = []
    for ids, (temperature, top_p, top_k, seed) in cases:
        params = {
            "temperature": temperature,
            "top_p": top_p,
            "max_new_tokens": MAX_NEW,
            "sampling_seed": seed,
        }
        if top_k:
            params["top_k"] = top_k
        body = {"input_ids": ids, "sampling_params": {**params, "custom_params": {"tau": 0.9}}}
        response = httpx.post(f"{sglang_server.url}/generate", json=body, timeout=120)
        assert response.status_code == 200, response.text
        served.append(response.json()["output_ids"])
    expected = engine.generate(
        [ids for ids, _ in cases],
        [
            SamplingParams(max_new_tokens=MAX_NEW, tau=0.9, temperature=t, top_p=p, top_k=k, seed=s)
            for _, (t, p, k, s) in cases
        ],
    )
    for got, want in zip(served, expected, strict=True):
        assert got == _expected_ids(want)
    assert len({tuple(g) for g in served}) == len(served)  # the settings and prompts give different samples


def test_published_qwen35_checkpoint_through_sglangs_own_qwen35_layers(
    tmp_path: Path, embedded: tuple[LLMEngine, Any]
) -> None:
    """A tiny random Qwen3.5 PIPO checkpoint (Gated-DeltaNet and gated full-attention layers) in the published
    layout: a Qwen3.5 `config.json` with the PIPO fields, `model.language_model.*` / `mtp.*` keys and a vision
    tower to ignore. `serve --engine sglang` serves it through an overlay config; the backbone and the MTP layer
    run as SGLang's own Qwen3.5 modules over its linear-attention state pool, on the CPU stand-in ops. Under a
    small KV pool (SGLang retracts requests) and 64-token prefill chunks (linear-attention states carried across
    chunks), greedy output equals the reference decoder's over 150 tokens, with the same drafts committed."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from pipo_agent.backends.checkpoints import default_model_dir
    from pipo_agent.backends.decode.reference import PipoReferenceDecoder
    from pipo_agent.backends.model import PipoConfig, PipoModel, load_pipo, save_pipo

    _, tokenizer = embedded
    torch.manual_seed(7)
    text = {
        "model_type": "qwen3_5_text",
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "num_hidden_layers": 4,
        "layer_types": ["linear_attention", "full_attention", "linear_attention", "full_attention"],
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 4,
        "linear_key_head_dim": 16,
        "linear_value_head_dim": 16,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": True,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000000.0,
            "partial_rotary_factor": 0.25,
            "mrope_section": [1, 1, 0],
            "mrope_interleaved": True,
        },
    }
    model = PipoModel(PipoConfig(backbone=text, pad_token_id=0, eos_token_ids=(1, 3))).eval()
    with torch.no_grad():  # large random weights: peaked logits, so float noise cannot flip an argmax
        generator = torch.Generator().manual_seed(7)
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.5)
    directory = save_pipo(model, tmp_path / "published")
    weights = load_file(str(directory / "model.safetensors"))
    assert any(k.startswith("model.language_model.layers.0.linear_attn.") for k in weights)
    weights["model.visual.patch_embed.proj.weight"] = torch.zeros(4, 4)
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    published = {
        "architectures": ["Qwen3_5ForConditionalGeneration"],
        "model_type": "qwen3_5",
        "text_config": text,
        "vision_config": {
            "model_type": "qwen3_5_vision",
            "depth": 1,
            "hidden_size": 16,
            "out_hidden_size": 64,
        },
        "tie_word_embeddings": True,
        "compressor_type": "mlp",
        "pad_token_id": 0,
        "eos_token_id": [1, 3],
    }
    (directory / "config.json").write_text(json.dumps(published))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(default_model_dir() / name, directory / name)

    reference = PipoReferenceDecoder(load_pipo(directory))
    prompts = [[(7 * i + 3 * j) % 500 + 10 for j in range(30 + i)] for i in range(8)]
    prompts.append([(3 * j) % 700 + 30 for j in range(151)])  # odd, and 3 prefill chunks
    cases = [(ids, (0.9, -1.0, 1.0, 0.5)[i % 4]) for i, ids in enumerate(prompts)]
    expected = [reference.generate(ids, SamplingParams(max_new_tokens=150, tau=tau)) for ids, tau in cases]
    extra = (
        "--sglang-arg=--max-total-tokens=700",
        "--sglang-arg=--schedule-conservativeness=0.02",
        "--sglang-arg=--chunked-prefill-size=64",
    )
    body = {
        "input_ids": [ids for ids, _ in cases],
        "sampling_params": [
            {"temperature": 0, "max_new_tokens": 150, "custom_params": {"tau": tau}} for _, tau in cases
        ],
    }
    with serving(tmp_path / "server.log", "--model", str(directory), "--kv-cache-mb", "8", *extra) as live:
        response = httpx.post(f"{live.url}/generate", json=body, timeout=600)
        log = live.log.read_text()
    assert response.status_code == 200, response.text
    assert (
        "#mamba_num_gained" in log
    )  # SGLang retracted requests holding linear-attention (mamba) state slots
    served = response.json()
    assert sum(got["meta_info"]["num_retractions"] for got in served) > 0
    for (ids, tau), got, want in zip(cases, served, expected, strict=True):
        assert got["output_ids"] == _expected_ids(want), (len(ids), tau)
        stats = stats_from_kinds(got["meta_info"][TOKEN_KIND_KEY])
        assert stats["drafts_committed"] == want.stats.drafts_committed, (len(ids), tau)
        assert stats["steps"] == want.stats.steps
    assert any(want.stats.drafts_committed for want in expected)
