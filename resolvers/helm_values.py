"""A Helm release's values: opened from the vault, then redacted unless an admin asks not to.

The values are sealed per release (the associated data names the cluster, namespace and
release), so a ciphertext moved to another row does not open. A value that cannot be opened is
reported as unavailable, never as garbage and never with the key material in the message.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from app.auth import Role
from app.credentials import helm_values_aad
from app.vault import VaultDecryptError
from resolvers.context import Context
from resolvers.errors import ApiError
from resolvers.redaction import redact

log = logging.getLogger(__name__)


class ValuesUnavailable(ApiError):
    code = "VALUES_UNAVAILABLE"


def release_values(ctx: Context, row: Any, *, redacted: bool) -> Any:
    """The release's values (a JSON object), redacted unless ``redacted`` is False (admins)."""
    ctx.require(Role.VIEWER if redacted else Role.ADMIN)
    if row["values_encrypted"] is None:
        return None
    aad = helm_values_aad(row["cluster_id"], row["namespace"], row["name"])
    try:
        plain = ctx.vault.decrypt(row["values_encrypted"], key_id=row["values_key_id"], aad=aad)
    except VaultDecryptError as exc:
        log.warning("helm values of %s/%s did not open: %s", row["namespace"], row["name"],
                    exc.reason)
        raise ValuesUnavailable("the stored values of this release cannot be opened") from None
    values = orjson.loads(plain)
    return redact(values) if redacted else values
