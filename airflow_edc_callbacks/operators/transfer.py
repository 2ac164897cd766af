"""``EdcTransferOperator``: start an EDC transfer process and resume on the connector's callback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_edc_callbacks.config import DEFAULT_CONN_ID, default_deferrable, get_callback_base_url
from airflow_edc_callbacks.exceptions import EdcTransferFailed, EdcTransferTimeout
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.ledger import StoreLedger
from airflow_edc_callbacks.models import resolve_wait_for
from airflow_edc_callbacks.operators.earlier_try import CORRELATION_PROPERTY, find_earlier_transfer, mark_taken
from airflow_edc_callbacks.operators.lifecycle import ProcessKind, arm, raise_timeout, safety_net, terminate_when_killed
from airflow_edc_callbacks.operators.resume import connector_url, log_timeline, validate_event, worker_exit_seconds
from airflow_edc_callbacks.tokens import callback_url, correlation_id_for
from airflow_edc_callbacks.triggers.callback import EdcCallbackTrigger
from airflow_edc_callbacks.triggers.inline import first_event

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["CORRELATION_PROPERTY", "EdcTransferOperator", "complete_transfer"]


class EdcTransferOperator(BaseOperator):
    """Start a transfer process on the consumer connector and wait for it through callbacks.

    The request carries a dynamic callback address (``callbackAddresses``, events ``transfer.process``)
    whose token identifies this task instance. The task defers to
    :class:`~airflow_edc_callbacks.triggers.callback.EdcCallbackTrigger` and resumes on the terminal
    event: ``TransferProcessCompleted`` (PUSH), ``TransferProcessStarted`` (PULL, the EDR is ready) or
    ``TransferProcessTerminated`` (the task fails with the connector's reason and the transfer id).
    With ``deferrable=False`` the worker runs the same trigger itself. ``TransferProcessSuspended`` and
    ``TransferProcessResumed`` are logged and kept in the timeline; they never end the wait.

    A retry of the same task instance (try 2 and later) first asks the connector, in one query, for a
    transfer process an earlier try started that is not finished, and waits for it instead of starting
    a second one.

    :param contract_id: the contract agreement id (templated).
    :param counter_party_address: the provider's DSP address, e.g. ``http://provider:19194/protocol/2025-1``
        (templated).
    :param transfer_type: e.g. ``HttpData-PUSH`` or ``HttpData-PULL`` (templated); required, with no
        default, in every operator of this provider: it decides what the task waits for (PULL: started,
        PUSH: completed) and whether ``data_destination`` is needed, so a silent default would pick one
        of two different jobs for the user.
    :param data_destination: the ``DataAddress`` to push to, e.g. ``{"type": "HttpData", "baseUrl": ...}``;
        omit for PULL (templated).
    :param protocol: DSP protocol id; default the connection's (``dataspace-protocol-http:2025-1``) (templated).
    :param asset_id: optional asset id, sent as ``assetId`` on Management API v3 only (deprecated there,
        kept for older connectors; the v4 request has none) (templated).
    :param private_properties: extra ``privateProperties`` (templated); ``airflowCorrelationId`` is added.
    :param wait_for: ``auto`` (PULL -> ``started``, else ``completed``), ``started`` or ``completed`` (templated).
    :param edc_conn_id: the ``edc`` connection of the consumer connector (templated).
    :param timeout: how long to wait for the terminal state (seconds or timedelta; default 24 h). The
        trigger decides it: the task then fails with :class:`~airflow_edc_callbacks.exceptions.EdcTransferTimeout`
        naming the transfer, the connector, the last state and the wait (Airflow's own deferral time-out
        is set 60 s later, as a safety net).
    :param terminate_on_timeout: at the time-out, terminate the transfer on the connector before failing
        (default ``True``; a transfer already final is fine).
    :param terminate_on_kill: when a user marks the waiting task failed or success, or clears it,
        terminate the transfer (default ``True``; best effort). Deferred: on Airflow 3.3 and later (the
        trigger's ``on_kill``; never on a triggerer restart or when the trigger moved to another
        triggerer); Airflow 3.1 / 3.2 leave the transfer running. In the worker: the operator's ``on_kill``.
    :param fallback_check_interval: seconds without a callback before asking the connector for the state
        (then again after 2x, 4x... the interval, at most 1 h); default ``[edc_callbacks] fallback_check_interval``.
    :param deferrable: defer to the triggerer while waiting (``True``) or wait in the worker on the same
        event store (``False``); default Airflow's ``[operators] default_deferrable`` (``False`` unless
        set).
    :param reattach: on a retry, wait for an unfinished transfer of an earlier try, or take the result of
        an earlier try's COMPLETED transfer that no try took (default ``True``).

    Returns (XCom ``return_value``): ``transfer_process_id``, ``state``, ``asset_id``, ``contract_id``,
    ``event_type``, ``source`` (``callback`` or ``state_check``) and ``timeline`` (event types with
    epoch-millisecond times; never the EDR or its token).

    :raises EdcTransferFailed: the transfer ended ``TERMINATED``.
    :raises EdcTransferTimeout: the transfer did not reach the awaited state within ``timeout``.
    :raises EdcApiError: the connector refused the request (its validation messages included).
    """

    template_fields: Sequence[str] = (
        "contract_id",
        "counter_party_address",
        "transfer_type",
        "data_destination",
        "protocol",
        "asset_id",
        "private_properties",
        "wait_for",
        "edc_conn_id",
    )
    template_fields_renderers = {"data_destination": "json", "private_properties": "json"}
    ui_color = "#c6e2ff"

    def __init__(
        self,
        *,
        contract_id: str,
        counter_party_address: str,
        transfer_type: str,
        data_destination: Mapping[str, Any] | None = None,
        protocol: str | None = None,
        asset_id: str | None = None,
        private_properties: Mapping[str, Any] | None = None,
        wait_for: str = "auto",
        edc_conn_id: str = DEFAULT_CONN_ID,
        timeout: timedelta | float = timedelta(hours=24),
        fallback_check_interval: float | None = None,
        deferrable: bool = default_deferrable(),
        reattach: bool = True,
        terminate_on_timeout: bool = True,
        terminate_on_kill: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.contract_id = contract_id
        self.counter_party_address = counter_party_address
        self.transfer_type = transfer_type
        self.data_destination = data_destination
        self.protocol = protocol
        self.asset_id = asset_id
        self.private_properties = private_properties
        self.wait_for = wait_for
        self.edc_conn_id = edc_conn_id
        self.timeout = timeout if isinstance(timeout, timedelta) else timedelta(seconds=timeout)
        self.fallback_check_interval = fallback_check_interval
        self.deferrable = deferrable
        self.reattach = reattach
        self.terminate_on_timeout = terminate_on_timeout
        self.terminate_on_kill = terminate_on_kill
        self._waiting_on: tuple[ProcessKind, str] | None = None  # what an in-worker wait waits for (on_kill)

    def _hook(self) -> EdcManagementHook:
        return EdcManagementHook(self.edc_conn_id, ledger=StoreLedger())

    # -- start -----------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        return self.start_transfer_and_wait(context)

    def _request_asset_id(self) -> str | None:
        """The ``assetId`` the transfer request carries (EDC deprecates it; kept for older connectors)."""
        return self.asset_id

    def start_transfer_and_wait(
        self,
        context: Context,
        *,
        contract_id: str | None = None,
        transfer_process_id: str | None = None,
        find_earlier: bool = True,
        resume_kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        """Start the transfer (or find an earlier try's) and wait for it: defer, or wait in the worker.

        :param contract_id: the contract agreement id; default ``self.contract_id``.
        :param transfer_process_id: wait for this running transfer instead of starting one.
        :param find_earlier: on a retry, look for an earlier try's running transfer first (see ``reattach``).
        :param resume_kwargs: extra keyword arguments :meth:`execute_complete` gets on resume (JSON-able).
        :raises TaskDeferred: when deferrable (Airflow's way to defer).
        """
        contract_id = contract_id or self.contract_id
        wait_for = resolve_wait_for(self.wait_for, self.transfer_type)
        if self.timeout.total_seconds() <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")
        ti = context["ti"]
        correlation_id = correlation_id_for(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
        hook = self._hook()
        if transfer_process_id is None and find_earlier:
            transfer_process_id = self.find_unfinished_transfer(context, hook)
        transfer_id = transfer_process_id
        if transfer_id is None:
            callback_base = get_callback_base_url()
            request = hook.build_transfer_request(
                counter_party_address=self.counter_party_address,
                contract_id=contract_id,
                transfer_type=self.transfer_type,
                data_destination=self.data_destination,
                protocol=self.protocol,
                asset_id=self._request_asset_id(),
                private_properties={**(self.private_properties or {}), CORRELATION_PROPERTY: correlation_id},
                callback_addresses=[hook.callback_address(callback_url(correlation_id))],
            )
            transfer_id = hook.start_transfer(request)
            self.log.info(
                "Started transfer process %s on %s (contract %s, %s); callbacks go to %s/callbacks/%s.<signature>",
                transfer_id,
                hook.settings.base_url,
                contract_id,
                self.transfer_type,
                callback_base,
                correlation_id,
            )
        trigger = EdcCallbackTrigger(
            correlation_id=correlation_id,
            transfer_process_id=transfer_id,
            wait_for=wait_for.value,
            conn_id=self.edc_conn_id,
            fallback_check_interval=self.fallback_check_interval,
        )
        arm(trigger, self.timeout, terminate_on_kill=self.terminate_on_kill)
        if self.deferrable:
            trigger.not_before = time.time() + worker_exit_seconds()
            self.defer(
                trigger=trigger,
                method_name="execute_complete",
                kwargs=dict(resume_kwargs or {}),
                timeout=safety_net(self.timeout),
            )
        trigger.hook = hook
        self._waiting_on = ("transfer", transfer_id)
        try:
            event = asyncio.run(first_event(trigger, safety_net(self.timeout).total_seconds()))
        except TimeoutError:  # the trigger's own time-out did not come: the safety net
            event = {
                "status": "timeout",
                "transfer_process_id": transfer_id,
                "state": None,
                "waited_seconds": safety_net(self.timeout).total_seconds(),
            }
        finally:
            self._waiting_on = None
        return self.execute_complete(context, event, **(resume_kwargs or {}))

    def on_kill(self) -> None:
        """The task was killed while it waited in the worker (non-deferrable): terminate the transfer or
        negotiation it waits for when ``terminate_on_kill`` is set (best effort, logged, never raised)."""
        terminate_when_killed(self, self._hook(), self._waiting_on, self.terminate_on_kill)

    def find_unfinished_transfer(self, context: Context, hook: EdcManagementHook) -> str | None:
        """The transfer process an earlier try of this task instance started that this try waits for.

        ``None`` on the first try or with ``reattach=False``. Otherwise the latest still running transfer,
        else the latest COMPLETED one whose result no try took (see
        :func:`~airflow_edc_callbacks.operators.earlier_try.find_earlier_transfer`).
        """
        ti = context["ti"]
        if not self.reattach or (getattr(ti, "try_number", 1) or 1) <= 1:
            return None
        correlation_id = correlation_id_for(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
        return find_earlier_transfer(self.log, hook, correlation_id)

    # -- resume ----------------------------------------------------------------------------------
    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: return the result, or raise with the connector's reason.

        :raises TriggerEventError: the event is missing or has an unknown status.
        :raises EdcTransferFailed: the transfer was terminated.
        :raises EdcTransferTimeout: the trigger's time-out passed (the transfer is terminated first when
            ``terminate_on_timeout``).
        """
        result = complete_transfer(self, event, self.edc_conn_id, terminate_on_timeout=self.terminate_on_timeout)
        if result.get("correlation_id"):  # this task's own correlation id, as its trigger carried it
            mark_taken(self.log, result["transfer_process_id"], str(result["correlation_id"]))
        return result


def complete_transfer(
    task: BaseOperator,
    event: dict[str, Any] | None,
    edc_conn_id: str,
    *,
    terminate_on_timeout: bool = False,
    timeout_error: type[EdcTransferTimeout] = EdcTransferTimeout,
) -> dict[str, Any]:
    """Turn an :class:`~airflow_edc_callbacks.triggers.callback.EdcCallbackTrigger` event into the task's result.

    Logs the timeline; returns the XCom result on success.

    :param terminate_on_timeout: for a ``timeout`` event, terminate the transfer on the connector first.
    :param timeout_error: the error a ``timeout`` event raises.
    :raises TriggerEventError: the event is missing or has an unknown status.
    :raises EdcTransferFailed: the transfer was terminated (names the transfer, connector, state, reason).
    :raises EdcTransferTimeout: a ``timeout`` event (names the transfer, connector, last state, wait).
    """
    event = validate_event(task, event)
    transfer_id = str(event["transfer_process_id"])
    log_timeline(task, "Transfer process", transfer_id, event.get("timeline", []))
    if event["status"] == "timeout":
        raise_timeout(
            task,
            event,
            kind="transfer",
            hook=EdcManagementHook(edc_conn_id),
            connector=connector_url(edc_conn_id),
            terminate=terminate_on_timeout,
            error=timeout_error,
        )
    if event.get("source") == "state_check":
        task.log.warning(
            "Transfer process %s: the result came from a state check, not a callback "
            "(callbacks were lost or the receiver was unreachable)",
            transfer_id,
        )
    if event["status"] == "failed":
        raise EdcTransferFailed(transfer_id, connector_url(edc_conn_id), str(event.get("state")), event.get("reason"))
    task.log.info("Transfer process %s is %s", transfer_id, event.get("state"))
    return {
        "transfer_process_id": transfer_id,
        "state": event.get("state"),
        "asset_id": event.get("asset_id"),
        "contract_id": event.get("contract_id"),
        "event_type": event.get("event_type"),
        "source": event.get("source"),
        "correlation_id": event.get("correlation_id"),
        "timeline": event.get("timeline", []),
    }
