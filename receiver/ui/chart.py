"""PNG line charts of metric series, with a threshold line or a normal band (pure: no I/O).

Drawn with matplotlib's object API: every call builds its own `Figure` on its own Agg canvas
and never touches pyplot or `rcParams`, so renders in worker threads (`asyncio.to_thread`)
share no state. Text is drawn as given (case kept, non-ASCII kept; `$` is not math), times are
UTC, the y axis carries the unit when the caller knows it (`receiver.ui.units`). NaN values are
gaps. `scale=2` draws the same chart at twice the pixels (emails, high-density screens).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from matplotlib import font_manager
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter
from PIL import Image, PngImagePlugin

from receiver.ui.units import Unit, clock, tick_text, time_step, y_ticks

FloatArray = npt.NDArray[np.float64]
Color = tuple[int, int, int]

WIDTH = 640
HEIGHT = 240
MAX_SIDE = 4000
MAX_SCALE = 3
DPI = 100.0  # at scale 1 one pixel is 0.72 pt; sizes below are in scale-1 pixels

BACKGROUND: Color = (255, 255, 255)
FRAME: Color = (203, 213, 225)
GRID: Color = (236, 240, 244)
TEXT: Color = (71, 85, 105)
TITLE: Color = (15, 23, 42)
BAND: Color = (191, 219, 254)
BAND_EDGE: Color = (96, 165, 250)
THRESHOLD: Color = (220, 38, 38)
MARK: Color = (234, 88, 12)
EXPECTED: Color = (100, 116, 139)
PALETTE: tuple[Color, ...] = (
    (37, 99, 235),
    (124, 58, 237),
    (5, 150, 105),
    (217, 119, 6),
    (219, 39, 119),
)

FONT = "DejaVu Sans"  # ships with matplotlib: Latin, Greek, Cyrillic and more
MIN_BAND_PX = 8  # a normal band is never drawn thinner than this, so it stays visible
SERIES_PX = 2.0
LABEL_LIMIT = 40
RIGHT = 12  # pixels right of the plot
CHAR_PX = 6.6  # the average advance of an 8 pt tick label character at scale 1

# Immutable configuration, not state: the code points the font can draw, read once at import;
# others are drawn as U+FFFD instead of a missing-glyph warning (the PNG metadata keeps them).
_GLYPHS = frozenset(
    FT2Font(font_manager.findfont(font_manager.FontProperties(family=FONT))).get_charmap()
)


@dataclass(frozen=True)
class Line:
    """One series: parallel arrays of unix seconds and values (NaN = no sample).

    `role` "expected" draws a model's expectation (dashed grey) instead of a palette colour.
    """

    timestamps: npt.ArrayLike
    values: npt.ArrayLike
    label: str = ""
    role: str = "series"


@dataclass(frozen=True)
class Band:
    """The normal range: `low`/`high` are numbers (a constant band) or arrays on `timestamps`."""

    low: float | npt.ArrayLike
    high: float | npt.ArrayLike
    timestamps: npt.ArrayLike | None = None  # needed when low/high are arrays


@dataclass(frozen=True)
class Panel:
    """One chart of a stacked image (`render_panels`)."""

    lines: Sequence[Line]
    threshold: float | None = None
    band: Band | None = None
    marks: Sequence[float] = ()
    title: str = ""
    unit: Unit | None = field(default=None, kw_only=True)


def render_chart(
    lines: Sequence[Line],
    *,
    threshold: float | None = None,
    band: Band | None = None,
    marks: Sequence[float] = (),
    title: str = "",
    unit: Unit | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
    scale: int = 1,
) -> bytes:
    """A PNG line chart of `lines` (up to five colours, then they repeat), `width` x `height`
    times `scale` pixels.

    `threshold` draws a dashed red horizontal line; `band` a shaded range behind the lines;
    `marks` dashed vertical lines (the incident's start and end, a detector's onset). With no
    finite value at all the chart says "no data".
    """
    panels = [Panel(lines, threshold, band, marks, title, unit=unit)]
    return figure_png(chart_figure(panels, width=width, height=height, scale=scale), panels)


def render_panels(
    panels: Sequence[Panel], *, width: int = WIDTH, height: int = HEIGHT, scale: int = 1
) -> bytes:
    """Charts stacked top to bottom in one PNG, each `height` tall (an email shows the alert's
    series above its top cause candidate)."""
    return figure_png(chart_figure(panels, width=width, height=height, scale=scale), panels)


def chart_figure(
    panels: Sequence[Panel], *, width: int = WIDTH, height: int = HEIGHT, scale: int = 1
) -> Figure:
    """The figure before rasterising: one axes per panel, top to bottom."""
    if not (120 <= width <= MAX_SIDE and 80 <= height <= MAX_SIDE):
        raise ValueError(f"chart size {width}x{height} outside 120x80..{MAX_SIDE}x{MAX_SIDE}")
    if not panels or len(panels) * height > MAX_SIDE:
        raise ValueError(f"1..{MAX_SIDE // height} panels of height {height}")
    if scale not in range(1, MAX_SCALE + 1):
        raise ValueError(f"scale {scale} outside 1..{MAX_SCALE}")
    total = height * len(panels)
    # a hair over the size, so that float rounding never truncates a pixel row or column
    fig = Figure(figsize=((width + 0.01) / DPI, (total + 0.01) / DPI), dpi=DPI * scale)
    FigureCanvasAgg(fig)
    fig.patch.set_facecolor(_hex(BACKGROUND))
    for i, panel in enumerate(panels):
        _draw(fig, panel, top=i * height, width=width, height=height, total=total)
    return fig


def figure_png(fig: Figure, panels: Sequence[Panel] = ()) -> bytes:
    """The figure rasterised as an RGB PNG; the panels' titles and series labels go into its
    text chunks (`Title`, `Description`) exactly as given, for readers and tests."""
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    # the Agg backend module ships no type hints
    canvas.draw()  # type: ignore[no-untyped-call]
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[no-untyped-call]
    info = PngImagePlugin.PngInfo()
    titles = [p.title for p in panels if p.title]
    labels = [line.label for p in panels for line in p.lines if line.label]
    if titles:
        info.add_text("Title", " | ".join(titles))
    if labels:
        info.add_text("Description", "series: " + ", ".join(labels) + "; times in UTC")
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba[:, :, :3])).save(
        out, format="PNG", pnginfo=info, compress_level=6
    )
    return out.getvalue()


# --- one panel ------------------------------------------------------------------------------


def _draw(fig: Figure, panel: Panel, *, top: int, width: int, height: int, total: int) -> None:
    series = [_as_arrays(line.timestamps, line.values) for line in panel.lines]
    legend = _legend_entries(panel)
    head = 6 + (16 if panel.title else 0) + (16 if legend else 0)
    left, bottom = 64, 22
    plot_w, plot_h = width - left - RIGHT, height - head - bottom
    ax = fig.add_axes(
        (left / width, (total - top - head - plot_h) / total, plot_w / width, plot_h / total)
    )
    _frame(ax)
    y_text = 1 - (top + 4) / total
    if panel.title:
        _text(fig, 4 / width, y_text, _fit(panel.title, width - 8, CHAR_PX), size=9, color=TITLE)
        y_text -= 16 / total
    if legend:
        _legend(fig, legend, x=left / width, y=y_text, room=width - left)

    band = _band_arrays(panel.band, series)
    xs = [t[np.isfinite(v)] for t, v in series]
    x_all = np.concatenate([*xs, np.asarray(panel.marks, dtype=np.float64)])
    y_parts = [v[np.isfinite(v)] for _, v in series]
    has_data = any(v.size for v in y_parts)
    if panel.threshold is not None and math.isfinite(panel.threshold):
        y_parts.append(np.array([panel.threshold]))
    if band is not None:
        y_parts += [band[1][np.isfinite(band[1])], band[2][np.isfinite(band[2])]]
    if not has_data or x_all.size == 0:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
                color=_hex(TEXT), fontsize=10, fontfamily=FONT)  # fmt: skip
        return
    x0, x1 = float(x_all.min()), float(x_all.max())
    if x1 - x0 < 1e-9:
        x0, x1 = x0 - 30.0, x1 + 30.0
    y0, y1 = _y_range(np.concatenate(y_parts))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    _axes_ticks(ax, panel.unit, (x0, x1), (y0, y1), plot_w)
    _text(
        fig, 4 / width, (total - top - height + 5) / total, "UTC", size=8, color=TEXT, va="bottom"
    )

    if band is not None:
        _shade(ax, band, (x0, x1), min_height=MIN_BAND_PX * (y1 - y0) / plot_h)
    if panel.threshold is not None and math.isfinite(panel.threshold):
        ax.axhline(panel.threshold, color=_hex(THRESHOLD), lw=_pt(2), ls=(0, (3, 2)), zorder=2.5)
    for mark in panel.marks:
        ax.axvline(mark, color=_hex(MARK), lw=_pt(1), ls=(0, (4, 3)), zorder=2.4)
    colour = 0
    for line, (t, v) in zip(panel.lines, series, strict=True):
        if line.role == "expected":
            ax.plot(t, v, color=_hex(EXPECTED), lw=_pt(SERIES_PX), ls=(0, (3, 1.5)), zorder=2.8)
            continue
        rgb = _hex(PALETTE[colour % len(PALETTE)])
        colour += 1
        ax.plot(t, v, color=rgb, lw=_pt(SERIES_PX), solid_joinstyle="round", zorder=3)
        alone = _isolated(v)
        if alone.any():
            ax.plot(t[alone], v[alone], ls="none", marker="o", ms=_pt(5), color=rgb, zorder=3)


def _frame(ax: Axes) -> None:
    ax.set_facecolor(_hex(BACKGROUND))
    for spine in ax.spines.values():
        spine.set_color(_hex(FRAME))
        spine.set_linewidth(_pt(1))
    ax.set_axisbelow(True)
    ax.grid(True, color=_hex(GRID), lw=_pt(1))
    ax.tick_params(length=0, pad=_pt(4), labelsize=8, labelcolor=_hex(TEXT), labelfontfamily=FONT)


def _axes_ticks(
    ax: Axes, unit: Unit | None, x: tuple[float, float], y: tuple[float, float], plot_w: int
) -> None:
    scale = unit.scale(max(abs(y[0]), abs(y[1]))) if unit is not None else None
    divisor = scale[0] if scale is not None else 1.0
    # nice steps in the unit shown (0.5 GiB, not 0.537 GB)
    ticks = [v * divisor for v in y_ticks(y[0] / divisor, y[1] / divisor)]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: tick_text(float(v), scale)))
    step = time_step(x[1] - x[0], plot_w)
    first = math.ceil(x[0] / step) * step
    times = np.arange(first, x[1] + 1e-9, step)
    # a label centred on a tick near the right edge would be cut off by the image's border
    room = (x[1] - times) / (x[1] - x[0]) * plot_w + RIGHT
    half = len(clock(first, step)) * CHAR_PX / 2
    ax.xaxis.set_major_locator(FixedLocator(list(times[room >= half])))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: clock(float(v), step)))


def _shade(
    ax: Axes,
    band: tuple[FloatArray, FloatArray, FloatArray],
    x: tuple[float, float],
    min_height: float,
) -> None:
    t, low, high = band
    if t.size == 2 and np.all(low == low[0]) and np.all(high == high[0]):
        t = np.array([min(x[0], t[0]), max(x[1], t[1])])  # a constant band spans the chart
    mid = (low + high) / 2
    half = np.maximum((high - low) / 2, min_height / 2)
    lo, hi = mid - half, mid + half
    ok = np.isfinite(lo) & np.isfinite(hi)
    ax.fill_between(
        t, np.where(ok, lo, 0.0), np.where(ok, hi, 0.0), where=ok, color=_hex(BAND), lw=0,
        zorder=1,
    )  # fmt: skip
    for edge in (lo, hi):
        ax.plot(t, edge, color=_hex(BAND_EDGE), lw=_pt(1), zorder=1.5)


def _legend_entries(panel: Panel) -> list[tuple[Artist, str]]:
    entries: list[tuple[Artist, str]] = []
    colour = 0
    for line in panel.lines:
        if line.role == "expected":
            handle = Line2D([], [], color=_hex(EXPECTED), lw=_pt(2), ls=(0, (3, 1.5)))
        else:
            handle = Line2D([], [], color=_hex(PALETTE[colour % len(PALETTE)]), lw=_pt(2))
            colour += 1
        if line.label:
            entries.append((handle, line.label[:LABEL_LIMIT]))
    if panel.threshold is not None and math.isfinite(panel.threshold):
        scale = panel.unit.scale(abs(panel.threshold)) if panel.unit is not None else None
        entries.append(
            (
                Line2D([], [], color=_hex(THRESHOLD), lw=_pt(2), ls=(0, (3, 2))),
                f"threshold {tick_text(panel.threshold, scale)}",
            )
        )
    if panel.band is not None:
        entries.append((Patch(facecolor=_hex(BAND), edgecolor=_hex(BAND_EDGE)), "normal range"))
    return entries


def _legend(
    fig: Figure, entries: list[tuple[Artist, str]], *, x: float, y: float, room: int
) -> None:
    """One row of entries from `x`; those that do not fit are left out."""
    kept: list[tuple[Artist, str]] = []
    used = 0.0
    for handle, label in entries:
        need = 30 + CHAR_PX * len(label)
        if used + need > room:
            break
        kept.append((handle, _drawable(label)))
        used += need
    if not kept:
        return
    legend = fig.legend(
        [h for h, _ in kept], [label for _, label in kept], loc="upper left",
        bbox_to_anchor=(x, y), ncols=len(kept), frameon=False, fontsize=8, borderaxespad=0,
        borderpad=0, handlelength=1.6, handletextpad=0.4, columnspacing=1.2,
        prop={"family": FONT, "size": 8},
    )  # fmt: skip
    for text in legend.get_texts():
        text.set_parse_math(False)
        text.set_color(_hex(TEXT))


def _text(
    fig: Figure, x: float, y: float, text: str, *, size: float, color: Color, va: str = "top"
) -> None:
    fig.text(
        x, y, _drawable(text), fontsize=size, color=_hex(color), fontfamily=FONT, va=va,
        ha="left", parse_math=False,
    )  # fmt: skip


# --- helpers --------------------------------------------------------------------------------


def _pt(pixels: float) -> float:
    """Scale-1 pixels in points (matplotlib's unit for widths and sizes)."""
    return pixels * 72.0 / DPI


def _hex(color: Color) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def _drawable(text: str) -> str:
    """`text` with characters the font cannot draw (and control characters) as U+FFFD."""
    return "".join(
        ch if ord(ch) in _GLYPHS and (ch.isprintable() or ch == " ") else "\ufffd" for ch in text
    )


def _fit(text: str, pixels: int, per_char: float) -> str:
    keep = int(pixels / per_char)
    return text if len(text) <= keep else text[: max(keep - 1, 0)] + "…"


def _isolated(v: FloatArray) -> npt.NDArray[np.bool_]:
    """Finite samples with no finite neighbour: a line cannot show them, a dot does."""
    finite = np.isfinite(v)
    left = np.concatenate([[False], finite[:-1]])
    right = np.concatenate([finite[1:], [False]])
    out: npt.NDArray[np.bool_] = finite & ~left & ~right
    return out


def _as_arrays(timestamps: npt.ArrayLike, values: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    t = np.asarray(timestamps, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if t.shape != v.shape:
        raise ValueError(f"timestamps ({t.size}) and values ({v.size}) differ in length")
    v = np.where(np.isfinite(t), v, np.nan)
    order = np.argsort(t, kind="stable")
    return t[order], v[order]


def _band_arrays(
    band: Band | None, series: Sequence[tuple[FloatArray, FloatArray]]
) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    if band is None:
        return None
    if band.timestamps is not None:
        t = np.asarray(band.timestamps, dtype=np.float64).ravel()
    else:
        known = [s[0][np.isfinite(s[0])] for s in series if s[0].size]
        t = np.concatenate(known) if known else np.empty(0)
        t = np.array([t.min(), t.max()]) if t.size else np.array([0.0, 1.0])
    low = np.broadcast_to(np.asarray(band.low, dtype=np.float64), t.shape).astype(np.float64)
    high = np.broadcast_to(np.asarray(band.high, dtype=np.float64), t.shape).astype(np.float64)
    order = np.argsort(t, kind="stable")
    return t[order], np.minimum(low, high)[order], np.maximum(low, high)[order]


def _y_range(values: FloatArray) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    lo2 = lo - pad if lo < 0 or lo - pad >= 0 else 0.0  # do not dip below 0 for non-negative data
    return lo2, hi + pad
