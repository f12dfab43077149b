"""The two formats a scrape may ask for, written from samples: the Prometheus text format 0.0.4 and OpenMetrics 1.0.

The agent only has gauges and counters (a counter's name ends in _total, test_conformance holds it), so the
writer is short; its output is byte for byte what prometheus_client's encoders write for them (the golden files
in tests/fixtures/golden hold it, and promtool and a real Prometheus read it in the tests). Writing it here
spares the agent prometheus_client's imports (http.server, wsgiref, urllib.request: ~4 MB of a 30 MB agent and
a fifth of its start) for two functions.

Formats: https://prometheus.io/docs/instrumenting/exposition_formats/ and the OpenMetrics 1.0 specification
(a counter's family is named without _total, HELP also escapes the double quote, the body ends in "# EOF").
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from hostvigil.collector import MetricSpec, Sample

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
OPENMETRICS_EOF = b"# EOF\n"


def negotiate(accept: str) -> str:
    """The content type to answer an Accept header with: OpenMetrics 1.0.0 when it is asked for (with that version
    or none, as Prometheus 2.5 and later ask), else the text format."""
    for accepted in accept.split(","):
        media, *params = (part.strip() for part in accepted.split(";"))
        version = next((p.partition("=")[2].strip() for p in params if p.partition("=")[0].strip() == "version"), "")
        if media == "application/openmetrics-text" and version in ("", "1.0.0"):
            return OPENMETRICS
    return TEXT


def render(samples: Iterable[Sample], content_type: str) -> bytes:
    """The families of `samples` in first-seen order, each with its HELP and TYPE, without OpenMetrics' end marker
    (a body adds it once, last)."""
    openmetrics = content_type == OPENMETRICS
    families: dict[MetricSpec, list[str]] = {}
    for sample in samples:
        lines = families.get(sample.metric)
        if lines is None:
            lines = families[sample.metric] = []
        lines.append(line(sample))
    out: list[str] = []
    for spec, lines in families.items():
        out.append(header(spec, openmetrics))
        out.extend(lines)
    return "".join(out).encode()


def header(spec: MetricSpec, openmetrics: bool) -> str:
    """A family's HELP and TYPE lines."""
    if openmetrics:
        name = spec.name.removesuffix("_total") if spec.kind == "counter" else spec.name
        text = spec.help.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    else:
        name, text = spec.name, spec.help.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {text}\n# TYPE {name} {spec.kind}\n"


def line(sample: Sample) -> str:
    """A sample's line, the same in both formats."""
    spec = sample.metric
    if not spec.labels:
        return f"{spec.name} {go_float(sample.value)}\n"
    pairs = sorted(zip(spec.labels, sample.label_values, strict=True))
    labels = ",".join(f'{key}="{_escape(value)}"' for key, value in pairs)
    return f"{spec.name}{{{labels}}} {go_float(sample.value)}\n"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def go_float(value: float) -> str:
    """A value as Go's strconv writes it, as Prometheus clients do: +Inf, -Inf, NaN, and exponents from 1e+07."""
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go switches to an exponent sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text
