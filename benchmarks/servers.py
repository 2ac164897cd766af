"""The HTTP servers the receiver benchmark compares, each in a process of its own on uvicorn (1 worker):

- ``receiver``: the real receiver (``create_app``) storing every event durably before it answers;
- ``bare``: a FastAPI endpoint on the same route that reads the body and answers 204 (the floor);
- ``connector``: a stand-in for a connector's Management API that answers every transfer state GET with
  ``STARTED`` and counts them (``GET /count``), so that polling costs are counted outside the poller.

``python -m benchmarks.servers receiver --store-url URL --port P`` / ``python -m benchmarks.servers bare --port P``
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, Request, Response

from airflow_edc_callbacks.receiver import ReceiverSettings, create_app

SIGNING_KEY = b"benchmark-signing-key"


def bare_app() -> FastAPI:
    """POST /callbacks/{token}: read the body, answer 204."""
    app = FastAPI()

    @app.post("/callbacks/{token}", status_code=204)
    async def callback(token: str, request: Request) -> Response:
        await request.body()
        return Response(status_code=204)

    return app


def connector_app() -> FastAPI:
    """GET .../transferprocesses/{id}/state -> STARTED (counted); GET /count -> the count."""
    app = FastAPI()
    counted = {"requests": 0}

    @app.get("/management/v3/transferprocesses/{process_id}/state")
    async def state(process_id: str) -> dict[str, str]:
        counted["requests"] += 1
        return {"@type": "TransferState", "state": "STARTED"}

    @app.get("/count")
    async def count() -> dict[str, int]:
        return counted

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.servers")
    parser.add_argument("kind", choices=["receiver", "bare", "connector"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store-url")
    args = parser.parse_args()
    if args.kind == "bare":
        app = bare_app()
    elif args.kind == "connector":
        app = connector_app()
    else:
        settings = ReceiverSettings(
            store_url=args.store_url, signing_key=SIGNING_KEY, auth=None, auth_from_config=False, purge_interval=0
        )
        app = create_app(settings)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, timeout_keep_alive=120)


if __name__ == "__main__":
    main()
