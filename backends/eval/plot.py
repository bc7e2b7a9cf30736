"""The evaluation figure, drawn from the report dict (so a saved `eval.json` can be re-plotted).

Left: overall avg@k against tokens per step, one point per tau for each PIPO checkpoint, the AR teacher as a
reference line. Right: the confidence head's reliability diagram (mean acceptance α per confidence bin,
pooled over taus) for each PIPO checkpoint. Uses matplotlib's object API with the Agg canvas, so no GUI
backend or global pyplot state is involved.
"""

from pathlib import Path
from typing import Any

from pipo_agent.backends.eval.evaluate import ALL_FAMILIES, TEACHER


def _drafts(tokens_per_step: float) -> bool:
    """Whether a point is from a tau that commits drafts (more than one token per backbone step)."""
    return tokens_per_step > 1.0 + 1e-6


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
    teacher_acc = None
    for row in overall:
        if row["system"] == TEACHER and row["avg_at_k"] is not None:
            teacher_acc = row["avg_at_k"]
            ax.axhline(teacher_acc, color="black", linestyle="--", label="AR teacher")
            ax.plot([1.0], [teacher_acc], "ko")
    systems = dict.fromkeys(r["system"] for r in overall if r["system"] != TEACHER)
    series: list[tuple[str, list[tuple[float, float, float]]]] = []
    for system in systems:
        points = sorted(
            (r["tokens_per_step"], r["avg_at_k"], r["tau"])
            for r in overall
            if r["system"] == system and r["tokens_per_step"] is not None and r["avg_at_k"] is not None
        )
        if not points:
            continue
        (line,) = ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=f"PIPO {system}")
        series.append((line.get_color(), points))
    # Taus that commit drafts usually land within a few hundredths of a token per step of each other,
    # where their labels would overlap: those get a zoomed inset, labelled there.
    drafting = [(c, x, y, tau) for c, points in series for x, y, tau in points if _drafts(x)]
    zoom = len(drafting) >= 3 and max(p[1] for p in drafting) - min(p[1] for p in drafting) < 0.25
    for _, points in series:
        for x, y, tau in points:
            if not (zoom and _drafts(x)):
                ax.annotate(f"τ={tau:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("tokens per step")
    ax.set_ylabel(f"avg@{k}")
    ax.set_title("accuracy vs decoding speed")
    ax.grid(alpha=0.3)
    if not zoom:
        ax.legend(loc="best", fontsize=8)
        return
    # The drafting taus sit at the right edge; the legend goes in the other vertical half there.
    high = sum(p[2] for p in drafting) / len(drafting) > 0.5
    ax.legend(loc="lower right" if high else "upper right", fontsize=8)
    others = [(x, y) for _, points in series for x, y, _ in points if not _drafts(x)]
    if teacher_acc is not None:
        others.append((1.0, teacher_acc))
    _zoomed_inset(ax, drafting, teacher_acc, others)


def _free_spot(ax: Any, occupied: list[tuple[float, float]]) -> list[float]:
    """Bounds (axes fractions) on the panel's left for the inset, clear of the labelled points there."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    spots = [[0.08, 0.58, 0.5, 0.36], [0.08, 0.1, 0.5, 0.36], [0.08, 0.32, 0.5, 0.36]]
    for left, bottom, width, height in spots:
        clear = True
        for x, y in occupied:
            fx, fy = (x - x0) / (x1 - x0), (y - y0) / (y1 - y0)
            # A point and its label take about a tenth of the width and a tenth of the height.
            if fx + 0.1 > left and fx < left + width and fy + 0.07 > bottom and fy - 0.03 < bottom + height:
                clear = False
        if clear:
            return [left, bottom, width, height]
    return spots[0]


def _zoomed_inset(
    ax: Any,
    points: list[tuple[str, float, float, float]],
    teacher_acc: float | None,
    occupied: list[tuple[float, float]],
) -> None:
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    shown = ys + ([teacher_acc] if teacher_acc is not None else [])
    y_lo, y_hi = min(shown), max(shown)
    x_pad, y_pad = max(0.01, 0.15 * (max(xs) - min(xs))), max(0.01, 0.25 * (y_hi - y_lo))
    inset = ax.inset_axes(_free_spot(ax, occupied + [(x, y) for _, x, y, _ in points]))
    if teacher_acc is not None:
        inset.axhline(teacher_acc, color="black", linestyle="--")
    colors = list(dict.fromkeys(p[0] for p in points))
    for i, color in enumerate(colors):
        mine = sorted((x, y, tau) for c, x, y, tau in points if c == color)
        inset.plot([m[0] for m in mine], [m[1] for m in mine], "o-", color=color, markersize=4)
        # Alternate label sides between systems so two series at the same tau stay readable.
        dy = 6 if i % 2 == 0 else -11
        for x, y, tau in mine:
            inset.annotate(f"{tau:g}", (x, y), textcoords="offset points", xytext=(-4, dy), fontsize=7)
    inset.set_xlim(min(xs) - x_pad, max(xs) + x_pad)
    inset.set_ylim(y_lo - y_pad, y_hi + y_pad)
    inset.tick_params(labelsize=7)
    inset.set_title("τ (zoomed)", fontsize=7)
    inset.grid(alpha=0.3)
    ax.indicate_inset_zoom(inset, edgecolor="gray")


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
