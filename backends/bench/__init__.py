"""Benchmarks: PIPO against the AR baseline on the embedded engine (`pipo-agent bench`)."""

from pipo_agent.backends.bench.engine_bench import BenchConfig, run_benchmark

__all__ = ["BenchConfig", "run_benchmark"]
