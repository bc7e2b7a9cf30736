"""A smoke-sized run of `pipo-agent bench`: every measurement runs and the report holds its ratios.
(Speed is reported by the benchmark, never asserted here.)"""

import json
from pathlib import Path

import torch

from pipo_agent.backends.bench import BenchConfig, run_benchmark


def test_quick_benchmark_writes_json_and_plots(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    try:
        report = run_benchmark(BenchConfig.quick(out_dir=str(tmp_path), threads=1))
    finally:
        torch.set_num_threads(threads)
    on_disk = json.loads((tmp_path / "bench.json").read_text())
    assert on_disk["device"].startswith("cpu") and on_disk["attention_backend"] == "torch"
    assert [r["prompt_tokens"] for r in report["ttft"]] == [32, 64]
    assert all(r["ratio"] > 0 and r["pipo_ms"] > 0 for r in report["ttft"])
    assert [r["batch"] for r in report["decode"]] == [1, 2]
    for row in report["decode"]:
        assert row["ar"]["tokens_per_step"] == 1.0 and row["pipo"]["tokens_per_step"] >= 1.0
        # KV per token: PIPO writes one slot of (layers + MTP) per pair, AR one slot of layers per token.
        assert 0 < row["kv_bytes_ratio"] < 1
    assert {r["system"] for r in report["tau_sweep"]} == {"pipo", "ar"}
    assert set(report["profile_batch1"]["pipo"]["ms_per_step"]) >= {"backbone", "mtp+confidence"}
    for name in ("ttft.png", "decode.png", "tau_sweep.png"):
        assert (tmp_path / name).stat().st_size > 1000
