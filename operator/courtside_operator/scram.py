"""SCRAM-SHA-256 verifiers for role passwords, computed here so that a tenant role's
password never reaches PostgreSQL, nor its statement log, in plaintext: the server stores a
`PASSWORD 'SCRAM-SHA-256$…'` verifier as given (as CloudNativePG and libpq's
PQencryptPasswordConn send it). RFC 5802/7677 with the stdlib's PBKDF2 and HMAC; no
library we depend on exposes it (asyncpg keeps its SCRAM client internal)."""

import base64
import hashlib
import hmac
import secrets

PREFIX = "SCRAM-SHA-256$"
ITERATIONS = 4096  # PostgreSQL's default scram_iterations
SALT_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def scram_sha256_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS
) -> str:
    """`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, PostgreSQL's format.

    Only ASCII passwords (the operator's are token_urlsafe): SASLprep, which the server
    applies to the password at login, leaves them unchanged."""
    if not password.isascii():
        raise ValueError("only ASCII passwords (SASLprep is not applied here)")
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    return f"{PREFIX}{iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"
