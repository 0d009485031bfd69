"""Where spans go when tracing is on: the exporters ``OTEL_TRACES_EXPORTER`` names and the SDK's
TracerProvider eda sets up with them (configured by the standard ``OTEL_*`` variables), for a process
whose application set none of its own."""

import os
from importlib.metadata import entry_points

from eda.errors import ConfigError

OFF = ("", "none")
EXPORTER_GROUP = "opentelemetry_traces_exporter"
OTLP_PROTOCOLS = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
INSTALL = "pip install 'eda[otel]'"


def exporter_names(environ=os.environ) -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` asks for (a comma-separated list); none: tracing is off."""
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return [n for n in names if n not in OFF]


def sdk_provider(service: str, environ):
    """An SDK TracerProvider configured by the standard OTEL_* variables, with a batch processor per exporter."""
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(f"OTEL_TRACES_EXPORTER is set: tracing needs the OpenTelemetry SDK ({INSTALL})") from None
    named = environ.get("OTEL_SERVICE_NAME") or "service.name=" in environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    provider = TracerProvider(resource=Resource.create({} if named else {SERVICE_NAME: service}))
    for name in exporter_names(environ):
        provider.add_span_processor(BatchSpanProcessor(exporter(name, environ)))
    return provider


def exporter(name: str, environ):
    """The span exporter of that name (``otlp`` over the protocol the OTEL_* variables say), or a ConfigError."""
    if name == "otlp":  # OTLP over http/protobuf unless OTEL_EXPORTER_OTLP_PROTOCOL says grpc
        protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                    or "http/protobuf").strip()
        if protocol not in OTLP_PROTOCOLS:
            raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: traces go over http/protobuf or grpc")
        name = OTLP_PROTOCOLS[protocol]
    found = list(entry_points(group=EXPORTER_GROUP, name=name))
    if not found:
        raise ConfigError(f"OTEL_TRACES_EXPORTER: no span exporter {name!r} is installed ({INSTALL} brings otlp "
                          f"over http/protobuf and console)")
    return found[0].load()()
