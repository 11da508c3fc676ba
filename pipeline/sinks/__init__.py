"""Where serialised events go: files (rotating, atomic) and stdout (files.py, background.py),
and the network sinks named by URL (network.py): Kafka (kafka.py), OpenSearch/Elasticsearch
``_bulk`` (bulk.py) and syslog over TCP/TLS (syslog.py), which share delivery.py's contract."""
