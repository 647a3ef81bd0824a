"""Detector settings: durations, cross-field checks, and what the poller makes of them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from receiver.detect.outliers import DEFAULT_THRESHOLD
from receiver.detect.poller import PollerConfig
from receiver.detect.targets import default_target
from receiver.settings import Settings, SettingsError, load_settings


def settings(**values: Any) -> Settings:
    return load_settings(_env_file=None, **values)


def test_durations_accept_seconds_or_prometheus_durations() -> None:
    """DETECT_* durations take seconds or `2h`/`14d`/`90s`."""
    s = settings(detect_window="2h", detect_step="90", detect_lookback="14d")
    assert (s.detect_window, s.detect_step, s.detect_lookback) == (7200.0, 90.0, 1_209_600.0)


@pytest.mark.parametrize(
    ("values", "name"),
    [
        ({"detect_window": "5 minutes"}, "DETECT_WINDOW"),
        ({"detect_window": "1h", "detect_step": "40m"}, "DETECT_STEP"),
        ({"detect_lookback": "1h", "detect_min_history": "1d"}, "DETECT_MIN_HISTORY"),
        ({"detect_method": "stl"}, "DETECT_METHOD"),
        ({"detect_threshold": "1.5"}, "DETECT_THRESHOLD"),
        ({"detect_max_series": "0"}, "DETECT_MAX_SERIES"),
    ],
)
def test_invalid_detector_settings_name_the_variable(values: dict[str, str], name: str) -> None:
    """Each bad value stops start-up with one line naming the variable."""
    with pytest.raises(SettingsError, match=f"^invalid setting {name}: "):
        settings(**values)


def test_defaults_score_with_the_shipped_threshold_and_history_priors() -> None:
    """By default the range method runs at DEFAULT_THRESHOLD over two hours of window plus
    14 days of extremes from Prometheus; the lease outlives three intervals."""
    cfg = PollerConfig.from_settings(settings(detect_rules_dir="/nonexistent"))
    assert cfg.detector.method == "range"
    assert cfg.detector.threshold == DEFAULT_THRESHOLD
    assert cfg.detector.suppress == 0.0  # the poller keeps episodes itself
    assert cfg.prior is not None
    assert cfg.prior.lookback == 14 * 86400
    assert cfg.lease_ttl == timedelta(seconds=180)


def test_window_only_methods_need_no_more_history_than_the_window() -> None:
    """robust and zscore judge the window alone: no priors, min history capped at the window;
    zscore uses Z_THRESHOLD."""
    robust = PollerConfig.from_settings(settings(detect_method="robust"))
    assert robust.prior is None
    assert robust.detector.min_history == 7200.0
    seed = PollerConfig.from_settings(settings(detect_method="zscore", z_threshold="4"))
    assert seed.detector.z_threshold == 4.0
    assert seed.detector.method == "zscore"


def test_prom_url_credentials_become_basic_auth() -> None:
    """user:password in PROM_URL is sent as basic auth and kept out of the shown URL; an empty
    PROM_URL means no default target."""
    target = default_target(settings(prom_url="http://mon:pw@prom.local:9090/base/"))
    assert target is not None
    assert target.url == "http://prom.local:9090/base"
    assert target.basic_auth == ("mon", "pw")
    assert "pw" not in repr(target)
    assert target.view()["auth"] == {"type": "basic", "username": "mon", "password": "********"}
    assert default_target(settings(prom_url="")) is None
