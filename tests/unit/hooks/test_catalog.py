"""Finding an offer in catalogs as EDC returns them (captured from the demo connectors, and the older
`dcat:`/`odrl:` form with single objects instead of arrays)."""

from __future__ import annotations

import json

import pytest

from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from tests.helpers import EDC_FIXTURES

FIXTURES = EDC_FIXTURES


def catalog(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_offer_from_a_dsp_2025_catalog() -> None:
    offer = EdcManagementHook.find_offer(catalog("mgmt_catalog_filtered.json"), "demo-asset")
    assert offer == {
        "@id": "YWxsLWFzc2V0cw==:ZGVtby1hc3NldA==:YmM1YjJmZGQtODMwZC00MzQ0LWFmNzQtMjg1OTU3YjIzYWQ1",
        "@type": "Offer",
    }


def test_offer_among_several_datasets() -> None:
    full = catalog("mgmt_catalog_all.json")
    ids = {d["@id"] for d in full["dataset"]}
    assert {"demo-asset", "broken-asset"} <= ids
    offer = EdcManagementHook.find_offer(full, "broken-asset")
    assert offer["@id"].startswith("YWxsLWFzc2V0cw==:")


def test_offer_from_an_older_prefixed_catalog_with_single_objects() -> None:
    dataset = catalog("mgmt_catalog_filtered.json")["dataset"][0]
    older = {
        "@type": "dcat:Catalog",
        "dcat:dataset": {"@id": "demo-asset", "odrl:hasPolicy": {**dataset["hasPolicy"][0], "@context": "x"}},
    }
    assert EdcManagementHook.find_offer(older, "demo-asset")["@id"] == dataset["hasPolicy"][0]["@id"]


def test_missing_asset_or_offer_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"Asset 'nope' is not in the catalog of provider: \['demo-asset'\]"):
        EdcManagementHook.find_offer(catalog("mgmt_catalog_filtered.json"), "nope")
    with pytest.raises(ValueError, match="has no offer"):
        EdcManagementHook.find_offer({"participantId": "p", "dataset": {"@id": "a"}}, "a")
