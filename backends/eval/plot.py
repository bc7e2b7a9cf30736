"""The evaluation figure, drawn from the report dict (so a saved `eval.json` can be re-plotted).

Left: overall avg@k against tokens per step, one point per tau for each PIPO checkpoint, the AR teacher as a
reference line. Right: the confidence head's reliability diagram (mean acceptance α per confidence bin,
pooled over taus) for each PIPO checkpoint. Uses matplotlib's object API with the Agg canvas, so no GUI
backend or global pyplot state is involved.
"""

from pathlib import Path
from typing import Any

from pipo_agent.backends.eval.evaluate import ALL_FAMILIES, TEACHER


def _figure() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'pipo-agent[train]'") from exc
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _accuracy_panel(ax: Any, rows: list[dict[str, Any]], k: int) -> None:
    overall = [r for r in rows if r["family"] == ALL_FAMILIES]
    for row in overall:
        if row["system"] == TEACHER and row["avg_at_k"] is not None:
            ax.axhline(row["avg_at_k"], color="black", linestyle="--", label="AR teacher")
            ax.plot([1.0], [row["avg_at_k"]], "ko")
    systems = dict.fromkeys(r["system"] for r in overall if r["system"] != TEACHER)
    for system in systems:
        points = sorted(
            (r["tokens_per_step"], r["avg_at_k"], r["tau"])
            for r in overall
            if r["system"] == system and r["tokens_per_step"] is not None and r["avg_at_k"] is not None
        )
        if not points:
            continue
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=f"PIPO {system}")
        for x, y, tau in points:
            ax.annotate(f"τ={tau:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("tokens per step")
    ax.set_ylabel(f"avg@{k}")
    ax.set_title("accuracy vs decoding speed")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)


def _calibration_panel(ax: Any, calibration: dict[str, Any]) -> None:
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", label="perfect calibration")
    for system, data in calibration.items():
        pooled = data["pooled"]
        bins = [b for b in pooled["bins"] if b["count"]]
        if not bins:
            continue
        ece = pooled["ece"]
        label = f"{system} (ECE {ece:.3f}, n={pooled['count']})"
        ax.plot([b["mean_conf"] for b in bins], [b["mean_alpha"] for b in bins], "s-", label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (mean per bin)")
    ax.set_ylabel("acceptance α (mean per bin)")
    ax.set_title("confidence head reliability")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    figure = _figure()
    left, right = figure.subplots(1, 2)
    _accuracy_panel(left, report["rows"], int(report["config"]["k"]))
    _calibration_panel(right, report["calibration"])
    out = Path(path)
    figure.savefig(out, dpi=120)
    return out
