"""`pipo-agent serve --engine sglang`: SGLang's HTTP server with the PIPO plugin.

`build_launch` turns a `ServerConfig` into SGLang's command line and environment; `launch` checks the SGLang
version and replaces the current process with `python -m sglang.launch_server`, so signals, logs and exit codes
are SGLang's own. What PIPO needs from SGLang is fixed here:

- `--speculative-algorithm PIPO --attention-backend pipo` (the plugin's), with 3 tokens per step at most;
- no overlap scheduling (the worker runs synchronously) and no radix cache (SGLang's cache is keyed by tokens,
  PIPO's KV by pairs);
- `reasoning_content` and `tool_calls` in chat completions by SGLang's parsers of the chat format;
- the server's default tau as a model override (`pipo_default_tau`); requests set theirs with
  `custom_params: {"tau": x}`;
- no CUDA graphs: the worker drives the model itself, outside SGLang's graph runner;
- on the CPU: `SGLANG_USE_CPU_ENGINE=1`, float32, and the `cpu_shims` folder (the stand-in
  `sgl_kernel` and `torchvision`) first on `PYTHONPATH`;
- float32 linear-attention convolution states (SGLang's default is bfloat16), for Qwen3.5 backbones;
- a published PIPO checkpoint is served through an overlay directory holding our `config.json` for it.
"""

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pipo_agent.backends.sglang import ALGORITHM, ATTENTION_BACKEND

if TYPE_CHECKING:
    from pipo_agent.server.config import ServerConfig

CPU_SHIMS = Path(__file__).resolve().parent / "cpu_shims"
STEP_TOKENS = 3  # the held prefill draft, token1, token2
CHUNKED_PREFILL_TOKENS = 4096  # even: a chunk boundary is a pair boundary
DEFAULT_TAU_FIELD = "pipo_default_tau"
# The chat format's reasoning opens in the prompt (`<think>\n`) and closes with `</think>`; tool calls are
# `<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>`. SGLang's parsers of these formats:
REASONING_PARSER = "deepseek-r1"
TOOL_CALL_PARSER = "qwen25"


class SGLangLaunchError(ValueError):
    pass


@dataclass(frozen=True)
class SGLangLaunch:
    argv: list[str]
    env: dict[str, str]

    def summary(self) -> dict[str, object]:
        """The command without the API key, and the environment this launch sets."""
        argv = list(self.argv)
        if "--api-key" in argv:
            argv[argv.index("--api-key") + 1] = "***"
        return {"argv": argv, "env": {k: v for k, v in self.env.items() if k in _SET_ENV}}


_SET_ENV = ("SGLANG_USE_CPU_ENGINE", "SGLANG_MAMBA_CONV_DTYPE", "PYTHONPATH", "OMP_NUM_THREADS")


def kv_bytes_per_token(model_dir: Path, dtype_bytes: int) -> int:
    """K and V of one token slot in all of SGLang's pool layers: the backbone's attention layers (a Qwen3.5
    backbone's full-attention ones; its linear-attention layers keep a fixed-size state instead) and the MTP layer."""
    from pipo_agent.backends.model.checkpoint import load_config
    from pipo_agent.backends.sglang.config import HF_FULL, HYBRID_BACKBONES, layer_types

    backbone = load_config(model_dir).backbone
    heads = int(backbone["num_attention_heads"])
    head_dim = int(backbone.get("head_dim") or int(backbone["hidden_size"]) // heads)
    layers = int(backbone["num_hidden_layers"])
    if backbone.get("model_type") in HYBRID_BACKBONES:
        layers = sum(kind == HF_FULL for kind in layer_types(backbone))
    return 2 * (layers + 1) * int(backbone["num_key_value_heads"]) * head_dim * dtype_bytes


def served_model_dir(model_dir: Path, overlay_root: Path | None = None) -> Path:
    """The directory SGLang loads. A checkpoint written by pipo-agent is served as it is. A published PIPO
    checkpoint (a Qwen3.5 config plus the PIPO fields, the published key layout) names SGLang's own Qwen3.5
    model, which would serve its backbone alone, autoregressively: it is served through an overlay directory
    holding our `config.json` for it and links to every other file (weights, tokenizer), so SGLang builds the PIPO
    model and loads the published tensors through the same checked loader as `load_pipo`."""
    from pipo_agent.backends.model.config import CONFIG_FORMAT, PipoConfig
    from pipo_agent.backends.model.errors import ModelConfigError

    path = model_dir / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SGLangLaunchError(f"cannot read the checkpoint config {path}: {exc}") from exc
    if data.get("pipo_format") == CONFIG_FORMAT:
        return model_dir
    try:
        config = PipoConfig.from_json_dict(data)
    except (ModelConfigError, ValueError) as exc:
        raise SGLangLaunchError(
            f"{model_dir} is neither a pipo-agent nor a published PIPO checkpoint: {exc}"
        ) from exc
    source = model_dir.resolve()
    root = overlay_root if overlay_root is not None else Path(tempfile.gettempdir()) / "pipo-agent-sglang"
    overlay = root / hashlib.sha256(str(source).encode()).hexdigest()[:16]
    overlay.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name == "config.json":
            continue
        link = overlay / entry.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(entry)
    (overlay / "config.json").write_text(json.dumps(config.to_json_dict(), indent=2, sort_keys=True) + "\n")
    return overlay


def build_launch(
    config: "ServerConfig",
    *,
    python: str = sys.executable,
    environ: dict[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> SGLangLaunch:
    """SGLang's command line and environment for `config`; `extra_args` go last (SGLang keeps the last value of
    a repeated flag, so they can override the ones set here)."""
    from pipo_agent.backends.checkpoints import default_model_dir
    from pipo_agent.server.config import EngineMode

    if config.mode is not EngineMode.PIPO:
        raise SGLangLaunchError(
            "--engine sglang serves the PIPO model; serve the AR teacher with plain SGLang "
            "(python -m sglang.launch_server --model-path <checkpoint>/teacher) or with --engine embedded"
        )
    if config.task_taus:
        raise SGLangLaunchError(
            "--task-tau is the embedded server's; with --engine sglang a request sets its own tau "
            'in custom_params ({"tau": 0.8}) or gets --tau'
        )
    model_dir = served_model_dir(config.model_dir if config.model_dir is not None else default_model_dir())
    cpu = config.device == "cpu"
    dtype_bytes = 4  # float32 on the CPU; on a GPU "auto" keeps the checkpoint's float32 too
    max_tokens = max(64, config.kv_cache_bytes // kv_bytes_per_token(model_dir, dtype_bytes))
    argv = [
        python,
        "-m",
        "sglang.launch_server",
        "--model-path",
        str(model_dir),
        "--host",
        config.host,
        "--port",
        str(config.port),
        "--served-model-name",
        config.served_model_name,
        "--device",
        config.device.split(":")[0],
        "--attention-backend",
        ATTENTION_BACKEND,
        "--speculative-algorithm",
        ALGORITHM,
        "--speculative-num-draft-tokens",
        str(STEP_TOKENS),
        "--disable-overlap-schedule",
        "--disable-radix-cache",
        "--disable-cuda-graph",  # the worker runs the model itself; SGLang's graph runner would not
        "--chunked-prefill-size",
        str(CHUNKED_PREFILL_TOKENS),
        "--max-running-requests",
        str(config.max_num_seqs),
        "--max-total-tokens",
        str(max_tokens),
        "--reasoning-parser",
        REASONING_PARSER,
        "--tool-call-parser",
        TOOL_CALL_PARSER,
        "--json-model-override-args",
        json.dumps({DEFAULT_TAU_FIELD: config.default_tau}),
        "--log-level",
        config.log_level,
    ]
    if config.max_model_pairs is not None:
        argv += ["--context-length", str(2 * config.max_model_pairs)]
    if config.api_key is not None:
        argv += ["--api-key", config.api_key.get_secret_value()]
    if cpu:
        argv += [
            "--dtype",
            "float32",
            "--sampling-backend",
            "pytorch",
            "--mem-fraction-static",
            "0.05",
        ]
    argv += list(extra_args)
    env = dict(os.environ if environ is None else environ)
    # SGLang keeps linear-attention convolution states in bfloat16 unless told otherwise; a Qwen3.5 PIPO
    # backbone's states stay in float32 like its weights, so decoding computes what the reference decoder does.
    env.setdefault("SGLANG_MAMBA_CONV_DTYPE", "float32")
    if cpu:
        env["SGLANG_USE_CPU_ENGINE"] = "1"
        path = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = str(CPU_SHIMS) + (os.pathsep + path if path else "")
    if config.threads is not None:
        env["OMP_NUM_THREADS"] = str(config.threads)
    return SGLangLaunch(argv, env)


def launch(config: "ServerConfig", extra_args: Sequence[str] = ()) -> NoReturn:
    """Checks the SGLang version, then becomes the SGLang server (this call does not return)."""
    from pipo_agent.backends.sglang.plugin import check_sglang_version

    check_sglang_version()
    plan = build_launch(config, extra_args=extra_args)
    os.execvpe(plan.argv[0], plan.argv, plan.env)
