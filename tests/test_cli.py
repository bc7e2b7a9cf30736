"""The command line: help texts, no torch at import, and `run` / `resume` / `eval` end to end on a tiny random
checkpoint."""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipo_agent.cli import app

runner = CliRunner()


def test_importing_the_cli_does_not_import_torch() -> None:
    code = "import pipo_agent.cli, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["resume", "--help"], ["eval", "--help"]])
def test_help(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A random-init PIPO checkpoint (hidden 32, 2 layers) with a tokenizer trained on 6 conversations."""
    import torch

    from pipo_agent.backends.model import PipoConfig, PipoModel, save_pipo
    from pipo_agent.backends.train.tokenizer import build_tokenizer, save_tokenizer
    from pipo_agent.tasks import family_names, generate_tasks, solve

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    texts = [solve(t).render() for f in family_names() for t in generate_tasks(f, 2, seed=0)]
    tokenizer = build_tokenizer(texts, 300)
    backbone = dict(
        model_type="qwen3",
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        tie_word_embeddings=False,
        max_position_embeddings=1024,
    )
    torch.manual_seed(0)
    config = PipoConfig(
        backbone=backbone, pad_token_id=tokenizer.pad_token_id, eos_token_ids=(tokenizer.eos_token_id,)
    )
    directory = tmp_path_factory.mktemp("pipo")
    save_pipo(PipoModel(config), directory)
    save_tokenizer(tokenizer, directory)
    yield directory
    torch.set_num_threads(threads)


def test_run_streams_and_reports_stats(tiny_checkpoint: Path, tmp_path: Path) -> None:
    args = ["run", "What is 2 + 2?", "--model", str(tiny_checkpoint), "--max-new-tokens", "6"]
    args += ["--db", str(tmp_path / "agent.db")]
    result = runner.invoke(app, [*args, "--max-turns", "1", "--tau", "0.5", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "PIPO stats" in result.output and "tokens per step" in result.output
    assert "turn 1:" in result.output and "run id:" in result.output
    assert (tmp_path / "agent.db").is_file()


def test_resume_finishes_an_unfinished_run(tiny_checkpoint: Path, tmp_path: Path) -> None:
    import anyio

    from pipo_agent.memory import MemoryStore

    db = tmp_path / "agent.db"

    async def unfinished() -> str:
        async with MemoryStore.open(db) as store:
            thread = await store.create_thread()
            await store.append_message(thread.id, {"kind": "user", "content": "What is 2 + 2?"})
            config = {
                "tau": 0.5,
                "tau_explicit": True,
                "sampling": {"max_tokens": 6},
                "agent": {"max_steps": 1},
            }
            return (await store.start_run(thread.id, task_type="arithmetic", config=config)).id

    run_id = anyio.run(unfinished)
    args = ["resume", run_id, "--db", str(db), "--model", str(tiny_checkpoint), "--threads", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"resuming run {run_id}" in result.output and "PIPO stats" in result.output
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "only an unfinished run resumes" in again.output
    missing = runner.invoke(app, ["resume", "nope", "--db", str(db)])
    assert missing.exit_code == 2 and "no run 'nope'" in missing.output


def test_run_rejects_bad_sampling_params(tiny_checkpoint: Path) -> None:
    result = runner.invoke(app, ["run", "hi", "--model", str(tiny_checkpoint), "--top-p", "0"])
    assert result.exit_code == 2 and "top_p" in result.output


def test_eval_writes_json_and_table(tiny_checkpoint: Path, tmp_path: Path) -> None:
    args = ["eval", "--model", str(tiny_checkpoint), "--out", str(tmp_path), "--n", "1", "--k", "1"]
    args += ["--taus", "-1,0.5", "--families", "strings", "--max-new-tokens", "4", "--max-turns", "1"]
    result = runner.invoke(app, [*args, "--threads", "1"])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "eval.json").read_text())["rows"]
    assert {(r["system"], r["tau"]) for r in rows} == {("pipo", -1.0), ("pipo", 0.5)}
    assert "ECE" in result.output and (tmp_path / "eval.png").is_file()


def test_eval_uses_the_teacher_shipped_inside_a_named_model(tmp_path: Path) -> None:
    from pipo_agent.cli import _teacher_beside

    model = tmp_path / "model"
    (model / "teacher").mkdir(parents=True)
    assert _teacher_beside(model) is None  # a folder without a config is not a teacher
    (model / "teacher" / "config.json").write_text("{}")
    assert _teacher_beside(model) == model / "teacher"
    assert _teacher_beside(tmp_path / "elsewhere") is None


def test_default_checkpoint_dirs_need_a_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipo_agent.backends.checkpoints as checkpoints

    monkeypatch.setattr(checkpoints, "CHECKPOINTS_DIR", tmp_path)
    with pytest.raises(checkpoints.MissingCheckpointError, match=r"config\.json"):
        checkpoints.default_model_dir()
    result = runner.invoke(app, ["run", "What is 2 + 2?"])
    assert result.exit_code == 2 and "no shipped PIPO model" in result.output

    (tmp_path / "default").mkdir()
    (tmp_path / "default" / "config.json").write_text("{}")
    assert checkpoints.default_model_dir() == tmp_path / "default"
    with pytest.raises(checkpoints.MissingCheckpointError, match="AR teacher"):
        checkpoints.default_teacher_dir()
