"""A notifier sender killed (SIGKILL) right after SES accepted an email, before it records it.

Run as a process: `python -m tests.notifier.crashing_sender NOTIFICATION_ID`, with the
stack's environment. It claims that one email as the dispatcher does, sends it through the
real SES mailer and dies on SES's answer: exactly the window between the provider accepting
an email and the notifier's commit.
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import UTC, datetime

from eventforge.notifier.bootstrap import bootstrap
from eventforge.notifier.service_layer.notifications import send_email
from eventforge.notifier.service_layer.ports import Mailer
from eventforge.runtime.settings import Settings


class DiesOnAnswer(Mailer):
    """The real mailer, and a kill -9 as soon as it returns SES's message id."""

    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    def send(
        self, *, notification_id: str, recipient: str, subject: str, text: str, html: str
    ) -> str:
        message_id = self.mailer.send(
            notification_id=notification_id,
            recipient=recipient,
            subject=subject,
            text=text,
            html=html,
        )
        print(message_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


def main(notification_id: str) -> None:
    app = bootstrap(Settings())
    policy = app.email_policy
    with app.uow() as uow:
        notification = uow.notifications.get(notification_id, for_update=True)
        if notification is None:
            raise SystemExit(f"no email {notification_id}")
        notification.claim(datetime.now(UTC), lease=policy.lease)
        uow.notifications.save(notification)
        uow.commit()
    send_email(notification, uow=app.uow(), mailer=DiesOnAnswer(app.mailer), policy=policy)
    raise SystemExit("the sender outlived SES's answer")


if __name__ == "__main__":
    main(sys.argv[1])
