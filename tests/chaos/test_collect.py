"""What the chaos run reads from its processes' logs."""

from __future__ import annotations

import json
from pathlib import Path

from chaos.collect import email_outcomes


def test_email_outcomes_are_counted_from_the_notifier_logs_only(tmp_path: Path) -> None:
    def line(outcome: str) -> str:
        return json.dumps({"message": "email x", "email_outcome": outcome})

    (tmp_path / "notifier-worker.log").write_text(
        "\n".join([line("confirmed"), line("refused"), "plain text", line("confirmed")])
    )
    (tmp_path / "notifier-api.log").write_text(line("resent"))
    (tmp_path / "orders-worker.log").write_text(line("resent"))
    assert email_outcomes(tmp_path) == {"confirmed": 2, "refused": 1, "resent": 1}
