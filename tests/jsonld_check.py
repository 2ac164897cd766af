"""Offline JSON-LD and JSON Schema checks of Management API request bodies, with EDC 0.18.0's own documents.

The context documents and the v4 request schemas under ``tests/fixtures/jsonld`` are copies of the files in
eclipse-edc/Connector at tag v0.18.0 (see ``tests/fixtures/jsonld/SOURCES.md``). Expansion runs with PyLD and a
document loader that serves only those files: any other URL raises :class:`UnknownDocumentError`, so nothing is
fetched from the network and a body that needs another document fails loudly.

Which IRI a key of a compacted body expands to is found by deletion: expand the body, expand it again without that
one key, and see which IRI paths of the expanded document disappeared. A key whose removal changes nothing was
dropped by expansion (no term definition and no ``@vocab`` in scope), exactly what EDC's Titanium expansion does
before its transformers read the request.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import referencing
from pyld import jsonld

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "jsonld"

EDC = "https://w3id.org/edc/v0.0.1/ns/"
ODRL = "http://www.w3.org/ns/odrl/2/"

CONTEXT_FILES: dict[str, str] = {
    "https://w3id.org/edc/connector/management/v2": "context/management-context-v2.jsonld",
    "https://w3id.org/dspace/2025/1/odrl-profile.jsonld": "context/dspace-v2025-1-odrl.jsonld",
    "http://www.w3.org/ns/odrl.jsonld": "context/odrl.jsonld",
}
"""Context URL -> fixture file, the same URL-to-file table as EDC 0.18.0's ``CachedDocumentRegistry``."""

Location = tuple[str | int, ...]


class UnknownDocumentError(LookupError):
    """A body referred to a JSON-LD document that is not among the fixtures."""


@cache
def _context(url: str) -> Any:
    return json.loads((FIXTURES / CONTEXT_FILES[url]).read_text())


def fixture_document_loader(url: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """PyLD document loader serving only :data:`CONTEXT_FILES`.

    :raises UnknownDocumentError: ``url`` is not a fixture (PyLD wraps it in a ``JsonLdError``).
    """
    if url not in CONTEXT_FILES:
        raise UnknownDocumentError(f"no fixture for JSON-LD document {url}: refusing to load it")
    return {"contentType": "application/ld+json", "contextUrl": None, "documentUrl": url, "document": _context(url)}


def expand(body: Any) -> list[dict[str, Any]]:
    """The expanded form of ``body`` (a JSON-LD document), loading contexts from the fixtures only."""
    # no base IRI, as EDC's Titanium expansion has none (PyLD's default would resolve relative IRIs against
    # http://example.org/base/)
    options = {"documentLoader": fixture_document_loader, "base": None}
    expanded: list[dict[str, Any]] = jsonld.expand(copy.deepcopy(body), options)
    return expanded


def _iri_paths(value: Any, path: tuple[str, ...] = ()) -> Counter[tuple[str, ...]]:
    """Every property IRI path of an expanded document, counted; ``@type`` IRIs and ``@id`` count as steps too."""
    paths: Counter[tuple[str, ...]] = Counter()
    if isinstance(value, list):
        for item in value:
            paths += _iri_paths(item, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "@type" and "@value" not in value:
                for iri in item if isinstance(item, list) else [item]:
                    paths[(*path, "@type", iri)] += 1
            elif key == "@id":
                paths[(*path, "@id")] += 1
            elif key == "@list":
                paths += _iri_paths(item, path)
            elif not key.startswith("@"):
                paths[(*path, key)] += 1
                paths += _iri_paths(item, (*path, key))
    return paths


def _term_locations(value: Any, location: Location = ()) -> list[Location]:
    locations: list[Location] = []
    if isinstance(value, list):
        for index, item in enumerate(value):
            locations += _term_locations(item, (*location, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("@"):
                continue  # keywords (and everything inside @context) are not terms
            locations.append((*location, key))
            locations += _term_locations(item, (*location, key))
    return locations


def _without(body: Any, location: Location) -> Any:
    reduced = copy.deepcopy(body)
    parent = reduced
    for step in location[:-1]:
        parent = parent[step]
    del parent[location[-1]]
    return reduced


def dotted(location: Location) -> str:
    """``("callbackAddresses", 0, "uri")`` -> ``"callbackAddresses[0].uri"``."""
    text = ""
    for step in location:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def term_iris(body: Any) -> dict[str, str | None]:
    """The IRI each key of the compacted ``body`` expands to, by dotted location; ``None`` when expansion drops
    it. A key that aliases a keyword (``"type": "@type"``) maps to that keyword."""
    full = _iri_paths(expand(body))
    result: dict[str, str | None] = {}
    for location in _term_locations(body):
        lost = full - _iri_paths(expand(_without(body, location)))
        result[dotted(location)] = min(lost, key=len)[-1] if lost else None
    return result


def intended_iri(location: Location, namespaces: Mapping[str, str]) -> str:
    """The IRI the key at ``location`` is meant to have: the namespace of its nearest enclosing key named in
    ``namespaces`` (``""`` for the default) followed by the key's local name (``edc:authKey`` -> ``authKey``);
    a key that is a full IRI is meant as itself."""
    key = str(location[-1])
    if "://" in key:
        return key
    keys = [str(step) for step in location[:-1] if not isinstance(step, int)]
    namespace = namespaces[""]
    for depth in range(1, len(keys) + 1):
        namespace = namespaces.get(".".join(keys[:depth]), namespace)
    return namespace + key.split(":", 1)[-1]


def misfits(body: Any, namespaces: Mapping[str, str] | None = None) -> dict[str, str]:
    """The keys of ``body`` that do not survive expansion with their intended IRI (see :func:`intended_iri`),
    by dotted location: ``"dropped"``, or ``"expands to <IRI>, not <intended IRI>"``. Empty when every key
    keeps its meaning.

    :param namespaces: dotted key path (no indices) -> namespace of the keys inside it; ``""`` is the default
        namespace (EDC's when not given).
    """
    namespaces = {"": EDC, **(namespaces or {})}
    problems: dict[str, str] = {}
    locations = {dotted(location): location for location in _term_locations(body)}
    for where, iri in term_iris(body).items():
        intended = intended_iri(locations[where], namespaces)
        if iri is None:
            problems[where] = "dropped"
        elif iri != intended:
            problems[where] = f"expands to {iri}, not {intended}"
    return problems


def node_types(body: Any) -> dict[str, list[str]]:
    """The expanded ``@type`` IRIs of each node of ``body`` that has a compacted ``@type``, by dotted location
    (``""`` for the root)."""
    located = term_iris(body)
    result: dict[str, list[str]] = {}

    def walk(compacted: Any, node: Any, location: Location) -> None:
        if isinstance(compacted, list):
            nodes = node if isinstance(node, list) else [node]
            for index, item in enumerate(compacted[: len(nodes)]):
                walk(item, nodes[index], (*location, index))
        elif isinstance(compacted, dict):
            node = node[0] if isinstance(node, list) and len(node) == 1 else node
            if not isinstance(node, dict):
                return
            if "@type" in compacted:
                result[dotted(location)] = list(node.get("@type", []))
            for key, item in compacted.items():
                iri = None if key.startswith("@") else located.get(dotted((*location, key)))
                if iri is not None and iri in node:
                    walk(item, node[iri], (*location, key))

    walk(body, expand(body)[0], ())
    return result


def values(body: Any, *iris: str) -> list[Any]:
    """The leaf values (``@value`` or ``@id``) at the IRI path ``iris`` of the expanded ``body``."""
    nodes: list[Any] = expand(body)
    for iri in iris:
        nodes = [item for node in nodes if isinstance(node, dict) for item in node.get(iri, [])]
    return [node.get("@value", node.get("@id")) if isinstance(node, dict) else node for node in nodes]


@cache
def _schema_registry() -> referencing.Registry[Any]:
    resources = []
    for path in sorted((FIXTURES / "schema").glob("*.json")):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], referencing.Resource.from_contents(schema)))

    def refuse(uri: str) -> referencing.Resource[Any]:
        raise UnknownDocumentError(f"no fixture for JSON schema {uri}: refusing to load it")

    registry: referencing.Registry[Any] = referencing.Registry(retrieve=refuse)
    return registry.with_resources(resources)


V4_SCHEMA = "https://w3id.org/edc/connector/management/schema/v4/"


def schema_errors(body: Any, schema: str) -> list[str]:
    """What EDC 0.18.0's ``management-api-schema-validator`` would reject in a v4 request ``body``: the
    messages of validating it against ``<V4_SCHEMA><schema>`` (e.g. ``transfer-request-schema.json``), with
    JSON path; empty when valid."""
    registry = _schema_registry()
    root = registry.contents(V4_SCHEMA + schema)
    validator = jsonschema.Draft201909Validator(root, registry=registry)
    return [f"{error.json_path}: {error.message}" for error in validator.iter_errors(body)]


def flatten_errors(errors: Sequence[str]) -> str:
    """The messages one per line, for assertion output."""
    return "\n".join(errors)
