"""A short `python -m chaos` for real: the stack, load, a few faults, the drain and the checks.

The full run (`make chaos`) takes minutes; this one keeps to the faults whose effects settle in
seconds (relay kills, an emulator pause, a database outage), so it stays well under a minute on
an idle machine.
"""

from __future__ import annotations

import re

import pytest

from chaos.run import main

pytestmark = pytest.mark.integration

SUMMARY = re.compile(
    r"orders=(\d+) terminal=\1 lost=0 double_charges=0 duplicate_notifications=0 dlq_unexpected=0"
    r" webhook_redeliveries=\d+"
)


@pytest.mark.timeout(300)
def test_a_short_chaos_run_loses_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--duration=12",
            "--rate=1",
            "--upload-every=3",
            "--pause-seconds=3",
            "--outage-seconds=2",
            "--drain-timeout=120",
            "--faults=relay_kill,emulator_pause,db_outage",
            "--seed=7",
        ]
    )
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert SUMMARY.fullmatch(lines[-1]), out
    assert int(lines[-1].split()[0].removeprefix("orders=")) >= 5, out
    assert code == 0, out
    health = [line for line in lines if line.startswith("db outage health: ")]
    assert len(health) == 3, out
    assert all("NOT_SERVING" in line and "SERVING" in line for line in health), out
    assert re.search(r"emulator_pause=1", out), out
