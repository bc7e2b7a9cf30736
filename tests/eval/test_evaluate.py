"""ECE on hand-made data, draft acceptance against a direct teacher-forced computation, and the whole
evaluation end to end on tiny random checkpoints."""

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from pipo_agent.backends.decode import PipoReferenceDecoder, SamplingParams
from pipo_agent.backends.eval import (
    EvalConfig,
    draft_acceptance,
    expected_calibration_error,
    run_evaluation,
)


def test_ece_on_hand_made_data() -> None:
    conf = [0.05, 0.15, 0.95, 0.95, 1.0]
    alpha = [0.0, 0.15, 1.0, 0.5, 1.0]
    cal = expected_calibration_error(conf, alpha, num_bins=10)
    # bin 0: |0.05 - 0| = 0.05 (1 draft); bin 1: 0 (1); bin 9 (1.0 included): |0.9667 - 0.8333| (3)
    assert cal.ece == pytest.approx((0.05 + 0.0 + 3 * (2.9 / 3 - 2.5 / 3)) / 5)
    assert cal.count == 5 and len(cal.bins) == 10
    assert [b.count for b in cal.bins] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 3]
    assert cal.bins[9].mean_alpha == pytest.approx(2.5 / 3) and cal.bins[2].mean_conf is None


def test_ece_edge_cases() -> None:
    assert expected_calibration_error([0.3, 0.72], [0.3, 0.72]).ece == pytest.approx(0.0)
    assert expected_calibration_error([], []).ece is None
    assert expected_calibration_error([0.5, 0.5], [1.0, 0.0]).ece == pytest.approx(0.0)  # bin means agree
    with pytest.raises(ValueError):
        expected_calibration_error([0.5], [])


def test_draft_acceptance_matches_a_direct_teacher_pass(tiny_pipo: Any, tiny_teacher: Any) -> None:
    pad = tiny_pipo.config.pad_token_id
    prompt = list(range(12, 41))  # odd: the decoder pads it, the teacher must not see that PAD
    params = SamplingParams(temperature=1.0, seed=5, max_new_tokens=12, tau=0.5, logprobs=True)
    result = PipoReferenceDecoder(tiny_pipo).generate(prompt, params)
    assert pad in result.slots  # some drafts were rejected, so PAD compaction matters

    scored = draft_acceptance(tiny_teacher, prompt, result.steps, pad)

    sequence = prompt + [t for t in result.slots if t != pad]
    with torch.no_grad():
        logp = tiny_teacher(torch.tensor([sequence])).logits[0].float().log_softmax(-1)
    expected, seen = [], len(prompt)
    for step in result.steps:
        if step.draft is not None:  # the teacher's prediction after token1 (at index `seen`)
            alpha = min(1.0, math.exp(float(logp[seen, step.draft]) - step.logprob2))
            expected.append((step.conf, alpha))
        seen += sum(t != pad for t in step.slots)
    assert len(scored) == result.stats.drafts_proposed == len(expected) > 0
    for (conf, alpha), (conf_ref, alpha_ref) in zip(scored, expected, strict=True):
        assert conf == conf_ref and alpha == pytest.approx(alpha_ref, abs=1e-5)
        assert 0.0 <= alpha <= 1.0


def test_evaluation_end_to_end(checkpoint_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    pipo_dir, teacher_dir = checkpoint_dirs
    config = EvalConfig(
        model_dir=pipo_dir,
        teacher_dir=teacher_dir,
        out_dir=tmp_path / "out",
        extra_models={"other-head": pipo_dir},
        families=("arithmetic",),
        n=1,
        k=1,
        taus=(-1.0, 1.0),
        max_new_tokens=6,
        max_turns=2,
        progress=False,
    )
    report = run_evaluation(config)

    saved = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert set(saved) >= {"config", "rows", "calibration", "timings"}
    assert (tmp_path / "out" / "eval.png").read_bytes()[:4] == b"\x89PNG"

    rows = {(r["system"], r["tau"], r["family"]): r for r in saved["rows"]}
    systems = [("teacher", None), ("pipo", -1.0), ("pipo", 1.0), ("other-head", -1.0), ("other-head", 1.0)]
    assert set(rows) == {(s, t, f) for s, t in systems for f in ("arithmetic", "all")}
    keys = {"avg_at_k", "pass_at_k", "tokens_per_step", "drafts_proposed", "drafts_committed"}
    keys |= {"commit_rate", "tpot_s", "tokens_per_s", "ece", "drafts_scored", "runs"}
    assert all(keys <= set(r) for r in rows.values())

    always = rows[("pipo", -1.0, "all")]
    assert always["drafts_committed"] == always["drafts_proposed"] == always["drafts_scored"] > 0
    assert always["ece"] is not None and always["tokens_per_step"] > 1.0
    never = rows[("pipo", 1.0, "all")]
    assert never["drafts_proposed"] == 0 and never["ece"] is None and never["tokens_per_step"] == 1.0
    teacher = rows[("teacher", None, "all")]
    assert teacher["drafts_proposed"] == 0 and teacher["runs"] == 1
    assert saved["calibration"]["pipo"]["pooled"]["count"] == always["drafts_scored"]
    assert set(saved["timings"]["decode_s"]) == {
        "teacher",
        "pipo@-1",
        "pipo@1",
        "other-head@-1",
        "other-head@1",
    }


def test_evaluation_with_worker_processes_matches_one_process(
    checkpoint_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    pipo_dir, teacher_dir = checkpoint_dirs
    common: dict[str, Any] = {
        "model_dir": pipo_dir,
        "teacher_dir": teacher_dir,
        "families": ("arithmetic", "conversion"),
        "n": 2,
        "k": 2,
        "taus": (-1.0, 0.5),
        "max_new_tokens": 6,
        "max_turns": 2,
        "progress": False,
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the two workers get one thread each; the in-process run uses one too
    try:
        with_workers = run_evaluation(EvalConfig(out_dir=tmp_path / "two", workers=2, **common))
        torch.set_num_threads(1)
        in_process = run_evaluation(EvalConfig(out_dir=tmp_path / "one", **common))
    finally:
        torch.set_num_threads(threads)

    assert with_workers["environment"]["workers"] == 2
    timing_free = ("ttft_s", "tpot_s", "tokens_per_s", "tool_s")

    def comparable(report: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in row.items() if k not in timing_free} for row in report["rows"]]

    assert comparable(with_workers) == comparable(in_process)
    assert with_workers["calibration"] == in_process["calibration"]
    assert set(with_workers["timings"]["decode_s"]) == {"teacher", "pipo@-1", "pipo@0.5"}
    assert sum(r["runs"] for r in with_workers["rows"] if r["family"] == "all") == 3 * 2 * 2 * 2


def test_eval_config_rejects_zero_workers(checkpoint_dirs: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match="workers"):
        EvalConfig(model_dir=checkpoint_dirs[0], workers=0)


_PARENT_SCRIPT = """
import multiprocessing, sys, time
from pathlib import Path

from pipo_agent.backends.eval.evaluate import exit_with_parent


def worker(ready: str) -> None:
    exit_with_parent()
    Path(ready).write_text("ready")
    time.sleep(600)


if __name__ == "__main__":
    proc = multiprocessing.get_context("spawn").Process(target=worker, args=(sys.argv[1],))
    proc.start()
    print(proc.pid, flush=True)
    time.sleep(600)
"""


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie left for its new parent to reap is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process states from /proc")
def test_a_worker_process_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    script, ready = tmp_path / "parent.py", tmp_path / "ready"
    script.write_text(_PARENT_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(ready)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the worker never started"
        parent.kill()  # SIGKILL: no cleanup runs in the parent
        parent.wait()
        deadline = time.monotonic() + 30
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(worker), "the worker outlived its killed parent"
    finally:
        if _running(worker):
            subprocess.run(["kill", "-9", str(worker)], check=False)


def _row(system: str, tau: float | None, tokens_per_step: float, avg: float) -> dict[str, Any]:
    return {
        "system": system,
        "tau": tau,
        "family": "all",
        "tokens_per_step": tokens_per_step,
        "avg_at_k": avg,
    }


def test_the_accuracy_panel_zooms_in_on_clustered_taus_only() -> None:
    from matplotlib.figure import Figure

    from pipo_agent.backends.eval.plot import _accuracy_panel

    teacher = _row("teacher", None, 1.0, 0.54)
    clustered = [teacher, _row("pipo", 1.0, 1.0, 0.03)]
    clustered += [_row("pipo", tau, 1.99 - 0.03 * i, 0.54) for i, tau in enumerate((-1, 0.5, 0.8, 0.9))]
    ax = Figure().subplots()
    _accuracy_panel(ax, clustered, 4)
    (inset,) = ax.child_axes
    labels = {t.get_text() for t in inset.texts}
    assert labels == {"-1", "0.5", "0.8", "0.9"}  # the drafting taus are labelled in the inset...
    assert {t.get_text() for t in ax.texts} == {"τ=1"}  # ...and only the others on the panel
    lo, hi = inset.get_xlim()
    assert lo < 1.90 and hi > 1.99 and hi - lo < 0.2

    spread = [teacher] + [_row("pipo", tau, x, 0.5) for tau, x in ((0.5, 1.2), (0.8, 1.5), (0.9, 1.9))]
    ax = Figure().subplots()
    _accuracy_panel(ax, spread, 4)
    assert not ax.child_axes and len(ax.texts) == 3
