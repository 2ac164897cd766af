"""Run a trigger inside the worker (non-deferrable mode) until its first event."""

from __future__ import annotations

import asyncio
from typing import Any

from airflow.triggers.base import BaseTrigger


async def first_event(trigger: BaseTrigger, timeout: float) -> dict[str, Any]:
    """The payload of the trigger's first event.

    :param timeout: seconds to wait.
    :raises TimeoutError: no event within ``timeout``.
    """
    events: Any = trigger.run()
    try:
        event = await asyncio.wait_for(events.__anext__(), timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"{type(trigger).__name__} produced no event within {timeout:.0f} s") from None
    finally:
        await events.aclose()
    return dict(event.payload)
