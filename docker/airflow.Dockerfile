# The official Airflow image with this provider installed (and psycopg for the PostgreSQL event store).
# Also carries the repository's demo/ package for the compose file's data server and connector seeding.
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}
ARG AIRFLOW_VERSION
COPY --chown=airflow:root pyproject.toml README.md /opt/airflow-edc-callbacks/
COPY --chown=airflow:root airflow_edc_callbacks /opt/airflow-edc-callbacks/airflow_edc_callbacks
COPY --chown=airflow:root dags /opt/airflow-edc-callbacks/dags
COPY --chown=airflow:root demo /opt/airflow-edc-callbacks/demo
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/airflow-edc-callbacks[postgres]"
ENV PYTHONPATH=/opt/airflow-edc-callbacks
