"""Outlier poller metrics, registered on the app's own registry (label: target name)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class DetectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.polls = Counter(
            "detector_polls_total",
            "Poll cycles this replica ran, by target (errors included)",
            ["target"],
            registry=registry,
        )
        self.duration = Histogram(
            "detector_poll_seconds",
            "Duration of one poll cycle of one target",
            ["target"],
            registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.series = Counter(
            "detector_series_scored_total",
            "Series scored (one per series per cycle)",
            ["target"],
            registry=registry,
        )
        self.flagged = Counter(
            "detector_outliers_flagged_total",
            "Series whose latest point was an outlier (one per series per cycle)",
            ["target"],
            registry=registry,
        )
        self.opened = Counter(
            "detector_episodes_opened_total",
            "Outlier episodes opened (each is an anomaly on the incident path)",
            ["target"],
            registry=registry,
        )
        self.errors = Counter(
            "detector_poll_errors_total",
            "Poll errors by target and kind (unavailable, query, protocol, store, internal)",
            ["target", "kind"],
            registry=registry,
        )
        self.capped = Counter(
            "detector_series_cap_hits_total",
            "Cycles that stopped at DETECT_MAX_SERIES",
            ["target"],
            registry=registry,
        )
        self.warming = Gauge(
            "detector_series_warming",
            "Series of the last cycle judged by the warm-up method (younger than "
            "DETECT_MIN_HISTORY)",
            ["target"],
            registry=registry,
        )
        self.seasonal = Gauge(
            "detector_series_seasonal",
            "Series of the last cycle scored against a cached seasonal profile",
            ["target"],
            registry=registry,
        )
        self.season_fits = Counter(
            "detector_season_fits_total",
            "Series whose seasonal profile was (re)fitted, with or without a period found",
            ["target"],
            registry=registry,
        )
        self.season_fit_seconds = Counter(
            "detector_season_fit_seconds_total",
            "Time spent fitting seasonal profiles (queries and computation)",
            ["target"],
            registry=registry,
        )
        self.invalid_targets = Gauge(
            "detector_targets_invalid",
            "Stored target documents the poller skipped in its last read (not a valid target)",
            registry=registry,
        )
        self.lease = Gauge(
            "detector_lease_held",
            "1 when this replica holds the target's poll lease",
            ["target"],
            registry=registry,
        )
