"""Time each Triton kernel against its PyTorch reference on CUDA: `python -m pipo_agent.backends.kernels.bench`.

Shapes: batch 1/8/32 x context 256/1K/4K x head_dim 32/128, with 8 q and 8 kv heads and block_size 16. Decode
has one query per sequence; extend prefills whole prompts; store_kv writes one prompt's worth of rows per
sequence. Prints a table of milliseconds and the reference/kernel ratio, and writes the rows as JSON to --out.
"""

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from pipo_agent.backends.kernels import (
    paged_decode_attention,
    paged_decode_attention_reference,
    paged_extend_attention,
    paged_extend_attention_reference,
    store_kv,
    store_kv_reference,
    triton_available,
)

BATCHES = (1, 8, 32)
CONTEXTS = (256, 1024, 4096)
HEAD_DIMS = (32, 128)
NUM_HEADS = 8
BLOCK_SIZE = 16


def _paged_inputs(batch: int, context: int, head_dim: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    blocks_per_seq = context // BLOCK_SIZE
    num_blocks = batch * blocks_per_seq
    shape = (num_blocks * BLOCK_SIZE, NUM_HEADS, head_dim)
    return {
        "k_cache": torch.randn(shape, device="cuda", dtype=dtype),
        "v_cache": torch.randn(shape, device="cuda", dtype=dtype),
        # Shuffled physical blocks, as a long-running pool hands them out.
        "block_tables": torch.randperm(num_blocks, device="cuda").view(batch, blocks_per_seq).int(),
        "context_lens": torch.full((batch,), context, device="cuda", dtype=torch.int32),
    }


def _cases(
    batch: int, context: int, head_dim: int, dtype: torch.dtype
) -> dict[str, tuple[Callable, Callable]]:
    paged = _paged_inputs(batch, context, head_dim, dtype)
    scale = head_dim**-0.5
    q_decode = torch.randn(batch, NUM_HEADS, head_dim, device="cuda", dtype=dtype)
    decode_args = (q_decode, paged["k_cache"], paged["v_cache"], paged["block_tables"], paged["context_lens"])
    q_extend = torch.randn(batch * context, NUM_HEADS, head_dim, device="cuda", dtype=dtype)
    cu_seqlens_q = torch.arange(0, batch * context + 1, context, device="cuda", dtype=torch.int32)
    extend_args = (q_extend, *decode_args[1:4], cu_seqlens_q, paged["context_lens"])
    kv = torch.randn(2, batch * context, NUM_HEADS, head_dim, device="cuda", dtype=dtype)
    slots = torch.randperm(paged["k_cache"].shape[0], device="cuda")[: batch * context]
    store_args = (kv[0], kv[1], paged["k_cache"], paged["v_cache"], slots)
    return {
        "decode": (
            lambda: paged_decode_attention(*decode_args, BLOCK_SIZE, scale),
            lambda: paged_decode_attention_reference(*decode_args, BLOCK_SIZE, scale),
        ),
        "extend": (
            lambda: paged_extend_attention(*extend_args, BLOCK_SIZE, scale, context),
            lambda: paged_extend_attention_reference(*extend_args, BLOCK_SIZE, scale, context),
        ),
        "store_kv": (lambda: store_kv(*store_args), lambda: store_kv_reference(*store_args)),
    }


def run(dtype: torch.dtype, kernels: list[str]) -> list[dict[str, object]]:
    import triton.testing

    rows: list[dict[str, object]] = []
    for head_dim in HEAD_DIMS:
        for batch in BATCHES:
            for context in CONTEXTS:
                cases = _cases(batch, context, head_dim, dtype)
                for name in kernels:
                    kernel, reference = cases[name]
                    kernel_ms = triton.testing.do_bench(kernel, warmup=10, rep=40)
                    reference_ms = triton.testing.do_bench(reference, warmup=3, rep=20)
                    row = {
                        "kernel": name,
                        "batch": batch,
                        "context": context,
                        "head_dim": head_dim,
                        "kernel_ms": round(kernel_ms, 4),
                        "reference_ms": round(reference_ms, 4),
                        "speedup": round(reference_ms / kernel_ms, 2),
                    }
                    rows.append(row)
                    print(
                        f"{name:9s} B={batch:<3d} ctx={context:<5d} D={head_dim:<4d} "
                        f"triton {kernel_ms:9.4f} ms   torch {reference_ms:9.4f} ms   x{row['speedup']}",
                        flush=True,
                    )
                del cases
                torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--dtype", choices=["bfloat16", "float16"], default="bfloat16")
    parser.add_argument("--kernels", nargs="+", choices=["decode", "extend", "store_kv"], default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() or not triton_available():
        print("the kernel benchmark needs a CUDA device and triton; nothing to do", file=sys.stderr)
        return 0
    kernels = args.kernels or ["decode", "extend", "store_kv"]
    print(f"{torch.cuda.get_device_name()}  dtype={args.dtype}  Hq=Hkv={NUM_HEADS}  block_size={BLOCK_SIZE}")
    rows = run(getattr(torch, args.dtype), kernels)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"device": torch.cuda.get_device_name(), "dtype": args.dtype, "num_heads": NUM_HEADS}
        args.out.write_text(json.dumps({**meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
