"""``EdcTransferOperator``: start an EDC transfer process and resume on the connector's callback.

:class:`TransferStep` is the step itself (start a transfer, or take over an earlier try's, and wait for
it); :class:`~airflow_edc_callbacks.operators.pipeline.EdcNegotiatedTransferOperator` composes it after
a negotiation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_edc_callbacks.config import (
    DEFAULT_CONN_ID,
    default_deferrable,
    get_callback_base_url,
    get_defer_after,
    non_negative_seconds,
)
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.ledger import StoreLedger
from airflow_edc_callbacks.models import WaitFor, resolve_wait_for
from airflow_edc_callbacks.operators.callback_address import task_callback_url
from airflow_edc_callbacks.operators.earlier_try import CORRELATION_PROPERTY, find_earlier_transfer, mark_taken
from airflow_edc_callbacks.operators.lifecycle import (
    terminate_at_timeout,
    terminate_when_killed,
    waiting_on,
)
from airflow_edc_callbacks.tokens import correlation_id_for
from airflow_edc_callbacks.triggers.callback import EdcCallbackTrigger
from airflow_edc_callbacks.triggers.deferral import arm, complete_transfer, defer_or_wait, safety_net
from airflow_edc_callbacks.triggers.kinds import KindName
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
    reattach: bool = True
    defer_after: float = 0.0

    def __post_init__(self) -> None:
        positive("timeout", self.timeout)

    @classmethod
    def of(cls, task: Any, *, asset_id: str | None) -> TransferStep:
        """The step from an operator's rendered fields (``counter_party_address``, ``transfer_type``,
        ``wait_for``, ``edc_conn_id``, ``timeout``, ``deferrable``, ``terminate_on_kill``,
        ``data_destination``, ``protocol``, ``private_properties``, ``fallback_check_interval``,
        ``reattach``, ``defer_after``) and the ``assetId`` its request carries.

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
            reattach=task.reattach,
            defer_after=defer_after_seconds(task.defer_after),
        )

    def find_unfinished(self, task: BaseOperator, context: Context, hook: EdcManagementHook) -> str | None:
        """The transfer process an earlier try of this task instance started that this try waits for.

        ``None`` on the first try or with ``reattach=False``. Otherwise the latest still running transfer,
        else the latest COMPLETED one whose result no try took (see
        :func:`~airflow_edc_callbacks.operators.earlier_try.find_earlier_transfer`).
        """
        ti = context["ti"]
        if not self.reattach or (getattr(ti, "try_number", 1) or 1) <= 1:
            return None
        return find_earlier_transfer(task.log, hook, correlation_of(context), self.wait_for)

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


class EdcTransferOperator(BaseOperator):
    """Start a transfer process on the consumer connector and wait for it through callbacks.

    The request carries a dynamic callback address (``callbackAddresses``, events ``transfer.process``)
    whose token identifies this task instance. The task defers to
    :class:`~airflow_edc_callbacks.triggers.callback.EdcCallbackTrigger` and resumes on the terminal
    event: ``TransferProcessCompleted`` (PUSH), ``TransferProcessStarted`` (PULL, the EDR is ready) or
    ``TransferProcessTerminated`` (the task fails with the connector's reason and the transfer id).
    Deferrable, it first waits ``defer_after`` seconds in the worker on the same trigger: a transfer
    that ends within them completes the task without a deferral. With ``deferrable=False`` the worker
    runs the same trigger itself until the end. ``TransferProcessSuspended`` and
    ``TransferProcessResumed`` are logged and kept in the timeline; they never end the wait.

    A retry of the same task instance (try 2 and later) first asks the connector, in one query, for a
    transfer process an earlier try started that is not finished, or (PUSH) that COMPLETED without any
    try taking its result, and waits for it instead of starting a second one.

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
    :param defer_after: deferrable only: seconds to wait in the worker, once the transfer started, before
        deferring; a transfer that ends within them completes the task without a deferral, with the same
        result and errors (see docs/guides/worker-first-wait.md). ``0`` defers at once; default
        ``[edc_callbacks] defer_after`` (5).

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
        defer_after: float | None = None,
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
        self.defer_after = None if defer_after is None else non_negative_seconds("defer_after", defer_after)
        self._waiting_on: tuple[KindName, str] | None = None  # what an in-worker wait waits for (on_kill)

    def _hook(self) -> EdcManagementHook:
        return EdcManagementHook(self.edc_conn_id, ledger=StoreLedger())

    def _request_asset_id(self) -> str | None:
        """The ``assetId`` the transfer request carries (EDC deprecates it; kept for older connectors)."""
        return self.asset_id

    def _transfer_step(self) -> TransferStep:
        """The step from the rendered fields.

        :raises ValueError: ``wait_for`` or ``timeout`` is not valid.
        """
        return TransferStep.of(self, asset_id=self._request_asset_id())

    def execute(self, context: Context) -> Any:
        """Start the transfer (or find an earlier try's) and wait for it: defer, or wait in the worker.

        :raises TaskDeferred: when deferrable (Airflow's way to defer).
        """
        step = self._transfer_step()
        hook = self._hook()
        transfer_id = step.find_unfinished(self, context, hook) or step.start(self, context, hook, self.contract_id)
        return step.wait(self, context, hook, transfer_id, self.execute_complete)

    def find_unfinished_transfer(self, context: Context, hook: EdcManagementHook) -> str | None:
        """The transfer process an earlier try of this task instance started that this try waits for
        (see :meth:`TransferStep.find_unfinished`); ``None`` on the first try or with ``reattach=False``."""
        return self._transfer_step().find_unfinished(self, context, hook)

    def on_kill(self) -> None:
        """The task was killed while it waited in the worker (non-deferrable): terminate the transfer it
        waits for when ``terminate_on_kill`` is set (best effort, logged, never raised)."""
        terminate_when_killed(self, self._hook(), self._waiting_on, self.terminate_on_kill)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: return the result, or raise with the connector's reason.

        :raises TriggerEventError: no event, or a malformed one.
        :raises EdcTransferFailed: the transfer was terminated.
        :raises EdcTransferTimeout: the trigger's time-out passed (the transfer is terminated first when
            ``terminate_on_timeout``).
        """
        return resume_transfer(
            self, event, self.edc_conn_id, self._hook, terminate_on_timeout=self.terminate_on_timeout
        )
