"""receiver.ui.chart: PNG line charts with a threshold line or a normal band (matplotlib)."""

from __future__ import annotations

import asyncio

import numpy as np
import numpy.typing as npt
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from receiver.ui.chart import (
    BACKGROUND,
    BAND,
    BAND_EDGE,
    EXPECTED,
    MARK,
    PALETTE,
    THRESHOLD,
    Band,
    Line,
    Panel,
    chart_figure,
    render_chart,
    render_panels,
)
from receiver.ui.units import unit_of
from tests.ui import pngs

T0 = 1_790_000_000.0
Floats = npt.NDArray[np.float64]


def _series(n: int = 120) -> tuple[Floats, Floats]:
    t = (T0 + np.arange(n) * 15.0).astype(np.float64)
    v = (40 + 10 * np.sin(np.arange(n) / 8.0)).astype(np.float64)
    v[80:95] = 92.0
    return t, v


def _texts(fig: Figure) -> list[Text]:
    """Every text artist of the figure (titles, legend, tick labels), after a draw."""
    fig.canvas.draw()
    return [t for t in fig.findobj(Text) if t.get_text()]


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
    """A normal band (constant or per point) fills its range with its edges drawn; the line
    stays on top."""
    t, v = _series()
    constant = pngs.decode(render_chart([Line(t, v)], band=Band(30.0, 50.0)))
    assert pngs.count(constant, BAND) > 10_000
    assert pngs.count(constant, BAND_EDGE) > 800  # both edges across the plot
    low, high = v - 5, v + 5
    moving = pngs.decode(render_chart([Line(t, v)], band=Band(low, high, timestamps=t)))
    assert pngs.count(moving, BAND) > 2_000
    assert pngs.count(moving, PALETTE[0]) > 300


def test_a_narrow_band_under_a_spike_stays_visible() -> None:
    """An outlier's band far thinner than a pixel next to its spike (10 ± 0.1 against 500) is
    drawn 8 px tall across the plot, visible around the line that runs inside it."""
    t = T0 + np.arange(200) * 15.0
    v = np.full(t.size, 10.0)
    v[180:] = 500.0
    pixels = pngs.decode(render_chart([Line(t, v, "queue")], band=Band(9.9, 10.1)))
    plot = pixels[30:]  # below the legend, whose swatch has the band's colour too
    # the line (2 px) covers part of the band; above and below it the band shows
    assert pngs.count(plot, BAND) > 2_000
    rows = np.nonzero(np.all(plot == np.array(BAND, dtype=np.uint8), axis=2).any(axis=1))[0]
    assert rows.max() - rows.min() + 1 >= 6


def test_expected_line_is_dashed_grey_not_a_series_colour() -> None:
    """A model's expectation is drawn in its own colour and leaves the palette to the data."""
    t, v = _series()
    png = render_chart([Line(t, v, "h1"), Line(t, v * 0 + 45.0, "expected", role="expected")])
    pixels = pngs.decode(png)
    assert pngs.count(pixels, EXPECTED) > 200
    assert pngs.count(pixels, PALETTE[1]) == 0


def test_gaps_several_lines_and_size() -> None:
    """NaN values leave gaps, each line gets its colour, and a custom size is honoured."""
    t, v = _series()
    v[10:30] = np.nan
    png = render_chart([Line(t, v, "a"), Line(t, v / 2, "b")], width=800, height=300)
    assert pngs.size(png) == (800, 300)
    pixels = pngs.decode(png)
    assert pngs.count(pixels, PALETTE[0]) > 200
    assert pngs.count(pixels, PALETTE[1]) > 200
    odd = render_chart([Line(t, v)], width=333, height=157, scale=3)
    assert pngs.size(odd) == (999, 471)


def test_scale_two_doubles_every_side() -> None:
    """`scale=2` (emails) gives 1280x480 with lines twice as long and twice as thick."""
    t, v = _series()
    one = pngs.decode(render_chart([Line(t, v, "cpu")], threshold=80.0))
    two_png = render_chart([Line(t, v, "cpu")], threshold=80.0, scale=2)
    assert pngs.size(two_png) == (1280, 480)
    two = pngs.decode(two_png)
    assert pngs.count(two, THRESHOLD) > 3 * pngs.count(one, THRESHOLD)
    assert pngs.count(two, PALETTE[0]) > 2 * pngs.count(one, PALETTE[0])


def test_panels_stack_top_to_bottom() -> None:
    """Two panels make one image twice as tall, the threshold in the top one only."""
    t, v = _series()
    png = render_panels(
        [Panel([Line(t, v, "a")], threshold=80.0, title="alert"), Panel([Line(t, v, "b")])],
        height=180,
    )
    assert pngs.size(png) == (640, 360)
    pixels = pngs.decode(png)
    assert pngs.count(pixels[:180], THRESHOLD) > 300
    assert pngs.count(pixels[180:], THRESHOLD) == 0
    assert pngs.count(pixels[180:], PALETTE[0]) > 300
    with pytest.raises(ValueError, match="panels"):
        render_panels([])


def test_labels_keep_their_case_and_non_ascii_text() -> None:
    """A lower-case metric name and non-ASCII labels are drawn as given (not upper-cased, not
    `?`), `$` is plain text, and the PNG's text chunks carry them too."""
    t, v = _series()
    title = "node_memory_MemAvailable_bytes on höst-1"
    label = "Größe жёлтый $x$"
    panel = Panel([Line(t, v, label)], title=title, unit=unit_of("node_memory_MemAvailable_bytes"))
    texts = _texts(chart_figure([panel]))
    shown = [x.get_text() for x in texts]
    assert title in shown
    assert label in shown
    assert not any(x.get_parse_math() for x in texts if x.get_text() in (title, label))
    png = render_panels([panel])
    meta = pngs.texts(png)
    assert meta["Title"] == title
    assert label in meta["Description"]


def test_glyphs_the_font_lacks_do_not_warn() -> None:
    """Characters the bundled font cannot draw become U+FFFD in the image (no missing-glyph
    warning, which the suite turns into an error) and stay intact in the metadata."""
    t, v = _series()
    title = "队列 depth"
    fig = chart_figure([Panel([Line(t, v)], title=title)])
    assert "\ufffd\ufffd depth" in [x.get_text() for x in _texts(fig)]
    assert pngs.texts(render_chart([Line(t, v)], title=title))["Title"] == title


def test_units_from_the_metric_name_label_the_y_axis() -> None:
    """Bytes tick in binary multiples, ratios in percent, seconds in ms; UTC is written out."""
    t = T0 + np.arange(60) * 60.0
    gib = 1024.0**3
    cases = [
        ("process_resident_memory_bytes", np.linspace(0, 3 * gib, 60), "GiB"),
        ("disk_used_ratio", np.linspace(0.2, 0.9, 60), "%"),
        ("histogram_quantile(0.9, rate(req_seconds_bucket[5m]))", np.linspace(0, 0.4, 60), "ms"),
    ]
    for expr, values, suffix in cases:
        fig = chart_figure([Panel([Line(t, values)], unit=unit_of(expr))])
        shown = [x.get_text() for x in _texts(fig)]
        assert any(s.endswith(suffix) and s[0].isdigit() for s in shown), (expr, shown)
        assert "UTC" in shown


@pytest.mark.parametrize(
    ("expr", "label"),
    [
        ("node_memory_MemAvailable_bytes", "bytes"),
        ('rate(node_network_receive_bytes_total{device="eth0"}[5m])', "bytes/s"),
        (
            "histogram_quantile(0.99, sum by (le) (rate(http_duration_seconds_bucket[5m])))",
            "seconds",
        ),
        ("avg_over_time(cpu_busy_ratio[1h] offset 1d)", "ratio"),
        ("max(disk_used_percent) by (mountpoint)", "percent"),
        ("job:http_request_latency_seconds:p95", "seconds"),
        ("instance:node_network_receive_bytes:rate5m", "bytes/s"),
        ("instance:cpu_usage:percent", "percent"),
        ("demo_queue_depth", None),
        ("node_filesystem_avail_bytes / node_filesystem_size_bytes", None),
        ("100 * cpu_busy_ratio", None),
        ("count(up_bytes)", None),
        ("http_request_duration_seconds_count", None),
        ("rate(http_request_duration_seconds_bucket[5m])", None),
    ],
)
def test_unit_of_reads_only_what_the_expression_makes_certain(expr: str, label: str | None) -> None:
    """The unit comes from the name's suffix through unit-keeping functions; arithmetic, counts
    and bare buckets have none."""
    unit = unit_of(expr)
    assert (unit.label if unit else None) == label


def test_no_data_still_renders() -> None:
    """Without a finite value the chart is a valid PNG saying "no data" (text pixels present)."""
    png = render_chart([Line([T0, T0 + 60], [np.nan, np.nan])], threshold=5.0)
    pixels = pngs.decode(png)
    assert pngs.size(png) == (640, 240)
    assert pngs.count(pixels, BACKGROUND) < 640 * 240
    assert pngs.count(pixels, PALETTE[0]) == 0
    assert "no data" in [x.get_text() for x in _texts(chart_figure([Panel([])]))]
    empty = render_chart([])
    assert pngs.size(empty) == (640, 240)


def test_flat_series_and_single_point() -> None:
    """A constant series and a lone sample are drawn (the y range is padded, not empty)."""
    flat = pngs.decode(render_chart([Line([T0, T0 + 60, T0 + 120], [5.0, 5.0, 5.0])]))
    assert pngs.count(flat, PALETTE[0]) > 100
    dot = pngs.decode(render_chart([Line([T0], [3.0])]))
    assert pngs.count(dot, PALETTE[0]) >= 9


def test_bad_input_is_refused() -> None:
    """Mismatched arrays, absurd sizes and scales raise ValueError."""
    with pytest.raises(ValueError, match="differ in length"):
        render_chart([Line([1.0, 2.0], [1.0])])
    with pytest.raises(ValueError, match="chart size"):
        render_chart([], width=10, height=10)
    with pytest.raises(ValueError, match="scale"):
        render_chart([], scale=5)


async def test_renders_in_threads_match_serial_renders() -> None:
    """Charts drawn concurrently in worker threads (as the console and emails draw them) are
    byte-identical to the same charts drawn one at a time: no shared drawing state."""
    t, v = _series()

    def draw(i: int) -> bytes:
        return render_chart(
            [Line(t, v * (1 + i / 10), f"series {i}")],
            threshold=80.0 + i,
            band=Band(20.0, 30.0 + i) if i % 2 else None,
            title=f"chart {i} ünïcode",
            scale=1 + i % 2,
        )

    serial = [draw(i) for i in range(8)]
    threaded = await asyncio.gather(*(asyncio.to_thread(draw, i) for i in range(8)))
    assert list(threaded) == serial
    assert len(set(serial)) == 8
