"""The vault seals with the first key, opens with any, and never returns garbage."""

from __future__ import annotations

import base64
import hashlib
import pickle

import pytest

from app.vault import (
    Sealed,
    Vault,
    VaultConfigError,
    VaultDecryptError,
    generate_key,
    key_id_for,
)

AAD = b"k8s_clusters.kubeconfig:7b0f6c1e-0000-4000-8000-000000000001"
SECRET = b"apiVersion: v1\nusers:\n- name: admin\n  user:\n    token: s3cr3t-token\n"


def raw(key: str) -> bytes:
    return base64.urlsafe_b64decode(key)


def test_generate_key_is_urlsafe_base64_of_32_random_bytes() -> None:
    first, second = generate_key(), generate_key()
    assert len(first) == 44 and first.endswith("=")
    assert len(raw(first)) == 32
    assert first != second


def test_key_id_is_stable_short_and_domain_separated() -> None:
    key = generate_key()
    expected = hashlib.sha256(b"fleetgraph/vault/key-id/v1\x00" + raw(key)).hexdigest()[:8]
    assert key_id_for(raw(key)) == expected
    assert Vault.from_env(key).primary_key_id == expected
    assert Vault.from_env(key).primary_key_id == Vault.from_env(key).primary_key_id
    # Not the plain hash of the key: a leaked id says nothing about a bare SHA-256 of the key.
    assert expected != hashlib.sha256(raw(key)).hexdigest()[:8]


def test_round_trip_binds_associated_data() -> None:
    vault = Vault.from_env(generate_key())
    sealed = vault.encrypt(SECRET, aad=AAD)
    assert isinstance(sealed, Sealed)
    assert sealed.key_id == vault.primary_key_id
    assert SECRET not in sealed.ciphertext
    assert b"s3cr3t-token" not in sealed.ciphertext
    assert vault.decrypt(sealed.ciphertext, key_id=sealed.key_id, aad=AAD) == SECRET


def test_same_plaintext_seals_differently_each_time() -> None:
    vault = Vault.from_env(generate_key())
    assert vault.encrypt(SECRET, aad=AAD).ciphertext != vault.encrypt(SECRET, aad=AAD).ciphertext


def test_empty_plaintext_round_trips() -> None:
    vault = Vault.from_env(generate_key())
    sealed = vault.encrypt(b"", aad=AAD)
    assert vault.decrypt(sealed.ciphertext, key_id=sealed.key_id, aad=AAD) == b""


def test_rotation_with_two_keys_old_key_second_still_decrypts() -> None:
    old_key, new_key = generate_key(), generate_key()
    old_vault = Vault.from_env(old_key)
    stored = old_vault.encrypt(SECRET, aad=AAD)

    rotating = Vault.from_env(f"{new_key}, {old_key}")
    assert rotating.key_ids == (key_id_for(raw(new_key)), key_id_for(raw(old_key)))
    assert rotating.needs_rotation(stored.key_id)
    assert rotating.decrypt(stored.ciphertext, key_id=stored.key_id, aad=AAD) == SECRET

    resealed = rotating.reencrypt(stored.ciphertext, key_id=stored.key_id, aad=AAD)
    assert resealed.key_id == rotating.primary_key_id == key_id_for(raw(new_key))
    assert not rotating.needs_rotation(resealed.key_id)

    # Once everything is re-sealed, the old key can be dropped from the list.
    new_only = Vault.from_env(new_key)
    assert new_only.decrypt(resealed.ciphertext, key_id=resealed.key_id, aad=AAD) == SECRET
    with pytest.raises(VaultDecryptError) as refused:
        new_only.decrypt(stored.ciphertext, key_id=stored.key_id, aad=AAD)
    assert refused.value.reason == "unknown-key"
    assert refused.value.key_id == stored.key_id
    assert f"encrypted with key {stored.key_id} which is not configured" in str(refused.value)


def test_ciphertext_under_one_key_presented_as_another_fails_authentication() -> None:
    first, second = generate_key(), generate_key()
    vault = Vault.from_env(f"{first},{second}")
    sealed = Vault.from_env(second).encrypt(SECRET, aad=AAD)
    with pytest.raises(VaultDecryptError) as refused:
        vault.decrypt(sealed.ciphertext, key_id=vault.primary_key_id, aad=AAD)
    assert refused.value.reason == "authentication-failed"
    assert "ciphertext failed authentication" in str(refused.value)


def test_wrong_key_is_a_clear_error_never_garbage() -> None:
    sealed = Vault.from_env(generate_key()).encrypt(SECRET, aad=AAD)
    other = Vault.from_env(generate_key())
    with pytest.raises(VaultDecryptError, match="which is not configured"):
        other.decrypt(sealed.ciphertext, key_id=sealed.key_id, aad=AAD)


@pytest.mark.parametrize("position", [0, 1, 7, 20, -17, -1], ids=lambda p: f"byte{p}")
def test_tampered_ciphertext_is_refused(position: int) -> None:
    vault = Vault.from_env(generate_key())
    sealed = vault.encrypt(SECRET, aad=AAD)
    tampered = bytearray(sealed.ciphertext)
    tampered[position] ^= 0x01
    with pytest.raises(VaultDecryptError) as refused:
        vault.decrypt(bytes(tampered), key_id=sealed.key_id, aad=AAD)
    assert refused.value.reason in {"authentication-failed", "malformed"}


def test_truncated_ciphertext_is_refused_as_malformed() -> None:
    vault = Vault.from_env(generate_key())
    sealed = vault.encrypt(SECRET, aad=AAD)
    with pytest.raises(VaultDecryptError) as refused:
        vault.decrypt(sealed.ciphertext[:20], key_id=sealed.key_id, aad=AAD)
    assert refused.value.reason == "malformed"


def test_ciphertext_moved_to_another_row_fails_authentication() -> None:
    vault = Vault.from_env(generate_key())
    sealed = vault.encrypt(SECRET, aad=AAD)
    other_row = b"k8s_clusters.kubeconfig:7b0f6c1e-0000-4000-8000-000000000002"
    with pytest.raises(VaultDecryptError, match="ciphertext failed authentication"):
        vault.decrypt(sealed.ciphertext, key_id=sealed.key_id, aad=other_row)


def test_empty_associated_data_is_refused() -> None:
    vault = Vault.from_env(generate_key())
    with pytest.raises(ValueError, match="aad must name the record"):
        vault.encrypt(SECRET, aad=b"")


@pytest.mark.parametrize("value", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_missing_key_says_what_to_set_and_how_to_generate(value: str | None) -> None:
    with pytest.raises(VaultConfigError) as refused:
        Vault.from_env(value)
    message = str(refused.value)
    assert "BYOK_ENCRYPTION_KEY" in message
    assert "fleetgraph vault generate-key" in message


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-key",
        base64.urlsafe_b64encode(b"x" * 16).decode(),  # AES-128-sized
        base64.urlsafe_b64encode(b"x" * 33).decode(),
        base64.b64encode(b"\xfb" * 32).decode(),  # standard alphabet, not urlsafe
        "A" * 43 + "!",
    ],
    ids=["garbage", "too-short", "too-long", "std-alphabet", "bad-char"],
)
def test_malformed_key_is_refused_without_echoing_it(bad: str) -> None:
    good = generate_key()
    with pytest.raises(VaultConfigError) as refused:
        Vault.from_env(f"{good},{bad}")
    message = str(refused.value)
    assert "entry 2 of 2" in message
    assert "fleetgraph vault generate-key" in message
    assert bad not in message and good not in message


def test_empty_entry_and_repeated_key_are_refused() -> None:
    key = generate_key()
    with pytest.raises(VaultConfigError, match="entry 2 of 2 is empty"):
        Vault.from_env(f"{key},")
    with pytest.raises(VaultConfigError, match="repeats an earlier key"):
        Vault.from_env(f"{key},{key}")


def test_key_material_never_appears_in_repr_str_or_errors() -> None:
    key = generate_key()
    vault = Vault.from_env(key)
    sealed = vault.encrypt(SECRET, aad=AAD)
    try:
        vault.decrypt(sealed.ciphertext, key_id="deadbeef", aad=AAD)
    except VaultDecryptError as exc:
        error_text = f"{exc!r} {exc}"
    texts = [repr(vault), str(vault), repr(sealed), str(sealed), error_text]
    forms = [key, key.rstrip("="), raw(key).hex(), repr(raw(key))]
    for text in texts:
        for form in forms:
            assert form not in text
    assert vault.primary_key_id in repr(vault)
    with pytest.raises(TypeError):
        pickle.dumps(vault)


def test_unknown_key_id_from_storage_is_not_echoed_verbatim_when_odd() -> None:
    vault = Vault.from_env(generate_key())
    sealed = vault.encrypt(SECRET, aad=AAD)
    with pytest.raises(VaultDecryptError) as refused:
        vault.decrypt(sealed.ciphertext, key_id="<script>\n", aad=AAD)
    assert "<script>" not in str(refused.value)
    assert "<invalid key id>" in str(refused.value)


def test_needs_rotation_only_for_keys_other_than_the_first() -> None:
    first, second = generate_key(), generate_key()
    vault = Vault.from_env(f"{first},{second}")
    assert not vault.needs_rotation(key_id_for(raw(first)))
    assert vault.needs_rotation(key_id_for(raw(second)))
    assert vault.needs_rotation("00000000")
