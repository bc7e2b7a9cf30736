"""The whole pipeline at toy size (tasks -> tokenizer -> teacher -> SFT -> OPD -> checkpoint), its rerun that
skips finished stages, the resume of an interrupted stage, and the typed pipeline configuration."""

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from pipo_agent.backends.decode import PipoReferenceDecoder, SamplingParams
from pipo_agent.backends.model.checkpoint import load_pipo
from pipo_agent.backends.train import pipeline
from pipo_agent.backends.train.config import PipelineConfig
from pipo_agent.backends.train.tokenizer import load_tokenizer

TINY_OPTIM = {"max_steps": 2, "save_every": 1, "token_budget": 2048, "warmup_ratio": 0.0}
TINY: dict[str, Any] = {
    "threads": 1,
    "data.train_tasks": 6,
    "data.opd_tasks": 2,
    "data.vocab_size": 300,
    "data.max_tokens": 1024,
    "teacher.hidden_size": 32,
    "teacher.num_layers": 2,
    "teacher.num_heads": 4,
    "teacher.num_kv_heads": 4,
    "teacher.head_dim": 8,
    "teacher.intermediate_size": 64,
    "teacher.optim": TINY_OPTIM,
    "sft.optim": TINY_OPTIM,
    "opd.optim": TINY_OPTIM,
    "opd.max_new_tokens": 16,
    "opd.rollouts_per_step": 1,
}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_pipeline_builds_a_loadable_model_then_skips_or_resumes_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = PipelineConfig.load(overrides={**TINY, "out_dir": str(tmp_path / "run")})
    out = Path(cfg.out_dir)
    manifest = pipeline.run_pipeline(cfg)

    final = out / "pipo"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (final / name).is_file(), name
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert set(manifest["stages"]) == {"teacher", "sft", "opd"}
    assert manifest["data"]["conversations"] == 6 and manifest["data"]["sft_turns"] > 0
    assert manifest["student_parameters"] > manifest["teacher_parameters"] > 0
    assert PipelineConfig.model_validate_json((out / "pipeline_config.json").read_text()) == cfg

    model = load_pipo(final)
    tokenizer = load_tokenizer(final)
    assert len(tokenizer) == model.backbone.config.vocab_size == 300
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.eos_token_id in model.config.eos_token_ids
    _assert_same_weights(_weights(final), _weights(out / "opd" / "final"))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "2+2?"}], add_generation_prompt=True)
    result = PipoReferenceDecoder(model).generate(
        prompt["input_ids"], SamplingParams(max_new_tokens=4, seed=0, temperature=1.0)
    )
    assert 1 <= len([t for t in result.slots if t != model.config.pad_token_id]) <= 4
    first = _weights(final)

    # A rerun finds every stage finished: nothing trains, and the shipped model is the same.
    def must_not_train(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished stage was trained again")

    with monkeypatch.context() as patch:
        for name in ("train_teacher", "train_sft", "train_opd"):
            patch.setattr(pipeline, name, must_not_train)
        pipeline.run_pipeline(cfg)
    _assert_same_weights(_weights(final), first)

    # An interrupted OPD stage (its final checkpoint missing) resumes from its periodic checkpoint and
    # reaches the same weights as the uninterrupted run.
    for path in (out / "opd").glob("final*"):
        for file in path.iterdir():
            file.unlink()
        path.rmdir()
    with caplog.at_level(logging.INFO, logger="pipo_agent.backends.train.loop"):
        pipeline.run_pipeline(cfg)
    assert "pipo-opd: resuming at step 1" in caplog.text
    _assert_same_weights(_weights(final), first)


# ---- configuration ----


def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="bogus"):
        PipelineConfig.model_validate({"bogus": 1})
    with pytest.raises(ValidationError, match="lrr"):
        PipelineConfig.model_validate({"sft": {"optim": {"lrr": 1}}})
    with pytest.raises(ValidationError, match="max_stepz"):
        PipelineConfig.load(overrides={"opd.optim.max_stepz": 3})
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"teacher": {"layers": 3}}))
    with pytest.raises(ValidationError, match="layers"):
        PipelineConfig.load(path)


def test_configs_are_frozen_and_validated() -> None:
    cfg = PipelineConfig()
    with pytest.raises(ValidationError):
        cfg.threads = 4  # type: ignore[misc]
    with pytest.raises(ValidationError, match="kl_mode"):
        PipelineConfig.load(overrides={"opd.kl_mode": "sampled"})  # the zero-mean estimator is not offered
    with pytest.raises(ValidationError, match="max_pad_ratio"):
        PipelineConfig.load(overrides={"sft.max_pad_ratio": 1.5})


def test_load_applies_dotted_overrides_over_the_file_and_keeps_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"out_dir": "somewhere", "sft": {"lambda_mtp": 0.5, "optim": {"lr": 0.01}}}))
    cfg = PipelineConfig.load(
        path, overrides={"sft.optim.max_steps": 5, "opd.optim.max_steps": 7, "sft.lora.rank": 8}
    )
    defaults = PipelineConfig()
    assert cfg.out_dir == "somewhere" and cfg.sft.lambda_mtp == 0.5
    assert cfg.sft.optim.max_steps == 5 and cfg.sft.optim.lr == 0.01
    # Fields next to an overridden one keep the stage's own defaults, not the OptimConfig class defaults.
    assert cfg.sft.optim.save_every == defaults.sft.optim.save_every
    assert cfg.opd.optim.max_steps == 7
    assert cfg.opd.optim.model_copy(update={"max_steps": 40}) == defaults.opd.optim
    assert cfg.sft.lora is not None and cfg.sft.lora.rank == 8 and cfg.sft.lora.alpha == 64
    assert cfg.teacher == defaults.teacher and cfg.data == defaults.data
    assert PipelineConfig.load() == defaults


def test_stop_after_sft_leaves_a_resumable_run(tmp_path: Path) -> None:
    cfg = PipelineConfig.load(overrides={**TINY, "out_dir": str(tmp_path / "run"), "stop_after": "sft"})
    manifest = pipeline.run_pipeline(cfg)
    out = Path(cfg.out_dir)
    assert manifest["stopped_after"] == "sft" and set(manifest["stages"]) == {"teacher", "sft"}
    assert (out / "sft" / "final" / "config.json").is_file()
    assert not (out / "opd").exists() and not (out / "pipo").exists()
    resumed = pipeline.run_pipeline(cfg.model_copy(update={"stop_after": "opd"}))
    assert set(resumed["stages"]) == {"teacher", "sft", "opd"} and (out / "pipo" / "config.json").is_file()


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CPU", ""])
def test_bad_device_fails_early_with_the_valid_choices(device: str) -> None:
    with pytest.raises(ValidationError, match="'cpu', 'cuda' or 'cuda:N'"):
        PipelineConfig.load(overrides={"device": device})


def test_sft_can_continue_from_a_pipo_checkpoint(tmp_path: Path) -> None:
    first = PipelineConfig.load(overrides={**TINY, "out_dir": str(tmp_path / "a")})
    pipeline.run_pipeline(first)
    second = PipelineConfig.load(
        overrides={
            **TINY,
            "out_dir": str(tmp_path / "b"),
            "stop_after": "sft",
            "sft.init_from": str(tmp_path / "a" / "pipo"),
        }
    )
    manifest = pipeline.run_pipeline(second)
    assert manifest["sft_init_from"] == str(tmp_path / "a" / "pipo")
    # a/pipo carries no teacher and an SFT-only continuation needs none: no teacher is trained.
    assert "teacher_skipped" in manifest and not (tmp_path / "b" / "teacher" / "final").exists()
    # Stage checkpoints carry the tokenizer: a third run continues from b's SFT checkpoint directly.
    assert (tmp_path / "a" / "teacher" / "final" / "tokenizer.json").is_file()
    third = second.model_copy(
        update={
            "out_dir": str(tmp_path / "c"),
            "sft": second.sft.model_copy(update={"init_from": str(tmp_path / "b" / "sft" / "final")}),
        }
    )
    assert pipeline.tokenizer_source(third) == tmp_path / "b" / "sft" / "final"
    start = _weights(tmp_path / "a" / "pipo")
    after = _weights(tmp_path / "b" / "sft" / "final")
    assert start.keys() == after.keys()
    assert any(not torch.equal(start[k], after[k]) for k in start if k.startswith("mtp."))


@pytest.mark.parametrize("stage", ["teacher", "sft"])
def test_train_stage_commands_stop_after_their_stage(tmp_path: Path, stage: str) -> None:
    from typer.testing import CliRunner

    from pipo_agent.cli import app

    sets = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    result = CliRunner().invoke(app, ["train", stage, "--out", str(tmp_path / "run"), *sets])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stopped_after"] == stage


def test_family_weights_pick_the_training_mixture_and_are_checked() -> None:
    from pipo_agent.tasks import TaskMix, generate_mixture

    assert PipelineConfig().data.task_mix() == TaskMix()  # the default run's data are unchanged
    cfg = PipelineConfig.load(overrides={"data.family_weights": {"arithmetic": 1.0, "strings": 0.0}})
    assert {t.family for t in generate_mixture(40, seed=0, mix=cfg.data.task_mix())} == {"arithmetic"}
    only = PipelineConfig.load(overrides={"data.families": ["conversion"]})
    assert {t.family for t in generate_mixture(20, seed=0, mix=only.data.task_mix())} == {"conversion"}
    with pytest.raises(ValidationError, match="valid: arithmetic, conversion, strings"):
        PipelineConfig.load(overrides={"data.families": ["algebra"]})
    with pytest.raises(ValidationError, match="name only the listed families"):
        PipelineConfig.load(
            overrides={"data.families": ["strings"], "data.family_weights": {"arithmetic": 1}}
        )
    with pytest.raises(ValidationError, match="not all zero"):
        PipelineConfig.load(overrides={"data.family_weights": {"arithmetic": 0.0}})
    with pytest.raises(ValidationError, match="digit_weight"):
        PipelineConfig.load(overrides={"sft.digit_weight": 0.5})


def test_digit_weights_mark_every_token_with_a_digit(tmp_path: Path) -> None:
    cfg = PipelineConfig.load(overrides={**TINY, "out_dir": str(tmp_path / "run"), "stop_after": "teacher"})
    pipeline.run_pipeline(cfg)
    tok = load_tokenizer(tmp_path / "run" / "tokenizer")
    assert pipeline.digit_weights(tok, len(tok), 1.0) is None
    weights = pipeline.digit_weights(tok, len(tok) + 3, 2.5)
    assert weights is not None and weights.shape == (len(tok) + 3,)
    for token_id in range(len(tok)):
        has_digit = any(ch.isdigit() for ch in tok.decode([token_id]))
        assert float(weights[token_id]) == (2.5 if has_digit else 1.0), tok.decode([token_id])
    assert all(float(weights[tok.convert_tokens_to_ids(d)]) == 2.5 for d in "0123456789")


def test_sft_continuation_keeps_a_trained_ablation_head_and_checks_its_kind(tmp_path: Path) -> None:
    from pipo_agent.backends.model.checkpoint import save_pipo

    first = PipelineConfig.load(overrides={**TINY, "out_dir": str(tmp_path / "a")})
    pipeline.run_pipeline(first)  # main head hm, ablation head token -> a/pipo and a/pipo-token
    marked = load_pipo(tmp_path / "a" / "pipo-token")
    with torch.no_grad():  # a head no fresh init could give: every parameter shifted by 0.5
        for p in marked.confidence_head.parameters():
            p.add_(0.5)
    save_pipo(marked, tmp_path / "marked")
    base = {
        **TINY,
        "stop_after": "sft",
        "sft.init_from": str(tmp_path / "a" / "pipo"),
        "sft.digit_weight": 3.0,
    }
    second = PipelineConfig.load(
        overrides={**base, "out_dir": str(tmp_path / "b"), "sft.init_ablation_from": str(tmp_path / "marked")}
    )
    manifest = pipeline.run_pipeline(second)
    assert manifest["sft_init_ablation_from"] == str(tmp_path / "marked")
    start = {k: v for k, v in _weights(tmp_path / "marked").items() if k.startswith("confidence_head.")}
    after = _weights(tmp_path / "b" / "sft" / "final-token")
    assert start and all((after[k] - v).abs().max() < 0.1 for k, v in start.items())
    wrong = PipelineConfig.load(
        overrides={
            **base,
            "out_dir": str(tmp_path / "c"),
            "sft.init_ablation_from": str(tmp_path / "a" / "pipo"),
        }
    )
    with pytest.raises(ValueError, match="has a 'hm' confidence head; the ablation head is 'token'"):
        pipeline.run_pipeline(wrong)


def test_a_continuation_keeps_the_tokenizer_and_teacher_it_continues(tmp_path: Path) -> None:
    first = PipelineConfig.load(overrides={**TINY, "out_dir": str(tmp_path / "a")})
    pipeline.run_pipeline(first)
    shipped = tmp_path / "shipped"
    pipeline.export_model(tmp_path / "a", shipped, dtype=torch.float32)
    # Other data and another seed would train another vocabulary: the continuation must not.
    overrides = {**TINY, "data.train_seed": 77, "data.train_tasks": 9, "stop_after": "sft"}
    cfg = PipelineConfig.load(
        overrides={**overrides, "out_dir": str(tmp_path / "b"), "sft.init_from": str(shipped)}
    )
    manifest = pipeline.run_pipeline(cfg)
    assert pipeline.tokenizer_source(cfg) == shipped
    a_tok = (shipped / "tokenizer.json").read_text()
    assert (tmp_path / "b" / "tokenizer" / "tokenizer.json").read_text() == a_tok
    assert manifest["teacher_from"] == str(shipped / "teacher")
    _assert_same_weights(_weights(shipped / "teacher"), _weights(tmp_path / "b" / "teacher" / "final"))
    assert (tmp_path / "b" / "teacher" / "final" / "tokenizer.json").read_text() == a_tok

    fresh = PipelineConfig.load(overrides={**overrides, "out_dir": str(tmp_path / "c")})
    pipeline.run_pipeline(fresh)
    assert (tmp_path / "c" / "tokenizer" / "tokenizer.json").read_text() != a_tok


def test_the_teacher_can_continue_from_a_checkpoint(tmp_path: Path) -> None:
    first = PipelineConfig.load(overrides={**TINY, "out_dir": str(tmp_path / "a"), "stop_after": "teacher"})
    pipeline.run_pipeline(first)
    start = _weights(tmp_path / "a" / "teacher" / "final")
    cont = PipelineConfig.load(
        overrides={
            **TINY,
            "out_dir": str(tmp_path / "b"),
            "stop_after": "teacher",
            "teacher.init_from": str(tmp_path / "a" / "teacher" / "final"),
            "data.tokenizer_from": str(tmp_path / "a" / "tokenizer"),
            "teacher.optim": {**TINY_OPTIM, "max_steps": 1, "lr": 1e-7},
        }
    )
    pipeline.run_pipeline(cont)
    after = _weights(tmp_path / "b" / "teacher" / "final")
    assert start.keys() == after.keys()
    # One tiny step moves the continued weights a little; a fresh model would differ completely.
    assert all(torch.allclose(start[k], after[k], atol=1e-5) for k in start)
    assert any(not torch.equal(start[k], after[k]) for k in start)


def test_a_continuation_without_its_tokenizer_fails_early(tmp_path: Path) -> None:
    bare = tmp_path / "bare_teacher"
    bare.mkdir()
    cfg = PipelineConfig.load(
        overrides={**TINY, "out_dir": str(tmp_path / "b"), "teacher.init_from": str(bare)}
    )
    with pytest.raises(FileNotFoundError, match=r"data\.tokenizer_from"):
        pipeline.run_pipeline(cfg)
    cfg = PipelineConfig.load(overrides={**TINY, "data.tokenizer_from": str(bare)})
    with pytest.raises(FileNotFoundError, match=r"no tokenizer\.json"):
        pipeline.tokenizer_source(cfg)


ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.json"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_training_config_is_valid(path: Path) -> None:
    cfg = PipelineConfig.load(path)
    assert cfg.out_dir.startswith("artifacts/")
    # A checkpoint a config continues is either shipped in the repository or an earlier run's output.
    for init in (cfg.sft.init_from, cfg.teacher.init_from):
        if init is not None:
            assert init.startswith("artifacts/") or (ROOT / init / "config.json").is_file(), init


def test_a_frozen_model_run_adds_a_head_variant_without_changing_the_model(tmp_path: Path) -> None:
    pipeline.run_pipeline(
        PipelineConfig.load(overrides={**TINY, "out_dir": str(tmp_path / "a"), "ablation_head": None})
    )
    source = _weights(tmp_path / "a" / "pipo")
    overrides = {
        **TINY,
        "stop_after": "sft",
        "sft.init_from": str(tmp_path / "a" / "pipo"),
        "sft.frozen_model": True,
    }
    pipeline.run_pipeline(PipelineConfig.load(overrides={**overrides, "out_dir": str(tmp_path / "b")}))
    _assert_same_weights(source, _weights(tmp_path / "b" / "sft" / "final"))
    variant = load_pipo(tmp_path / "b" / "sft" / "final-token")
    assert variant.config.confidence_head == "token"
    body = {
        k: v for k, v in _weights(tmp_path / "b" / "sft" / "final-token").items() if "confidence" not in k
    }
    assert body and all(torch.equal(v, source[k]) for k, v in body.items())

    with pytest.raises(ValueError, match="set ablation_head"):
        pipeline.run_pipeline(
            PipelineConfig.load(
                overrides={**overrides, "out_dir": str(tmp_path / "c"), "ablation_head": None}
            )
        )
