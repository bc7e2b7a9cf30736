"""PIPO in SGLang against the AR teacher in SGLang, measured in the same run on the same machine.

Starts, one after the other on loopback, `pipo-agent serve --engine sglang` (the PIPO model through the plugin)
and plain `python -m sglang.launch_server` on the checkpoint's AR teacher (SGLang's own model code, its
`torch_native` attention on the CPU), sends each the same greedy requests at several concurrencies, and
prints output tokens/s, time per output token and the PIPO/AR ratios. `--device cuda` runs both on a GPU (the
AR baseline with SGLang's default attention backend, both without CUDA graphs). Output lengths differ between the
two models, so throughput is counted in real output tokens (PIPO's PAD excluded).

    python scripts/bench_sglang.py --sglang-python .venv-sglang/bin/python --batch 1,8 --max-tokens 256
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from pipo_agent.backends.sglang.launch import CPU_SHIMS

ROOT = Path(__file__).resolve().parents[1]
TASKS = [
    "A warehouse has 37 crates with 48 bottles in each crate. It sells 219 bottles. How many bottles are left?",
    "How many dollars do 9 kg of garlic cost?",
    "Convert 12 miles to kilometers.",
    "Reverse the list: apple, pear, fig, plum, kiwi",
    "What is 1234 * 5678 - 91?",
    "A train travels 84 km per hour for 6 hours. How far does it go?",
    "Sort these words: delta, alpha, charlie, bravo",
    "How many grams are 7 pounds?",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server(command: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                raise SystemExit(f"server exited ({process.returncode}); see {log}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"server did not come up; see {log}")
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


async def run_batch(url: str, prompts: list[list[int]], max_tokens: int, extra: dict) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=1200) as client:

        async def one(ids: list[int]) -> tuple[int, float]:
            body = {
                "input_ids": ids,
                "sampling_params": {
                    "temperature": 0,
                    "max_new_tokens": max_tokens,
                    "ignore_eos": True,
                    **extra,
                },
            }
            start = time.perf_counter()
            response = await client.post(f"{url}/generate", json=body)
            response.raise_for_status()
            return len(response.json()["output_ids"]), time.perf_counter() - start

        start = time.perf_counter()
        results = await asyncio.gather(*(one(ids) for ids in prompts))
        wall = time.perf_counter() - start
    tokens = sum(n for n, _ in results)
    return {
        "requests": len(prompts),
        "output_tokens": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "tpot_ms": 1e3 * sum(t / max(1, n) for n, t in results) / len(results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sglang-python", required=True, help="python of the venv with SGLang and this project"
    )
    parser.add_argument("--model", type=Path, default=ROOT / "backends/checkpoints/default")
    parser.add_argument("--batch", default="1,8", help="concurrent requests, comma-separated")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--tau", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/sglang-bench.json"))
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",")]

    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(args.model))
    prompts = [
        tokenizer.encode(f"<|im_start|>user\n{t}<|im_end|>\n<|im_start|>assistant\n<think>\n") for t in TASKS
    ]
    bin_dir = Path(args.sglang_python).parent
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, dict] = {}
    pipo_port, ar_port = _free_port(), _free_port()
    pipo_cmd = [str(bin_dir / "pipo-agent"), "serve", "--engine", "sglang", "--model", str(args.model)]
    pipo_cmd += ["--port", str(pipo_port), "--threads", str(args.threads), "--log-level", "warning"]
    pipo_cmd += ["--device", args.device]
    ar_cmd = [args.sglang_python, "-m", "sglang.launch_server", "--model-path", str(args.model / "teacher")]
    ar_cmd += ["--tokenizer-path", str(args.model), "--port", str(ar_port), "--host", "127.0.0.1"]
    ar_cmd += ["--device", args.device, "--disable-radix-cache", "--log-level", "warning"]
    ar_env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if args.device == "cpu":  # SGLang's CPU path and the stand-ins, as `serve --engine sglang` sets them
        ar_cmd += ["--attention-backend", "torch_native", "--disable-cuda-graph", "--dtype", "float32"]
        ar_cmd += [
            "--sampling-backend",
            "pytorch",
            "--mem-fraction-static",
            "0.05",
            "--max-total-tokens",
            "20000",
        ]
        ar_env |= {"SGLANG_USE_CPU_ENGINE": "1", "PYTHONPATH": str(CPU_SHIMS)}
    else:  # the PIPO worker runs without CUDA graphs; so does the baseline, for a like-for-like step
        ar_cmd += ["--disable-cuda-graph"]
    for name, command, port, extra, env in (
        ("pipo", pipo_cmd, pipo_port, {"custom_params": {"tau": args.tau}}, None),
        ("ar", ar_cmd, ar_port, {}, ar_env),
    ):
        with server(command, port, args.out.with_suffix(f".{name}.log"), env) as url:
            asyncio.run(run_batch(url, prompts[:1], 16, extra))  # warm-up
            report[name] = {
                str(b): asyncio.run(run_batch(url, (prompts * b)[:b], args.max_tokens, extra))
                for b in batches
            }
    rows = []
    for b in batches:
        p, a = report["pipo"][str(b)], report["ar"][str(b)]
        rows.append(
            {
                "batch": b,
                "pipo_tokens_per_s": round(p["tokens_per_s"], 1),
                "ar_tokens_per_s": round(a["tokens_per_s"], 1),
                "throughput_ratio": round(p["tokens_per_s"] / a["tokens_per_s"], 2),
                "pipo_tpot_ms": round(p["tpot_ms"], 2),
                "ar_tpot_ms": round(a["tpot_ms"], 2),
                "tpot_ratio": round(a["tpot_ms"] / p["tpot_ms"], 2),
            }
        )
    args.out.write_text(
        json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "raw": report, "rows": rows}, indent=2
        )
    )
    for row in rows:
        print(json.dumps(row))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
