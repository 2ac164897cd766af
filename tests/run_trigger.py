"""Run one trigger in its own process, as a triggerer would: ``python -m tests.run_trigger CLASSPATH KWARGS_JSON``.

Prints ``READY`` once the trigger waits on the store listener, then the payload of its first event as
JSON. Used to kill and restart a waiting trigger (a triggerer restart) in tests.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys


async def main(classpath: str, kwargs_json: str) -> None:
    from airflow_edc_callbacks.store import get_listener

    module, _, name = classpath.rpartition(".")
    trigger = getattr(importlib.import_module(module), name)(**json.loads(kwargs_json))
    events = trigger.run()
    first = asyncio.ensure_future(events.__anext__())
    listener = get_listener()
    while listener.subscription_count == 0 and not first.done():
        await asyncio.wait({first}, timeout=0.01)
    print("READY", flush=True)
    event = await first
    print(json.dumps(event.payload), flush=True)
    await events.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
