"""The README chart: ``bench/results/ratios.png`` from ``bench/results/latest.json``.

    python -m bench.chart [--input latest.json] [--output ratios.png]

One horizontal bar per measured ratio (reference time / ctkit time, so longer is faster), green
when it reaches its target and orange when not, with the target drawn as a red tick across the
bar and parity (1.0) as a dotted line. Figures without a ratio (frozen windows, start-up times)
are left out. Needs matplotlib (the ``bench`` extra); rendered headless (Agg).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: before pyplot is imported

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from bench import results

OK_COLOUR = "#4c9a2a"
BELOW_COLOUR = "#e08a1e"
TARGET_COLOUR = "#c0392b"


def bars(data: dict[str, Any]) -> list[tuple[str, float, float | None]]:
    """(label, ratio, target) of every latest measurement that has a ratio."""
    out = []
    for entry in results.latest_entries(data):
        ratio = entry.get("ratio")
        if isinstance(ratio, int | float):
            label = f"{entry.get('name')}: {entry.get('metric')}"
            out.append((label, float(ratio), results.target_of(entry)))
    return out


def render(data: dict[str, Any], output: Path) -> Path | None:
    """Draw the chart into ``output`` (PNG, written atomically); None when there is no ratio."""
    rows = bars(data)
    if not rows:
        return None
    labels = [r[0] for r in rows][::-1]  # first recorded at the top
    ratios = [r[1] for r in rows][::-1]
    targets = [r[2] for r in rows][::-1]
    colours = [
        OK_COLOUR if t is None or v >= t else BELOW_COLOUR
        for v, t in zip(ratios, targets, strict=True)
    ]
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.45 * len(rows)), dpi=120)
    try:
        ys = range(len(rows))
        ax.barh(ys, ratios, color=colours, height=0.6)
        for y, value, target in zip(ys, ratios, targets, strict=True):
            label_x = max(value, target or 0.0) + 0.02  # clear of the target tick
            ax.text(label_x, y, f"{value:.2f}x", va="center", fontsize=9)
            if target is not None:
                ax.plot([target, target], [y - 0.42, y + 0.42], color=TARGET_COLOUR, lw=2)
        ax.axvline(1.0, color="grey", ls=":", lw=1)
        ax.set_yticks(list(ys), labels)
        ax.set_xlim(0, max([*ratios, *(t for t in targets if t is not None), 1.0]) * 1.18)
        ax.set_xlabel("throughput vs the reference tool (reference time / ctkit time)")
        host = data.get("host", {})
        when = str(data.get("started", ""))[:10]
        ax.set_title(
            f"ctkit benchmarks {when} - {host.get('cpus', '?')} CPUs, targets from DESIGN.md",
            fontsize=10,
        )
        ax.grid(axis="x", alpha=0.3)
        ax.legend(
            handles=[
                Patch(color=OK_COLOUR, label="meets target"),
                Patch(color=BELOW_COLOUR, label="below target"),
                Line2D([], [], color=TARGET_COLOUR, lw=2, label="target"),
            ],
            loc="upper center",
            bbox_to_anchor=(0.5, -0.22),
            ncol=3,
            frameon=False,
            fontsize=8,
        )
        fig.tight_layout()
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.tmp")
        fig.savefig(tmp, format="png")
        tmp.replace(output)
    finally:
        plt.close(fig)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chart", description=__doc__)
    parser.add_argument("--input", type=Path, default=None, help="results JSON")
    parser.add_argument("--output", type=Path, default=None, help="PNG to write")
    opts = parser.parse_args(argv)
    source = opts.input or results.results_path()
    out = render(results.load(source), opts.output or source.with_name("ratios.png"))
    print(out if out else "no ratios to draw")
    return 0 if out else 1


if __name__ == "__main__":
    raise SystemExit(main())
