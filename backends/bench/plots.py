"""PNG plots of a benchmark report (matplotlib, headless)."""

from pathlib import Path
from typing import Any


def plot_report(report: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(5, 3.5))
    lengths = [r["prompt_tokens"] for r in report["ttft"]]
    ax.plot(lengths, [r["pipo_ms"] for r in report["ttft"]], "o-", label="PIPO")
    ax.plot(lengths, [r["ar_ms"] for r in report["ttft"]], "s-", label="AR")
    for r in report["ttft"]:
        ax.annotate(
            f"{r['ratio']:.2f}x",
            (r["prompt_tokens"], r["pipo_ms"]),
            textcoords="offset points",
            xytext=(0, 6),
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="prompt tokens",
        ylabel="TTFT (ms)",
        title=f"TTFT — {report['device']}",
    )
    ax.legend()
    paths.append(_save(fig, out / "ttft.png"))

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    batches = [r["batch"] for r in report["decode"]]
    for name, marker in (("pipo", "o-"), ("ar", "s-")):
        left.plot(batches, [r[name]["tpot_ms"] for r in report["decode"]], marker, label=name.upper())
        right.plot(batches, [r[name]["tokens_per_s"] for r in report["decode"]], marker, label=name.upper())
    left.set(xscale="log", xlabel="batch", ylabel="TPOT (ms)", title="time per output token")
    right.set(xscale="log", xlabel="batch", ylabel="output tokens/s", title="throughput")
    left.legend()
    paths.append(_save(fig, out / "decode.png"))

    sweep = [r for r in report["tau_sweep"] if r["system"] == "pipo"]
    if sweep:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        taus = [r["tau"] for r in sweep]
        ax.plot(taus, [r["tokens_per_step"] for r in sweep], "o-", color="tab:blue")
        ax.set(xlabel="tau", ylabel="tokens per step", title="tau sweep")
        twin = ax.twinx()
        twin.plot(taus, [r["accuracy"] for r in sweep], "s--", color="tab:orange")
        ar = [r for r in report["tau_sweep"] if r["system"] == "ar"]
        if ar:
            twin.axhline(ar[0]["accuracy"], color="tab:orange", linestyle=":", label="AR accuracy")
            twin.legend(loc="lower left")
        twin.set(ylabel="accuracy", ylim=(-0.05, 1.05))
        paths.append(_save(fig, out / "tau_sweep.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
