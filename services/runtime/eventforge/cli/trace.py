"""`eventforge trace REQUEST_ID`: the waterfall of one request from the local span file."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from eventforge.runtime.settings import Settings


@click.command("trace")
@click.argument("request_id")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Span file to read  [default: EVENTFORGE_SPAN_FILE, or <data dir>/spans.jsonl]",
)
@click.option("--width", type=click.IntRange(40), help="Line width  [default: the terminal's]")
def trace_command(request_id: str, path: Path | None, width: int | None) -> None:
    """Waterfall of every trace of REQUEST_ID, from the span file.

    One waterfall per trace: the spans carrying the request id and every other span of
    their trace, in start order, indented by depth, with the offset from the trace start
    and the duration in ms, service, kind and a bar on the trace's timeline. ⇢ marks an
    async hop (a producer or consumer span, a linked span, or a child of another service's
    producer/consumer span); ✗ an error. Exits 1 when no span matches.
    """
    from eventforge.runtime.telemetry import read_span_file
    from eventforge.runtime.waterfall import build_waterfall, render

    path = path or Settings().spans_path
    if not path.exists():
        raise click.ClickException(f"span file {path} does not exist (see --file)")
    try:
        records = read_span_file(path)
    except ValueError as error:
        raise click.ClickException(f"{path} is not a span file: {error}") from None
    rows = build_waterfall(records, request_id)
    if not rows:
        raise click.ClickException(
            f"no span with request id {request_id!r} among the {len(records)} spans of {path}"
        )
    columns = width or shutil.get_terminal_size((120, 24)).columns
    traces = len({row.trace_id for row in rows})
    click.echo(
        f"request {request_id}: {len(rows)} span{'s' if len(rows) != 1 else ''} in "
        f"{traces} trace{'s' if traces != 1 else ''}\n"
    )
    click.echo(render(rows, columns))
