"""Network sinks named by URL: what ``convert -o URL`` opens.

=====================================================  =========================================
``kafka://HOST:PORT[,HOST:PORT]``                       Kafka (`KafkaSink`). ``?topic=T``: a
                                                        template with ``{dataset}`` (default
                                                        ``pcap-ingest.{dataset}``) or one topic;
                                                        ``?idempotence=0`` for brokers without
                                                        idempotent producers
``http[s]://[USER:PASS@]HOST[:PORT][/PREFIX]``          OpenSearch/Elasticsearch ``_bulk``
                                                        (`BulkSink`). ``?index=T`` (``{dataset}``,
                                                        ``{date}``), ``?op=create`` (data
                                                        streams), ``?gzip=1``, ``?ca=FILE``
``syslog://HOST[:514]``, ``syslog+tls://HOST[:6514]``  RFC 5424 with octet counting over TCP or
                                                        TLS (`SyslogSink`). ``?facility=N``,
                                                        ``?hostname=H``; TLS: ``?ca=FILE``,
                                                        ``?cert=FILE&key=FILE``, ``?insecure=1``
=====================================================  =========================================

Each takes the shared delivery contract (`pipeline.sinks.delivery`): ``--sink-timeout`` and
``--sink-buffer``. A bad URL raises ValueError with one line saying what is wrong.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from pipeline.sinks.delivery import Delivery

SCHEMES = ("kafka", "http", "https", "syslog", "syslog+tls")


def is_network_output(out: str) -> bool:
    """Whether an ``-o`` value names a network sink rather than a directory or stdout."""
    scheme, sep, _ = out.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def _options(query: str, allowed: tuple[str, ...], url: str) -> dict[str, str]:
    options = {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option {', '.join(unknown)} in {redact(url)} "
            f"(known: {', '.join(allowed) or 'none'})"
        )
    return options


def _flag(options: dict[str, str], name: str) -> bool:
    return options.get(name, "0").lower() in ("1", "true", "yes", "on")


def redact(url: str) -> str:
    """The URL without a password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def open_network_sink(url: str, delivery: Delivery) -> Any:
    """The sink `url` names, connected lazily (a server that is down costs retries, not an
    error here). Raises ValueError for a URL that cannot be right."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "kafka":
        from pipeline.sinks.kafka import DEFAULT_TOPIC_TEMPLATE, KafkaSink

        options = _options(parts.query, ("topic", "idempotence"), url)
        if not parts.netloc:
            raise ValueError(f"no broker in {url} (kafka://HOST:PORT)")
        return KafkaSink(
            parts.netloc,
            topic=options.get("topic", DEFAULT_TOPIC_TEMPLATE),
            delivery=delivery,
            idempotent=_flag({"i": options.get("idempotence", "1")}, "i"),
        )
    if scheme in ("http", "https"):
        from pipeline.sinks.bulk import DEFAULT_INDEX_TEMPLATE, BulkSink

        options = _options(parts.query, ("index", "op", "gzip", "ca"), url)
        context = None
        if scheme == "https" and "ca" in options:
            context = ssl.create_default_context(cafile=options["ca"])
        return BulkSink(
            urlunsplit(parts._replace(query="")),
            delivery=delivery,
            index_template=options.get("index", DEFAULT_INDEX_TEMPLATE),
            op_type=options.get("op", "index"),
            compress=_flag(options, "gzip"),
            ssl_context=context,
        )
    if scheme in ("syslog", "syslog+tls"):
        from pipeline.sinks.syslog import DEFAULT_PORT, DEFAULT_TLS_PORT, SyslogSink, SyslogTls

        tls_options = ("ca", "cert", "key", "insecure") if scheme == "syslog+tls" else ()
        options = _options(parts.query, ("facility", "hostname", *tls_options), url)
        if not parts.hostname:
            raise ValueError(f"no host in {url} ({scheme}://HOST[:PORT])")
        tls = None
        if scheme == "syslog+tls":
            tls = SyslogTls(
                ca_file=options.get("ca"),
                cert_file=options.get("cert"),
                key_file=options.get("key"),
                verify=not _flag(options, "insecure"),
            )
        facility = options.get("facility", "16")
        if not facility.isdigit() or int(facility) > 23:
            raise ValueError(f"syslog facility must be 0-23, not {facility!r}")
        return SyslogSink(
            parts.hostname,
            parts.port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT),
            tls=tls,
            facility=int(facility),
            hostname=options.get("hostname"),
            delivery=delivery,
        )
    raise ValueError(f"not a sink URL: {redact(url)} (schemes: {', '.join(SCHEMES)})")
