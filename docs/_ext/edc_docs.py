"""Pages of the documentation written from the code at build time (a Sphinx extension).

- ``_generated/configuration.md``: the ``[edc_callbacks]`` options, from the provider info Airflow reads
  (:func:`airflow_edc_callbacks.get_provider_info.get_provider_info`, built from
  :data:`airflow_edc_callbacks.config.OPTIONS`); ``configuration.md`` includes it.
- ``_generated/connection-fields.md``: the ``edc`` connection form's fields and extras, from the same provider
  info (``connection-types``); ``connection.md`` includes it.
- ``_generated/cli.md``: the ``airflow-edc-callbacks`` command, from its ``argparse`` parser
  (:func:`airflow_edc_callbacks.cli.main.build_parser`): each subcommand's description and its ``--help``
  exactly as the command prints it; ``cli.md`` includes it.
- ``api/generated/<Name>.md``: one autodoc page per public name of the ``__all__`` of the public packages
  listed in :data:`API_PACKAGES`; ``api/index.md`` lists them with a glob.

Both are rewritten on every build (on ``builder-inited``, before Sphinx looks for documents), and only when
their text changed, so an incremental build stays incremental. Neither directory is under version control.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the page builders run without Sphinx too (tests/unit/project/test_docs.py)
    from sphinx.application import Sphinx

API_PACKAGES = {
    "airflow_edc_callbacks.operators": "Operator",
    "airflow_edc_callbacks.sensors": "Sensor",
    "airflow_edc_callbacks.triggers": "Trigger",
    "airflow_edc_callbacks.hooks": "Hook",
}
"""The public packages that get one API page per name of their ``__all__``, and what to call their names."""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _cell(text: str | None) -> str:
    return "" if text is None else str(text).replace("|", "\\|").replace("\n", " ")


def configuration_reference() -> str:
    """The ``[edc_callbacks]`` options as Markdown: a table, then one section per option."""
    from airflow_edc_callbacks.get_provider_info import get_provider_info

    sections = get_provider_info()["config"]
    lines: list[str] = []
    for section, spec in sections.items():
        options: dict[str, dict[str, Any]] = spec["options"]
        lines += [
            f"Section `[{section}]`: {spec['description']} Every option can also be set in the environment as "
            f"`AIRFLOW__{section.upper()}__<OPTION>`.",
            "",
            "| option | type | default | environment variable |",
            "| --- | --- | --- | --- |",
        ]
        for name, option in options.items():
            default = "(unset)" if option["default"] is None else f"`{option['default']}`"
            env = f"AIRFLOW__{section.upper()}__{name.upper()}"
            lines.append(
                f"| [`{name}`](#{section}-{name.replace('_', '-')}) | {option['type']} | {default} | `{env}` |"
            )
        lines.append("")
        for name, option in options.items():
            lines += [f"({section}-{name.replace('_', '-')})=", f"### `{name}`", "", option["description"], ""]
            facts = [f"Type: `{option['type']}`"]
            facts.append("Default: unset" if option["default"] is None else f"Default: `{option['default']}`")
            if option.get("example"):
                facts.append(f"Example: `{option['example']}`")
            if option.get("sensitive"):
                facts.append("Sensitive: Airflow masks its value")
            facts.append(f"Since: {option['version_added']}")
            lines += [f"- {fact}" for fact in facts] + [""]
    return "\n".join(lines)


def connection_fields() -> str:
    """The ``edc`` connection type as the provider info declares it to Airflow's connection form, as Markdown."""
    from airflow_edc_callbacks.get_provider_info import get_provider_info

    lines: list[str] = []
    for conn in get_provider_info()["connection-types"]:
        behaviour = conn.get("ui-field-behaviour", {})
        hidden = ", ".join(f"`{field}`" for field in behaviour.get("hidden-fields", []))
        lines += [
            f"Connection type `{conn['connection-type']}` ({conn['hook-name']}, hook `{conn['hook-class-name']}`); "
            f"the form hides {hidden}.",
            "",
            "| field | label in the form | type | default | description |",
            "| --- | --- | --- | --- | --- |",
        ]
        for field, label in behaviour.get("relabeling", {}).items():
            placeholder = behaviour.get("placeholders", {}).get(field)
            example = f"e.g. `{placeholder}`" if placeholder else ""
            lines.append(f"| `{field}` | {_cell(label)} | string | | {example} |")
        for name, spec in conn.get("conn-fields", {}).items():
            schema = spec.get("schema", {})
            types = schema.get("type", [])
            kind = " or ".join(t for t in ([types] if isinstance(types, str) else types) if t != "null")
            if "enum" in schema:
                kind += ": " + ", ".join(f"`{value}`" for value in schema["enum"])
            value = schema.get("default")
            default = "" if value is None else f"`{value if isinstance(value, str) else json.dumps(value)}`"
            label, description = _cell(spec.get("label")), _cell(spec.get("description"))
            lines.append(f"| extra `{name}` | {label} | {kind} | {default} | {description} |")
        lines.append("")
    return "\n".join(lines)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _plain(text: str) -> str:
    """``text`` as Markdown that shows it literally (help texts hold ``***``, ``<name>``, ``_``)."""
    for char in "\\`*_[]<>|#":
        text = text.replace(char, "\\" + char)
    return text


def cli_reference() -> str:
    """The command's reference as Markdown: its usage, then each subcommand's description and ``--help``."""
    from airflow_edc_callbacks.cli.main import build_parser

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "110"  # argparse wraps help at the terminal width: one width for every build
    try:
        parser = build_parser()
        lines = ["```text", parser.format_help().rstrip(), "```", ""]
        for name, sub in _subcommands(parser).items():
            lines += [f"## `{name}`", ""]
            if sub.description:
                lines += [_plain(sub.description), ""]
            lines += ["```text", sub.format_help().rstrip(), "```", ""]
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return "\n".join(lines)


def api_page(package: str, name: str, kind: str) -> str:
    """The autodoc page of one public name: its import line, then the class with its own members."""
    module = importlib.import_module(package)
    obj = getattr(module, name)
    directive = "autoclass" if isinstance(obj, type) else "autofunction"
    return "\n".join(
        [
            f"# {name}",
            "",
            f"{kind}, imported as `from {package} import {name}`.",
            "",
            "```{eval-rst}",
            f".. {directive}:: {package}.{name}",
            *(["   :members:", "   :show-inheritance:"] if directive == "autoclass" else []),
            "```",
            "",
        ]
    )


def generate(app: Sphinx) -> None:
    """Write the generated pages into the source directory (``builder-inited``)."""
    src = Path(app.srcdir)
    _write(src / "_generated" / "configuration.md", configuration_reference())
    _write(src / "_generated" / "cli.md", cli_reference())
    _write(src / "_generated" / "connection-fields.md", connection_fields())
    expected: set[Path] = set()
    for package, kind in API_PACKAGES.items():
        for name in importlib.import_module(package).__all__:
            path = src / "api" / "generated" / f"{name}.md"
            expected.add(path)
            _write(path, api_page(package, name, kind))
    for stale in (src / "api" / "generated").glob("*.md"):
        if stale not in expected:
            stale.unlink()


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
