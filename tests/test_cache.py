"""The metrics cache: a body is never older than the last publish, a scrape renders only what changed, and the
gzip body is one gzip member that any client reads."""

from __future__ import annotations

import gzip
import re
import threading
import zlib
from collections.abc import Iterable

import pytest

from hostvigil import exposition
from hostvigil.cache import MetricsCache
from hostvigil.collector import Metrics, Sample

_test = Metrics("test")
SEQUENCE = _test.gauge("sequence", "The publish this body shows.", "writer")
EVENTS = _test.counter("events_total", "Events.", "kind")
SHARED = Metrics("disk").gauge("failing_in_use", "Emitted by two collectors.", "device")
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def test_a_scrape_never_gets_a_body_older_than_the_last_publish() -> None:
    """Writers publish increasing numbers while readers scrape: a scrape that begins after a publish has returned
    shows that publish or a later one, never an earlier, plain or gzipped, text or OpenMetrics."""
    writers, publishes, readers = 4, 400, 4
    cache = MetricsCache([f"w{i}" for i in range(writers)])
    done: list[int] = [-1] * writers  # the last publish each writer saw return
    stale: list[str] = []
    stop = threading.Event()

    def write(index: int) -> None:
        for number in range(publishes):
            cache.publish_success(f"w{index}", [SEQUENCE(number, str(index))], 0.001)
            done[index] = number

    def read(accept: str, gzipped: bool) -> None:
        while not stop.is_set():
            floor = list(done)
            body, _ = cache.render(accept, gzipped)
            text = (gzip.decompress(body) if gzipped else body).decode()
            for index in range(writers):
                match = re.search(rf'^hostvigil_test_sequence{{writer="{index}"}} (\S+)$', text, re.MULTILINE)
                shown = int(float(match.group(1))) if match else -1
                if shown < floor[index]:
                    stale.append(f"writer {index}: publish {floor[index]} had returned, the body showed {shown}")

    threads = [threading.Thread(target=read, args=(accept, gzipped)) for accept in ("", OPENMETRICS)
               for gzipped in (False, True)][:readers]
    threads += [threading.Thread(target=write, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads[readers:]:
        thread.join()
    stop.set()
    for thread in threads[:readers]:
        thread.join()
    assert stale == []
    assert done == [publishes - 1] * writers


def test_a_run_that_publishes_the_same_samples_renders_nothing_of_its_own_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = MetricsCache(["big", "small"])
    big = [EVENTS(n, f"k{n}") for n in range(500)]
    cache.publish_success("big", big, 0.1)
    cache.publish_success("small", [SEQUENCE(1, "a")], 0.1)
    cache.render()
    rendered: list[int] = []
    real = exposition.render

    def counting(samples: Iterable[Sample], content_type: str) -> bytes:
        samples = list(samples)
        rendered.append(len(samples))
        return real(samples, content_type)

    monkeypatch.setattr(exposition, "render", counting)
    cache.publish_success("big", list(big), 0.2)  # equal samples, a new run: its duration and time change
    first, _ = cache.render()
    assert b"hostvigil_collector_duration_seconds{collector=\"big\"} 0.2" in first
    assert max(rendered, default=0) < 500, "the big collector's unchanged families were rendered again"
    rendered.clear()
    cache.publish_success("small", [SEQUENCE(2, "a")], 0.1)
    second, _ = cache.render()
    assert b'hostvigil_test_sequence{writer="a"} 2.0' in second
    assert max(rendered, default=0) < 500
    assert second.count(b"hostvigil_test_events_total{") == 500


def test_what_changed_is_rendered_by_the_publish_and_the_scrape_only_joins(monkeypatch: pytest.MonkeyPatch) -> None:
    """A publish renders its collector's families in the formats scraped so far, and its state lines, on the
    publishing thread; the scrape that follows renders no sample, whatever changed: it joins."""
    cache = MetricsCache(["big", "small"])
    cache.publish_success("big", [EVENTS(n, f"k{n}") for n in range(500)], 0.1)
    cache.publish_success("small", [SEQUENCE(1, "a")], 0.1)
    cache.render(OPENMETRICS, gzipped=True)  # the format Prometheus asks for
    rendered: list[tuple[int, str]] = []
    real = exposition.render

    def counting(samples: Iterable[Sample], content_type: str) -> bytes:
        samples = list(samples)
        rendered.append((len(samples), threading.current_thread().name))
        return real(samples, content_type)

    monkeypatch.setattr(exposition, "render", counting)
    publisher = threading.Thread(
        target=cache.publish_success, args=("big", [EVENTS(n + 1, f"k{n}") for n in range(500)], 0.2), name="big"
    )
    publisher.start()
    publisher.join()
    assert rendered == [(500, "big")]
    rendered.clear()
    body, _ = cache.render(OPENMETRICS, gzipped=True)
    assert rendered == []
    assert b"hostvigil_test_events_total{kind=\"k499\"} 500.0" in gzip.decompress(body)


def test_the_gzip_body_is_one_member_and_a_family_two_collectors_emit_appears_once() -> None:
    cache = MetricsCache(["smart", "raid"])
    cache.publish_success("smart", [SHARED(1, "sda"), SEQUENCE(1, "smart")], 0.1)
    cache.publish_success("raid", [SHARED(0, "sdb"), EVENTS(3, "x")], 0.1)
    for accept in ("", OPENMETRICS):
        plain, content_type = cache.render(accept)
        body, _ = cache.render(accept, gzipped=True)
        reader = zlib.decompressobj(16 + zlib.MAX_WBITS)  # one member, as a reader that stops after it sees it
        assert reader.decompress(body) == plain
        assert (reader.eof, reader.unused_data) == (True, b"")
        assert plain.count(b"# TYPE hostvigil_disk_failing_in_use gauge") == 1
        assert b'hostvigil_disk_failing_in_use{device="sda"} 1.0\nhostvigil_disk_failing_in_use{device="sdb"}' in plain
        if content_type.startswith("application/openmetrics-text"):
            assert plain.endswith(b"\n# EOF\n")
            assert plain.count(b"# EOF") == 1


def test_a_failure_and_a_reload_take_their_series_away() -> None:
    cache = MetricsCache(["a", "b"])
    cache.publish_success("a", [SEQUENCE(1, "a")], 0.1)
    cache.publish_success("b", [EVENTS(1, "b")], 0.1)
    assert b"hostvigil_test_sequence{" in cache.render()[0]
    cache.publish_failure("a", "boom", 0.1)
    assert b"hostvigil_test_sequence{" not in cache.render()[0]
    cache.track(["a"])
    body = cache.render()[0]
    assert b"hostvigil_test_events_total{" not in body
    assert b'collector="b"' not in body
