"""The credential vault: the only place where stored cluster secrets are turned back into text.

FleetGraph keeps admin kubeconfigs (and, later, Helm release values) for every cluster it
manages, so a stolen database dump must be worthless on its own. Every secret is sealed with
AES-256-GCM under a key that lives only in the process environment (``BYOK_ENCRYPTION_KEY``).

Why AES-256-GCM rather than Fernet: GCM lets us bind *associated data* to each ciphertext.
Callers pass a context such as ``b"k8s_clusters.kubeconfig:<cluster uuid>"``, so a ciphertext
copied into another row (another cluster, another tenant) fails authentication instead of
quietly handing one organization's credentials to another.

Stored format (``Sealed.ciphertext``): ``version (1 byte, 0x01) || nonce (12 bytes) || GCM
ciphertext+tag``. The nonce is 96 random bits per message, which is safe for far more secrets
than this product will ever seal under one key (the NIST bound for random nonces is 2**32
messages per key). The version byte is authenticated too: it is part of the associated data.

Rotation: ``BYOK_ENCRYPTION_KEY`` is a comma-separated list. The first key encrypts, every key
decrypts. Each key has a short, stable *key id* stored beside the ciphertext, so a row says
which key sealed it and ``fleetgraph vault rotate`` can re-seal only what ``needs_rotation``.
The id is the first 8 hex digits of SHA-256 over a domain-separation label and the key; it
identifies a key without revealing anything usable about it.

Key material never appears in ``repr``/``str`` of any object here, nor in any error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ENV_VAR",
    "KEY_BYTES",
    "Sealed",
    "Vault",
    "VaultConfigError",
    "VaultDecryptError",
    "VaultError",
    "generate_key",
    "key_id_for",
]

ENV_VAR = "BYOK_ENCRYPTION_KEY"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
FORMAT_V1 = b"\x01"

_KEY_ID_LABEL = b"fleetgraph/vault/key-id/v1\x00"
_KEY_ID_PATTERN = re.compile(r"^[0-9a-f]{8}$")
# 32 bytes in urlsafe base64 are 43 significant characters plus one "=" of padding.
_KEY_TEXT_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}=?$")
_HOW_TO_FIX = (
    f"Set {ENV_VAR} to one or more comma-separated keys (urlsafe base64 of {KEY_BYTES} "
    "random bytes; the first key encrypts, all of them decrypt). "
    "Generate a key with `fleetgraph vault generate-key`."
)


class VaultError(Exception):
    """Base class for every vault failure; never carries key material or plaintext."""


class VaultConfigError(VaultError):
    """``BYOK_ENCRYPTION_KEY`` is missing or malformed; the server must not start."""


class VaultDecryptError(VaultError):
    """A sealed value could not be opened.

    ``reason`` is one of ``"unknown-key"`` (the key id is not configured), ``"malformed"``
    (the stored bytes are not a vault ciphertext) or ``"authentication-failed"`` (wrong key,
    tampered bytes, or the ciphertext belongs to a different record / associated data).
    """

    def __init__(self, message: str, *, key_id: str, reason: str) -> None:
        super().__init__(message)
        self.key_id = key_id
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Sealed:
    """A ciphertext plus the id of the key that sealed it; store both side by side."""

    ciphertext: bytes
    key_id: str

    def __repr__(self) -> str:
        return f"Sealed(key_id={self.key_id!r}, ciphertext=<{len(self.ciphertext)} bytes>)"


class _VaultKey:
    """One configured key: its id and a ready AES-GCM cipher. The raw bytes are not kept."""

    __slots__ = ("_cipher", "key_id")

    def __init__(self, key: bytes) -> None:
        self.key_id = key_id_for(key)
        self._cipher = AESGCM(key)

    def seal(self, plaintext: bytes, *, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return FORMAT_V1 + nonce + self._cipher.encrypt(nonce, plaintext, FORMAT_V1 + aad)

    def open(self, ciphertext: bytes, *, aad: bytes) -> bytes:
        nonce = ciphertext[1 : 1 + NONCE_BYTES]
        body = ciphertext[1 + NONCE_BYTES :]
        try:
            return self._cipher.decrypt(nonce, body, FORMAT_V1 + aad)
        except InvalidTag:
            raise VaultDecryptError(
                f"ciphertext failed authentication under key {self.key_id}: wrong key, "
                "tampered data, or it belongs to a different record",
                key_id=self.key_id,
                reason="authentication-failed",
            ) from None

    def __repr__(self) -> str:
        return f"<vault key {self.key_id}>"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("vault keys cannot be pickled")


def key_id_for(key: bytes) -> str:
    """The stable short id of a raw 32-byte key (first 8 hex of a domain-separated SHA-256)."""
    return hashlib.sha256(_KEY_ID_LABEL + key).hexdigest()[:8]


def generate_key() -> str:
    """A fresh random key in the ``BYOK_ENCRYPTION_KEY`` format (urlsafe base64, 32 bytes)."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def _decode_key(text: str, *, position: int, count: int) -> bytes:
    """Decode one configured key; errors name its position, never its value."""
    where = f"{ENV_VAR} entry {position} of {count}"
    if not text:
        raise VaultConfigError(f"{where} is empty. {_HOW_TO_FIX}")
    if not _KEY_TEXT_PATTERN.fullmatch(text):
        raise VaultConfigError(
            f"{where} is not a valid key: expected urlsafe base64 of exactly {KEY_BYTES} "
            f"bytes (44 characters). {_HOW_TO_FIX}"
        )
    try:
        key = base64.urlsafe_b64decode(text.rstrip("=") + "=")
    except (binascii.Error, ValueError):
        raise VaultConfigError(f"{where} is not valid base64. {_HOW_TO_FIX}") from None
    if len(key) != KEY_BYTES:  # unreachable given the pattern, kept as a hard guarantee
        raise VaultConfigError(f"{where} does not decode to {KEY_BYTES} bytes. {_HOW_TO_FIX}")
    return key


def _safe_key_id(key_id: object) -> str:
    """A key id fit for an error message: real ids verbatim, anything else summarized."""
    if isinstance(key_id, str) and _KEY_ID_PATTERN.fullmatch(key_id):
        return key_id
    return "<invalid key id>"


class Vault:
    """Seals and opens secrets with the configured keys (first encrypts, all decrypt)."""

    __slots__ = ("_keys", "_primary")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise VaultConfigError(f"no encryption key configured. {_HOW_TO_FIX}")
        by_id: dict[str, _VaultKey] = {}
        for position, raw in enumerate(keys, start=1):
            if not isinstance(raw, bytes) or len(raw) != KEY_BYTES:
                raise VaultConfigError(
                    f"key {position} is not {KEY_BYTES} raw bytes. {_HOW_TO_FIX}"
                )
            key = _VaultKey(raw)
            if key.key_id in by_id:
                raise VaultConfigError(
                    f"{ENV_VAR} entry {position} repeats an earlier key (id {key.key_id}); "
                    "list each key once"
                )
            by_id[key.key_id] = key
        self._keys = by_id
        self._primary = next(iter(by_id.values()))

    @classmethod
    def from_env(cls, value: str | None) -> Vault:
        """Build the vault from the raw ``BYOK_ENCRYPTION_KEY`` value (``None`` if unset)."""
        if value is None or not value.strip():
            raise VaultConfigError(f"{ENV_VAR} is not set. {_HOW_TO_FIX}")
        entries = [entry.strip() for entry in value.split(",")]
        return cls(
            [
                _decode_key(entry, position=position, count=len(entries))
                for position, entry in enumerate(entries, start=1)
            ]
        )

    @property
    def primary_key_id(self) -> str:
        """Id of the key that seals new values."""
        return self._primary.key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Ids of every configured key, encrypting key first."""
        return tuple(self._keys)

    def encrypt(self, plaintext: bytes, *, aad: bytes) -> Sealed:
        """Seal ``plaintext`` with the first key, bound to ``aad`` (the record's context)."""
        _require_bytes(plaintext, name="plaintext")
        _require_aad(aad)
        return Sealed(ciphertext=self._primary.seal(plaintext, aad=aad), key_id=self.primary_key_id)

    def decrypt(self, ciphertext: bytes, *, key_id: str, aad: bytes) -> bytes:
        """Open a sealed value; raises ``VaultDecryptError`` rather than ever returning garbage."""
        _require_bytes(ciphertext, name="ciphertext")
        _require_aad(aad)
        key = self._keys.get(key_id)
        if key is None:
            shown = _safe_key_id(key_id)
            raise VaultDecryptError(
                f"ciphertext was encrypted with key {shown} which is not configured in "
                f"{ENV_VAR} (configured: {', '.join(self._keys)}); add that key back to the "
                "list to read it",
                key_id=shown,
                reason="unknown-key",
            )
        if len(ciphertext) < 1 + NONCE_BYTES + TAG_BYTES or ciphertext[:1] != FORMAT_V1:
            raise VaultDecryptError(
                "ciphertext is malformed: not a FleetGraph vault v1 value",
                key_id=key.key_id,
                reason="malformed",
            )
        return key.open(ciphertext, aad=aad)

    def needs_rotation(self, key_id: str) -> bool:
        """True when a value sealed under ``key_id`` should be re-sealed with the first key."""
        return key_id != self.primary_key_id

    def reencrypt(self, ciphertext: bytes, *, key_id: str, aad: bytes) -> Sealed:
        """Open a value and seal it again with the first key (what ``vault rotate`` does)."""
        return self.encrypt(self.decrypt(ciphertext, key_id=key_id, aad=aad), aad=aad)

    def __repr__(self) -> str:
        return f"Vault(key_ids={list(self._keys)!r})"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("the vault cannot be pickled")


def _require_bytes(value: object, *, name: str) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")


def _require_aad(aad: object) -> None:
    _require_bytes(aad, name="aad")
    if not aad:
        raise ValueError(
            "aad must name the record the secret belongs to "
            '(for example b"k8s_clusters.kubeconfig:<cluster uuid>")'
        )
