"""The transfer step: start an EDC transfer process (or take over an earlier try's) and wait for it.

:class:`TransferStep` is what :class:`~airflow_edc_callbacks.operators.transfer.EdcTransferOperator` runs,
and what :class:`~airflow_edc_callbacks.operators.pipeline.EdcNegotiatedTransferOperator` runs after its
negotiation; :func:`resume_transfer` is their resume.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_edc_callbacks.config import (
    get_callback_base_url,
    get_defer_after,
    non_negative_seconds,
)
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.models import WaitFor, resolve_wait_for
from airflow_edc_callbacks.operators.callback_address import task_callback_url
from airflow_edc_callbacks.operators.earlier_try import (
    CORRELATION_PROPERTY,
    find_earlier_transfer,
    mark_taken,
    was_cleared,
)
from airflow_edc_callbacks.operators.lifecycle import (
    terminate_at_timeout,
    waiting_on,
)
from airflow_edc_callbacks.tokens import correlation_id_for
from airflow_edc_callbacks.triggers.callback import EdcCallbackTrigger
from airflow_edc_callbacks.triggers.deferral import arm, complete_transfer, defer_or_wait, safety_net
from airflow_edc_callbacks.triggers.results import TransferResult

if TYPE_CHECKING:
    from airflow.sdk import Context


def correlation_of(context: Context) -> str:
    """The correlation id of the running task instance (its callback token and the process binding)."""
    ti = context["ti"]
    return correlation_id_for(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)


def positive(name: str, value: timedelta) -> timedelta:
    """A time-out that must be positive.

    :raises ValueError: zero or negative.
    """
    if value.total_seconds() <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def defer_after_seconds(value: float | None) -> float:
    """An operator's ``defer_after``: seconds >= 0, or ``None`` for ``[edc_callbacks] defer_after``
    (read when the task runs, never when the DAG is parsed).

    :raises ValueError: negative, or not a number.
    """
    return get_defer_after() if value is None else non_negative_seconds("defer_after", value)


@dataclass(frozen=True)
class TransferStep:
    """Start a transfer process on the consumer connector (or take over an earlier try's) and wait for
    it through callbacks: the step of :class:`EdcTransferOperator`, and the second step of the one-step
    operator. Built from the task's rendered fields (see :class:`EdcTransferOperator` for each).

    :raises ValueError: ``timeout`` is not positive.
    """

    counter_party_address: str
    transfer_type: str
    wait_for: WaitFor
    edc_conn_id: str
    timeout: timedelta
    deferrable: bool
    terminate_on_kill: bool
    data_destination: Mapping[str, Any] | None = None
    protocol: str | None = None
    asset_id: str | None = None
    private_properties: Mapping[str, Any] | None = None
    fallback_check_interval: float | None = None
    stall_timeout: float | None = None
    reattach: bool = True
    defer_after: float = 0.0

    def __post_init__(self) -> None:
        positive("timeout", self.timeout)

    @classmethod
    def of(cls, task: Any, *, asset_id: str | None) -> TransferStep:
        """The step from an operator's rendered fields (``counter_party_address``, ``transfer_type``,
        ``wait_for``, ``edc_conn_id``, ``timeout``, ``deferrable``, ``terminate_on_kill``,
        ``data_destination``, ``protocol``, ``private_properties``, ``fallback_check_interval``,
        ``stall_timeout``, ``reattach``, ``defer_after``) and the ``assetId`` its request carries.

        :raises ValueError: ``wait_for``, ``timeout`` or ``defer_after`` is not valid.
        """
        return cls(
            counter_party_address=task.counter_party_address,
            transfer_type=task.transfer_type,
            wait_for=resolve_wait_for(task.wait_for, task.transfer_type),
            edc_conn_id=task.edc_conn_id,
            timeout=task.timeout,
            deferrable=task.deferrable,
            terminate_on_kill=task.terminate_on_kill,
            data_destination=task.data_destination,
            protocol=task.protocol,
            asset_id=asset_id,
            private_properties=task.private_properties,
            fallback_check_interval=task.fallback_check_interval,
            stall_timeout=task.stall_timeout,
            reattach=task.reattach,
            defer_after=defer_after_seconds(task.defer_after),
        )

    def find_unfinished(self, task: BaseOperator, context: Context, hook: EdcManagementHook) -> str | None:
        """The transfer process an earlier try of this task instance started that this try waits for.

        ``None`` on the first try or with ``reattach=False``. Otherwise the latest still running transfer,
        else the latest COMPLETED one whose result no try took, or on a retry no try Airflow let succeed (see
        :func:`~airflow_edc_callbacks.operators.earlier_try.find_earlier_transfer`).
        """
        ti = context["ti"]
        if not self.reattach or (getattr(ti, "try_number", 1) or 1) <= 1:
            return None
        cleared = was_cleared(getattr(ti, "max_tries", None), task.retries or 0)
        return find_earlier_transfer(task.log, hook, correlation_of(context), self.wait_for, cleared=cleared)

    def start(self, task: BaseOperator, context: Context, hook: EdcManagementHook, contract_id: str) -> str:
        """Start the transfer under ``contract_id`` with a callback address for this task instance.

        :returns: the transfer process id.
        :raises EdcApiError: the connector refused the request (its validation messages included).
        """
        correlation_id = correlation_of(context)
        callback_base = get_callback_base_url()
        request = hook.build_transfer_request(
            counter_party_address=self.counter_party_address,
            contract_id=contract_id,
            transfer_type=self.transfer_type,
            data_destination=self.data_destination,
            protocol=self.protocol,
            asset_id=self.asset_id,
            private_properties={**(self.private_properties or {}), CORRELATION_PROPERTY: correlation_id},
            callback_addresses=[hook.callback_address(task_callback_url(task, correlation_id))],
        )
        transfer_id = hook.start_transfer(request)
        task.log.info(
            "Started transfer process %s on %s (contract %s, %s); callbacks go to %s/callbacks/%s.<signature>",
            transfer_id,
            hook.settings.base_url,
            contract_id,
            self.transfer_type,
            callback_base,
            correlation_id,
        )
        return transfer_id

    def wait(
        self,
        task: BaseOperator,
        context: Context,
        hook: EdcManagementHook,
        transfer_id: str,
        resume: Callable[..., Any],
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        """Wait for the transfer: defer to :class:`EdcCallbackTrigger` (after up to ``defer_after`` seconds
        of waiting in the worker) or run it in the worker, then ``resume(context, event, **kwargs)``.

        :raises TaskDeferred: when deferrable (Airflow's way to defer).
        """
        trigger = EdcCallbackTrigger(
            correlation_id=correlation_of(context),
            transfer_process_id=transfer_id,
            wait_for=self.wait_for.value,
            conn_id=self.edc_conn_id,
            fallback_check_interval=self.fallback_check_interval,
            stall_timeout=self.stall_timeout,
        )
        arm(trigger, self.timeout, terminate_on_kill=self.terminate_on_kill)
        trigger.hook = hook  # in the worker: the task's own hook
        net = safety_net(self.timeout)

        def safety_net_passed(_: TimeoutError) -> dict[str, Any]:  # the trigger's own time-out did not come
            return {"status": "timeout", "transfer_process_id": transfer_id, "waited_seconds": net.total_seconds()}

        return defer_or_wait(
            task,
            trigger,
            context,
            deferrable=self.deferrable,
            resume=resume,
            timeout=net,
            on_timeout=safety_net_passed,
            kwargs=kwargs,
            while_waiting=waiting_on(task, "transfer", transfer_id),
            defer_after=self.defer_after,
        )


def resume_transfer(
    task: BaseOperator,
    event: Mapping[str, Any] | None,
    edc_conn_id: str,
    hook: Callable[[], EdcManagementHook],
    *,
    terminate_on_timeout: bool,
) -> dict[str, Any]:
    """An operator's resume after its transfer's trigger fired: the XCom result, or the typed error (see
    :func:`~airflow_edc_callbacks.triggers.deferral.complete_transfer`); at a time-out the transfer is
    terminated first when ``terminate_on_timeout``. A result marks the transfer taken (see
    :func:`~airflow_edc_callbacks.operators.earlier_try.mark_taken`).

    :raises TriggerEventError: no event, or a malformed one.
    :raises EdcTransferFailed: the transfer was terminated.
    :raises EdcTransferTimeout: the trigger's time-out passed.
    """

    def terminate(result: TransferResult) -> str:
        return terminate_at_timeout(task, hook(), "transfer", result)

    result = complete_transfer(task, event, edc_conn_id, before_timeout=terminate if terminate_on_timeout else None)
    if result.get("correlation_id"):  # this task's own correlation id, as its trigger carried it
        mark_taken(task.log, str(result["transfer_process_id"]), str(result["correlation_id"]))
    return result
