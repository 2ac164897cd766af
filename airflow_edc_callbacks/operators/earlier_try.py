"""What a retry of a transfer task does with the transfer process an earlier try started.

A retry re-attaches instead of starting a second transfer when an earlier try's transfer is still running,
or when it COMPLETED but no try took its result: Airflow 3.3 can fail a try after its trigger fired (the
worker's exit report after ``defer()`` reaching the scheduler after the resumed task was queued,
"task state changed externally", apache/airflow#66374), so the transfer finished and only the task's
bookkeeping was lost. A try that succeeds marks the result taken in the event store
(``edc_process_binding.taken_at``), so a user's clear of a successful task starts a new transfer. A
retry (no clear since the first try) takes a COMPLETED transfer's result even when an earlier try took
it: Airflow failed that try after all (in the same race, the scheduler can fail a try whose resume
already ran: its success report is refused, "Task Instance not found").
"""

from __future__ import annotations

from typing import Any

from airflow_edc_callbacks.exceptions import StoreUnavailableError
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.ledger import StoreLedger
from airflow_edc_callbacks.models import TERMINAL_TRANSFER_STATES, WaitFor, jsonld_get
from airflow_edc_callbacks.operators.lifecycle import TaskLog

CORRELATION_PROPERTY = "airflowCorrelationId"
"""The ``privateProperties`` entry every transfer the operators start carries: the task instance's
correlation id, so a retry finds the transfers of its earlier tries on the connector."""


def _state(process: dict[str, Any]) -> str:
    return str(jsonld_get(process, "state", "")).upper()


def find_earlier_transfer(
    log: TaskLog, hook: EdcManagementHook, correlation_id: str, wait_for: WaitFor, *, cleared: bool = True
) -> str | None:
    """The transfer process an earlier try of the task instance ``correlation_id`` started that this try
    should wait for, or ``None`` (start a new one).

    One query to the connector on the :data:`CORRELATION_PROPERTY` private property (it also finds a
    transfer whose callbacks never reached the receiver). The latest running transfer wins (a
    ``TERMINATING`` one does not count: e.g. the earlier try's ``on_kill`` after a user cleared the task);
    else, when the task waits for ``COMPLETED`` (a PUSH; a PULL's result is its EDR, revoked at the end),
    the latest ``COMPLETED`` one whose result no try took (see :func:`mark_taken`; a store that cannot be
    read counts as taken), or, when the task instance was not ``cleared`` since its first try, whose
    result only tries that Airflow failed took (see :func:`was_cleared`). Terminated transfers are never
    waited for.

    :raises EdcApiError: the connector refused the query.
    :raises EdcTransportError: the connector could not be reached.
    """
    processes = hook.find_transfer_processes(CORRELATION_PROPERTY, correlation_id)

    def latest_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(items, key=lambda p: int(jsonld_get(p, "stateTimestamp", 0) or 0), reverse=True)

    running = [
        p for p in processes if _state(p) not in TERMINAL_TRANSFER_STATES and not _state(p).startswith("TERMINATING")
    ]
    if running:
        process = latest_first(running)[0]
        log.info(
            "Waiting for transfer process %s (state %s) that an earlier try started, instead of starting a second one",
            jsonld_get(process, "@id"),
            jsonld_get(process, "state"),
        )
        return str(jsonld_get(process, "@id"))
    if wait_for is not WaitFor.COMPLETED:  # a PULL's result is its EDR, revoked once the transfer completed
        return None
    for process in latest_first([p for p in processes if _state(p) == "COMPLETED"]):
        process_id = str(jsonld_get(process, "@id"))
        try:
            ledger = StoreLedger()
            untaken = ledger.untaken(process_id, correlation_id)
            retaken = not untaken and not cleared and ledger.bound(process_id, correlation_id)
        except StoreUnavailableError as err:
            log.warning("Cannot tell whether a try took transfer process %s (starting a new one): %s", process_id, err)
            return None
        if untaken or retaken:
            log.info(
                "Taking the result of transfer process %s (COMPLETED) that an earlier try %s, instead of "
                "starting a second one",
                process_id,
                "took before Airflow failed that try" if retaken else "started and did not finish",
            )
            return process_id
    return None


def was_cleared(max_tries: object, retries: int) -> bool:
    """Whether a try's task instance was cleared since its first try, from the task instance's ``max_tries``
    and the task's ``retries``: Airflow sets ``max_tries`` to ``retries`` when it creates the task instance
    and raises it to ``try_number + retries`` on a clear (``airflow.models.taskinstance``); a retry keeps
    it. Every try before this one failed unless it was cleared. Unknown ``max_tries``: cleared (a
    result taken stays taken)."""
    return not isinstance(max_tries, int) or max_tries > retries


def mark_taken(log: TaskLog, process_id: str, correlation_id: str) -> None:
    """Record in the event store that this try took the result of ``process_id`` (best effort: a failure is
    logged; a later clear may then re-attach to this completed transfer)."""
    try:
        StoreLedger().mark_taken(process_id, correlation_id)
    except StoreUnavailableError as err:
        log.warning("Could not record that transfer process %s was taken by this task: %s", process_id, err)
