"""``GET /timeline/{dag_id}/{task_id}/{map_index}/{run_id}``: a task instance's callback timeline as HTML, for
users Airflow's auth manager lets read the DAG's task instances.

Only the api-server serves it (the provider's plugin adds this router to the receiver app it mounts, and
shows the page as the task instance's "EDC callbacks" tab); the standalone receiver has no Airflow
login, so it does not. ``map_index`` is the task's map index, or anything not a number (the UI's
unreplaced ``{MAP_INDEX}`` of a task that is not mapped) for -1; ``run_id`` is last because a run id may
hold ``/``.

======  ===================================================================================
status  when
======  ===================================================================================
200     the page (also when no event is stored)
401     no Airflow token (``Authorization: Bearer`` header or the UI's ``_token`` cookie), or an expired one
403     an invalid token, or a user who may not read the DAG's task instances
404     ``dag_id`` is ``~`` (all DAGs: a task instance belongs to one)
503     the store cannot be read (with ``Retry-After``)
======  ===================================================================================
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from airflow_edc_callbacks import _compat
from airflow_edc_callbacks.exceptions import StoreUnavailableError
from airflow_edc_callbacks.receiver.dependencies import Settings
from airflow_edc_callbacks.receiver.responses import error_response
from airflow_edc_callbacks.receiver.timeline import TaskInstanceRef, render_timeline, task_timeline

TIMELINE_PATH = "/timeline/{dag_id}/{task_id}/{map_index}/{run_id:path}"
"""The page's path in the receiver app (below ``/edc-callbacks`` on the api-server)."""

HEADERS = {
    "Cache-Control": "no-store",
    # no script, no request of any kind from the page; only Airflow's own pages may frame it
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_MAP_INDEX = re.compile(r"^-?[0-9]{1,9}$")

router = APIRouter()


async def _authorized(request: Request, dag_id: str) -> None:
    if dag_id == "~":
        raise HTTPException(status_code=404, detail="A task instance belongs to one DAG")
    await _compat.require_task_instance_read(request)


@router.get(TIMELINE_PATH, include_in_schema=False, dependencies=[Depends(_authorized)])
async def timeline(dag_id: str, task_id: str, map_index: str, run_id: str, cfg: Settings) -> Response:
    """The page; see the module's description for who gets it."""
    ti = TaskInstanceRef(dag_id, run_id, task_id, int(map_index) if _MAP_INDEX.match(map_index) else -1)
    try:
        rows, cut = await run_in_threadpool(task_timeline, cfg.store, ti)
    except StoreUnavailableError:
        return error_response(503, "Event store unavailable", {"Retry-After": "5"})
    return HTMLResponse(render_timeline(ti, rows, cut=cut), headers=HEADERS)
