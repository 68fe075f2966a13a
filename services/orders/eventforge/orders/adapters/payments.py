"""A deterministic local payment provider: the token chooses the outcome, so failures are easy.

Tokens:
  tok_success             the charge succeeds
  tok_decline             declined for good ("card declined")
  tok_insufficient_funds  declined for good ("insufficient funds")
  tok_transient_N         N attempts fail as unavailable (N = 1..9), then the charge succeeds
  tok_timeout             every attempt times out
  tok_refund_fails        the charge succeeds; its refund is refused
  tok_pending             the charge is accepted but pending: the provider settles or refuses
                          it later, out of band (`settle`, then its webhook reports it as
                          payment.succeeded / payment.failed); a refund before then voids it
Any other token is declined as unknown. Charges and refunds are kept in the provider's own
tables, once per idempotency key, so a retried call never charges or refunds twice; a repeated
charge answers the charge as it stands (pending, settled, or declined once refused).
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine, Row
from sqlalchemy.exc import IntegrityError

from eventforge.orders.adapters.tables import payment_attempts, payment_charges, payment_refunds
from eventforge.orders.service_layer.ports import (
    Charge,
    ChargeState,
    ChargeStatus,
    PaymentDeclined,
    PaymentGateway,
    PaymentUnavailable,
)

_TRANSIENT = re.compile(r"^tok_transient_([1-9])$")
_DECLINES = {
    "tok_decline": "card declined",
    "tok_insufficient_funds": "insufficient funds",
}
SUCCEEDING = ("tok_success", "tok_refund_fails", "tok_pending")
REFUND_REFUSED = "tok_refund_fails"
TIMES_OUT = "tok_timeout"
PENDS = "tok_pending"

# The states of a charge in the provider's books.
SETTLED, PENDING, FAILED, VOIDED = "settled", "pending", "failed", "voided"


class LocalPaymentGateway(PaymentGateway):
    """Keeps its books in its own transactions, as an external provider would."""

    def __init__(self, engine: Engine, *, timeout_seconds: float = 0.05) -> None:
        self.engine = engine
        self.timeout_seconds = timeout_seconds

    def charge(
        self, *, idempotency_key: str, order_id: str, amount_minor: int, currency: str, token: str
    ) -> Charge:
        existing = self._charge_under(idempotency_key)
        if existing is not None:
            return _answer(existing)
        attempt = self._count_attempt(idempotency_key)
        self._decide(token, attempt)
        payment_id = f"pay_{uuid.uuid4().hex}"
        status = PENDING if token == PENDS else SETTLED
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    sa.insert(payment_charges).values(
                        payment_id=payment_id,
                        idempotency_key=idempotency_key,
                        order_id=order_id,
                        amount_minor=amount_minor,
                        currency=currency,
                        token=token,
                        created_at=datetime.now(UTC),
                        status=status,
                    )
                )
        except IntegrityError:
            # A concurrent call with the same key won: its charge is the charge.
            won = self._charge_under(idempotency_key)
            if won is None:
                raise PaymentUnavailable(f"charge for {idempotency_key} vanished") from None
            return _answer(won)
        return Charge(payment_id, pending=status == PENDING)

    def settle(self, payment_id: str, *, succeeded: bool = True, reason: str = "") -> None:
        """Settle a pending charge out of band, as the provider does before its webhook reports
        it (payment.succeeded, or payment.failed with `reason`): for tests and the local demo."""
        with self.engine.begin() as connection:
            settled = connection.execute(
                sa.update(payment_charges)
                .where(payment_charges.c.payment_id == payment_id)
                .where(payment_charges.c.status == PENDING)
                .values(
                    status=SETTLED if succeeded else FAILED,
                    reason="" if succeeded else reason or "card declined",
                )
            )
            if settled.rowcount != 1:
                raise LookupError(f"no pending charge {payment_id}")

    def refund(self, *, idempotency_key: str, payment_id: str) -> None:
        with self.engine.begin() as connection:
            charged = connection.execute(
                sa.select(payment_charges.c.token, payment_charges.c.status).where(
                    payment_charges.c.payment_id == payment_id
                )
            ).one_or_none()
            if charged is None:
                raise PaymentDeclined(f"no charge {payment_id}")
            done = connection.scalar(
                sa.select(sa.func.count()).where(payment_refunds.c.payment_id == payment_id)
            )
            if done or charged.status == FAILED:
                return  # refunded already, or it never took any money
            if charged.token == REFUND_REFUSED:
                raise PaymentDeclined("refund refused by the provider")
            if charged.status == PENDING:
                # Voided before it settled: it never will.
                connection.execute(
                    sa.update(payment_charges)
                    .where(payment_charges.c.payment_id == payment_id)
                    .values(status=VOIDED)
                )
            try:
                with connection.begin_nested():
                    connection.execute(
                        sa.insert(payment_refunds).values(
                            refund_id=f"ref_{uuid.uuid4().hex}",
                            idempotency_key=idempotency_key,
                            payment_id=payment_id,
                            created_at=datetime.now(UTC),
                        )
                    )
            except IntegrityError:
                return  # refunded concurrently under the same key

    def _decide(self, token: str, attempt: int) -> None:
        if token in SUCCEEDING:
            return
        if token in _DECLINES:
            raise PaymentDeclined(_DECLINES[token])
        if token == TIMES_OUT:
            time.sleep(self.timeout_seconds)
            raise PaymentUnavailable("payment provider timed out")
        transient = _TRANSIENT.match(token)
        if transient:
            if attempt <= int(transient.group(1)):
                raise PaymentUnavailable(f"payment provider unavailable (attempt {attempt})")
            return
        raise PaymentDeclined("unknown payment token")

    def charge_status(self, payment_id: str) -> ChargeStatus:
        with self.engine.connect() as connection:
            found = connection.execute(
                sa.select(payment_charges.c.status, payment_charges.c.reason).where(
                    payment_charges.c.payment_id == payment_id
                )
            ).one_or_none()
        if found is None:
            return ChargeStatus(ChargeState.FAILED, "no such charge")
        return ChargeStatus(ChargeState(found.status), found.reason or "")

    def find_charge(self, idempotency_key: str) -> str | None:
        found = self._charge_under(idempotency_key)
        return None if found is None or found.status == FAILED else str(found.payment_id)

    def _charge_under(self, idempotency_key: str) -> Row[Any] | None:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(
                    payment_charges.c.payment_id,
                    payment_charges.c.status,
                    payment_charges.c.reason,
                ).where(payment_charges.c.idempotency_key == idempotency_key)
            ).one_or_none()

    def _count_attempt(self, idempotency_key: str) -> int:
        """Count this attempt for the key (the transient tokens fail their first N)."""
        with self.engine.begin() as connection:
            for _ in range(2):
                updated = connection.execute(
                    sa.update(payment_attempts)
                    .where(payment_attempts.c.idempotency_key == idempotency_key)
                    .values(attempts=payment_attempts.c.attempts + 1)
                    .returning(payment_attempts.c.attempts)
                ).scalar_one_or_none()
                if updated is not None:
                    return int(updated)
                try:
                    with connection.begin_nested():
                        connection.execute(
                            sa.insert(payment_attempts).values(
                                idempotency_key=idempotency_key, attempts=1
                            )
                        )
                    return 1
                except IntegrityError:
                    continue  # a concurrent first attempt inserted it: count on top of it
        raise PaymentUnavailable("could not record the payment attempt")


def _answer(charge: Row[Any]) -> Charge:
    """A charge already made, as a repeated charge call answers it."""
    if charge.status == FAILED:
        raise PaymentDeclined(charge.reason or "refused by the provider")
    return Charge(str(charge.payment_id), pending=charge.status == PENDING)
