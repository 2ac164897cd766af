"""``EdcTransferSensor``: wait for a transfer process that something else started, on static callbacks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseSensorOperator

from airflow_edc_callbacks._compat import AirflowSensorTimeout
from airflow_edc_callbacks.config import DEFAULT_CONN_ID, default_deferrable
from airflow_edc_callbacks.exceptions import EdcCallbacksError, EdcTransferTimeout
from airflow_edc_callbacks.lineage.mixin import EdcLineageMixin
from airflow_edc_callbacks.models import TRANSFER_EVENT_PREFIX, WaitFor
from airflow_edc_callbacks.triggers.callback import EdcCallbackTrigger
from airflow_edc_callbacks.triggers.deferral import arm, complete_transfer, defer_or_wait, safety_net
from airflow_edc_callbacks.triggers.events import EdcCallbackEventTrigger
from airflow_edc_callbacks.triggers.results import WatchedEvent, parse_event

if TYPE_CHECKING:
    from airflow.sdk import Context


class EdcTransferSensorTimeout(EdcTransferTimeout, AirflowSensorTimeout):
    """:class:`~airflow_edc_callbacks.exceptions.EdcTransferTimeout` of :class:`EdcTransferSensor`: also an
    ``AirflowSensorTimeout``, so like any sensor's time-out it fails the task without retries. The sensor
    never terminates the transfer (it did not start it). Defined here, not in ``exceptions``, so that
    module stays free of Airflow imports (the CLI's output would get Airflow's logging set-up)."""


class EdcTransferSensor(EdcLineageMixin, BaseSensorOperator):
    """Wait until a transfer process started elsewhere (another tool, a plain Management API call) ends.

    The connector must deliver its events to the receiver through a static callback (see
    :class:`~airflow_edc_callbacks.hooks.static_callback.EdcStaticCallbackHook`). Give either the
    transfer process id, or an asset id and/or contract id: then the sensor follows the first transfer
    process of that asset/contract whose events arrive after the sensor started. Same terminal rules,
    timeout and state-check fallback as :class:`~airflow_edc_callbacks.operators.transfer.EdcTransferOperator`.

    :param transfer_process_id: the transfer process to wait for (templated).
    :param asset_id: wait for the first new transfer of this asset (templated).
    :param contract_id: ... of this contract agreement (templated).
    :param process_type: ``CONSUMER`` (default) or ``PROVIDER``: which side's process to follow.
    :param wait_for: ``completed`` (default) or ``started`` (templated).
    :param edc_conn_id: the ``edc`` connection of the connector the process lives on, for the state
        check (templated).
    :param fallback_check_interval: seconds without a callback before asking the connector (then with a back-off).
    :param timeout: seconds (the sensor's usual ``timeout``) until the task fails: once the transfer is
        known, with :class:`EdcTransferSensorTimeout` naming it, its last
        state and the wait (an ``AirflowSensorTimeout``: no retries). The sensor never terminates the
        transfer, not at the time-out nor when the task is killed: it did not start it.
    :param deferrable: defer to the triggerer while waiting (``True``) or wait in the worker on the same
        event store (``False``); default Airflow's ``[operators] default_deferrable`` (``False`` unless
        set).
    :param counter_party_address: the provider's DSP address, for lineage only (templated; optional): it
        names the input dataset's namespace (without it the OpenLineage events have no input).

    Lineage: OpenLineage facets (input the provider's asset, run facet ``edcTransfer``) and, on success, the
    transfer's ``extra`` on the asset event of each asset in ``outlets``, as the operator's.

    Returns the same XCom result as the operator.

    :raises EdcTransferFailed: the transfer was terminated.
    :raises EdcTransferSensorTimeout: the transfer did not end within ``timeout``.
    """

    template_fields: Sequence[str] = (
        "transfer_process_id",
        "asset_id",
        "contract_id",
        "wait_for",
        "edc_conn_id",
        "counter_party_address",
    )
    ui_color = "#c6e2ff"

    def __init__(
        self,
        *,
        transfer_process_id: str | None = None,
        asset_id: str | None = None,
        contract_id: str | None = None,
        process_type: str = "CONSUMER",
        wait_for: str = WaitFor.COMPLETED.value,
        edc_conn_id: str = DEFAULT_CONN_ID,
        fallback_check_interval: float | None = None,
        deferrable: bool = default_deferrable(),
        counter_party_address: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", 24 * 3600)
        super().__init__(**kwargs)
        self.transfer_process_id = transfer_process_id
        self.asset_id = asset_id
        self.contract_id = contract_id
        self.process_type = process_type
        self.wait_for = wait_for
        self.edc_conn_id = edc_conn_id
        self.fallback_check_interval = fallback_check_interval
        self.deferrable = deferrable
        self.counter_party_address = counter_party_address

    def _callback_trigger(self, transfer_process_id: str) -> EdcCallbackTrigger:
        wait_for = WaitFor(self.wait_for)
        if wait_for is WaitFor.AUTO:
            raise ValueError("EdcTransferSensor needs wait_for 'started' or 'completed'")
        return EdcCallbackTrigger(
            correlation_id=None,
            transfer_process_id=transfer_process_id,
            wait_for=wait_for.value,
            conn_id=self.edc_conn_id,
            fallback_check_interval=self.fallback_check_interval,
        )

    def execute(self, context: Context) -> Any:
        if not (self.transfer_process_id or self.asset_id or self.contract_id):
            raise ValueError("EdcTransferSensor needs transfer_process_id, asset_id or contract_id")
        if self.transfer_process_id:
            return self._wait(context, self._callback_trigger(self.transfer_process_id))
        finder = EdcCallbackEventTrigger(
            event_types=[TRANSFER_EVENT_PREFIX],
            process_type=self.process_type,
            asset_id=self.asset_id,
            contract_id=self.contract_id,
            since=int(time.time() * 1000),
            one_shot=True,
        )
        self.log.info(
            "Waiting for the first %s transfer process of asset %s / contract %s",
            self.process_type,
            self.asset_id or "any",
            self.contract_id or "any",
        )
        started_at = time.time()
        return defer_or_wait(
            self,
            finder,
            context,
            deferrable=self.deferrable,
            resume=self.transfer_found,
            timeout=timedelta(seconds=self.timeout),
            on_timeout=self._timed_out,
            kwargs={"started_at": started_at},
        )

    def transfer_found(
        self, context: Context, event: dict[str, Any] | None = None, started_at: float | None = None
    ) -> Any:
        """Resume after the first matching transfer was seen: now wait for that transfer's end, within
        what is left of ``timeout`` (counted from ``started_at``, epoch seconds).

        :raises TriggerEventError: no event, or one without a process id.
        """
        found = parse_event(WatchedEvent, event, self.task_id)
        self.log.info("Following transfer process %s (first seen as %s)", found.process_id, found.event_type)
        remaining = self.timeout - (time.time() - started_at) if started_at else self.timeout
        return self._wait(context, self._callback_trigger(found.process_id), max(remaining, 1.0))

    def _wait(self, context: Context, trigger: EdcCallbackTrigger, timeout: float | None = None) -> Any:
        timeout = self.timeout if timeout is None else timeout
        arm(trigger, timedelta(seconds=timeout), terminate_on_kill=False)
        return defer_or_wait(
            self,
            trigger,
            context,
            deferrable=self.deferrable,
            resume=self.execute_complete,
            timeout=safety_net(timedelta(seconds=timeout)),
            on_timeout=self._timed_out,
        )

    def _timed_out(self, err: TimeoutError) -> NoReturn:
        """In the worker, no event within the bound: the sensor's usual time-out."""
        raise AirflowSensorTimeout(f"{self.task_id}: {err}") from None

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the transfer ended; same result and errors as the operator (a time-out raises
        :class:`EdcTransferSensorTimeout` and terminates nothing)."""
        self.lineage_note(event)
        try:
            result = complete_transfer(self, event, self.edc_conn_id, timeout_error=EdcTransferSensorTimeout)
        except EdcCallbacksError as err:
            self.lineage_failed(err)
            raise
        self.emit_transfer_assets(context, result)
        return result

    def poke(self, context: Context) -> bool:
        """Not used: the sensor waits on callbacks (deferred, or in the worker), never by poking."""
        raise NotImplementedError("EdcTransferSensor waits on callbacks; it does not poke")
