"""Every DAG file the project ships (examples, benchmark DAGs) imports cleanly in Airflow's DagBag."""

from __future__ import annotations

import pytest

from tests.airflow_compat import DagBag
from tests.helpers import REPO


@pytest.fixture(scope="module")
def example_dags() -> DagBag:
    return DagBag(dag_folder=str(REPO / "dags"))


def test_example_dags_import_without_errors(example_dags: DagBag) -> None:
    assert example_dags.import_errors == {}
    assert sorted(example_dags.dag_ids) == [
        "example_edc_asset_consumer",
        "example_edc_asset_transfer",
        "example_edc_full_pipeline",
        "example_edc_mapped_transfers",
        "example_edc_provider_asset_transferred",
        "example_edc_push_transfer",
        "example_edc_terminated_transfer",
        "example_edc_transfer_sensor",
        "example_edc_transfer_stall",
        "example_edc_transfer_timeout",
    ]


def test_mapped_transfers_fan_out_over_one_destination_each(example_dags: DagBag) -> None:
    dag = example_dags.dags["example_edc_mapped_transfers"]
    transfer = dag.get_task("transfer")
    assert transfer.upstream_task_ids == {"destinations"}
    assert getattr(transfer, "expand_input", None) is not None  # a mapped operator
    assert dag.max_active_tasks >= 50  # the scale test runs 50 at once


def test_benchmark_polling_dags_poke_at_5_and_30_seconds() -> None:
    bag = DagBag(dag_folder=str(REPO / "benchmarks" / "dags"))
    assert bag.import_errors == {}
    intervals = {}
    for dag_id, dag in bag.dags.items():
        if not dag_id.startswith("bench_edc_polling_"):
            continue
        sensor = dag.get_task("wait")
        if hasattr(sensor, "partial_kwargs"):  # a mapped sensor: its settings are the partial() ones
            intervals[dag_id] = (sensor.partial_kwargs["poke_interval"], sensor.partial_kwargs["mode"])
        else:
            intervals[dag_id] = (sensor.poke_interval, sensor.mode)
    assert intervals == {
        "bench_edc_polling_5s": (5, "poke"),
        "bench_edc_polling_30s": (30, "poke"),
        "bench_edc_polling_mapped": (30, "reschedule"),  # the scale benchmark's baseline (benchmarks/scale.py)
    }


def test_the_scale_benchmark_polls_one_mapped_sensor_per_mapped_transfer() -> None:
    dag = DagBag(dag_folder=str(REPO / "benchmarks" / "dags")).dags["bench_edc_polling_mapped"]
    start, wait = dag.get_task("start"), dag.get_task("wait")
    assert start.upstream_task_ids == {"destinations"}
    assert wait.upstream_task_ids == {"start"}
    assert getattr(start, "expand_input", None) is not None
    assert getattr(wait, "expand_input", None) is not None
    assert dag.max_active_tasks >= 500  # reschedule pokes of 500 transfers are never held back by the DAG


def test_task_duration_dags_defer_at_once_and_after_the_configured_wait() -> None:
    bag = DagBag(dag_folder=str(REPO / "benchmarks" / "dags"))
    assert bag.import_errors == {}
    waits = {
        dag_id: dag.get_task("push_transfer").defer_after for dag_id, dag in bag.dags.items() if "polling" not in dag_id
    }
    assert waits == {
        "bench_edc_defer_at_once": 0.0,
        "bench_edc_worker_first": None,
    }  # None: [edc_callbacks] defer_after
