-- The callback event store gets a database of its own next to Airflow's, on the same server.
CREATE DATABASE edc_callbacks OWNER airflow;
