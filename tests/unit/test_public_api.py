"""The public surface, deliberately: what a DAG author, a deployment or custom code imports. Each public
package has one ``__all__``; a change to it is a change to the provider's API and shows up here. Modules
outside these (models, store, tokens, ledger, the receiver's routes, the triggers' engine...) are internal:
no ``__all__`` of their own, and their names may change between releases."""

from __future__ import annotations

import importlib
import inspect

import pytest

from tests.helpers import REPO

PUBLIC = {
    "airflow_edc_callbacks": {"__version__"},
    "airflow_edc_callbacks.operators": {
        "EdcContractNegotiationOperator",
        "EdcNegotiatedTransferOperator",
        "EdcPullDataOperator",
        "EdcTransferOperator",
    },
    "airflow_edc_callbacks.sensors": {"EdcTransferSensor", "EdcTransferSensorTimeout"},
    "airflow_edc_callbacks.triggers": {"EdcCallbackEventTrigger", "EdcCallbackTrigger", "EdcNegotiationTrigger"},
    "airflow_edc_callbacks.hooks": {"CallbackLedger", "EdcConnectionSettings", "EdcManagementHook"},
    "airflow_edc_callbacks.receiver": {"CallbackOutcome", "ReceiverSettings", "create_app", "get_settings"},
    "airflow_edc_callbacks.lineage": {"edc_asset", "edc_asset_uri", "transfer_extra"},
}
"""Public package -> its ``__all__``."""

INTERNAL_PACKAGES = {
    "airflow_edc_callbacks.cli",
    "airflow_edc_callbacks.models",
    "airflow_edc_callbacks.receiver.routes",
    "airflow_edc_callbacks.store",
}
"""Packages with an ``__all__`` that only says what their modules hold, for the package itself."""


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_each_public_package_exports_exactly_its_api(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) == PUBLIC[package]
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{package}.{name} has no docstring"


def test_every_exception_is_public_and_documented() -> None:
    exceptions = importlib.import_module("airflow_edc_callbacks.exceptions")
    defined = {
        name
        for name, value in vars(exceptions).items()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == exceptions.__name__
    }
    assert set(exceptions.__all__) == defined
    for name in defined:
        assert inspect.getdoc(getattr(exceptions, name)), name
        assert issubclass(getattr(exceptions, name), exceptions.EdcCallbacksError) or name == "EdcCallbacksError"


def test_no_other_module_declares_an_all() -> None:
    declared = {
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for path in (REPO / "airflow_edc_callbacks").rglob("*.py")
        if "migrations" not in path.parts and "__all__ = " in path.read_text()
    }
    assert declared == {
        *PUBLIC,
        *INTERNAL_PACKAGES,
        "airflow_edc_callbacks.exceptions",
        "airflow_edc_callbacks._compat",
    }
