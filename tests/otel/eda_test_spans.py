"""A test-only span exporter for worker processes: the SDK's spans as JSON lines in a folder.

Selected like any exporter, ``OTEL_TRACES_EXPORTER=eda_test_spans``, through an
``opentelemetry_traces_exporter`` entry point the tests write beside this module (see
tests/integration/test_tracing.py); each process writes ``$EDA_TEST_SPANS/<pid>.jsonl``. With
``EDA_TEST_INSTRUMENT_HTTP=1`` it instruments urllib and urllib3 too, as a user's worker would, so
that the shop's gateway calls are spans of their own.
"""

import json
import os

from opentelemetry.sdk.trace.export import SpanExportResult, SpanExporter

if os.environ.get("EDA_TEST_INSTRUMENT_HTTP") == "1":
    from opentelemetry.instrumentation.urllib import URLLibInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

    URLLibInstrumentor().instrument()
    URLLib3Instrumentor().instrument()


def as_record(span) -> dict:
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name"),
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "parent_id": format(parent.span_id, "016x") if parent is not None else None,
        "attributes": dict(span.attributes),
        "status": span.status.status_code.name,
        "start": span.start_time,
        "end": span.end_time,
    }


class FileSpanExporter(SpanExporter):
    def __init__(self):
        folder = os.environ["EDA_TEST_SPANS"]
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, f"{os.getpid()}.jsonl")

    def export(self, spans) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as out:
            out.write("".join(json.dumps(as_record(s), default=str) + "\n" for s in spans))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass
