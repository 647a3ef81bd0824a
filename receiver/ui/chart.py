"""PNG line charts of metric series, with a threshold line or a baseline band (pure: no I/O).

`render_chart(lines, threshold=..., band=..., marks=...)` returns PNG bytes (RGB, 640x240 by
default) drawn with numpy and written with zlib: no plotting library, no font files (labels use
the 5x7 bitmap font in `receiver.ui.font`, upper case). NaN values are gaps. The y range covers
the values, the threshold and the band; the x range covers the data and the marks. Times are
unix seconds and are labelled in UTC.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from receiver.ui import font

FloatArray = npt.NDArray[np.float64]
Color = tuple[int, int, int]

WIDTH = 640
HEIGHT = 240
MAX_SIDE = 4000

BACKGROUND: Color = (255, 255, 255)
FRAME: Color = (203, 213, 225)
GRID: Color = (236, 240, 244)
TEXT: Color = (71, 85, 105)
TITLE: Color = (15, 23, 42)
BAND: Color = (199, 222, 250)
THRESHOLD: Color = (220, 38, 38)
MARK: Color = (234, 88, 12)
PALETTE: tuple[Color, ...] = (
    (37, 99, 235),
    (124, 58, 237),
    (5, 150, 105),
    (217, 119, 6),
    (219, 39, 119),
)

_TIME_STEPS = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
)  # fmt: skip


@dataclass(frozen=True)
class Line:
    """One series: parallel arrays of unix seconds and values (NaN = no sample)."""

    timestamps: npt.ArrayLike
    values: npt.ArrayLike
    label: str = ""


@dataclass(frozen=True)
class Band:
    """The normal range: `low`/`high` are numbers (a constant band) or arrays on `timestamps`."""

    low: float | npt.ArrayLike
    high: float | npt.ArrayLike
    timestamps: npt.ArrayLike | None = None  # needed when low/high are arrays


def render_chart(
    lines: Sequence[Line],
    *,
    threshold: float | None = None,
    band: Band | None = None,
    marks: Sequence[float] = (),
    title: str = "",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> bytes:
    """A PNG line chart of `lines` (up to five colours, then they repeat).

    `threshold` draws a dashed red horizontal line; `band` a shaded range behind the lines;
    `marks` dashed vertical lines (e.g. the incident's start and end). With no finite value
    at all the chart says NO DATA.
    """
    return _draw(lines, threshold, band, marks, title, width, height).png()


@dataclass(frozen=True)
class Panel:
    """One chart of a stacked image (`render_panels`)."""

    lines: Sequence[Line]
    threshold: float | None = None
    band: Band | None = None
    marks: Sequence[float] = ()
    title: str = ""


def render_panels(panels: Sequence[Panel], *, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """Charts stacked top to bottom in one PNG, each `height` tall (an email shows the alert's
    series above its top cause candidate)."""
    if not panels or len(panels) * height > MAX_SIDE:
        raise ValueError(f"1..{MAX_SIDE // height} panels of height {height}")
    drawn = [
        _draw(p.lines, p.threshold, p.band, p.marks, p.title, width, height).pixels for p in panels
    ]
    return encode_png(np.concatenate(drawn, axis=0))


def _draw(
    lines: Sequence[Line],
    threshold: float | None,
    band: Band | None,
    marks: Sequence[float],
    title: str,
    width: int,
    height: int,
) -> _Canvas:
    if not (120 <= width <= MAX_SIDE and 80 <= height <= MAX_SIDE):
        raise ValueError(f"chart size {width}x{height} outside 120x80..{MAX_SIDE}x{MAX_SIDE}")
    canvas = _Canvas(width, height)
    series = [_as_arrays(line.timestamps, line.values) for line in lines]
    band_arrays = _band_arrays(band, series)
    box = _Box(left=58, top=20 if (title or any(x.label for x in lines)) else 8, right=12)
    box.bottom = 20
    plot_w, plot_h = width - box.left - box.right, height - box.top - box.bottom

    xs = [t[np.isfinite(v)] for t, v in series]
    x_all = np.concatenate([*xs, np.asarray(marks, dtype=np.float64)]) if xs or marks else None
    y_parts = [v[np.isfinite(v)] for _, v in series]
    if threshold is not None and math.isfinite(threshold):
        y_parts.append(np.array([threshold]))
    if band_arrays is not None:
        _, low, high = band_arrays
        y_parts += [low[np.isfinite(low)], high[np.isfinite(high)]]
    y_all = np.concatenate(y_parts) if y_parts else np.empty(0)
    has_data = any(v.size for v in y_parts[: len(series)])

    canvas.text(4, 5, title, TITLE, max_width=width - 8)
    _legend(canvas, lines, title)
    if not has_data or x_all is None or x_all.size == 0:
        canvas.rect(box.left, box.top, plot_w, plot_h, FRAME)
        msg = "NO DATA"
        canvas.text(
            box.left + (plot_w - font.text_width(msg)) // 2, box.top + plot_h // 2 - 3, msg, TEXT
        )
        return canvas

    x0, x1 = float(x_all.min()), float(x_all.max())
    if x1 - x0 < 1e-9:
        x0, x1 = x0 - 30.0, x1 + 30.0
    y0, y1 = _y_range(y_all)

    def px(t: FloatArray) -> FloatArray:
        out: FloatArray = box.left + (t - x0) / (x1 - x0) * (plot_w - 1)
        return out

    def py(v: FloatArray) -> FloatArray:
        out: FloatArray = box.top + (y1 - v) / (y1 - y0) * (plot_h - 1)
        return out

    # grid and y labels
    for tick in _y_ticks(y0, y1):
        y = round(float(py(np.array([tick]))[0]))
        canvas.hline(box.left, box.left + plot_w - 1, y, GRID)
        label = _number(tick)
        canvas.text(box.left - 4 - font.text_width(label), y - 3, label, TEXT)
    step = _time_step(x1 - x0, plot_w)
    first = math.ceil(x0 / step) * step
    for tick in np.arange(first, x1 + 1e-9, step):
        x = round(float(px(np.array([tick]))[0]))
        canvas.vline(x, box.top, box.top + plot_h - 1, GRID)
        label = _clock(float(tick), step)
        lx = min(max(x - font.text_width(label) // 2, box.left), width - font.text_width(label))
        canvas.text(lx, height - box.bottom + 6, label, TEXT)

    if band_arrays is not None:
        bt, low, high = band_arrays
        columns = np.arange(box.left, box.left + plot_w, dtype=np.float64)
        times = x0 + (columns - box.left) / max(plot_w - 1, 1) * (x1 - x0)
        lo = _interp(times, bt, low)
        hi = _interp(times, bt, high)
        for col, a, b in zip(columns.astype(int), py(hi), py(lo), strict=True):
            if math.isfinite(a) and math.isfinite(b):
                top = max(round(float(min(a, b))), box.top)
                bottom = min(round(float(max(a, b))), box.top + plot_h - 1)
                canvas.vline(int(col), top, bottom, BAND)
    if threshold is not None and math.isfinite(threshold):
        y = round(float(py(np.array([threshold]))[0]))
        canvas.hline(box.left, box.left + plot_w - 1, y, THRESHOLD, dash=6, thick=2)
    for mark in marks:
        x = round(float(px(np.array([mark]))[0]))
        canvas.vline(x, box.top, box.top + plot_h - 1, MARK, dash=4)
    for i, (t, v) in enumerate(series):
        canvas.polyline(px(t), py(v), PALETTE[i % len(PALETTE)])
    canvas.rect(box.left, box.top, plot_w, plot_h, FRAME)
    return canvas


# --- layout helpers ------------------------------------------------------------------------


@dataclass
class _Box:
    left: int
    top: int
    right: int
    bottom: int = 20


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
        known = [s[0] for s in series if s[0].size]
        t = np.concatenate(known) if known else np.empty(0)
        t = np.array([t.min(), t.max()]) if t.size else np.array([0.0, 1.0])
    low = np.broadcast_to(np.asarray(band.low, dtype=np.float64), t.shape).astype(np.float64)
    high = np.broadcast_to(np.asarray(band.high, dtype=np.float64), t.shape).astype(np.float64)
    if low.shape != t.shape or high.shape != t.shape:
        raise ValueError("band low/high must match the band's timestamps")
    order = np.argsort(t, kind="stable")
    return t[order], low[order], high[order]


def _interp(x: FloatArray, xp: FloatArray, fp: FloatArray) -> FloatArray:
    """Linear interpolation on finite points; NaN outside [xp.min, xp.max] or where fp has gaps."""
    ok = np.isfinite(fp) & np.isfinite(xp)
    out = np.full(x.shape, np.nan)
    if ok.sum() == 0:
        return out
    xs, fs = xp[ok], fp[ok]
    if xs.size == 1 or xs[-1] - xs[0] < 1e-9:
        return np.full(x.shape, float(fs[-1]))
    inside = (x >= xs[0]) & (x <= xs[-1])
    out[inside] = np.interp(x[inside], xs, fs)
    return out


def _y_range(values: FloatArray) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    lo2 = lo - pad if lo < 0 or lo - pad >= 0 else 0.0  # do not dip below 0 for non-negative data
    return lo2, hi + pad


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _y_ticks(lo: float, hi: float) -> list[float]:
    step = _nice_step(hi - lo, 4)
    first = math.ceil(lo / step) * step
    ticks: list[float] = []
    value = first
    while value <= hi + step * 1e-9 and len(ticks) < 12:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


def _number(value: float) -> str:
    """A short tick label: 0.25, 80, 1.5K, 2M."""
    size = abs(value)
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if size >= limit:
            return f"{value / limit:.3g}{suffix}"
    if size == 0:
        return "0"
    if size < 0.001:
        return f"{value:.1e}"
    return f"{value:.3g}"


def _time_step(span: float, plot_w: int) -> float:
    want = max(2, min(8, plot_w // 90))
    for step in _TIME_STEPS:
        if span / step <= want:
            return float(step)
    return float(_TIME_STEPS[-1] * math.ceil(span / (_TIME_STEPS[-1] * want)))


def _clock(ts: float, step: float) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    if step >= 86400:
        return moment.strftime("%m-%d")
    return moment.strftime("%H:%M:%S" if step < 60 else "%H:%M")


def _legend(canvas: _Canvas, lines: Sequence[Line], title: str) -> None:
    x = 4 + (font.text_width(title) + 14 if title else 0)
    for i, line in enumerate(lines):
        if not line.label:
            continue
        label = line.label[:40]
        need = 12 + font.text_width(label) + 10
        if x + need > canvas.width:
            break
        color = PALETTE[i % len(PALETTE)]
        canvas.fill(x, 6, 8, 5, color)
        canvas.text(x + 12, 5, label, TEXT)
        x += need


# --- the raster ----------------------------------------------------------------------------


class _Canvas:
    """An RGB raster with the few primitives a chart needs; clips everything to the image."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.pixels = np.empty((height, width, 3), dtype=np.uint8)
        self.pixels[:, :] = BACKGROUND

    def fill(self, x: int, y: int, w: int, h: int, color: Color) -> None:
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        if x0 < x1 and y0 < y1:
            self.pixels[y0:y1, x0:x1] = color

    def hline(
        self, x0: int, x1: int, y: int, color: Color, *, dash: int = 0, thick: int = 1
    ) -> None:
        for dy in range(thick):
            row = y + dy
            if not 0 <= row < self.height:
                continue
            cols = np.arange(max(x0, 0), min(x1 + 1, self.width))
            if dash:
                cols = cols[((cols - x0) // dash) % 2 == 0]
            self.pixels[row, cols] = color

    def vline(self, x: int, y0: int, y1: int, color: Color, *, dash: int = 0) -> None:
        if not 0 <= x < self.width:
            return
        rows = np.arange(max(min(y0, y1), 0), min(max(y0, y1) + 1, self.height))
        if dash:
            rows = rows[((rows - y0) // dash) % 2 == 0]
        self.pixels[rows, x] = color

    def rect(self, x: int, y: int, w: int, h: int, color: Color) -> None:
        self.hline(x, x + w - 1, y, color)
        self.hline(x, x + w - 1, y + h - 1, color)
        self.vline(x, y, y + h - 1, color)
        self.vline(x + w - 1, y, y + h - 1, color)

    def text(self, x: int, y: int, text: str, color: Color, *, max_width: int = 0) -> None:
        if max_width and font.text_width(text) > max_width:
            keep = max((max_width + 1) // font.ADVANCE - 2, 0)
            text = text[:keep] + ".."
        for i, ch in enumerate(text):
            mask = font.glyph(ch)
            gx = x + i * font.ADVANCE
            ys, xs = np.nonzero(mask)
            ys, xs = ys + y, xs + gx
            ok = (ys >= 0) & (ys < self.height) & (xs >= 0) & (xs < self.width)
            self.pixels[ys[ok], xs[ok]] = color

    def polyline(self, xs: FloatArray, ys: FloatArray, color: Color) -> None:
        """Segments between consecutive finite points, 2 px thick; lone points as dots."""
        finite = np.isfinite(xs) & np.isfinite(ys)
        px, py = [], []
        for i in range(xs.size):
            if not finite[i]:
                continue
            joined_left = i > 0 and finite[i - 1]
            joined_right = i + 1 < xs.size and finite[i + 1]
            if joined_right:
                n = int(max(abs(xs[i + 1] - xs[i]), abs(ys[i + 1] - ys[i]))) + 2
                px.append(np.linspace(xs[i], xs[i + 1], n))
                py.append(np.linspace(ys[i], ys[i + 1], n))
            elif not joined_left:  # an isolated sample: a 3x3 dot
                grid = np.arange(-1.0, 2.0)
                dx, dy = np.meshgrid(grid, grid)
                px.append(xs[i] + dx.ravel())
                py.append(ys[i] + dy.ravel())
        if not px:
            return
        ax = np.rint(np.concatenate(px)).astype(np.intp)
        ay = np.rint(np.concatenate(py)).astype(np.intp)
        for ox, oy in ((0, 0), (1, 0), (0, 1)):
            x, y = ax + ox, ay + oy
            ok = (x >= 0) & (x < self.width) & (y >= 0) & (y < self.height)
            self.pixels[y[ok], x[ok]] = color

    def png(self) -> bytes:
        return encode_png(self.pixels)


def encode_png(rgb: npt.NDArray[np.uint8]) -> bytes:
    """An 8-bit RGB PNG of an (height, width, 3) array (filter 0 on every row)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("expected an (height, width, 3) array")
    height, width = int(rgb.shape[0]), int(rgb.shape[1])
    raw = np.zeros((height, width * 3 + 1), dtype=np.uint8)
    raw[:, 1:] = rgb.reshape(height, width * 3)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)),
            chunk(b"IEND", b""),
        )
    )
