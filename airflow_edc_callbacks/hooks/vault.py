"""Secrets API method of the EDC Management API (EDC module ``secrets-api``)."""

from __future__ import annotations

from airflow_edc_callbacks.exceptions import EdcApiError
from airflow_edc_callbacks.hooks import jsonld
from airflow_edc_callbacks.hooks.base import EdcHookBase


class SecretMethods(EdcHookBase):
    """Store secrets in the connector's vault."""

    def put_secret(self, alias: str, value: str) -> bool:
        """Store a secret in the connector's vault through the Secrets API (``POST /v3/secrets``).

        The Secrets API is the EDC module ``secrets-api``, which not every connector deploys (it is not
        part of ``controlplane-base-bom``). An existing alias is updated (``PUT``).

        :returns: ``False`` when the connector has no Secrets API (404 on the route), else ``True``.
        :raises EdcApiError: the connector refused the secret.
        """
        body = jsonld.secret(alias, value)
        try:
            self._send("POST", "/v3/secrets", body)
        except EdcApiError as err:
            if err.status_code == 409:
                self._send("PUT", "/v3/secrets", body)
                return True
            if err.status_code in (404, 405):
                return False
            raise
        return True
