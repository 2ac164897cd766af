"""The durable callback event store and its process-wide listener."""

from __future__ import annotations

from airflow_edc_callbacks.store.listener import StoreListener, Subscription, get_listener
from airflow_edc_callbacks.store.repository import EventStore, get_store
from airflow_edc_callbacks.store.stored import StoredEvent

__all__ = ["EventStore", "StoreListener", "StoredEvent", "Subscription", "get_listener", "get_store"]
