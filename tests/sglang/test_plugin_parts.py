"""The parts of the SGLang plugin that run without SGLang: its config type, model class, launch plan, version
check and per-token stats. The server itself is tested end to end in `test_sglang_server.py`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipo_agent.backends.checkpoints import default_model_dir
from pipo_agent.backends.model.checkpoint import load_pipo
from pipo_agent.backends.model.errors import CheckpointError
from pipo_agent.backends.sglang import (
    DRAFT,
    SGLANG_VERSION,
    TOKEN1_KEPT,
    TOKEN1_NO_DRAFT,
    TOKEN1_REJECTED,
    stats_from_kinds,
)
from pipo_agent.backends.sglang.config import PipoSGLangConfig
from pipo_agent.backends.sglang.launch import (
    CPU_SHIMS,
    SGLangLaunchError,
    build_launch,
    kv_bytes_per_token,
    served_model_dir,
)
from pipo_agent.backends.sglang.model import PipoForSGLang
from pipo_agent.backends.sglang.plugin import SGLangVersionError, check_sglang_version
from pipo_agent.server.config import ServerConfig

MODEL_DIR = default_model_dir()


def _config() -> PipoSGLangConfig:
    return PipoSGLangConfig(**json.loads((MODEL_DIR / "config.json").read_text()))


def test_config_lifts_the_backbone_fields_sglang_reads_and_counts_the_mtp_layer() -> None:
    config = _config()
    backbone = json.loads((MODEL_DIR / "config.json").read_text())["backbone"]
    assert config.architectures == ["PipoForSGLang"]
    assert (
        config.num_hidden_layers == backbone["num_hidden_layers"] + 1
    )  # the MTP layer's KV is the pool's last
    for key in ("hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size"):
        assert getattr(config, key) == backbone[key]
    assert config.eos_token_id == [1, 3] and config.pad_token_id == 0
    assert config.pipo_config().backbone == backbone
    again = PipoSGLangConfig(**config.to_dict())  # SGLang copies configs through dicts
    assert again.pipo == config.pipo and again.num_hidden_layers == config.num_hidden_layers


def test_model_class_loads_the_checkpoint_exactly_as_load_pipo_does() -> None:
    model = PipoForSGLang(_config())
    tensors = load_file(str(MODEL_DIR / "model.safetensors"))
    model.load_weights(iter(tensors.items()))
    reference = load_pipo(MODEL_DIR)
    ours = model.pipo.state_dict()
    assert ours.keys() == reference.state_dict().keys()
    assert all(torch.equal(ours[k], v) for k, v in reference.state_dict().items())
    assert model.pipo.lm_head.weight.data_ptr() == model.pipo.embed_tokens.weight.data_ptr()  # tied
    with pytest.raises(RuntimeError, match="--speculative-algorithm PIPO"):
        model(torch.zeros(2, dtype=torch.long))


def test_model_class_names_what_is_wrong_with_a_bad_checkpoint() -> None:
    tensors = load_file(str(MODEL_DIR / "model.safetensors"))
    name = next(k for k in tensors if k.startswith("mtp."))
    broken = {k: v for k, v in tensors.items() if k != name}
    broken["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=rf"missing keys: {name}.*unexpected keys: extra.weight"):
        PipoForSGLang(_config()).load_weights(iter(broken.items()))
    with pytest.raises(ValueError, match="unquantized"):
        PipoForSGLang(_config(), quant_config=object())


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_launch_plan_on_the_cpu() -> None:
    config = ServerConfig.build(engine="sglang", port=31234, default_tau=0.8, kv_cache_bytes=2**20, threads=2)
    plan = build_launch(config, python="/py", environ={"PYTHONPATH": "/elsewhere"})
    argv = plan.argv
    assert argv[:3] == ["/py", "-m", "sglang.launch_server"]
    assert _flag(argv, "--model-path") == str(MODEL_DIR) and _flag(argv, "--host") == "127.0.0.1"
    assert _flag(argv, "--port") == "31234" and _flag(argv, "--device") == "cpu"
    assert _flag(argv, "--speculative-algorithm") == "PIPO" and _flag(argv, "--attention-backend") == "pipo"
    assert _flag(argv, "--speculative-num-draft-tokens") == "3"
    assert {"--disable-overlap-schedule", "--disable-radix-cache", "--disable-cuda-graph"} <= set(argv)
    assert int(_flag(argv, "--chunked-prefill-size")) % 2 == 0  # chunks end on pair boundaries
    assert json.loads(_flag(argv, "--json-model-override-args")) == {"pipo_default_tau": 0.8}
    assert int(_flag(argv, "--max-total-tokens")) == 2**20 // kv_bytes_per_token(MODEL_DIR, 4)
    assert _flag(argv, "--dtype") == "float32" and "--api-key" not in argv
    assert plan.env["SGLANG_USE_CPU_ENGINE"] == "1" and plan.env["OMP_NUM_THREADS"] == "2"
    assert plan.env["PYTHONPATH"] == f"{CPU_SHIMS}{os.pathsep}/elsewhere"
    assert (CPU_SHIMS / "sgl_kernel" / "__init__.py").is_file()


def test_launch_plan_on_a_gpu_hides_the_key_and_refuses_what_sglang_cannot_serve() -> None:
    config = ServerConfig.build(engine="sglang", device="cuda", host="0.0.0.0", api_key="s3cret")
    plan = build_launch(config, python="/py", environ={})
    assert _flag(plan.argv, "--device") == "cuda" and "--dtype" not in plan.argv
    assert "SGLANG_USE_CPU_ENGINE" not in plan.env and "PYTHONPATH" not in plan.env
    assert _flag(plan.argv, "--api-key") == "s3cret" and "s3cret" not in json.dumps(plan.summary())
    with pytest.raises(SGLangLaunchError, match="serves the PIPO model"):
        build_launch(ServerConfig.build(engine="sglang", mode="ar"))
    with pytest.raises(SGLangLaunchError, match="custom_params"):
        build_launch(ServerConfig.build(engine="sglang", task_taus={"strings": 0.5}))


def test_a_published_checkpoint_is_served_through_an_overlay_holding_our_config(tmp_path: Path) -> None:
    """SGLang would serve a published PIPO checkpoint's Qwen3.5 backbone alone: the launcher points it at an
    overlay directory with our config for it and links to the published files."""
    from pipo_agent.backends.model.config import CONFIG_FORMAT

    published_dir = tmp_path / "published"
    published_dir.mkdir()
    text = {
        "model_type": "qwen3_5_text",
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "full_attention_interval": 2,
    }
    published = {
        "architectures": ["Qwen3_5ForConditionalGeneration"],
        "model_type": "qwen3_5",
        "text_config": text,
    }
    (published_dir / "config.json").write_text(json.dumps(published | {"pad_token_id": 7, "eos_token_id": 9}))
    (published_dir / "model-00001-of-00001.safetensors").write_bytes(b"weights")
    (published_dir / "tokenizer.json").write_text("{}")
    root = tmp_path / "overlays"
    overlay = served_model_dir(published_dir, root)
    assert overlay.parent == root and overlay != published_dir
    config = json.loads((overlay / "config.json").read_text())
    assert (
        config["pipo_format"] == CONFIG_FORMAT
        and config["pad_token_id"] == 7
        and config["eos_token_ids"] == [9]
    )
    assert config["backbone"]["model_type"] == "qwen3_5_text"
    for name in ("model-00001-of-00001.safetensors", "tokenizer.json"):
        assert (overlay / name).is_symlink() and (overlay / name).resolve() == (
            published_dir / name
        ).resolve()
    assert served_model_dir(published_dir, root) == overlay  # the same overlay again, rewritten
    # K/V per token: the 2 full-attention layers and the MTP layer; the linear-attention layers keep states.
    assert kv_bytes_per_token(overlay, 4) == 2 * 3 * 2 * 16 * 4
    assert served_model_dir(MODEL_DIR, root) == MODEL_DIR  # ours is served as it is
    (published_dir / "config.json").write_text(json.dumps(published))  # no pad_token_id
    with pytest.raises(
        SGLangLaunchError, match=r"neither a pipo-agent nor a published PIPO checkpoint.*pad_token_id"
    ):
        build_launch(ServerConfig.build(engine="sglang", model_dir=published_dir))


def test_version_check() -> None:
    assert check_sglang_version(SGLANG_VERSION) == SGLANG_VERSION
    with pytest.raises(SGLangVersionError, match=rf"built for sglang=={SGLANG_VERSION} but sglang==0.5.22"):
        check_sglang_version("0.5.22")


def _fake_sglang(root: Path, version: str) -> Path:
    """A site folder holding an installed-looking `sglang` distribution of `version`."""
    info = root / f"sglang-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: sglang\nVersion: {version}\n")
    (root / "sglang").mkdir()
    (root / "sglang" / "__init__.py").write_text(f"__version__ = {version!r}\n")
    return root


def test_serve_with_a_mismatched_sglang_fails_at_start_with_the_versions(tmp_path: Path) -> None:
    site = _fake_sglang(tmp_path / "site", "0.5.22")
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pipo-agent"), "serve", "--engine", "sglang", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, out
    assert f"built for sglang=={SGLANG_VERSION} but sglang==0.5.22 is installed" in out


def test_stats_from_per_token_kinds() -> None:
    # prefill: token1 + kept draft; a rejected draft; a step without a draft (tau >= 1); an EOS token1.
    kinds = [TOKEN1_KEPT, DRAFT, TOKEN1_REJECTED, TOKEN1_NO_DRAFT, TOKEN1_NO_DRAFT]
    assert stats_from_kinds(kinds) == {
        "steps": 4,
        "drafts_proposed": 2,
        "drafts_committed": 1,
        "tokens_per_step": 5 / 4,
    }
    assert stats_from_kinds([])["tokens_per_step"] == 0.0
