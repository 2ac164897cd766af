"""``EdcCallbackTrigger``: waits in the triggerer for one transfer process's terminal callback.

A thin shell over the waiting engine (:mod:`airflow_edc_callbacks.triggers.engine`) with the transfer
process kind (:func:`~airflow_edc_callbacks.triggers.kinds.transfer_kind`). It reads the event store
first (callbacks can arrive before the task defers, or while the triggerer restarts), then waits on the
process-wide store listener. After ``fallback_check_interval`` seconds without any callback for the
transfer it asks the connector for the state (EDC never re-delivers a callback that failed); while the
transfer stays unfinished and silent it asks again after 2, 4, 8... times the interval (at most
:data:`~airflow_edc_callbacks.triggers.engine.MAX_CHECK_INTERVAL`), and a callback starts the sequence
anew. A result found that way says so (``source = "state_check"``). While callbacks flow the connector
is not asked.

Time-outs, stalls and kills (EDC facts: a consumer whose provider never answers stays ``REQUESTED`` for
good, sovity/edc-ce#688, eclipse-edc/Connector#5139; a negotiation can stay ``VERIFIED`` when the
provider's finalization fails, MinimumViableDataspace#200):

- at ``deadline`` the trigger yields a ``timeout`` event naming the last state (of the last callback,
  or of one state check then) and how long it waited; the task raises a typed error;
- a process that stays in one non-terminal state longer than ``[edc_callbacks] stall_warning_after``
  gets one warning naming the state and its usual cause; longer than ``stall_timeout``, one state check,
  then a ``timeout`` event whose ``reason`` says it stalled;
- :meth:`EdcCallbackTrigger.on_kill` (Airflow 3.3 calls it when a user marks the deferred task failed
  or success, or clears it) terminates the process when ``terminate_on_kill`` is set, unless the task
  instance is still deferred (the trigger moved to another triggerer, apache/airflow PR #73454).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_edc_callbacks.config import DEFAULT_CONN_ID, non_negative_seconds
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.models import WaitFor
from airflow_edc_callbacks.triggers.kinds import transfer_kind
from airflow_edc_callbacks.triggers.shell import kill_unless_fired, run_until_final


def stall_seconds(value: timedelta | float | None) -> float | None:
    """A trigger's or operator's ``stall_timeout``: seconds >= 0 (a timedelta counts as its seconds; 0:
    never), or ``None`` for ``[edc_callbacks] stall_timeout`` (read where the wait runs).

    :raises ValueError: negative, or not a number.
    """
    if isinstance(value, timedelta):
        value = value.total_seconds()
    return None if value is None else non_negative_seconds("stall_timeout", value)


def check_interval(seconds: float | None) -> float | None:
    """A trigger's ``fallback_check_interval``: positive seconds, or ``None`` (the config's).

    :raises ValueError: zero or negative.
    """
    if seconds is not None and seconds <= 0:
        raise ValueError(f"fallback_check_interval must be positive seconds, got {seconds}")
    return seconds


class EdcCallbackTrigger(BaseTrigger):
    """Fire when the transfer process reaches the state a task waits for, as told by its callbacks.

    Its kwargs hold no secret: the store URL and the connector's API key are resolved in the triggerer.

    :param correlation_id: the correlation id in the callback token the operator sent (the trigger binds
        the process to it); ``None`` for a transfer started elsewhere (a sensor), followed on static-route
        events and on events with the token of the correlation id the process is bound to, if any.
    :param transfer_process_id: the consumer's transfer process id.
    :param wait_for: ``started`` or ``completed`` (see :class:`~airflow_edc_callbacks.models.WaitFor`).
    :param conn_id: the ``edc`` connection, for the state checks and the terminate of :meth:`on_kill`.
    :param fallback_check_interval: seconds without a callback before asking the connector (then after 2x,
        4x... that, at most 1 h); ``None`` takes ``[edc_callbacks] fallback_check_interval`` (default 300).
    :param not_before: epoch seconds before which the event is held back. The operator sets it to the
        time of deferral plus the deferring worker's exit time (``[workers] min_heartbeat_interval`` + 1 s):
        Airflow 3.3 marks a task FAILED when its trigger fires before the worker that deferred it has
        reported (apache/airflow#71580, #72716), and a callback can arrive within a second.
    :param deadline: epoch seconds after which the trigger stops waiting and yields a ``timeout`` event
        (kept in the serialized kwargs: a triggerer restart keeps it); ``None``: no deadline of its own.
    :param waiting_since: epoch seconds when the task started waiting (the time-out's wait is counted
        from it); ``None``: when this trigger started.
    :param terminate_on_kill: on a user's kill (:meth:`on_kill`), terminate the process on the connector
        (operators that started it set it; a sensor's trigger never does).
    :param stall_timeout: seconds the transfer may stay in one non-terminal state (``SUSPENDED`` excepted)
        before the wait ends with a ``timeout`` event whose ``reason`` says it stalled (after one state
        check); 0: never; ``None``: ``[edc_callbacks] stall_timeout``.

    The event payload is a :class:`~airflow_edc_callbacks.triggers.results.TransferResult`: ``status``
    (``success`` | ``failed`` | ``timeout``), ``transfer_process_id``, ``state`` (``STARTED``,
    ``COMPLETED``, ``TERMINATED``...; for a time-out the last state known, or ``UNKNOWN``), ``event_type``,
    ``reason`` (the connector's, for a failure), ``source`` (``callback`` | ``state_check``; for a time-out
    where its state came from, ``None`` when unknown), ``asset_id``, ``contract_id``, ``timeline`` (each
    event's ``type``, ``at``, ``received_at``, ``envelope_id``, ``routes``), ``correlation_id`` and, for a
    time-out, ``waited_seconds``.
    """

    def __init__(
        self,
        *,
        correlation_id: str | None,
        transfer_process_id: str,
        wait_for: str = WaitFor.COMPLETED.value,
        conn_id: str = DEFAULT_CONN_ID,
        fallback_check_interval: float | None = None,
        not_before: float | None = None,
        deadline: float | None = None,
        waiting_since: float | None = None,
        terminate_on_kill: bool = False,
        stall_timeout: float | None = None,
    ) -> None:
        super().__init__()
        if not transfer_process_id:
            raise ValueError("transfer_process_id must not be empty")
        self.correlation_id = correlation_id
        self.transfer_process_id = transfer_process_id
        self.wait_for = WaitFor(wait_for)
        self.kind = transfer_kind(self.wait_for)  # refuses auto
        self.conn_id = conn_id
        self.fallback_check_interval = check_interval(fallback_check_interval)
        self.not_before = not_before
        self.deadline = deadline
        self.waiting_since = waiting_since
        self.terminate_on_kill = terminate_on_kill
        self.stall_timeout = stall_seconds(stall_timeout)
        self.hook: EdcManagementHook | None = None
        self._fired = False  # the trigger yielded its event (on_kill then changes nothing)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_edc_callbacks.triggers.callback.EdcCallbackTrigger",
            {
                "correlation_id": self.correlation_id,
                "transfer_process_id": self.transfer_process_id,
                "wait_for": self.wait_for.value,
                "conn_id": self.conn_id,
                "fallback_check_interval": self.fallback_check_interval,
                "not_before": self.not_before,
                "deadline": self.deadline,
                "waiting_since": self.waiting_since,
                "terminate_on_kill": self.terminate_on_kill,
                "stall_timeout": self.stall_timeout,
            },
        )

    def _hook(self) -> EdcManagementHook:
        """The connection's hook, made once (state checks, the kill's terminate)."""
        self.hook = self.hook or EdcManagementHook(self.conn_id)
        return self.hook

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Yield one event (see the class docstring) when the transfer reaches the awaited state.

        Store outages are retried every 5 s and failed state checks are logged and retried after the
        next interval, so neither fails the task; ``deadline`` bounds the wait (a ``timeout`` event).
        """
        async for event in run_until_final(self, self.transfer_process_id):
            yield event

    async def on_kill(self) -> None:
        """A user marked the deferred task failed or success, or cleared it: terminate the transfer when
        ``terminate_on_kill`` is set (see :func:`~airflow_edc_callbacks.triggers.kill.kill`). Best
        effort: a failure is logged, never raised."""
        await kill_unless_fired(self, self.transfer_process_id)
