"""`eventforge trace REQUEST_ID` and the waterfall it draws, from a hand-written span file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from eventforge.cli import main
from eventforge.runtime.telemetry import SpanLink, SpanRecord, read_span_file
from eventforge.runtime.waterfall import ASYNC_MARK, ERROR_MARK, build_waterfall, render, ruler

REQUEST_ID = "req-checkout-42"
TRACE = "0af7651916cd43dd8448eb211c80319c"
OTHER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
T0 = 1_700_000_000_000_000_000
MS = 1_000_000

SERVER, PLACE, PUBLISH, CONSUME, STORE = (f"{n:016x}" for n in range(1, 6))


def _span(
    span_id: str,
    name: str,
    kind: str,
    service: str,
    start_ms: float,
    duration_ms: float,
    *,
    parent: str | None = None,
    trace_id: str = TRACE,
    request_id: str | None = REQUEST_ID,
    links: list[SpanLink] | None = None,
    error: str | None = None,
) -> SpanRecord:
    start = T0 + int(start_ms * MS)
    end = start + int(duration_ms * MS)
    attributes: dict[str, Any] = {"request_id": request_id} if request_id else {}
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "kind": kind,
        "service": service,
        "scope": None,
        "start_unix_nano": start,
        "end_unix_nano": end,
        "duration_ms": duration_ms,
        "status": {"code": "ERROR" if error else "UNSET", "description": error},
        "attributes": attributes,
        "events": [],
        "links": links or [],
        "request_id": request_id,
    }


def _records() -> list[SpanRecord]:
    """One request across orders and files (async hop on the queue), and an unrelated trace."""
    matching = [
        _span(SERVER, "eventforge.orders.v1.OrdersService/CreateOrder", "SERVER", "orders", 0, 50),
        _span(PLACE, "orders.place_order", "INTERNAL", "orders", 5, 10, parent=SERVER),
        # The publish span has no request id attribute: it still shows, being in the trace.
        _span(
            PUBLISH,
            "orders-events publish",
            "PRODUCER",
            "orders",
            20,
            5,
            parent=SERVER,
            request_id=None,
        ),
        _span(
            CONSUME,
            "files-orders process",
            "CONSUMER",
            "files",
            80,
            25,
            parent=PUBLISH,
            links=[{"trace_id": TRACE, "span_id": PUBLISH, "attributes": {}}],
        ),
        _span(
            STORE,
            "files.store_receipt",
            "INTERNAL",
            "files",
            85,
            15,
            parent=CONSUME,
            error="bucket missing",
        ),
    ]
    unrelated = [
        _span(
            "a" * 16,
            "eventforge.files.v1.FilesService/GetFile",
            "SERVER",
            "files",
            10,
            30,
            trace_id=OTHER_TRACE,
            request_id="req-other",
        ),
        _span(
            "b" * 16,
            "files.lookup",
            "INTERNAL",
            "files",
            12,
            3,
            parent="a" * 16,
            trace_id=OTHER_TRACE,
            request_id="req-other",
        ),
    ]
    # Written out of order, interleaved, as several processes append them.
    return [matching[3], unrelated[1], matching[0], matching[4], unrelated[0], *matching[1:3]]


@pytest.fixture
def span_file(tmp_path: Path) -> Path:
    path = tmp_path / "spans.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _records()), encoding="utf-8")
    assert len(read_span_file(path)) == 7
    return path


def test_build_waterfall_selects_the_trace_in_start_order_with_depths_and_hops() -> None:
    rows = build_waterfall(_records(), REQUEST_ID)

    assert [r.span_id for r in rows] == [SERVER, PLACE, PUBLISH, CONSUME, STORE]
    assert {r.trace_id for r in rows} == {TRACE}
    assert [r.depth for r in rows] == [0, 1, 1, 2, 3]
    assert [r.offset_ms for r in rows] == [0, 5, 20, 80, 85]
    assert [r.duration_ms for r in rows] == [50, 10, 5, 25, 15]
    assert all(r.trace_duration_ms == 105 for r in rows)
    # PRODUCER and the linked CONSUMER are hops; the consumer's own child (same service) is not.
    assert [r.async_hop for r in rows] == [False, False, True, True, False]
    assert [r.error for r in rows] == [False, False, False, False, True]
    assert rows[3].links == (f"orders orders-events publish (trace {TRACE[:8]}…)",)


def test_a_child_of_another_services_producer_or_consumer_is_an_async_hop() -> None:
    records = [
        _span(SERVER, "publish", "PRODUCER", "orders", 0, 5),
        _span(PLACE, "handle", "INTERNAL", "files", 10, 5, parent=SERVER),
        _span(PUBLISH, "save", "INTERNAL", "files", 11, 2, parent=PLACE),
    ]

    rows = build_waterfall(records, REQUEST_ID)

    assert [(r.name, r.async_hop) for r in rows] == [
        ("publish", True),
        ("handle", True),
        ("save", False),
    ]


def test_a_request_id_spanning_two_traces_gives_one_waterfall_each() -> None:
    records = [
        *_records(),
        _span(
            "c" * 16, "notifier-orders process", "CONSUMER", "notifier", 200, 4, trace_id="f" * 32
        ),
    ]

    rows = build_waterfall(records, REQUEST_ID)
    text = render(rows, width=120)

    assert [r.trace_id for r in rows] == [TRACE] * 5 + ["f" * 32]
    assert [line.split()[1] for line in text.splitlines() if line.startswith("trace ")] == [
        TRACE,
        "f" * 32,
    ]
    assert text.index(f"trace {TRACE}") < text.index(f"trace {'f' * 32}")
    assert rows[-1].offset_ms == 0  # offsets restart with each trace


def test_render_draws_aligned_bars_scaled_to_the_trace() -> None:
    rows = build_waterfall(_records(), REQUEST_ID)

    lines = render(rows, width=120).splitlines()

    bars = [line[line.index("|") :] for line in lines if line.endswith("|")]
    assert len(bars) == 5
    assert (
        len({len(line) - len(bar) for line, bar in zip(_bar_lines(lines), bars, strict=True)}) == 1
    )
    assert all(len(bar) == len(bars[0]) for bar in bars)
    width = len(bars[0]) - 2
    server = bars[0][1:-1]
    assert server.startswith("█")
    assert server.rstrip().endswith("█")
    assert len(server.rstrip()) == pytest.approx(width * 50 / 105, abs=1)
    consumer = bars[3][1:-1]
    assert consumer.index("█") == pytest.approx(width * 80 / 105, abs=1)
    assert max(len(line) for line in lines) <= 120


def _bar_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.endswith("|")]


def test_trace_command_prints_the_waterfall_of_the_request(span_file: Path) -> None:
    result = CliRunner().invoke(
        main, ["trace", REQUEST_ID, "--file", str(span_file), "--width", "140"]
    )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"request {REQUEST_ID}: 5 spans in 1 trace"
    assert f"trace {TRACE}" in result.output
    assert "GetFile" not in result.output
    assert "files.lookup" not in result.output
    span_lines = _bar_lines(lines)
    expected = [
        ("0.00", "50.00", "orders", "SERVER", "", "eventforge.orders.v1.OrdersService/CreateOrder"),
        ("5.00", "10.00", "orders", "INTERNAL", "", "└ orders.place_order"),
        ("20.00", "5.00", "orders", "PRODUCER", ASYNC_MARK, "└ orders-events publish"),
        ("80.00", "25.00", "files", "CONSUMER", ASYNC_MARK, "  └ files-orders process"),
        ("85.00", "15.00", "files", "INTERNAL", ERROR_MARK, "    └ files.store_receipt"),
    ]
    header = next(line for line in lines if line.lstrip().startswith("offset ms"))
    name_at = header.index("span")
    parsed = [
        (
            *line[:name_at].split()[:4],
            line[name_at - 3 : name_at - 1].strip(),
            line[name_at : line.index("|")].rstrip(),
        )
        for line in span_lines
    ]
    assert parsed == expected
    assert f"linked to orders orders-events publish (trace {TRACE[:8]}…)" in result.output
    assert "error: bucket missing" in result.output


def test_trace_command_reads_the_configured_span_file_by_default(
    span_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTFORGE_SPAN_FILE", str(span_file))

    result = CliRunner().invoke(main, ["trace", "req-other", "--width", "100"])

    assert result.exit_code == 0, result.output
    assert "GetFile" in result.output
    assert "└ files.lookup" in result.output
    assert "CreateOrder" not in result.output


def test_trace_command_exits_1_when_nothing_matches(span_file: Path, tmp_path: Path) -> None:
    unknown = CliRunner().invoke(main, ["trace", "req-nobody", "--file", str(span_file)])
    missing = CliRunner().invoke(main, ["trace", REQUEST_ID, "--file", str(tmp_path / "none")])

    assert unknown.exit_code == 1
    assert "no span with request id 'req-nobody' among the 7 spans" in unknown.output
    assert missing.exit_code == 1
    assert "does not exist" in missing.output


@pytest.mark.parametrize("width", [10, 14, 20, 40, 80])
@pytest.mark.parametrize("total", [0.5, 105.0, 2430.51, 123456.78])
def test_the_ruler_labels_never_run_together(width: int, total: float) -> None:
    labels, ticks = ruler(total, width)
    assert len(labels) == len(ticks) == width
    end = f"{total:.2f} ms"
    words = labels.split("  ")
    found = [w.strip() for w in words if w.strip()]
    # Whole labels, two spaces apart at least: the end always, "0 ms" when both fit.
    assert all(label.endswith(" ms") for label in found) or len(end) > width
    if len(end) + 6 <= width:
        assert found[0] == "0 ms"
        assert found[-1] == end


def test_the_header_ruler_shows_both_ends_apart() -> None:
    for width, expected in ((120, ["0 ms", "105.00 ms"]), (160, ["0 ms", "52.50 ms", "105.00 ms"])):
        lines = render(build_waterfall(_records(), REQUEST_ID), width=width).splitlines()
        header = next(line for line in lines if line.lstrip().startswith("offset ms"))
        scale = header[header.index("span") + len("span") :].split("  ")
        assert [part.strip() for part in scale if part.strip()] == expected
    ticks = lines[lines.index(header) + 1].strip()  # of the wide one
    assert ticks.startswith("├")
    assert ticks.endswith("┤")
    assert "┼" in ticks
