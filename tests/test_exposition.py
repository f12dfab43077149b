"""hostvigil.exposition writes what prometheus_client's encoders write, byte for byte, for any gauge or counter:
the text format and OpenMetrics, escaping, label order and Go's float notation included."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.exposition import generate_latest as text_format
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_format

from hostvigil import exposition
from hostvigil.collector import MetricSpec, Sample

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**60), 2**60).map(float),
                   st.sampled_from([0.0, -0.0, 1e7, 12345678.9, 1e-7, 9999999.0, 10000000.5]))
TEXTS = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)


@st.composite
def families(draw: st.DrawFn) -> list[Sample]:
    samples: list[Sample] = []
    for index in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["gauge", "counter"]))
        labels = tuple(draw(st.lists(NAMES, max_size=3, unique=True)))
        name = f"hostvigil_t{index}_{draw(NAMES)}" + ("_total" if kind == "counter" else "")
        spec = MetricSpec(name, kind, draw(TEXTS), labels)  # type: ignore[arg-type]
        for values in draw(st.lists(st.tuples(*(TEXTS for _ in labels)), min_size=1, max_size=3, unique=True)):
            samples.append(spec(draw(VALUES), *values))
    return samples


class _Registry:
    def __init__(self, samples: list[Sample]) -> None:
        by_spec: dict[MetricSpec, Metric] = {}
        for sample in samples:
            spec = sample.metric
            if spec not in by_spec:
                base = spec.name.removesuffix("_total") if spec.kind == "counter" else spec.name
                by_spec[spec] = Metric(base, spec.help, spec.kind)
            by_spec[spec].add_sample(spec.name, dict(zip(spec.labels, sample.label_values, strict=True)), sample.value)
        self.metrics = list(by_spec.values())

    def collect(self) -> list[Metric]:
        return self.metrics


@given(families())
def test_the_text_format_is_prometheus_clients(samples: list[Sample]) -> None:
    assert exposition.render(samples, exposition.TEXT) == text_format(_Registry(samples))  # type: ignore[arg-type]


@given(families())
def test_openmetrics_is_prometheus_clients(samples: list[Sample]) -> None:
    ours = exposition.render(samples, exposition.OPENMETRICS) + exposition.OPENMETRICS_EOF
    assert ours == openmetrics_format(_Registry(samples))


@given(st.one_of(VALUES, st.just(math.nan)))
def test_go_floats(value: float) -> None:
    from prometheus_client.utils import floatToGoString  # noqa: PLC0415 - what is compared, next to its use

    assert exposition.go_float(value) == floatToGoString(value)


def test_the_format_asked_for() -> None:
    """As prometheus_client answers (its releases differ on OpenMetrics 0.0.1, which no Prometheus since 2.5 asks
    for: hostvigil answers it in the text format)."""
    for accept in ("", "text/plain;version=0.0.4", "*/*", "application/openmetrics-text",
                   "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
                   "text/plain;q=0.5, application/openmetrics-text; version=1.0.0"):
        expected = choose_encoder(accept)[1].partition("; escaping=")[0]
        assert exposition.negotiate(accept) == expected, accept
    assert exposition.negotiate("application/openmetrics-text;version=0.0.1") == exposition.TEXT
