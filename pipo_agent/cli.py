"""The `pipo-agent` command line. Heavy imports (torch) happen inside the commands that need them."""

import contextlib
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="pipo-agent: fast reasoning agents on PIPO models."
)
train_app = typer.Typer(no_args_is_help=True, help="Train the AR teacher and the PIPO student.")
app.add_typer(train_app, name="train")
console = Console()


def _parse_overrides(values: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    return overrides


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="pipeline config (JSON)")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="override a config field, e.g. sft.optim.max_steps=100")
]
OutOpt = Annotated[str | None, typer.Option("--out", help="output directory (overrides out_dir)")]


def _pipeline(config: Path | None, sets: list[str] | None, out: str | None) -> Any:
    from pydantic import ValidationError

    from pipo_agent.backends.train.config import PipelineConfig

    overrides = _parse_overrides(sets or [])
    if out:
        overrides["out_dir"] = out
    try:
        return PipelineConfig.load(config, overrides)
    except ValidationError as exc:
        console.print(f"[red]invalid training config:[/red]\n{exc}")
        raise typer.Exit(2) from None


@train_app.command("all")
def train_all(config: ConfigOpt = None, set_: SetOpt = None, out: OutOpt = None) -> None:
    """Reproduce the default model from scratch: tasks, tokenizer, teacher, SFT, OPD."""
    from pipo_agent.backends.train.pipeline import run_pipeline

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    manifest = run_pipeline(_pipeline(config, set_, out))
    console.print_json(json.dumps(manifest))


# ---- run: solve one task with tools, streaming ----

ModelOpt = Annotated[
    Path | None, typer.Option("--model", "-m", help="PIPO checkpoint dir with tokenizer (default: shipped)")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="torch device, e.g. cpu or cuda")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="torch intra-op threads")]


class _EventPrinter:
    """Streams tool-loop events: reasoning dimmed, answer text plain, tool calls and results marked."""

    def __init__(self, out: Console) -> None:
        from pipo_agent.backends.eval import tool_loop

        self.loop = tool_loop
        self.out = out
        self.channel: str | None = None

    def _switch(self, channel: str | None, header: str | None = None) -> None:
        if self.channel != channel:
            if self.channel is not None:
                self.out.print()
            if header:
                self.out.print(header)
            self.channel = channel

    def __call__(self, event: Any) -> None:
        from rich.text import Text

        loop = self.loop
        if isinstance(event, loop.ReasoningDelta):
            self._switch("reasoning", "[dim italic]thinking…[/dim italic]")
            self.out.print(Text(event.text, style="dim"), end="", soft_wrap=True)
        elif isinstance(event, loop.TextDelta):
            self._switch("text")
            self.out.print(Text(event.text), end="", soft_wrap=True)
        elif isinstance(event, loop.ToolCallEvent):
            self._switch(None)
            call = event.call
            if call.error is None:
                args = json.dumps(call.arguments, ensure_ascii=False)
                self.out.print(Text(f"→ {call.name}({args})", style="cyan"))
            else:
                self.out.print(Text(f"→ malformed tool call: {call.raw}", style="red"))
        elif isinstance(event, loop.ToolResultEvent):
            self.out.print(Text(f"← {event.content}", style="red" if event.is_error else "green"))
        elif isinstance(event, loop.TurnEnd):
            self._switch(None)
            s = event.stats
            self.out.print(
                f"[dim]turn {event.turn + 1}: {s.tokens} tokens in {s.steps} steps, "
                f"drafts {s.drafts_committed}/{s.drafts_proposed}, {event.finish_reason}[/dim]"
            )


def _stats_table(result: Any, tau: float) -> Any:
    from rich.table import Table

    s = result.stats
    table = Table(title="PIPO stats", show_header=False)
    rate = f" ({s.commit_rate:.0%})" if s.commit_rate is not None else ""
    rows = [
        ("turns", f"{s.turns} ({result.stop})"),
        ("tool calls", str(len(result.tool_calls))),
        ("steps", str(s.steps)),
        ("tokens", str(s.tokens)),
        ("tokens per step", f"{s.tokens_per_step:.2f}"),
        ("drafts committed / proposed", f"{s.drafts_committed}/{s.drafts_proposed}{rate}"),
        ("tau", f"{tau:g}"),
        ("tokens/s", f"{s.tokens_per_s:.1f}" if s.tokens_per_s else "-"),
        ("TTFT", f"{s.ttft_s * 1e3:.1f} ms" if s.ttft_s is not None else "-"),
        ("TPOT", f"{s.tpot_s * 1e3:.2f} ms" if s.tpot_s is not None else "-"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


@app.command("run")
def run_task(
    task: Annotated[str, typer.Argument(help="the task or question to solve")],
    model: ModelOpt = None,
    tau: Annotated[float, typer.Option(help="commit threshold: < 0 always commits, >= 1 never drafts")] = 0.9,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    top_k: Annotated[int, typer.Option(help="0 = off")] = 0,
    seed: Annotated[int | None, typer.Option()] = None,
    max_turns: Annotated[int, typer.Option(min=1)] = 8,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="per assistant turn")] = 1024,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
) -> None:
    """Solve a task with the calculator and lookup tools, streaming reasoning, tool calls and the answer."""
    import torch

    from pipo_agent.backends.checkpoints import MissingCheckpointError, default_model_dir
    from pipo_agent.backends.decode import SamplingParams, SamplingParamsError
    from pipo_agent.backends.engine.decoder import EngineDecoder
    from pipo_agent.backends.engine.llm_engine import load_engine
    from pipo_agent.backends.eval import solve_with_tools
    from pipo_agent.tasks import extract_answer

    if threads:
        torch.set_num_threads(threads)
    try:
        directory = model if model is not None else default_model_dir()
        params = SamplingParams(
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            tau=tau,
            max_new_tokens=max_new_tokens,
        )
    except (MissingCheckpointError, SamplingParamsError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    engine, tokenizer = load_engine(directory, device=device)
    result = solve_with_tools(
        EngineDecoder(engine),
        tokenizer,
        task,
        params=params,
        max_turns=max_turns,
        on_event=_EventPrinter(console),
    )
    answer = extract_answer(result.final_text)
    if answer is not None:
        console.print(f"[bold green]Answer:[/bold green] {answer}", highlight=False)
    else:
        console.print(f"[yellow]no 'Answer:' line ({result.stop})[/yellow]")
    console.print(_stats_table(result, tau))


# ---- eval: PIPO against its AR teacher ----


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


def _named_paths(values: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in values:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(f"--extra-model expects NAME=DIR, got {item!r}")
        out[name] = Path(path)
    return out


def _fmt(value: Any, spec: str = ".3f", scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def _eval_table(rows: list[dict[str, Any]], k: int) -> Any:
    from rich.table import Table

    table = Table(title="PIPO vs AR teacher (held-out tasks)")
    for column in ("system", "tau", "family", f"avg@{k}", f"pass@{k}", "tok/step", "drafts c/p"):
        table.add_column(column)
    for column in ("commit", "TPOT ms", "tok/s", "ECE"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r["system"],
            "AR" if r["tau"] is None else f"{r['tau']:g}",
            r["family"],
            _fmt(r["avg_at_k"]),
            _fmt(r["pass_at_k"]),
            _fmt(r["tokens_per_step"], ".2f"),
            f"{r['drafts_committed']}/{r['drafts_proposed']}",
            _fmt(r["commit_rate"], ".0%"),
            _fmt(r["tpot_s"], ".2f", 1e3),
            _fmt(r["tokens_per_s"], ".1f"),
            _fmt(r["ece"]),
            end_section=r["family"] == "all",
        )
    return table


@app.command("eval")
def eval_models(
    model: ModelOpt = None,
    teacher: Annotated[
        Path | None, typer.Option("--teacher", help="AR teacher dir (default: shipped, when it exists)")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="output directory for eval.json and eval.png")] = Path(
        "eval"
    ),
    n: Annotated[int, typer.Option("--n", min=1, help="held-out tasks per family")] = 20,
    k: Annotated[int, typer.Option("--k", min=1, help="samples per task")] = 4,
    taus: Annotated[str, typer.Option("--taus", help="comma-separated, e.g. -1,0.5,0.9,1")] = (
        "-1,0.5,0.8,0.9,0.95,1"
    ),
    families: Annotated[str, typer.Option("--families", help="comma-separated (default: all)")] = "",
    extra_model: Annotated[
        list[str] | None,
        typer.Option(
            "--extra-model", "--heads", help="NAME=DIR: another PIPO checkpoint (e.g. another head)"
        ),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="per assistant turn")] = 512,
    max_turns: Annotated[int, typer.Option(min=1)] = 8,
    temperature: float = 0.7,
    top_p: float = 0.95,
    top_k: int = 20,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
) -> None:
    """Evaluate PIPO at several taus against its AR teacher: accuracy, speed, confidence calibration."""
    import torch
    from pydantic import ValidationError

    from pipo_agent.backends.checkpoints import (
        MissingCheckpointError,
        default_model_dir,
        default_teacher_dir,
    )
    from pipo_agent.backends.eval import EvalConfig, run_evaluation

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if threads:
        torch.set_num_threads(threads)
    try:
        model_dir = model if model is not None else default_model_dir()
    except MissingCheckpointError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if teacher is None and model is None:
        with contextlib.suppress(MissingCheckpointError):
            teacher = default_teacher_dir()
    if teacher is None:
        console.print("[yellow]no --teacher: no AR reference and no calibration[/yellow]")
    try:
        config = EvalConfig(
            model_dir=model_dir,
            teacher_dir=teacher,
            out_dir=out,
            extra_models=_named_paths(extra_model or []),
            families=tuple(f.strip() for f in families.split(",") if f.strip()),
            n=n,
            k=k,
            taus=_floats(taus),
            max_new_tokens=max_new_tokens,
            max_turns=max_turns,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            device=device,
        )
    except ValidationError as exc:
        console.print(f"[red]invalid evaluation options:[/red]\n{exc}")
        raise typer.Exit(2) from None
    report = run_evaluation(config)
    # Eleven columns need about 110 characters; a pipe would otherwise get 80 and ellipses.
    console.print(_eval_table(report["rows"], k), width=max(console.width, 120))
    console.print(f"wrote {out / 'eval.json'} and {out / 'eval.png'}")


@train_app.command("export")
def train_export(
    run_dir: Annotated[Path, typer.Argument(help="a finished `train all` output directory")],
    dest: Annotated[
        Path | None, typer.Option(help="target directory (default: the shipped default model)")
    ] = None,
) -> None:
    """Copy a trained model (PIPO, tokenizer, AR teacher) in bfloat16 to the shipped default location."""
    from pipo_agent.backends.checkpoints import CHECKPOINTS_DIR
    from pipo_agent.backends.train.pipeline import export_model

    console.print_json(json.dumps(export_model(run_dir, dest or CHECKPOINTS_DIR / "default")))


def main() -> None:
    app()


if __name__ == "__main__":
    main()


# ---- bench: PIPO vs AR on the embedded engine ----


def _bench_tables(report: dict[str, Any]) -> list[Any]:
    from rich.table import Table

    ttft = Table(title=f"TTFT — {report['device']}, attention {report['attention_backend']}")
    for col in ("prompt tokens", "PIPO ms", "AR ms", "AR/PIPO"):
        ttft.add_column(col, justify="right")
    for r in report["ttft"]:
        ttft.add_row(
            str(r["prompt_tokens"]), f"{r['pipo_ms']:.1f}", f"{r['ar_ms']:.1f}", f"{r['ratio']:.2f}x"
        )
    decode = Table(title="decode (held-out task prompts, greedy)")
    for col in (
        "batch",
        "PIPO TPOT ms",
        "AR TPOT ms",
        "TPOT ratio",
        "PIPO tok/s",
        "AR tok/s",
        "tok/step",
        "KV B/tok ratio",
    ):
        decode.add_column(col, justify="right")
    for r in report["decode"]:
        p, a = r["pipo"], r["ar"]
        decode.add_row(
            str(r["batch"]),
            f"{p['tpot_ms']:.2f}",
            f"{a['tpot_ms']:.2f}",
            f"{r['tpot_ratio']:.2f}x",
            f"{p['tokens_per_s']:.0f}",
            f"{a['tokens_per_s']:.0f}",
            f"{p['tokens_per_step']:.2f}",
            f"{r['kv_bytes_ratio']:.2f}",
        )
    sweep = Table(title="tau sweep (agent tool loop, held-out tasks)")
    for col in ("system", "tau", "tasks", "accuracy", "tok/step"):
        sweep.add_column(col, justify="right")
    for r in report["tau_sweep"]:
        tau = "-" if r["tau"] is None else f"{r['tau']:g}"
        sweep.add_row(
            r["system"], tau, str(r["tasks"]), f"{r['accuracy']:.2f}", f"{r['tokens_per_step']:.2f}"
        )
    targets = Table(title="targets")
    for col in ("metric", "target", "measured", "met"):
        targets.add_column(col, justify="right")
    for name, t in report["targets"].items():
        lower = t.get("lower_is_better", False)
        met = t["measured"] <= t["target"] if lower else t["measured"] >= t["target"]
        targets.add_row(
            name, f"{'<=' if lower else '>='} {t['target']}", f"{t['measured']:.2f}", "yes" if met else "no"
        )
    return [ttft, decode, sweep, targets]


@app.command("bench")
def bench(
    out: Annotated[Path, typer.Option(help="directory for bench.json and the PNG plots")] = Path(
        "bench-results"
    ),
    model: ModelOpt = None,
    device: DeviceOpt = "cpu",
    threads: Annotated[int, typer.Option(min=1, help="torch intra-op threads")] = 2,
    attention: Annotated[str | None, typer.Option(help="torch or triton (default: triton on CUDA)")] = None,
    tau: Annotated[float, typer.Option(help="PIPO commit threshold for the speed runs")] = 0.9,
    max_new_tokens: Annotated[int, typer.Option(min=2)] = 256,
    sweep_tasks: Annotated[int, typer.Option(min=0, help="held-out tasks per family in the tau sweep")] = 4,
    quick: Annotated[bool, typer.Option("--quick", help="a smoke-sized run of every measurement")] = False,
) -> None:
    """PIPO against the AR baseline on the embedded engine: TTFT, TPOT, throughput, KV bytes, tau sweep."""
    from pydantic import ValidationError

    from pipo_agent.backends.bench import BenchConfig, run_benchmark

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    options: dict[str, Any] = dict(
        model_dir=str(model) if model else None,
        device=device,
        threads=threads,
        attention=attention,
        tau=tau,
        out_dir=str(out),
    )
    try:
        if quick:
            config = BenchConfig.quick(**options)
        else:
            config = BenchConfig(max_new_tokens=max_new_tokens, sweep_tasks_per_family=sweep_tasks, **options)
    except ValidationError as exc:
        console.print(f"[red]invalid benchmark options:[/red]\n{exc}")
        raise typer.Exit(2) from None
    report = run_benchmark(config)
    for table in _bench_tables(report):
        console.print(table, width=max(console.width, 120))
    console.print(f"wrote {out / 'bench.json'} and {', '.join(report['plots'])}")
