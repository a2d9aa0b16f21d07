"""The Standard Webhooks scheme (https://www.standardwebhooks.com), by its reference library: secrets `whsec_` +
base64 of random bytes, and the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers."""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook as Signer

SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret
SECRET_BYTES = 32  # the scheme asks for 24 to 64
MIN_SECRET_BYTES = 24


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_problem(secret: str) -> str | None:
    """Why `secret` is no usable Standard Webhooks secret (None: it is one)."""
    if not secret.startswith(SECRET_PREFIX):
        return f"must start with {SECRET_PREFIX}"
    try:
        raw = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        return f"must be {SECRET_PREFIX} followed by base64"
    if not MIN_SECRET_BYTES <= len(raw) <= 64:
        return f"must hold {MIN_SECRET_BYTES} to 64 bytes, not {len(raw)}"
    return None


def signed_headers(secret: str | None, message_id: str, body: str, now: float) -> dict[str, str]:
    """The headers of one attempt. The timestamp is the attempt's (receivers refuse old ones: a retry a day later
    must still verify); the message id stays the same across attempts, so receivers can deduplicate."""
    at = datetime.fromtimestamp(now, UTC)
    headers = {"webhook-id": message_id, "webhook-timestamp": str(int(now)), "content-type": "application/json"}
    if secret:
        headers["webhook-signature"] = Signer(secret).sign(message_id, at, body)
    return headers
