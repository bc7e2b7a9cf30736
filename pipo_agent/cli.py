"""The `pipo-agent` command line. Heavy imports (torch) happen inside the commands that need them."""

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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
