"""Enrichment settings as the environment spells them."""

from __future__ import annotations

import pytest

from receiver.settings import SettingsError, load_settings


def test_prices_are_json_and_caps_have_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """LLM_PRICES_PER_1K is a JSON object of [input, output] prices per model prefix."""
    monkeypatch.setenv("LLM_PRICES_PER_1K", '{"gpt-4o-mini": [0.1, 0.2], "local": [0, 0]}')
    monkeypatch.setenv("ENRICH_CONCURRENCY", "4")
    settings = load_settings(_env_file=None)
    assert settings.llm_prices_per_1k == {"gpt-4o-mini": (0.1, 0.2), "local": (0.0, 0.0)}
    assert settings.enrich_concurrency == 4
    assert (settings.llm_max_tokens_per_incident, settings.llm_max_tokens_per_hour) == (
        16_000,
        300_000,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ENRICH_CONCURRENCY", "0"),
        ("ENRICH_TIMEOUT_SECONDS", "-1"),
        ("LLM_PRICES_PER_1K", "[1, 2]"),
        ("LLM_NUM_CTX", "lots"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """An invalid enrichment setting stops start-up with one line naming it."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=f"^invalid setting {name}: "):
        load_settings(_env_file=None)
