"""Redaction of secrets from CLI output and access logs (``airflow_edc_callbacks.redaction``)."""

from __future__ import annotations

import logging
import sys

import pytest

from airflow_edc_callbacks.models import MAX_JSON_DEPTH
from airflow_edc_callbacks.redaction import (
    CUT,
    REDACTED,
    AccessLogRedactionFilter,
    install_access_log_filter,
    is_secret_key,
    redact_text,
    redact_tokens,
)
from airflow_edc_callbacks.tokens import make_token
from tests.conftest import SIGNING_KEY

TOKEN = make_token(SIGNING_KEY, "corr-1")
SIGNATURE = TOKEN.partition(".")[2]


@pytest.mark.parametrize(
    "key",
    [
        "authorization",
        "Authorization",
        "edc:authorization",
        "https://w3id.org/edc/v0.0.1/ns/authorization",
        "token",
        "refreshToken",
        "accessToken",
        "access_token",
        "tx-auth:refreshToken",
        "https://w3id.org/tractusx/auth/refreshToken",
        "secret",
        "clientSecret",
        "client_secret",
        "password",
        "authCode",
        "https://w3id.org/edc/v0.0.1/ns/authCode",
        "apiKey",
        "api_key",
        "x-api-key",
        "X-Api-Key",
        "credentials",
        "privateKey",
        "private_key",
        "privateKeyPem",
        "sas",
        "sasToken",
        "signature",
        "secretAccessKey",
    ],
)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)
    assert redact_tokens({key: "value-1", "other": "value-2"}) == {key: REDACTED, "other": "value-2"}


@pytest.mark.parametrize(
    "key",
    ["endpoint", "authType", "authKey", "authCodeId", "tokenType", "expiresIn", "assetId", "classAssertion", "id"],
)
def test_keys_that_name_or_describe_a_secret_are_kept(key: str) -> None:
    assert not is_secret_key(key)
    assert redact_tokens({key: "shown"}) == {key: "shown"}


def test_edr_in_every_json_ld_form() -> None:
    edr = {
        "endpoint": "http://p/public",
        "authType": "bearer",
        "edc:authorization": "t1",
        "properties": {"https://w3id.org/edc/v0.0.1/ns/authorization": [{"@value": "t2"}]},
        "nested": [{"clientSecret": "t3", "expiresIn": "300", "authorization": ""}],
        "headers": [{"name": "Authorization", "value": "Bearer t4"}, {"name": "Accept", "value": "json"}],
    }
    assert redact_tokens(edr) == {
        "endpoint": "http://p/public",
        "authType": "bearer",
        "edc:authorization": REDACTED,
        "properties": {"https://w3id.org/edc/v0.0.1/ns/authorization": REDACTED},
        "nested": [{"clientSecret": REDACTED, "expiresIn": "300", "authorization": ""}],
        "headers": [{"name": "Authorization", "value": REDACTED}, {"name": "Accept", "value": "json"}],
    }


def test_callback_uris_anywhere_lose_their_signature() -> None:
    uri = f"http://airflow:8080/edc-callbacks/callbacks/{TOKEN}"
    body = {
        "payload": {"callbackAddresses": [{"uri": uri, "events": ["transfer"]}]},
        "reason": f"could not reach {uri}: timeout",
        uri: "as a key too",
    }
    shown = redact_tokens(body)
    assert SIGNATURE not in str(shown)
    assert shown["payload"]["callbackAddresses"][0]["uri"] == "http://airflow:8080/edc-callbacks/callbacks/corr-1.***"
    assert shown["reason"] == "could not reach http://airflow:8080/edc-callbacks/callbacks/corr-1.***: timeout"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"/edc-callbacks/callbacks/{TOKEN}", "/edc-callbacks/callbacks/corr-1.***"),
        (f'POST /callbacks/{TOKEN}/ HTTP/1.1" 404', 'POST /callbacks/corr-1.***/ HTTP/1.1" 404'),
        (f"/CallBacks/{TOKEN}", "/CallBacks/corr-1.***"),
        (f"https%3A%2F%2Fh%2Fcallbacks%2F{TOKEN}", "https%3A%2F%2Fh%2Fcallbacks%2Fcorr-1.***"),
        (f"http:\\/\\/h\\/callbacks\\/{TOKEN}", "http:\\/\\/h\\/callbacks\\/corr-1.***"),
        ("/callbacks/static/cb1", "/callbacks/static/cb1"),
        (
            "https://acct.blob.core.windows.net/c/f.csv?sv=2022-11-02&se=2030-01-01&sp=r&sig=AbC%2Bd%3D",
            "https://acct.blob.core.windows.net/c/f.csv?sv=2022-11-02&se=2030-01-01&sp=r&sig=***",
        ),
        (
            "https://s3/b/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F20240101&X-Amz-Signature=abc123",
            "https://s3/b/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=***&X-Amz-Signature=***",
        ),
        ("https://gcs/o?X-Goog-Signature=ff00&x=1", "https://gcs/o?X-Goog-Signature=***&x=1"),
        (
            "http://p/data?token=t1&access_token=t2&code=c3&page=2",
            "http://p/data?token=***&access_token=***&code=***&page=2",
        ),
        ("http://p/data?signature=s1#frag", "http://p/data?signature=***#frag"),
        ("redirect=http%3A%2F%2Fp%2Fd%3Ftoken%3Dt1%26page%3D2", "redirect=http%3A%2F%2Fp%2Fd%3Ftoken%3D***%26page%3D2"),
        ("Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "Bearer eyJ***"),
        ("code=500 is not a query string", "code=500 is not a query string"),
        ("http://p/data?page=2&size=10", "http://p/data?page=2&size=10"),
    ],
)
def test_redact_text(text: str, shown: str) -> None:
    assert redact_text(text) == shown


def test_deep_documents_are_cut_without_recursion() -> None:
    """Stores written by older versions may hold bodies nested about 1000 deep; reading them must not
    recurse (this one is deeper than Python's recursion limit)."""
    depth = sys.getrecursionlimit() + 500
    document: object = f"/callbacks/{TOKEN}"
    for i in range(depth):
        document = {"next": document} if i % 2 else [document]
    shown = redact_tokens(document)
    levels = 0
    while isinstance(shown, (dict, list)):
        levels += 1
        shown = shown["next"] if isinstance(shown, dict) else shown[0]
    assert levels == MAX_JSON_DEPTH
    assert shown == CUT


def test_shallow_documents_are_copied_unchanged() -> None:
    document = {"a": [1, 2.5, True, None, {"b": "c"}], "d": {}, "e": []}
    shown = redact_tokens(document)
    assert shown == document
    assert shown is not document
    assert shown["a"] is not document["a"]


def test_access_log_filter_rewrites_uvicorn_and_gunicorn_records() -> None:
    uvicorn_record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", f"/callbacks/{TOKEN}?sig=abc", "1.1", 200),
        None,
    )
    assert AccessLogRedactionFilter().filter(uvicorn_record)
    assert uvicorn_record.getMessage() == '127.0.0.1:5000 - "POST /callbacks/corr-1.***?sig=*** HTTP/1.1" 200'

    gunicorn_record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, '"%(r)s" %(s)s', None, None)
    gunicorn_record.args = {"r": f"POST /callbacks/{TOKEN} HTTP/1.1", "s": "200"}
    assert AccessLogRedactionFilter().filter(gunicorn_record)
    assert gunicorn_record.getMessage() == '"POST /callbacks/corr-1.*** HTTP/1.1" 200'


def test_install_access_log_filter_is_idempotent_and_the_plugin_installs_it() -> None:
    import airflow_edc_callbacks.plugin  # noqa: F401  (the api-server imports it)

    install_access_log_filter()
    for name in ("uvicorn.access", "gunicorn.access"):
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, AccessLogRedactionFilter) for f in filters) == 1
