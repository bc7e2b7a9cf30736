"""scripts/loadtest.py at a tiny size against the live loopback server: no errors, every streamed answer
equal to its non-streamed reference, a JSON report; and it refuses a non-loopback URL."""

import json
import subprocess
import sys
from pathlib import Path

from tests.server.conftest import API_KEY, LiveServer

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "loadtest.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_a_tiny_load_test(live: LiveServer, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(API_KEY)
    out = tmp_path / "loadtest.json"
    done = run(
        "--url", live.url, "--api-key-file", str(key), "--clients", "2,4", "--requests-per-client", "2",
        "--max-tokens", "16", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert "api_key" not in report["settings"] and API_KEY not in out.read_text()
    assert [r["clients"] for r in report["results"]] == [2, 4]
    for result in report["results"]:
        assert result["requests"] == 2 * result["clients"]
        assert (result["errors"], result["mismatches"]) == (0, 0), result["error_samples"]
        assert result["output_tokens"] > 0 and result["output_tokens_per_s"] > 0
        assert 0 < result["ttft_p50_s"] <= result["ttft_p99_s"]
    assert "| 4 | 8 | 0 | 0 |" in done.stdout


def test_the_load_test_stays_on_this_machine(tmp_path: Path) -> None:
    for url in ("http://10.0.0.7:8000", "https://example.org", "http://0.0.0.0:8000"):
        refused = run("--url", url, "--out", str(tmp_path / "x.json"))
        assert refused.returncode == 2 and "loopback" in refused.stderr
    assert run("--url", "http://127.0.0.1:1", "--clients", "1000").returncode == 2
    assert not (tmp_path / "x.json").exists()
