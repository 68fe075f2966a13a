"""The local stack's state file: written, read back, and never fooled by a reused pid."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from eventforge.cli.local_stack import RecordedProcess, StackState, aimed
from eventforge.runtime.settings import Settings


def _state(supervisor: RecordedProcess, *processes: RecordedProcess) -> StackState:
    return StackState(
        supervisor=supervisor,
        aws_endpoint_url="http://127.0.0.1:4999",
        aws_region="eu-west-1",
        name_prefix="dev",
        addresses={"orders": "127.0.0.1:50051"},
        processes=processes,
    )


def test_the_state_reads_back_as_written(tmp_path: Path) -> None:
    state = _state(RecordedProcess.of("eventforge up", os.getpid()))
    state.write(tmp_path)
    assert StackState.read(tmp_path) == state
    assert not list(tmp_path.glob("*.tmp"))


def test_a_missing_or_unreadable_state_is_no_state(tmp_path: Path) -> None:
    assert StackState.read(tmp_path) is None
    StackState.path(tmp_path).write_text('{"supervisor": ')
    assert StackState.read(tmp_path) is None


def test_a_process_is_alive_only_with_its_own_start_time() -> None:
    me = RecordedProcess.of("me", os.getpid())
    assert me.alive()
    assert not RecordedProcess("me", os.getpid(), me.started - 5).alive()
    ended = subprocess.Popen(["true"])
    ended.wait()
    assert not RecordedProcess("ended", ended.pid, me.started).alive()


def test_leftovers_are_the_recorded_processes_still_running() -> None:
    me = RecordedProcess.of("orders", os.getpid())
    gone = RecordedProcess("files", os.getpid(), me.started - 5)
    state = _state(RecordedProcess("eventforge up", os.getpid(), me.started - 5), me, gone)
    assert not state.running
    assert state.leftovers() == [me]


def test_commands_aim_at_the_running_local_stack(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, aws_endpoint_url=None)
    unaimed, where = aimed(settings)
    assert unaimed.aws_endpoint_url is None
    assert where.startswith("real AWS")

    _state(RecordedProcess.of("eventforge up", os.getpid())).write(tmp_path)
    local, where = aimed(settings)
    assert (local.aws_endpoint_url, local.aws_region, local.name_prefix) == (
        "http://127.0.0.1:4999",
        "eu-west-1",
        "dev",
    )
    assert f"the local stack of {tmp_path}, eventforge up pid {os.getpid()}" in where

    explicit = Settings(data_dir=tmp_path, aws_endpoint_url="http://127.0.0.1:1")
    assert aimed(explicit) == (explicit, "http://127.0.0.1:1 (AWS_ENDPOINT_URL)")
