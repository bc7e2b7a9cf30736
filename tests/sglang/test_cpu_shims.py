"""The CPU stand-ins SGLang's server gets on a machine without a GPU (`backends/sglang/cpu_shims`).

They are loaded under private names here, so this process's own imports of `sgl_kernel`/`torchvision` (if any
are installed) are untouched; the server loads them as the top-level packages from `PYTHONPATH`. Loading the
`sgl_kernel` stand-in registers its `torch.ops.sgl_kernel` ops in this process too, where the tests call them.

The Qwen3.5 ops are checked against transformers' torch implementation of the model (its norms, causal
convolutions and token-by-token gated delta rule), in SGLang's layouts: packed sequences, state pools addressed by
slot, padding slots."""

import ctypes
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from transformers.models.qwen3_5 import modeling_qwen3_5 as hf

from pipo_agent.backends.sglang.launch import CPU_SHIMS


def _load(package: str) -> ModuleType:
    name = f"_shim_{package}"
    init = CPU_SHIMS / package / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its submodules import it by name
    spec.loader.exec_module(module)
    return module


kernel = _load("sgl_kernel")
ops = torch.ops.sgl_kernel
TOL = {"atol": 2e-5, "rtol": 1e-4}  # float32 throughout; chunked and token-by-token sums differ by ~1e-6


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_assign_req_to_token_pool_writes_each_requests_range_from_the_packed_slots() -> None:
    generator = torch.Generator().manual_seed(0)
    table = torch.full((6, 32), -1, dtype=torch.int32)
    rows = torch.tensor([4, 0, 2])
    starts = torch.tensor([0, 5, 17])
    ends = torch.tensor([7, 5, 30])  # the middle request adds nothing
    slots = torch.randperm(1000, generator=generator)[: int((ends - starts).sum())].to(torch.int64)
    expected = table.clone()
    offset = 0
    for row, start, end in zip(rows.tolist(), starts.tolist(), ends.tolist(), strict=True):
        expected[row, start:end] = slots[offset : offset + end - start].to(torch.int32)
        offset += end - start
    kernel.assign_req_to_token_pool_cpu(rows, table, starts, ends, slots, table.shape[1])
    assert torch.equal(table, expected)
    with pytest.raises(ValueError, match="outside a request row of 32"):
        kernel.assign_req_to_token_pool_cpu(rows[:1], table, starts[:1], torch.tensor([40]), slots, 32)


def test_copy_all_layer_kv_cache_copies_slots_in_every_buffer_reading_all_sources_first() -> None:
    generator = torch.Generator().manual_seed(1)
    buffers = [torch.randn(10, 2, 4, generator=generator) for _ in range(3)]
    buffers.append(torch.randn(10, 3, dtype=torch.float64, generator=generator))  # another row width
    before = [b.clone() for b in buffers]
    src = torch.tensor([1, 2, 7])
    tgt = torch.tensor([2, 5, 1])  # slot 2 is a source and a target; so is slot 1
    ptrs = torch.tensor([b.data_ptr() for b in buffers], dtype=torch.uint64)
    strides = torch.tensor([b[0].nbytes for b in buffers], dtype=torch.int64)
    kernel.copy_all_layer_kv_cache_cpu(ptrs, strides, tgt, src)
    for buffer, old in zip(buffers, before, strict=True):
        expected = old.clone()
        expected[tgt] = old[src]
        assert torch.equal(buffer, expected)
    with pytest.raises(ValueError, match="3 source slots but 2 target slots"):
        kernel.copy_all_layer_kv_cache_cpu(ptrs, strides, tgt[:2], src)
    assert ctypes.sizeof(ctypes.c_void_p) == 8  # raw addresses are 64-bit on the machines this runs on


def test_every_other_op_raises_naming_itself_and_submodules_do_not_exist() -> None:
    with pytest.raises(NotImplementedError, match="'fused_input_proj_cpu' has no CPU implementation"):
        kernel.fused_input_proj_cpu(torch.zeros(1))
    with pytest.raises(AttributeError):
        kernel.__wrapped__  # noqa: B018 - dunder lookups are real attribute errors
    probe = (
        "import sgl_kernel, torchvision, torch\n"
        "try:\n    import sgl_kernel.scalar_type\nexcept ImportError:\n    print('no-submodule')\n"
        "from torchvision.transforms import InterpolationMode\n"
        "class Mode(InterpolationMode):\n    pass\n"
        "try:\n    torchvision.ops.nms(None, None, 0.5)\nexcept NotImplementedError as exc:\n    print(exc)\n"
        "from sgl_kernel.mamba import causal_conv1d_fn_cpu, causal_conv1d_update_cpu, chunk_gated_delta_rule_cpu\n"
        "from sgl_kernel._library import SCHEMAS\n"
        "print(all(hasattr(torch.ops.sgl_kernel, name) for name in SCHEMAS), len(SCHEMAS))\n"
        "print(hasattr(torch.ops.sgl_kernel, 'convert_weight_packed'))\n"
        "import sys\n"
        "print(any(type(f).__module__ == 'sgl_kernel._sglang_gates' for f in sys.meta_path))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(CPU_SHIMS), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(CPU_SHIMS).parent,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "no-submodule"
    assert "torchvision.ops.nms is unavailable" in lines[1]
    assert lines[2] == "True 7"  # every op SGLang's Qwen3.5 CPU path calls, registered on import
    assert lines[3] == "False"  # no AMX weight packing: SGLang must not take its AMX paths
    assert lines[4] == "True"  # the gated-norm switch waits for SGLang's module


def test_sigmoid_mul_gates_the_attention_output_in_place() -> None:
    q_gate = _randn(5, 3, 16, seed=1)  # per head: the query, then its gate
    strided_gate = q_gate[..., 8:]  # [T, H, D], as SGLang passes it
    for gate in (strided_gate, _randn(5, 24, seed=2)):
        x = _randn(5, 24, seed=3)
        expected = x * torch.sigmoid(gate.reshape(5, 24))
        assert ops.fused_sigmoid_mul_cpu(x, gate) is None
        torch.testing.assert_close(x, expected, **TOL)


def test_gemma_qk_norms_match_transformers_per_head() -> None:
    heads, kv_heads, dim, tokens = 4, 2, 8, 5
    q_norm, k_norm = hf.Qwen3_5RMSNorm(dim, eps=1e-6), hf.Qwen3_5RMSNorm(dim, eps=1e-6)
    with torch.no_grad():
        q_norm.weight.copy_(_randn(dim, seed=4))
        k_norm.weight.copy_(_randn(dim, seed=5))
    # SGLang splits one qkv projection, so q_gate and k are strided views of it
    qkv = _randn(tokens, heads * 2 * dim + 2 * kv_heads * dim, seed=6)
    q_gate, k, _ = qkv.split([heads * 2 * dim, kv_heads * dim, kv_heads * dim], dim=-1)
    query, gate = torch.chunk(q_gate.reshape(tokens, heads, 2 * dim), 2, dim=-1)  # transformers' layout
    with torch.no_grad():
        want_q, want_k = (
            q_norm(query).reshape(-1, dim),
            k_norm(k.reshape(tokens, kv_heads, dim)).reshape(-1, dim),
        )
    args = (q_norm.weight, k_norm.weight, 1e-6, dim)
    got_q, got_k, got_gate = ops.fused_qk_gemma_rmsnorm_with_gate_cpu(q_gate, k, *args, heads)
    for got, want in ((got_q, want_q), (got_k, want_k), (got_gate, gate.reshape(-1, dim))):
        assert got.is_contiguous()
        torch.testing.assert_close(got, want, **TOL)
    plain_q = query.reshape(tokens, heads * dim)
    got_q, got_k = ops.fused_qk_gemma_rmsnorm_cpu(plain_q, k, *args)
    torch.testing.assert_close(got_q, want_q, **TOL)
    torch.testing.assert_close(got_k, want_k, **TOL)


def test_gated_rmsnorm_matches_transformers() -> None:
    norm = hf.Qwen3_5RMSNormGated(16, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(_randn(16, seed=7))
        x, gate = _randn(12, 16, seed=8), _randn(12, 16, seed=9)
        torch.testing.assert_close(
            ops.fused_rmsnorm_gated_cpu(x, norm.weight, gate, 1e-6), norm(x, gate), **TOL
        )


def test_qkvzba_split_recovers_the_projections_of_each_block() -> None:
    tokens, qk_heads, v_heads, qk_dim, v_dim = 3, 2, 4, 8, 6
    q, k = _randn(tokens, qk_heads * qk_dim, seed=10), _randn(tokens, qk_heads * qk_dim, seed=11)
    v, z = _randn(tokens, v_heads * v_dim, seed=12), _randn(tokens, v_heads * v_dim, seed=13)
    b, a = _randn(tokens, v_heads, seed=14), _randn(tokens, v_heads, seed=15)
    mixed_qkv, got_z, got_b, got_a = ops.fused_qkvzba_split_reshape_cat_contiguous_cpu(
        torch.cat([q, k, v, z], -1), torch.cat([b, a], -1), qk_heads, v_heads, qk_dim, v_dim
    )
    assert torch.equal(mixed_qkv, torch.cat([q, k, v], -1)) and mixed_qkv.is_contiguous()
    assert torch.equal(got_z, z.reshape(tokens, v_heads, v_dim))
    assert torch.equal(got_b, b) and torch.equal(got_a, a)
    with pytest.raises(ValueError, match="do not hold 2 q/k heads of 8 and 4 v heads of 6"):
        ops.fused_qkvzba_split_reshape_cat_contiguous_cpu(mixed_qkv, torch.cat([b, a], -1), 2, 4, 8, 6)


def test_gdn_gates_match_transformers_including_the_linear_softplus_range() -> None:
    A_log, dt_bias = _randn(4, seed=16), _randn(4, seed=17)
    a, b = _randn(6, 4, seed=18) * 15, _randn(6, 4, seed=19)  # a + dt_bias beyond 20: softplus(x) = x
    g, beta = ops.fused_gdn_gating_cpu(A_log, a, b, dt_bias)
    assert g.shape == beta.shape == (1, 6, 4) and g.dtype == beta.dtype == torch.float32
    torch.testing.assert_close(g[0], -A_log.exp() * F.softplus(a + dt_bias), **TOL)
    torch.testing.assert_close(beta[0], b.sigmoid(), **TOL)


WIDTH = 4  # the convolution's kernel; a conv state holds WIDTH - 1 inputs


def test_causal_conv1d_prefill_continues_from_the_state_and_keeps_the_last_inputs() -> None:
    mamba = kernel.mamba
    dim = 6
    weight, bias = _randn(dim, WIDTH, seed=20), _randn(dim, seed=21)
    pool = _randn(5, dim, WIDTH - 1, seed=22)
    before = pool.clone()
    lengths, slots, resume = [7, 2, 3], [1, 3, -1], [False, True, True]  # a fresh one, a short one, padding
    x = _randn(sum(lengths), dim, seed=23).t()  # [dim, tokens], strided like SGLang's
    loc = torch.tensor([0, 7, 9, 12], dtype=torch.int32)
    out = mamba.causal_conv1d_fn_cpu(
        x,
        weight,
        bias,
        activation="silu",
        conv_states=pool,
        has_initial_state=torch.tensor(resume),
        cache_indices=torch.tensor(slots, dtype=torch.int32),
        query_start_loc=loc,
        seq_lens_cpu=lengths,
    )
    fresh = hf.causal_conv1d_fn(x[None, :, :7], weight, bias, activation="silu")[0]
    torch.testing.assert_close(out[:, :7], fresh, **TOL)
    state = before[3].clone()[None]
    torch.testing.assert_close(
        out[:, 7:9],
        hf.causal_conv1d_update(x[None, :, 7:9], state, weight, bias, activation="silu")[0],
        **TOL,
    )
    torch.testing.assert_close(pool[1], x[:, 4:7])
    torch.testing.assert_close(pool[3], state[0])  # the short sequence kept one old input
    assert torch.equal(out[:, 9:], torch.zeros(dim, 3))  # padding
    for untouched in (0, 2, 4):
        assert torch.equal(pool[untouched], before[untouched])
    # a prompt in two prefill chunks, the second resuming from the state, equals one pass
    long = _randn(20, dim, seed=24).t()
    one, two = torch.zeros(1, dim, WIDTH - 1), torch.zeros(1, dim, WIDTH - 1)
    whole = mamba.causal_conv1d_fn_cpu(
        long, weight, bias, "silu", one, torch.tensor([False]), torch.tensor([0])
    )
    first = mamba.causal_conv1d_fn_cpu(
        long[:, :9], weight, bias, "silu", two, torch.tensor([False]), torch.tensor([0])
    )
    second = mamba.causal_conv1d_fn_cpu(
        long[:, 9:], weight, bias, "silu", two, torch.tensor([True]), torch.tensor([0])
    )
    torch.testing.assert_close(torch.cat([first, second], -1), whole, **TOL)
    torch.testing.assert_close(two, one)


def test_causal_conv1d_decode_steps_match_transformers_with_a_padding_row() -> None:
    dim = 6
    weight, bias = _randn(dim, WIDTH, seed=25), _randn(dim, seed=26)
    pool = _randn(3, dim, WIDTH - 1, seed=27)
    reference = pool.clone()
    slots = torch.tensor([2, -1, 0], dtype=torch.int32)
    for step in range(5):
        x = _randn(3, dim, seed=28 + step)
        out = kernel.mamba.causal_conv1d_update_cpu(x, pool, weight, bias, "silu", conv_state_indices=slots)
        for row, slot in ((0, 2), (2, 0)):
            state = reference[slot : slot + 1]
            want = hf.causal_conv1d_update(x[row, :, None][None], state, weight, bias, activation="silu")
            torch.testing.assert_close(out[row], want[0, :, 0], **TOL)
        assert torch.equal(out[1], torch.zeros(dim))
        torch.testing.assert_close(pool, reference)  # slot 1 is nobody's: untouched


H, HV, K, V = 2, 4, 8, 6  # two value heads per query/key head
A_LOG, DT_BIAS = _randn(HV, seed=40) * 0.5, _randn(HV, seed=41)


@dataclass(frozen=True)
class Tokens:
    """GDN inputs of `T` tokens as SGLang passes them: `q`, `k` `[1, T, H, K]`, `v` `[1, T, HV, V]`, `a`, `b`
    `[T, HV]` (the gates before activation)."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor

    @staticmethod
    def random(count: int, seed: int) -> "Tokens":
        return Tokens(
            _randn(1, count, H, K, seed=seed),
            _randn(1, count, H, K, seed=seed + 1),
            _randn(1, count, HV, V, seed=seed + 2),
            _randn(count, HV, seed=seed + 3),
            _randn(count, HV, seed=seed + 4),
        )

    def __getitem__(self, span: slice) -> "Tokens":
        return Tokens(self.q[:, span], self.k[:, span], self.v[:, span], self.a[span], self.b[span])

    @staticmethod
    def cat(parts: list["Tokens"]) -> "Tokens":
        return Tokens(
            *(torch.cat([getattr(p, n) for p in parts], dim=1) for n in ("q", "k", "v")),
            *(torch.cat([getattr(p, n) for p in parts]) for n in ("a", "b")),
        )


def _reference(t: Tokens, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' gates and token-by-token rule from a pool state `[HV, V, K]`: the outputs `[T, HV, V]` and
    the final state in the pool's layout (transformers keeps `[HV, K, V]`)."""
    g, beta = -A_LOG.exp() * F.softplus(t.a + DT_BIAS), t.b.sigmoid()
    out, final = hf.torch_recurrent_gated_delta_rule(
        t.q,
        t.k,
        t.v,
        g[None],
        beta[None],
        initial_state=state.transpose(-1, -2)[None],
        output_final_state=True,
        use_qk_l2norm_in_kernel=True,
    )
    return out[0], final[0].transpose(-1, -2)


def _prefill(t: Tokens, pool: torch.Tensor, cu_seqlens: list[int], slots: list[int]) -> torch.Tensor:
    """SGLang's GDN prefill: the gates op, then the chunked rule on the pool. The outputs `[T, HV, V]`."""
    g, beta = ops.fused_gdn_gating_cpu(A_LOG, t.a, t.b, DT_BIAS)
    out, finals, chunk_states = kernel.mamba.chunk_gated_delta_rule_cpu(
        q=t.q,
        k=t.k,
        v=t.v,
        g=g,
        beta=beta,
        initial_state=pool,
        cu_seqlens=torch.tensor(cu_seqlens, dtype=torch.int32),
        head_first=False,
        use_qk_l2norm_in_kernel=True,
        initial_state_indices=torch.tensor(slots, dtype=torch.int32),
    )
    assert chunk_states is None and finals.shape == (len(slots), HV, V, K)
    return out[0]


def _decode(t: Tokens, pool: torch.Tensor, cu_seqlens: list[int], slots: list[int]) -> torch.Tensor:
    """SGLang's GDN decode op, by keyword as SGLang calls it. The outputs `[1, T, HV, V]`."""
    return ops.fused_sigmoid_gating_delta_rule_update_cpu(
        A_log=A_LOG,
        dt_bias=DT_BIAS,
        q=t.q,
        k=t.k,
        v=t.v,
        a=t.a,
        b=t.b,
        initial_state_source=pool,
        initial_state_indices=torch.tensor(slots, dtype=torch.int32),
        cu_seqlens=torch.tensor(cu_seqlens, dtype=torch.int32),
        use_qk_l2norm_in_kernel=True,
        softplus_beta=1.0,
        softplus_threshold=20.0,
    )


def test_chunked_gated_delta_rule_matches_the_recurrence_for_packed_sequences() -> None:
    pool = _randn(4, HV, V, K, seed=42) * 0.1
    before = pool.clone()
    t = Tokens.random(150 + 1 + 40, seed=43)  # three GDN chunks; one token; padding
    out = _prefill(t, pool, [0, 150, 151, 191], [2, 0, -1])
    for span, slot in ((slice(0, 150), 2), (slice(150, 151), 0)):
        want, final = _reference(t[span], before[slot])
        torch.testing.assert_close(out[span], want, **TOL)
        torch.testing.assert_close(pool[slot], final, **TOL)
    assert torch.equal(out[151:], torch.zeros(40, HV, V))
    assert torch.equal(pool[1], before[1]) and torch.equal(pool[3], before[3])


def test_chunked_prefill_resumed_from_the_state_equals_one_long_pass() -> None:
    t = Tokens.random(200, seed=50)
    one, two = torch.zeros(1, HV, V, K), torch.zeros(1, HV, V, K)
    whole = _prefill(t, one, [0, 200], [0])
    first = _prefill(t[:130], two, [0, 130], [0])
    second = _prefill(t[130:], two, [0, 70], [0])
    torch.testing.assert_close(torch.cat([first, second]), whole, **TOL)
    torch.testing.assert_close(two, one, **TOL)
    want, final = _reference(t, torch.zeros(HV, V, K))
    torch.testing.assert_close(whole, want, **TOL)
    torch.testing.assert_close(one[0], final, **TOL)


def test_decode_steps_after_prefill_follow_the_recurrence_in_a_batch_with_padding() -> None:
    pool = torch.zeros(4, HV, V, K)
    prompts = Tokens.random(30 + 70, seed=60)
    _prefill(prompts, pool, [0, 30, 100], [3, 1])
    steps = [Tokens.random(3, seed=70 + 10 * i) for i in range(4)]  # rows: slot 3, padding, slot 1
    outs = []
    for step in steps:
        out = _decode(step, pool, [0, 1, 2, 3], [3, -1, 1])
        assert out.shape == (1, 3, HV, V) and torch.equal(out[0, 1], torch.zeros(HV, V))
        outs.append(out[0])
    for row, prompt, slot in ((0, slice(0, 30), 3), (2, slice(30, 100), 1)):
        history = Tokens.cat([prompts[prompt], *(step[row : row + 1] for step in steps)])
        want, final = _reference(history, torch.zeros(HV, V, K))
        torch.testing.assert_close(torch.stack([out[row] for out in outs]), want[-len(steps) :], **TOL)
        torch.testing.assert_close(pool[slot], final, **TOL)
    assert torch.equal(pool[0], torch.zeros(HV, V, K)) and torch.equal(pool[2], torch.zeros(HV, V, K))


def test_decode_op_takes_packed_sequences_of_unequal_lengths() -> None:
    start = _randn(2, HV, V, K, seed=80) * 0.1
    pool = start.clone()
    t = Tokens.random(5, seed=81)
    out = _decode(t, pool, [0, 2, 5], [1, 0])
    for span, slot in ((slice(0, 2), 1), (slice(2, 5), 0)):
        want, final = _reference(t[span], start[slot])
        torch.testing.assert_close(out[0, span], want, **TOL)
        torch.testing.assert_close(pool[slot], final, **TOL)


def test_sglang_gated_norm_switch_turns_on_sglangs_cpu_branch_only_on_the_cpu(tmp_path: Path) -> None:
    """SGLang takes its CPU gated norm only with AMX; the stand-in turns that branch on when SGLang runs on the
    CPU, whether SGLang's module is imported after `sgl_kernel` or before. A stand-in SGLang module here, and the
    switch alone (`import sgl_kernel` installs it, as the test above checks), so no process imports torch."""
    module = tmp_path / "sglang" / "kernels" / "ops" / "attention" / "fla"
    module.mkdir(parents=True)
    for folder in (module, *module.parents):
        if folder == tmp_path:
            break
        (folder / "__init__.py").write_text("")
    (module / "layernorm_gated.py").write_text(
        "import os\n_use_cpu = False\n\ndef is_cpu():\n    return os.environ['ON_CPU'] == '1'\n"
    )
    target = "sglang.kernels.ops.attention.fla.layernorm_gated"
    cases = {  # (on the CPU, imports) -> SGLang's flag after them
        ("1", f"_sglang_gates.install()\nimport {target} as m"): "True",
        ("1", f"import {target} as m\n_sglang_gates.install()"): "True",
        ("0", f"_sglang_gates.install()\nimport {target} as m"): "False",
    }
    runs = {
        case: subprocess.Popen(
            [sys.executable, "-c", f"import _sglang_gates\n{case[1]}\nprint(m._use_cpu)"],
            env={
                "PYTHONPATH": f"{CPU_SHIMS / 'sgl_kernel'}:{tmp_path}",
                "PATH": "/usr/bin:/bin",
                "ON_CPU": case[0],
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for case in cases
    }
    for case, run in runs.items():
        stdout, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
        assert stdout.strip() == cases[case], case
