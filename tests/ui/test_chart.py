"""receiver.ui.chart: PNG line charts with a threshold line or a baseline band."""

from __future__ import annotations

import numpy as np
import pytest

from receiver.ui.chart import (
    BACKGROUND,
    BAND,
    MARK,
    PALETTE,
    THRESHOLD,
    Band,
    Line,
    encode_png,
    render_chart,
)
from tests.ui import pngs

T0 = 1_790_000_000.0


def _series(n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    t = T0 + np.arange(n) * 15.0
    v = 40 + 10 * np.sin(np.arange(n) / 8.0)
    v[80:95] = 92.0
    return t, v


def test_chart_is_a_640x240_png_with_line_threshold_and_marks() -> None:
    """A default chart decodes as 640x240 RGB with the series, a red threshold and marks."""
    t, v = _series()
    png = render_chart([Line(t, v, "cpu")], threshold=80.0, marks=[t[80], t[95]])
    assert png[:8] == pngs.SIGNATURE
    assert pngs.size(png) == (640, 240)
    pixels = pngs.decode(png)
    assert pngs.count(pixels, PALETTE[0]) > 300
    assert pngs.count(pixels, THRESHOLD) > 500  # dashed, two pixels thick, across the plot
    assert pngs.count(pixels, MARK) > 100
    assert pngs.count(pixels, BAND) == 0
    assert len(png) < 60_000


def test_band_is_shaded_behind_the_line() -> None:
    """A baseline band (constant or per point) fills its range; the line stays on top."""
    t, v = _series()
    constant = pngs.decode(render_chart([Line(t, v)], band=Band(30.0, 50.0)))
    assert pngs.count(constant, BAND) > 10_000
    low, high = v - 5, v + 5
    moving = pngs.decode(render_chart([Line(t, v)], band=Band(low, high, timestamps=t)))
    assert pngs.count(moving, BAND) > 2_000
    assert pngs.count(moving, PALETTE[0]) > 300


def test_gaps_several_lines_and_size() -> None:
    """NaN values leave gaps, each line gets its colour, and a custom size is honoured."""
    t, v = _series()
    v[10:30] = np.nan
    png = render_chart([Line(t, v, "a"), Line(t, v / 2, "b")], width=800, height=300)
    assert pngs.size(png) == (800, 300)
    pixels = pngs.decode(png)
    assert pngs.count(pixels, PALETTE[0]) > 200
    assert pngs.count(pixels, PALETTE[1]) > 200


def test_no_data_still_renders() -> None:
    """Without a finite value the chart is a valid PNG saying NO DATA (text pixels present)."""
    png = render_chart([Line([T0, T0 + 60], [np.nan, np.nan])], threshold=5.0)
    pixels = pngs.decode(png)
    assert pngs.size(png) == (640, 240)
    assert pngs.count(pixels, BACKGROUND) < 640 * 240
    assert pngs.count(pixels, PALETTE[0]) == 0
    empty = render_chart([])
    assert pngs.size(empty) == (640, 240)


def test_flat_series_and_single_point() -> None:
    """A constant series and a lone sample are drawn (the y range is padded, not empty)."""
    flat = pngs.decode(render_chart([Line([T0, T0 + 60, T0 + 120], [5.0, 5.0, 5.0])]))
    assert pngs.count(flat, PALETTE[0]) > 100
    dot = pngs.decode(render_chart([Line([T0], [3.0])]))
    assert pngs.count(dot, PALETTE[0]) >= 9


def test_bad_input_is_refused() -> None:
    """Mismatched arrays and absurd sizes raise ValueError."""
    with pytest.raises(ValueError, match="differ in length"):
        render_chart([Line([1.0, 2.0], [1.0])])
    with pytest.raises(ValueError, match="chart size"):
        render_chart([], width=10, height=10)
    with pytest.raises(ValueError, match="height, width, 3"):
        encode_png(np.zeros((4, 4), dtype=np.uint8))
