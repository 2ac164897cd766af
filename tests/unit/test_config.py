"""``[edc_callbacks]``: each option's default is written once (``config.OPTIONS``); the provider info
declares exactly those options to Airflow and the typed getters fall back to the same defaults."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_edc_callbacks import config
from airflow_edc_callbacks.get_provider_info import get_provider_info


def test_the_provider_info_declares_the_option_table() -> None:
    declared = get_provider_info()["config"]["edc_callbacks"]["options"]
    assert set(declared) == set(config.OPTIONS)
    for name, option in config.OPTIONS.items():
        assert (declared[name]["default"], declared[name]["type"], declared[name]["sensitive"]) == (
            option.default,
            option.type,
            option.sensitive,
        ), name
    assert declared["store_url"]["example"].startswith("postgresql+psycopg://")


def test_the_getters_fall_back_to_the_declared_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in config.OPTIONS:
        monkeypatch.delenv(f"AIRFLOW__EDC_CALLBACKS__{name.upper()}", raising=False)
    assert config.get_fallback_check_interval() == 300.0
    assert config.get_stall_warning_after() == 600.0
    assert config.get_stall_timeout() == 0.0  # never
    assert config.get_defer_after() == 5.0
    assert config.get_retention() == timedelta(days=7)
    assert config.get_purge_interval() == timedelta(hours=1)
    assert config.get_max_body_bytes() == 1048576
    assert config.get_body_timeout() == 10.0
    assert config.DEFAULT_AUTH_HEADER == "X-Edc-Callback-Auth"
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_AUTH_SECRET", "s3cret")
    assert config.get_callback_auth() == ("X-Edc-Callback-Auth", "s3cret")


def test_a_configured_value_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__FALLBACK_CHECK_INTERVAL", "12.5")
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__RETENTION", "12h")
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__STALL_TIMEOUT", "240")
    assert config.get_fallback_check_interval() == 12.5
    assert config.get_stall_timeout() == 240.0
    assert config.get_retention() == timedelta(hours=12)


@pytest.mark.parametrize("value", ["-1", "soon", "inf"])
def test_a_stall_timeout_that_is_not_seconds_is_refused_naming_the_option(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__STALL_TIMEOUT", value)
    with pytest.raises(ValueError, match=r"\[edc_callbacks\] stall_timeout must be a number of seconds >= 0"):
        config.get_stall_timeout()
