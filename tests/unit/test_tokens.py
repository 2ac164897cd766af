from __future__ import annotations

import stat
from pathlib import Path

import pytest

from airflow_edc_callbacks.config import parse_duration
from airflow_edc_callbacks.tokens import SIGNING_KEY_FILE, correlation_id_for, get_signing_key, make_token, verify_token

KEY = b"k" * 32


def test_token_round_trip() -> None:
    token = make_token(KEY, "abc_123-x")
    assert token.startswith("abc_123-x.")
    assert verify_token(KEY, token) == "abc_123-x"


@pytest.mark.parametrize(
    "token",
    [
        "abc",  # no signature
        "abc.",  # empty signature
        "abd." + make_token(KEY, "abc").split(".")[1],  # signature of another id
        make_token(b"other-key", "abc"),  # another key
        "a/b." + make_token(KEY, "abc").split(".")[1],
    ],
)
def test_forged_tokens_are_rejected(token: str) -> None:
    assert verify_token(KEY, token) is None


def test_correlation_id_rules() -> None:
    with pytest.raises(ValueError, match="Correlation id"):
        make_token(KEY, "has space")
    first = correlation_id_for("dag", "run", "task", -1)
    assert first == correlation_id_for("dag", "run", "task", -1)
    assert first != correlation_id_for("dag", "run", "task", 0)
    assert len(first) == 32


def test_signing_key_generated_once_in_airflow_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_SIGNING_KEY", raising=False)
    monkeypatch.setattr("airflow_edc_callbacks.tokens.airflow_home", lambda: tmp_path)
    first = get_signing_key()
    assert first == get_signing_key()
    path = tmp_path / SIGNING_KEY_FILE
    assert path.read_text().strip().encode() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 48


def test_configured_signing_key_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_SIGNING_KEY", "configured")
    assert get_signing_key() == b"configured"


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("15m", 900), ("2h", 7200), ("7d", 604800), ("45", 45)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["soon", "-1d", ""])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="uration"):
        parse_duration(text)
