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


def _train_until(stage: str, config: Path | None, sets: list[str] | None, out: str | None) -> None:
    from pipo_agent.backends.train.pipeline import run_pipeline

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    manifest = run_pipeline(_pipeline(config, [*(sets or []), f"stop_after={stage}"], out))
    console.print_json(json.dumps(manifest))


@train_app.command("teacher")
def train_teacher_cmd(config: ConfigOpt = None, set_: SetOpt = None, out: OutOpt = None) -> None:
    """Data, tokenizer and the AR teacher (stops there; finished stages are skipped)."""
    _train_until("teacher", config, set_, out)


@train_app.command("sft")
def train_sft_cmd(config: ConfigOpt = None, set_: SetOpt = None, out: OutOpt = None) -> None:
    """Everything up to PIPO SFT (the teacher first if the run has none); `--set sft.init_from=DIR` continues
    from a PIPO checkpoint."""
    _train_until("sft", config, set_, out)


@train_app.command("opd")
def train_opd_cmd(config: ConfigOpt = None, set_: SetOpt = None, out: OutOpt = None) -> None:
    """Everything up to on-policy distillation, then the final model in `<out>/pipo`."""
    _train_until("opd", config, set_, out)


# ---- run / resume: the agent on the embedded default model ----

ModelOpt = Annotated[
    Path | None, typer.Option("--model", "-m", help="PIPO checkpoint dir with tokenizer (default: shipped)")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="torch device, e.g. cpu or cuda")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="torch intra-op threads")]
DbOpt = Annotated[Path, typer.Option("--db", help="SQLite file for runs, history and adaptive tau")]
DEFAULT_DB = Path("pipo-agent.db")


class _EventPrinter:
    """Streams run events: reasoning dimmed, answer text plain, tool calls and results marked."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.channel: str | None = None
        self.run_id: str | None = None

    def _switch(self, channel: str | None, header: str | None = None) -> None:
        if self.channel != channel:
            if self.channel is not None:
                self.out.print()
            if header:
                self.out.print(header)
            self.channel = channel

    def __call__(self, event: Any) -> None:
        from rich.text import Text

        kind = event.kind
        if kind == "run_start":
            self.run_id = event.run_id
            tau = "backend default" if event.tau is None else f"{event.tau:g}"
            again = "resuming " if event.resumed else ""
            self.out.print(f"[dim]{again}run {event.run_id} · task type {event.task_type} · tau {tau}[/dim]")
        elif kind == "reasoning_delta":
            self._switch("reasoning", "[dim italic]thinking…[/dim italic]")
            self.out.print(Text(event.text, style="dim"), end="", soft_wrap=True)
        elif kind == "text_delta":
            self._switch("text")
            self.out.print(Text(event.text), end="", soft_wrap=True)
        elif kind == "tool_call":
            self._switch(None)
            call = event.call
            if hasattr(call, "arguments"):
                args = json.dumps(call.arguments, ensure_ascii=False)
                self.out.print(Text(f"→ {call.name}({args})", style="cyan"))
            else:
                self.out.print(Text(f"→ malformed tool call: {call.raw}", style="red"))
        elif kind == "tool_result":
            self._switch(None)
            result = event.result
            reused = " (from before the crash)" if event.reused else ""
            style = "red" if result.is_error else "green"
            self.out.print(Text(f"← {result.name or '?'}: {result.content}{reused}", style=style))
        elif kind == "step_end":
            self._switch(None)
            self.out.print(f"[dim]turn {event.step + 1}: {_usage_line(event.message.usage)}[/dim]")


def _usage_line(usage: Any) -> str:
    if usage is None:
        return "no usage reported"
    parts = [f"{usage.completion_tokens} tokens ({usage.reasoning_tokens} reasoning)"]
    if usage.steps is not None:
        parts.append(f"in {usage.steps} steps")
    if usage.drafts_proposed is not None:
        parts.append(f"drafts {usage.drafts_committed}/{usage.drafts_proposed}")
    return ", ".join(parts)


def _stats_table(result: Any, seconds: float) -> Any:
    from rich.table import Table

    u = result.usage
    tool_calls = sum(1 for m in result.messages if m.kind == "tool")
    rate = ""
    if u.drafts_proposed:
        rate = f" ({(u.drafts_committed or 0) / u.drafts_proposed:.0%})"
    table = Table(title="PIPO stats", show_header=False)
    rows = [
        ("run id", str(result.run_id)),
        ("stop", f"{result.stop_reason} ({result.detail})"),
        ("turns", str(result.steps)),
        ("tool calls", str(tool_calls)),
        ("tokens (reasoning)", f"{u.completion_tokens} ({u.reasoning_tokens})"),
        ("backbone steps", "-" if u.steps is None else str(u.steps)),
        ("tokens per step", "-" if u.tokens_per_step is None else f"{u.tokens_per_step:.2f}"),
        ("drafts committed / proposed", f"{u.drafts_committed}/{u.drafts_proposed}{rate}"),
        ("tau", "-" if result.tau is None else f"{result.tau:g} ({result.task_type})"),
        ("tokens/s", f"{u.completion_tokens / seconds:.1f}" if seconds > 0 else "-"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]{message}[/red]", highlight=False, soft_wrap=True)
    return typer.Exit(2)


async def _agent_session(
    db: Path,
    load: Any,
    config: Any,
    start: Any,
    check: Any = None,
) -> tuple[Any, float]:
    """Open the store, load the model, run (or resume) with the built-in tools and print the stream."""
    import time

    import anyio

    from pipo_agent.agent import Agent
    from pipo_agent.memory import MemoryStore
    from pipo_agent.tasks import SYSTEM_PROMPT
    from pipo_agent.tools import calculator_tool, lookup_tool

    printer = _EventPrinter(console)
    async with MemoryStore.open(db) as store:
        if check is not None:
            config = await check(store)
        backend = await anyio.to_thread.run_sync(load)  # seconds of torch work, off the event loop
        async with backend:
            tools = [calculator_tool(), lookup_tool()]
            agent = Agent(backend, tools=tools, system_prompt=SYSTEM_PROMPT, config=config, memory=store)
            started = time.perf_counter()
            try:
                async with start(agent) as run:
                    async for event in run:
                        printer(event)
            except BaseException:
                if printer.run_id is not None:
                    console.print(f"\n[yellow]stopped; run {printer.run_id} keeps its partial turn[/yellow]")
                raise
            return run.result, time.perf_counter() - started


def _report(result: Any, seconds: float) -> None:
    from pipo_agent.tasks import extract_answer

    answer = extract_answer(result.output)
    if answer is not None:
        console.print(f"[bold green]Answer:[/bold green] {answer}", highlight=False)
    else:
        console.print(f"[yellow]no 'Answer:' line ({result.stop_reason}: {result.detail})[/yellow]")
    console.print(_stats_table(result, seconds))
    console.print(f"run id: {result.run_id}", highlight=False)


def _loader(model: Path | None, device: str, threads: int | None, max_tokens: int) -> Any:
    """A function that loads the backend (after checking that the checkpoint exists)."""
    from pipo_agent.backends.checkpoints import MissingCheckpointError, default_model_dir

    try:
        directory = model if model is not None else default_model_dir()
    except MissingCheckpointError as exc:
        raise _fail(str(exc)) from None

    def load() -> Any:
        import torch

        from pipo_agent.backends.engine.chat_backend import EngineBackend

        if threads:
            torch.set_num_threads(threads)
        return EngineBackend.from_default(model_dir=directory, device=device, max_tokens=max_tokens)

    return load


@app.command("run")
def run_task(
    task: Annotated[str, typer.Argument(help="the task or question to solve")],
    model: ModelOpt = None,
    db: DbOpt = DEFAULT_DB,
    thread: Annotated[str | None, typer.Option(help="continue this conversation thread")] = None,
    task_type: Annotated[
        str | None, typer.Option(help="profile for adaptive tau (default: inferred from the task)")
    ] = None,
    tau: Annotated[
        float | None, typer.Option(help="fixed commit threshold in [-1, 1] (default: adaptive per task type)")
    ] = None,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    top_k: Annotated[int, typer.Option(help="0 = off")] = 0,
    seed: Annotated[int | None, typer.Option()] = None,
    max_turns: Annotated[int, typer.Option("--max-turns", "--max-steps", min=1)] = 8,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="per assistant turn")] = 1024,
    token_budget: Annotated[int | None, typer.Option(min=1, help="generated tokens over the run")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds for the whole run")] = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
) -> None:
    """Solve a task with the agent (calculator and lookup tools) on the embedded PIPO model, streaming its
    reasoning, tool calls and answer; the run is stored in --db and tau adapts per task type."""
    import anyio
    from pydantic import ValidationError

    from pipo_agent.agent import AgentConfig
    from pipo_agent.backend import SamplingSettings
    from pipo_agent.thresholds import infer_task_type

    if tau is not None and not -1.0 <= tau <= 1.0:
        raise _fail(f"--tau must be in [-1, 1], got {tau}")
    try:
        sampling = SamplingSettings(
            temperature=temperature,
            top_p=top_p,
            top_k=top_k or None,
            seed=seed,
            tau=tau,
            max_tokens=max_new_tokens,
        )
        config = AgentConfig(
            max_steps=max_turns, token_budget=token_budget, wall_timeout_s=timeout, sampling=sampling
        )
    except ValidationError as exc:
        raise _fail(f"invalid options:\n{exc}") from None
    load = _loader(model, device, threads, max_new_tokens)
    kind = task_type or infer_task_type(task)

    def start(agent: Any) -> Any:
        return agent.stream(task, thread_id=thread, task_type=kind)

    result, seconds = anyio.run(_agent_session, db, load, config, start)
    _report(result, seconds)


@app.command("resume")
def resume_run(
    run_id: Annotated[str, typer.Argument(help="the id of a run that did not finish (printed by `run`)")],
    db: DbOpt = DEFAULT_DB,
    model: ModelOpt = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
) -> None:
    """Continue a run that was killed or interrupted, from its last completed step: finished tool results
    are reused, and a tool whose outcome is unknown is reported to the model, never run again."""
    import anyio
    from pydantic import ValidationError

    from pipo_agent.agent import AgentConfig
    from pipo_agent.memory import NotFoundError

    async def check(store: Any) -> Any:
        try:
            run = await store.get_run(run_id)
        except NotFoundError:
            raise _fail(f"no run {run_id!r} in {db}") from None
        if run.status.is_final:
            raise _fail(f"run {run_id} is already {run.status.value}; only an unfinished run resumes")
        try:
            return AgentConfig.model_validate(run.config.get("agent", {}))
        except ValidationError:
            return AgentConfig()

    def start(agent: Any) -> Any:
        return agent.stream_resume(run_id)

    if not db.exists():
        raise _fail(f"no database at {db}")
    load = _loader(model, device, threads, 1024)
    result, seconds = anyio.run(_agent_session, db, load, None, start, check)
    _report(result, seconds)


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


def _teacher_beside(model: Path | None) -> Path | None:
    """The AR teacher that ships with a PIPO checkpoint, or the shipped teacher when no model is named."""
    from pipo_agent.backends.checkpoints import MissingCheckpointError, default_teacher_dir, teacher_inside

    found: Path | None = None
    if model is not None:
        found = teacher_inside(model)
    else:
        with contextlib.suppress(MissingCheckpointError):
            found = default_teacher_dir()
    return found


@app.command("eval")
def eval_models(
    model: ModelOpt = None,
    teacher: Annotated[
        Path | None,
        typer.Option("--teacher", help="AR teacher dir (default: <model>/teacher, when it exists)"),
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
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="worker processes, each with its own copy of the models and threads/workers threads",
        ),
    ] = 1,
) -> None:
    """Evaluate PIPO at several taus against its AR teacher: accuracy, speed, confidence calibration."""
    import torch
    from pydantic import ValidationError

    from pipo_agent.backends.checkpoints import MissingCheckpointError, default_model_dir
    from pipo_agent.backends.eval import EvalConfig, run_evaluation

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if threads:
        torch.set_num_threads(threads)
    try:
        model_dir = model if model is not None else default_model_dir()
    except MissingCheckpointError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if teacher is None:
        teacher = _teacher_beside(model)
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
            workers=workers,
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


# ---- serve: the OpenAI-compatible HTTP server ----


def _read_key(path: Path) -> str:
    import sys

    text = sys.stdin.read() if str(path) in ("-", "/dev/stdin") else path.read_text()
    return text.strip()


@app.command("serve")
def serve(
    host: Annotated[
        str, typer.Option(help="address to bind; any non-loopback address needs an API key")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0: any free port)")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(help="require 'Authorization: Bearer KEY' (a command line is visible to others)"),
    ] = None,
    api_key_file: Annotated[
        Path | None, typer.Option(help="read the API key from this file ('-': from standard input)")
    ] = None,
    engine: Annotated[
        str, typer.Option(help="embedded (in-process engine) or sglang (SGLang with the PIPO plugin)")
    ] = "embedded",
    model: ModelOpt = None,
    served_model_name: Annotated[str, typer.Option(help="the model id clients send")] = "pipo-default",
    mode: Annotated[str, typer.Option(help="pipo, or ar for the AR teacher")] = "pipo",
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    max_num_seqs: Annotated[int, typer.Option(min=1, help="requests running in the engine at once")] = 64,
    max_queue: Annotated[int, typer.Option(min=0, help="requests waiting beyond those; more get 429")] = 64,
    kv_cache_mb: Annotated[int, typer.Option(min=1, help="KV cache size in MiB")] = 256,
    max_model_pairs: Annotated[int | None, typer.Option(min=1, help="context length in pairs")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="tokens per request when it sets none")] = 1024,
    max_tokens_limit: Annotated[
        int, typer.Option(min=1, help="the most tokens a request may ask for")
    ] = 8192,
    tau: Annotated[float, typer.Option(help="commit threshold when a request sets none, in [-1, 1]")] = 0.9,
    task_tau: Annotated[
        list[str] | None, typer.Option(help="TYPE=TAU: the tau of requests with this task_type (repeatable)")
    ] = None,
    grace_period: Annotated[
        float, typer.Option(min=0, help="seconds running requests get at shutdown")
    ] = 30.0,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="largest request body")] = 4 * 2**20,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    check: Annotated[
        bool, typer.Option("--check", help="validate settings and checkpoint, print them, exit")
    ] = False,
    sglang_arg: Annotated[
        list[str] | None,
        typer.Option(help="with --engine sglang: one more argument for SGLang's server (repeatable)"),
    ] = None,
) -> None:
    """Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions,
    /v1/models, /health, /metrics); binds 127.0.0.1 unless --host says otherwise."""
    try:
        from pipo_agent.server import ServerConfig, ServerError
        from pipo_agent.server import check as check_config
        from pipo_agent.server import serve as run_server
    except ImportError as exc:
        console.print(
            f"[red]the server needs the 'server' extra: pip install 'pipo-agent[server]' ({exc})[/red]"
        )
        raise typer.Exit(2) from None
    try:
        key = _read_key(api_key_file) if api_key_file is not None else api_key
    except OSError as exc:
        console.print(f"[red]cannot read --api-key-file: {exc}[/red]")
        raise typer.Exit(2) from None
    try:
        taus = {name: float(value) for name, value in _parse_overrides(task_tau or []).items()}
        config = ServerConfig.build(
            host=host,
            port=port,
            api_key=key or None,
            engine=engine,
            model_dir=model,
            served_model_name=served_model_name,
            mode=mode,
            device=device,
            threads=threads,
            max_num_seqs=max_num_seqs,
            max_queue=max_queue,
            kv_cache_bytes=kv_cache_mb * 2**20,
            max_model_pairs=max_model_pairs,
            default_max_tokens=max_tokens,
            max_tokens_limit=max_tokens_limit,
            default_tau=tau,
            task_taus=taus,
            grace_period_s=grace_period,
            max_body_bytes=max_body_bytes,
            log_level=log_level,
        )
        summary = check_config(config)
        if config.engine == "sglang":
            from pipo_agent.backends.sglang.launch import build_launch, launch

            extra = list(sglang_arg or [])
            summary["sglang"] = build_launch(config, extra_args=extra).summary()
            if check:
                console.print_json(json.dumps(summary))
                return
            launch(config, extra_args=extra)
        elif sglang_arg:
            raise ValueError("--sglang-arg needs --engine sglang")
        if check:
            console.print_json(json.dumps(summary))
            return
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        run_server(config)
    except (ServerError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
