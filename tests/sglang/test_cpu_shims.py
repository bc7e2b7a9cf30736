"""The CPU stand-ins SGLang's server gets on a machine without a GPU (`backends/sglang/cpu_shims`).

They are loaded under private names here, so this process's own imports of `sgl_kernel`/`torchvision` (if any
are installed) are untouched; the server loads them as the top-level packages from `PYTHONPATH`."""

import ctypes
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from pipo_agent.backends.sglang.launch import CPU_SHIMS


def _load(package: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_shim_{package}", CPU_SHIMS / package / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


kernel = _load("sgl_kernel")


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
    with pytest.raises(NotImplementedError, match="'fused_sigmoid_mul_cpu' has no CPU implementation"):
        kernel.fused_sigmoid_mul_cpu(torch.zeros(1))
    with pytest.raises(AttributeError):
        kernel.__wrapped__  # noqa: B018 - dunder lookups are real attribute errors
    probe = (
        "import sgl_kernel, torchvision\n"
        "try:\n    import sgl_kernel.scalar_type\nexcept ImportError:\n    print('no-submodule')\n"
        "from torchvision.transforms import InterpolationMode\n"
        "class Mode(InterpolationMode):\n    pass\n"
        "try:\n    torchvision.ops.nms(None, None, 0.5)\nexcept NotImplementedError as exc:\n    print(exc)\n"
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
