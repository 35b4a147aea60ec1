"""Ed25519 key files: PEM (PKCS#8) private keys, raw 32-byte public keys in hex."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from aggregator.errors import BadInput


class KeyFileError(BadInput):
    """A key file or public key that cannot be used; the message names the file (``key_file.*``)."""

    default_code = "input.key_file"


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def save_private(key: Ed25519PrivateKey, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: 无法读取私钥文件 (cannot read key file): {exc.strerror}",
                           code="key_file.unreadable") from None
    try:
        key = load_pem_private_key(data, password=None)
    except ValueError:
        raise KeyFileError(f"{path}: 不是 PEM 格式的 Ed25519 私钥 (not a PEM Ed25519 private key)",
                           code="key_file.not_pem") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: 密钥类型不是 Ed25519 (key is not Ed25519)", code="key_file.wrong_type")
    return key


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_from_hex(text: str, what: str) -> Ed25519PublicKey:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise KeyFileError(f"{what}: 公钥应为64位十六进制 (public key must be 64 hex digits)",
                           code="key_file.bad_public_hex") from None
    if len(raw) != 32:
        raise KeyFileError(f"{what}: 公钥应为32字节 (public key must be 32 bytes)", code="key_file.bad_public_length")
    return Ed25519PublicKey.from_public_bytes(raw)
