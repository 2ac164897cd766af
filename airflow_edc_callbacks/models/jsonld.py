"""Management API JSON-LD: the EDC and Tractus-X vocabularies, compacted reads (``jsonld_get``, ``as_list``)
and key expansion against a document's ``@context`` (EDC 0.15.1 answers, Tractus-X EDR shapes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EDC_NAMESPACE = "https://w3id.org/edc/v0.0.1/ns/"
"""The EDC JSON-LD vocabulary (``@vocab`` of Management API v3 requests)."""

EDC_CONTEXT: dict[str, Any] = {"@vocab": EDC_NAMESPACE}


MANAGEMENT_V2_CONTEXT = "https://w3id.org/edc/connector/management/v2"
"""The JSON-LD context of Management API v4 (``v4beta`` in EDC 0.14-0.16, ``v4`` from 0.17): its JSON
schemas require ``@context`` to be an array holding this IRI."""


def _strip_key(key: str) -> str:
    if key.startswith(EDC_NAMESPACE):
        return key[len(EDC_NAMESPACE) :]
    if key.startswith("edc:"):
        return key[4:]
    return key


def normalize_jsonld(value: Any) -> Any:
    """Normalise a compacted Management API JSON-LD document for reading.

    Keys in the EDC namespace lose their prefix (``edc:state`` and
    ``https://w3id.org/edc/v0.0.1/ns/state`` become ``state``), ``{"@value": x}`` becomes ``x``, and
    single-element arrays become their element (Titanium compacts with ``compactArrays=true``, so a list
    of one may come back either way). Read list fields with :func:`as_list`.
    """
    if isinstance(value, Mapping):
        if set(value) == {"@value"} or (set(value) <= {"@value", "@type", "@language"} and "@value" in value):
            return normalize_jsonld(value["@value"])
        return {_strip_key(str(k)): normalize_jsonld(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [normalize_jsonld(v) for v in value]
        return items[0] if len(items) == 1 else items
    return value


def as_list(value: Any) -> list[Any]:
    """Return ``value`` as a list: ``None`` -> ``[]``, ``x`` -> ``[x]``, a list unchanged.

    The one reader of every list field of connector JSON (``callbackAddresses``, ``events``, a catalog's
    ``dcat:dataset`` and ``odrl:hasPolicy``, query results, error details): EDC's JSON-LD compaction
    turns a one-element array into the element itself (eclipse-tractusx/tractus-x-umbrella#353).
    """
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def jsonld_get(document: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Read ``key`` from a Management API document, whatever form of the key the connector used."""
    for candidate in (key, f"edc:{key}", f"{EDC_NAMESPACE}{key}"):
        if candidate in document:
            return normalize_jsonld(document[candidate])
    return default


TRACTUSX_AUTH_NAMESPACE = "https://w3id.org/tractusx/auth/"
"""The Tractus-X vocabulary of EDR refresh data (``refreshToken``, ``refreshEndpoint``, ``expiresIn``,
``audience``; Tractus-X EDC's ``TxIatpConstants`` / refresh token grant profile)."""

_KNOWN_PREFIXES = {"edc": EDC_NAMESPACE, "tx-auth": TRACTUSX_AUTH_NAMESPACE}
"""Prefixes read even when a document's ``@context`` does not define them (connectors compact with them)."""


def context_terms(context: Any) -> tuple[dict[str, str], str | None]:
    """The term definitions and ``@vocab`` of an inline JSON-LD ``@context``.

    Offline by design: a context given by URL (a string) is skipped, never fetched; only inline objects
    count (an object, or an array of objects and URLs, later entries overriding earlier ones). A term
    defined as a string or as ``{"@id": ...}`` maps to that IRI (possibly compact, see :func:`expand_key`);
    ``"@vocab": null`` clears the vocabulary.

    :param context: the document's ``@context`` value, or ``None``.
    :returns: ``(terms, vocab)``: term -> IRI as written, and the ``@vocab`` IRI or ``None``.
    """
    terms: dict[str, str] = {}
    vocab: str | None = None
    for entry in as_list(context):
        if not isinstance(entry, Mapping):
            continue  # a remote context: never fetched at run time
        for term, definition in entry.items():
            if term == "@vocab":
                vocab = str(definition) if definition else None
            elif not str(term).startswith("@"):
                iri = definition.get("@id") if isinstance(definition, Mapping) else definition
                if isinstance(iri, str):
                    terms[str(term)] = iri
    return terms, vocab


def expand_key(key: str, terms: Mapping[str, str], vocab: str | None, default_vocab: str | None = None) -> str:
    """The IRI a JSON-LD key stands for, as JSON-LD expansion finds it for a key (no network, no scoped contexts).

    Keywords (``@type``) stay; a defined term maps to its IRI; ``prefix:suffix`` with a defined prefix
    (or ``edc:`` / ``tx-auth:`` when the context does not define them) becomes the prefix's IRI plus the
    suffix; any other key with a colon is taken as an absolute IRI; a bare key gets ``vocab`` (else
    ``default_vocab``, else stays as it is).
    """
    if key.startswith("@"):
        return key
    if key in terms:
        iri = terms[key]
        return iri if iri == key else expand_key(iri, {k: v for k, v in terms.items() if k != key}, None)
    prefix, colon, suffix = key.partition(":")
    if colon and not suffix.startswith("//"):
        if prefix in terms:
            return terms[prefix] + suffix
        if prefix in _KNOWN_PREFIXES:
            return _KNOWN_PREFIXES[prefix] + suffix
    if colon:
        return key
    base = vocab or default_vocab
    return base + key if base else key


def expand_keys(document: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The top-level keys of ``document`` expanded to IRIs with its own ``@context`` (or ``context`` when
    it has none); bare keys without an ``@vocab`` are read in the EDC namespace. Values are normalised
    (:func:`normalize_jsonld`); the ``@context`` itself is left out."""
    terms, vocab = context_terms(document.get("@context", context))
    return {
        expand_key(str(k), terms, vocab, EDC_NAMESPACE): normalize_jsonld(v)
        for k, v in document.items()
        if k != "@context"
    }
