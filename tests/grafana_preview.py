"""A picture of a dashboard drawn from its own JSON and a real Prometheus's answers, where no Grafana can run.

Each panel is drawn in its grid position (Grafana's 24 columns, rows of 30 px) as the kind it
is: a stat as its value on the colour of the threshold step it falls in, a time series as its
lines over the queried range, a table as its first rows, a row as a header band. Values come
from the panel's own queries with the dashboard's variables substituted, so the picture shows
what the queries return, not what the JSON hopes for. It is a preview, not Grafana: units,
overrides and value mappings are not applied beyond what a reader needs to recognise the panel.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

COLUMNS = 24
ROW_PX = 30
COLUMN_PX = 60
# Grafana's named colours as the dashboards use them; anything else is passed to matplotlib as it is.
COLOURS = {
    "green": "#73bf69", "red": "#f2495c", "orange": "#ff9830", "yellow": "#fade2a", "blue": "#5794f2",
    "purple": "#b877d9", "text": "#cccccc", "transparent": "#181b1f",
}
BACKGROUND = "#111217"
PANEL = "#181b1f"

Series = list[dict[str, Any]]  # Prometheus API results: [{"metric": {...}, "value"/"values": ...}]


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, with those nested in collapsed rows after their row."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def draw(
    dashboard: Mapping[str, Any], instant: Callable[[str], Series], ranged: Callable[[str], Series], out: Path,
) -> Path:
    """Draw `dashboard` into the PNG `out`: `instant(expr)` answers stats and tables, `ranged(expr)` time series
    (both get the expression with the variables already substituted by the caller)."""
    laid = [p for p in panels(dashboard) if "gridPos" in p]
    bottom = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in laid), default=1)
    width, height = COLUMNS * COLUMN_PX, bottom * ROW_PX
    figure = plt.figure(figsize=(width / 100, height / 100 + 0.4), dpi=100, facecolor=BACKGROUND)
    figure.suptitle(dashboard.get("title", ""), color="white", fontsize=12, x=0.01, y=1 - 8 / (height + 40),
                    ha="left", va="top")
    for panel in laid:
        grid = panel["gridPos"]
        grid_share = height / (height + 40)  # the grid below a 40 px title band
        box = (grid["x"] / COLUMNS, (1 - (grid["y"] + grid["h"]) / bottom) * grid_share,
               grid["w"] / COLUMNS, grid["h"] / bottom * grid_share)
        axes = figure.add_axes((box[0] + 0.002, box[1] + 0.002, box[2] - 0.004, box[3] - 0.004))
        _frame(axes, panel)
        kind = panel.get("type")
        exprs = [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
        if kind == "row":
            _row(axes, panel)
        elif kind in {"stat", "gauge"}:
            _stat(axes, panel, [s for e in exprs for s in instant(e)])
        elif kind == "timeseries":
            _lines(axes, [(s, t.get("legendFormat", "")) for t in panel.get("targets", []) if t.get("expr")
                          for s in ranged(t["expr"])])
        elif kind == "table":
            rows = [s for e in exprs for s in instant(e)]
            matrix = next((t["options"] for t in panel.get("transformations", []) if t.get("id") == "groupingToMatrix"),
                          None)
            if matrix:
                _matrix(axes, panel, rows, matrix)
            else:
                _table(axes, rows)
        else:
            _note(axes, panel.get("options", {}).get("content", "")[:200] or kind or "")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, facecolor=BACKGROUND)
    plt.close(figure)
    return out


def _frame(axes: Axes, panel: Mapping[str, Any]) -> None:
    axes.set_facecolor(PANEL if panel.get("type") != "row" else BACKGROUND)
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_color("#2c3235")
    title = panel.get("title", "")
    if title and panel.get("type") != "row":
        axes.set_title(title, color="#d8d9da", fontsize=7, loc="left", pad=2)


def _row(axes: Axes, panel: Mapping[str, Any]) -> None:
    axes.text(0.005, 0.5, panel.get("title", ""), color="white", fontsize=9, fontweight="bold", va="center")
    for spine in axes.spines.values():
        spine.set_visible(False)


def _value(series: Mapping[str, Any]) -> float:
    return float(series["value"][1])


def colour(panel: Mapping[str, Any], value: float | None) -> str:
    """The colour of the threshold step `value` falls in, as Grafana picks it (the last step at or below it)."""
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    chosen = "green"
    if value is not None:
        for step in steps:
            if step.get("value") is None or value >= step["value"]:
                chosen = step.get("color", chosen)
    return COLOURS.get(chosen, chosen)


def _stat(axes: Axes, panel: Mapping[str, Any], series: Series) -> None:
    if not series:
        axes.text(0.5, 0.45, "No data", color="#8e8e8e", fontsize=9, ha="center", va="center",
                  transform=axes.transAxes)
        return
    value = max(_value(s) for s in series)  # the worst of them
    axes.set_facecolor(colour(panel, value))
    text = _display(panel, value)
    axes.text(0.5, 0.42, text, color="white", fontsize=14, fontweight="bold", ha="center", va="center",
              transform=axes.transAxes)


def _display(panel: Mapping[str, Any], value: float) -> str:
    """The value as the stat shows it: its value mapping's text, a date as its age, or the number."""
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    for mapping in defaults.get("mappings", []):
        mapped = mapping.get("options", {}).get(f"{value:g}")
        if mapped and mapped.get("text"):
            return str(mapped["text"])
    if defaults.get("unit") == "dateTimeFromNow":
        age = time.time() - value / 1000
        return f"{age / 86400:.0f} days ago" if age >= 86400 else f"{age / 3600:.1f} hours ago"
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.2e}"


def _lines(axes: Axes, series: Sequence[tuple[dict[str, Any], str]]) -> None:
    if not series:
        axes.text(0.5, 0.45, "No data", color="#8e8e8e", fontsize=9, ha="center", va="center",
                  transform=axes.transAxes)
        return
    for one, _legend in series[:12]:
        points = one.get("values", [])
        axes.plot([float(t) for t, _ in points], [float(v) for _, v in points], linewidth=0.8)
    axes.tick_params(colors="#8e8e8e", labelsize=5)


def _table(axes: Axes, series: Series) -> None:
    if not series:
        axes.text(0.5, 0.45, "No data", color="#8e8e8e", fontsize=9, ha="center", va="center",
                  transform=axes.transAxes)
        return
    lines = []
    for one in series[:8]:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(one["metric"].items()) if k != "__name__")
        lines.append(f"{labels[:70]}  {one['value'][1]}")
    axes.text(0.01, 0.95, "\n".join(lines), color="#d8d9da", fontsize=5, va="top", family="monospace",
              transform=axes.transAxes)


def _matrix(axes: Axes, panel: Mapping[str, Any], series: Series, options: Mapping[str, Any]) -> None:
    """A groupingToMatrix table as Grafana draws it: a row per `rowField` value, a column per `columnField` value,
    each cell coloured by the panel's thresholds and showing its value mapping's text."""
    if not series:
        _table(axes, series)
        return
    row_field, column_field = options["rowField"], options["columnField"]
    rows = sorted({one["metric"].get(row_field, "") for one in series})[:20]
    columns = sorted({one["metric"].get(column_field, "") for one in series})
    cells = {(one["metric"].get(row_field, ""), one["metric"].get(column_field, "")): _value(one) for one in series}
    height, width = 1 / (len(rows) + 1), 0.8 / max(len(columns), 1)
    for j, column in enumerate(columns):
        axes.text(0.2 + (j + 0.5) * width, 1 - height / 2, column, color="#d8d9da", fontsize=6, ha="center",
                  va="center", transform=axes.transAxes)
    for i, row in enumerate(rows, 1):
        axes.text(0.01, 1 - (i + 0.5) * height, row, color="#d8d9da", fontsize=6, va="center", transform=axes.transAxes)
        for j, column in enumerate(columns):
            value = cells.get((row, column))
            if value is None:
                continue
            axes.add_patch(Rectangle((0.2 + j * width + 0.002, 1 - (i + 1) * height + 0.01), width - 0.004,
                                     height - 0.02, color=colour(panel, value), transform=axes.transAxes))
            axes.text(0.2 + (j + 0.5) * width, 1 - (i + 0.5) * height, _display(panel, value), color="white",
                      fontsize=6, ha="center", va="center", transform=axes.transAxes)


def _note(axes: Axes, text: str) -> None:
    axes.text(0.01, 0.95, text, color="#d8d9da", fontsize=6, va="top", wrap=True, transform=axes.transAxes)
