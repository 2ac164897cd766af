"""``python -m demo``: the main job end to end on this machine.

Builds and starts two real EDC connectors (provider with an HTTP data source, consumer pushing into a
local HTTP sink), negotiates a contract, starts ``airflow standalone`` with this provider and the
repository's ``dags/``, runs ``example_edc_push_transfer`` and prints the DAG run's result and where
the data landed. Everything runs on 127.0.0.1 and is stopped at the end (``--keep-running`` leaves it up
until Ctrl-C, with the Airflow UI at http://127.0.0.1:28080).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import threading
import time
from pathlib import Path

from demo import connectors as edc
from demo.airflow_env import AirflowStandalone
from demo.data_server import source_bytes, start_data_server

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "example_edc_push_transfer"
TASK_ID = "push_transfer"


def _say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / ".work" / "demo")
    parser.add_argument("--airflow-port", type=int, default=28080)
    parser.add_argument("--data-port", type=int, default=18080)
    parser.add_argument("--keep-running", action="store_true", help="Leave everything running until Ctrl-C.")
    args = parser.parse_args(argv)

    workdir: Path = args.workdir.resolve()
    shutil.rmtree(workdir / "airflow", ignore_errors=True)
    (workdir / "airflow").mkdir(parents=True)

    _say("Assembling the EDC runtime with Maven (cached after the first run)...")
    edc.build()
    data = start_data_server(args.data_port, workdir / "sink")
    _say(f"Data server (provider source, consumer sink) at {data.url}")
    try:
        _say("Starting the provider and consumer connectors...")
        with edc.start(workdir / "connectors", data.url) as conns:
            agreement = edc.negotiate(conns, edc.DEMO_ASSET)
            _say(f"Contract agreement for {edc.DEMO_ASSET}: {agreement}")
            connection = {
                "conn_type": "edc",
                "host": conns.consumer_management_url,
                "password": conns.consumer_api_key,
            }
            env = {
                "AIRFLOW_CONN_EDC_DEFAULT": json.dumps(connection),
                "AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL": f"http://127.0.0.1:{args.airflow_port}/edc-callbacks",
            }
            _say("Starting airflow standalone (api-server with the receiver, scheduler, dag-processor, triggerer)...")
            with AirflowStandalone(workdir / "airflow", REPO / "dags", port=args.airflow_port, extra_env=env) as af:
                af.wait_for_dag(DAG_ID, deadline_s=120)
                conf = {
                    "contract_id": agreement,
                    "counter_party_address": conns.provider_dsp_address,
                    "sink_base_url": f"{data.url}/sink",
                }
                run_id = af.trigger_dag(DAG_ID, conf=conf)
                _say(f"Triggered {DAG_ID} run {run_id}")
                af.wait_for_task_state(DAG_ID, run_id, TASK_ID, {"deferred", "success"}, deadline_s=120)
                _say(f"{TASK_ID} deferred; waiting for the connector's callback...")
                state = af.wait_for_run(DAG_ID, run_id, deadline_s=300)
                _say(f"DAG run {run_id}: {state}")
                if state != "success":
                    print(af.task_log(DAG_ID, run_id, TASK_ID))
                    return 1
                result = af.xcom(DAG_ID, run_id, TASK_ID)
                print(json.dumps(result, indent=2))
                report = af.xcom(DAG_ID, run_id, "report")
                arrived = [r for r in data.received() if r["path"].endswith(report["sink_url"].split("/sink", 1)[1])]
                if not arrived:
                    _say(f"No data arrived at {report['sink_url']}")
                    return 1
                landed = Path(arrived[-1]["file"])
                same = landed.read_bytes() == source_bytes(edc.DEMO_ASSET)
                _say(
                    f"Transfer process {result['transfer_process_id']} {result['state']} via {result['source']}; "
                    f"data landed at {report['sink_url']} -> {landed} ({landed.stat().st_size} bytes, "
                    f"{'identical to' if same else 'DIFFERENT from'} the provider's source)"
                )
                if args.keep_running:
                    _say(f"Everything is running; Airflow UI: {af.ui_url} (no login). Ctrl-C stops it.")
                    stop = threading.Event()
                    signal.signal(signal.SIGINT, lambda *_: stop.set())
                    signal.signal(signal.SIGTERM, lambda *_: stop.set())
                    stop.wait()
                return 0 if same else 1
    finally:
        data.stop()


if __name__ == "__main__":
    raise SystemExit(main())
