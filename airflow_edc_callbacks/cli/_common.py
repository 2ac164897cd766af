"""What the subcommands share: the program name, the one-line failure, argument types, safe display of
stored text, opening the event store, and keeping standard output for results."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from airflow_edc_callbacks.config import get_store_url
from airflow_edc_callbacks.exceptions import StoreUnavailableError
from airflow_edc_callbacks.redaction import redact_text
from airflow_edc_callbacks.store import EventStore, get_store

PROG = "airflow-edc-callbacks"

READ_RECURSION_LIMIT = 5000
"""Python's recursion limit while ``events`` reads: stores written by older versions may hold bodies nested
about 1000 deep, which the JSON decoder of Python 3.11 cannot read under the default limit of 1000."""


class Failure(Exception):
    """A failure the command reports in one line on standard error, with exit status 1."""


def positive(kind: Callable[[str], int]) -> Callable[[str], int]:
    """``kind`` (an argparse ``type``) refusing values <= 0."""

    def parse(text: str) -> int:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid ... value" message
    return parse


def non_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """``kind`` (an argparse ``type``) refusing negative values (and NaN)."""

    def parse(text: str) -> Any:
        value = kind(text)
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _escaped(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch.isprintable():  # False for control, format, surrogate and separator characters but the space
        return ch
    return ch.encode("unicode_escape", "backslashreplace").decode("ascii")


def shown(text: str) -> str:
    """``text`` for a terminal: secrets redacted; backslashes, control and format characters escaped
    (``\\r``, ``\\x1b``, ``\\u202e``), so a stored value cannot move the cursor or fake a line."""
    return "".join(_escaped(ch) for ch in redact_text(text))


def store_name(url: str) -> str:
    """The store URL without its password, for messages."""
    try:
        return shown(make_url(url).render_as_string(hide_password=True))
    except ArgumentError:
        return "<not a SQLAlchemy URL>"


def reason(err: BaseException, url: str) -> str:
    """The first line of what went wrong (the driver's message), without the URL's password."""
    cause = err.__cause__ or err
    lines = str(cause).strip().splitlines()
    text = lines[0] if lines else type(cause).__name__
    with contextlib.suppress(ArgumentError):
        password = make_url(url).password
        if password:
            text = text.replace(str(password), "***")
    return shown(text)


def open_store(url: str | None) -> EventStore:
    """The event store, or :class:`Failure` naming it when it cannot be opened."""
    url = url or get_store_url()
    try:
        return get_store(url)
    except (StoreUnavailableError, ArgumentError, ImportError) as err:  # ImportError: no database driver
        raise Failure(f"cannot open the event store {store_name(url)}: {reason(err, url)}") from err


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """While in the block, ``sys.stdout`` is standard error, and so is the stream of every logging handler
    that wrote to standard output (Airflow's, when something configured it before)."""
    stdout_streams = {id(sys.stdout), id(sys.__stdout__)}
    moved: list[tuple[logging.StreamHandler[Any], Any]] = []
    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values())]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in stdout_streams:
                moved.append((handler, handler.setStream(sys.stderr)))
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for handler, stream in reversed(moved):
            handler.setStream(stream)


@contextlib.contextmanager
def recursion_headroom(limit: int) -> Iterator[None]:
    """While in the block, Python's recursion limit is at least ``limit``."""

    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)
