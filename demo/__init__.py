"""Demo and integration-test support: real EDC connectors (``demo.connectors``) and a data server
(``demo.data_server``)."""
