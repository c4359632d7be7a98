"""Stripe webhook ingestion: verify first, then record a minimal, card-free row.

Only what the ROI report needs is stored: event id, type, amount in minor
units, currency and our customer id. The raw payload, card details, emails
and names never reach the database or the logs; an email is used only to look
up the customer row, in memory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

import psycopg
import stripe

#: Stripe's default: a signature older than five minutes is a replay.
SIGNATURE_TOLERANCE_SECONDS: Final = 300

#: Event types recorded, and where each keeps its amount. Others are acknowledged and counted.
RECORDED_TYPES: Final = {"charge.succeeded": "amount", "refund.created": "amount"}

_EVENT_ID = re.compile(r"^evt_[A-Za-z0-9]{1,250}$")
_CURRENCY = re.compile(r"^[a-z]{3}$")
_CUSTOMER_ID = re.compile(r"^[1-9][0-9]{0,17}$")
_MAX_AMOUNT: Final = 2**63 - 1


class WebhookRejected(Exception):
    """The request is not a valid, signed Stripe event; ``str(self)`` is safe to return."""


@dataclass(frozen=True)
class PaymentEvent:
    stripe_event_id: str
    event_type: str
    amount_minor: int
    currency: str
    customer_ref: str | None
    customer_email: str | None

    def __repr__(self) -> str:  # never print the email
        return f"PaymentEvent({self.stripe_event_id}, {self.event_type})"


@dataclass(frozen=True)
class Verified:
    event_id: str
    event_type: str
    payment: PaymentEvent | None


def verify(body: bytes, signature: str | None, secret: str) -> Verified:
    """Check the signature (and timestamp) before looking at the body; then extract the event."""
    if not signature:
        raise WebhookRejected("missing Stripe-Signature header")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected("body is not UTF-8") from None
    try:
        stripe.Webhook.construct_event(text, signature, secret, SIGNATURE_TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError:
        raise WebhookRejected(
            "signature verification failed (wrong secret, altered body or stale timestamp)"
        ) from None
    except ValueError:
        raise WebhookRejected("body is not a JSON Stripe event") from None
    # Verified: now parse it ourselves, reading only the fields we keep.
    try:
        event = json.loads(text)
    except ValueError:
        raise WebhookRejected("body is not JSON") from None
    if not isinstance(event, dict):
        raise WebhookRejected("body is not a JSON object")
    event_id = event.get("id")
    event_type = event.get("type")
    if not isinstance(event_id, str) or not _EVENT_ID.match(event_id):
        raise WebhookRejected("event id is missing or malformed (expected evt_...)")
    if not isinstance(event_type, str) or not event_type:
        raise WebhookRejected("event type is missing")
    amount_field = RECORDED_TYPES.get(event_type)
    if amount_field is None:
        return Verified(event_id, event_type[:100], None)
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise WebhookRejected(f"{event_type} event has no data.object")
    amount = obj.get(amount_field)
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= _MAX_AMOUNT:
        raise WebhookRejected(f"data.object.{amount_field} must be a non-negative integer")
    currency = obj.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise WebhookRejected("data.object.currency must be a lower-case ISO 4217 code")
    metadata = obj.get("metadata")
    customer_ref = metadata.get("customer_id") if isinstance(metadata, dict) else None
    email = obj.get("receipt_email") or _billing_email(obj)
    return Verified(
        event_id,
        event_type,
        PaymentEvent(
            event_id,
            event_type,
            amount,
            currency,
            customer_ref if isinstance(customer_ref, str) else None,
            email if isinstance(email, str) else None,
        ),
    )


def _billing_email(obj: dict[str, Any]) -> Any:
    details = obj.get("billing_details")
    return details.get("email") if isinstance(details, dict) else None


def record(conn: psycopg.Connection[Any], event: PaymentEvent) -> bool:
    """Insert the event once; False when this event id was already recorded."""
    with conn.transaction():
        customer_id = _customer_id(conn, event)
        row = conn.execute(
            "INSERT INTO public.payment_events "
            "(stripe_event_id, event_type, amount_minor, currency, customer_id) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (stripe_event_id) DO NOTHING RETURNING id",
            (
                event.stripe_event_id,
                event.event_type,
                event.amount_minor,
                event.currency,
                customer_id,
            ),
        ).fetchone()
    return row is not None


def _customer_id(conn: psycopg.Connection[Any], event: PaymentEvent) -> int | None:
    if event.customer_ref is not None and _CUSTOMER_ID.match(event.customer_ref):
        row = conn.execute(
            "SELECT id FROM public.customers WHERE id = %s", (int(event.customer_ref),)
        ).fetchone()
        if row is not None:
            return int(row[0])
    if event.customer_email is not None and len(event.customer_email) <= 254:
        row = conn.execute(
            "SELECT id FROM public.customers WHERE lower(email) = lower(%s)",
            (event.customer_email.replace("\x00", ""),),
        ).fetchone()
        if row is not None:
            return int(row[0])
    return None
