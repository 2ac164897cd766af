"""``python -m demo``: the main job end to end on this machine.

Builds and starts two real EDC connectors (a provider with an HTTP data source and a public API for PULL
transfers, a consumer), starts ``airflow standalone`` with this provider and the repository's ``dags/``,
and runs ``example_edc_full_pipeline``: catalog -> contract negotiation -> a PUSH transfer into a local
HTTP sink and a PULL transfer whose data is fetched with its EDR, each wait resumed by the connector's
callbacks. Prints each step's result and checks the data against the provider's source. Everything runs
on 127.0.0.1 and is stopped at the end (``--keep-running`` leaves it up until Ctrl-C or SIGTERM, with the
Airflow UI at http://127.0.0.1:28080).

``python -m demo env`` prints the exports that point ``airflow`` and ``airflow-edc-callbacks`` at the demo
(``eval "$(python -m demo env)"``); the demo prints them too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from demo import connectors as edc
from demo.airflow_env import AirflowStandalone
from demo.cli_env import LAPTOP_PARALLELISM, cli_env, exports, provider_env
from demo.data_server import source_bytes, start_data_server

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "example_edc_full_pipeline"
STEPS = ("negotiate", "push_transfer", "pull_transfer", "fetch_data", "negotiate_and_pull")


def _say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        nargs="?",
        choices=["run", "env"],
        default="run",
        help="run (default): the demo; env: print the exports that point the CLI at it.",
    )
    parser.add_argument("--workdir", type=Path, default=REPO / ".work" / "demo")
    parser.add_argument("--airflow-port", type=int, default=28080)
    parser.add_argument("--data-port", type=int, default=18080)
    parser.add_argument(
        "--keep-running", action="store_true", help="Leave everything running until Ctrl-C (or SIGTERM)."
    )
    args = parser.parse_args(argv)

    workdir: Path = args.workdir.resolve()
    venv_bin = Path(sys.executable).parent
    if args.command == "env":
        sys.stdout.write(exports(workdir, args.airflow_port, venv_bin))
        return 0
    shutil.rmtree(workdir / "airflow", ignore_errors=True)
    (workdir / "airflow").mkdir(parents=True)

    _say("Assembling the EDC runtime with Maven (cached after the first run)...")
    edc.build()
    data = start_data_server(args.data_port, workdir / "sink")
    _say(f"Data server (provider source, consumer sink) at {data.url}")
    try:
        _say("Starting the provider and consumer connectors...")
        with edc.start(workdir / "connectors", data.url) as conns:
            env = {
                **provider_env(workdir, args.airflow_port),  # the consumer's connection, its own signing key
                "AIRFLOW__CORE__PARALLELISM": str(LAPTOP_PARALLELISM),
            }
            _say("Starting airflow standalone (api-server with the receiver, scheduler, dag-processor, triggerer)...")
            with AirflowStandalone(workdir / "airflow", REPO / "dags", port=args.airflow_port, extra_env=env) as af:
                af.wait_for_dag(DAG_ID, deadline_s=120)
                conf = {
                    "counter_party_address": conns.provider_dsp_address,
                    "counter_party_id": conns.provider_id,
                    "asset_id": edc.DEMO_ASSET,
                    "sink_base_url": f"{data.url}/sink",
                    "output_dir": str(workdir / "data"),
                }
                run_id = af.trigger_dag(DAG_ID, conf=conf)
                _say(f"Triggered {DAG_ID} run {run_id}; every step waits for the connector's callbacks...")
                state = af.wait_for_run(DAG_ID, run_id, deadline_s=300)
                _say(f"DAG run {run_id}: {state}")
                if state != "success":
                    for ti in af.task_instances(DAG_ID, run_id):
                        if ti["state"] != "success":
                            _say(f"{ti['task_id']}: {ti['state']}")
                            print(af.task_log(DAG_ID, run_id, ti["task_id"], try_number=max(1, ti["try_number"])))
                    return 1
                results = {step: af.xcom(DAG_ID, run_id, step) for step in STEPS}
                source = source_bytes(edc.DEMO_ASSET)
                ok = _print_results(results, data.received(), source)
                ok = _doctor(workdir, args.airflow_port, venv_bin) and ok
                if args.keep_running:
                    _say(f"Everything is running; Airflow UI: {af.ui_url} (no login).")
                    _say(
                        "To point airflow and airflow-edc-callbacks at it, in another shell: "
                        f'eval "$({venv_bin / "python"} -m demo env)" (from {REPO}), or paste:'
                    )
                    print(exports(workdir, args.airflow_port, venv_bin), end="", flush=True)
                    _say(
                        f"Then e.g. `airflow-edc-callbacks doctor`. Stop everything with Ctrl-C here, "
                        f"or `kill {os.getpid()}` (SIGTERM)."
                    )
                    stop = threading.Event()
                    signal.signal(signal.SIGINT, lambda *_: stop.set())
                    signal.signal(signal.SIGTERM, lambda *_: stop.set())
                    stop.wait()
                else:
                    _say("--keep-running leaves it all up; `python -m demo env` prints the exports for the CLI.")
                return 0 if ok else 1
    finally:
        data.stop()
        _say("Stopped airflow standalone, the connectors and the data server.")


def _doctor(workdir: Path, airflow_port: int, venv_bin: Path) -> bool:
    """Run ``airflow-edc-callbacks doctor`` on the demo, as its user would with ``python -m demo env``'s
    exports; print its lines. True when no check failed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(cli_env(workdir, airflow_port))
    done = subprocess.run(
        [str(venv_bin / "airflow-edc-callbacks"), "doctor"], env=env, capture_output=True, text=True, timeout=300
    )
    _say(f"airflow-edc-callbacks doctor on the demo (exit status {done.returncode}):")
    print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        print(done.stderr[-4000:], end="", flush=True)
    return done.returncode == 0


def _print_results(results: dict[str, Any], received: list[dict[str, Any]], source: bytes) -> bool:
    """Say how each step ended and whether the data is the provider's; True when all of it is."""
    negotiation, push, pull, fetched, one = (results[s] for s in STEPS)
    _say(
        f"negotiate: contract negotiation {negotiation['contract_negotiation_id']} {negotiation['state']} "
        f"(agreement {negotiation['contract_agreement_id']}) via {negotiation['source']}"
    )
    _say(f"push_transfer: transfer process {push['transfer_process_id']} {push['state']} via {push['source']}")
    _say(f"pull_transfer: transfer process {pull['transfer_process_id']} {pull['state']} via {pull['source']}")
    one_negotiation = one["negotiation"] or {"state": "(an earlier try's)", "source": "callback"}
    _say(
        f"negotiate_and_pull: negotiation {one_negotiation['state']} via {one_negotiation['source']}, "
        f"transfer process {one['transfer_process_id']} {one['state']} via {one['source']}"
    )
    ok = True
    pushed = [r for r in received if "/full_pipeline/" in r["path"]]
    for label, file in [("push_transfer (sink)", pushed[-1]["file"] if pushed else None)] + [
        (label, data["file"]) for label, data in (("fetch_data", fetched), ("negotiate_and_pull", one["data"]))
    ]:
        content = Path(file).read_bytes() if file else b""
        same = content == source
        ok = ok and same
        _say(f"{label}: {len(content)} bytes in {file}, {'identical to' if same else 'DIFFERENT from'} the source")
    sources = {negotiation["source"], push["source"], pull["source"], one["source"], one_negotiation["source"]}
    return ok and sources == {"callback"}


if __name__ == "__main__":
    raise SystemExit(main())
