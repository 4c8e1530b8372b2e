#!/usr/bin/env python3
"""Writes what a nats-server in operator (JWT) mode and one user need, for
the test of `circbuf bridge --creds` (tests/bridge/bridge.test.cpp).

    make_creds.py DIR

creates, in DIR:
  server.conf  operator mode, a memory resolver preloaded with two accounts
               (the system account and APP, with JetStream enabled)
  user.creds   a user of APP: its JWT and its nkey seed, in the .creds format
  other.creds  a user signed by a key that is no account of the operator
               (the server must refuse it)

NATS nkeys and JWTs (docs.nats.io, "NKeys" and "JWTs"): an nkey is an
Ed25519 key written as base32(prefix byte(s) + key + CRC-16/XMODEM, little
endian), without padding; a JWT is base64url(header).base64url(claims).
base64url(Ed25519 signature of the first two parts), signed by the issuer's
key. No nsc or nkeys tool is needed: python3-cryptography provides Ed25519.
"""
import base64
import hashlib
import json
import os
import sys
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PREFIX_SEED = 18 << 3
PREFIX_OPERATOR = 14 << 3
PREFIX_ACCOUNT = 0
PREFIX_USER = 20 << 3


def crc16(data: bytes) -> int:  # CRC-16/XMODEM: polynomial 0x1021, initial value 0
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


def with_crc(raw: bytes) -> bytes:
    return raw + crc16(raw).to_bytes(2, "little")


class NKey:
    def __init__(self, prefix: int):
        self.key = Ed25519PrivateKey.generate()
        self.prefix = prefix
        public = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public = b32(with_crc(bytes([prefix]) + public))
        private = self.key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                         serialization.NoEncryption())
        head = bytes([PREFIX_SEED | (prefix >> 5), (prefix & 31) << 3])
        self.seed = b32(with_crc(head + private))


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def jwt(issuer: NKey, subject: str, name: str, nats: dict) -> str:
    claims = {"iat": int(time.time()), "iss": issuer.public, "name": name, "sub": subject, "nats": nats}
    body = json.dumps(claims, separators=(",", ":")).encode()
    claims["jti"] = base64.b32encode(hashlib.new("sha512_256", body).digest()).decode().rstrip("=")
    header = b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}, separators=(",", ":")).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signed = f"{header}.{payload}"
    return f"{signed}.{b64url(issuer.key.sign(signed.encode()))}"


def creds(user_jwt: str, user: NKey) -> str:
    return ("-----BEGIN NATS USER JWT-----\n" + user_jwt + "\n------END NATS USER JWT------\n\n"
            "-----BEGIN USER NKEY SEED-----\n" + user.seed + "\n------END USER NKEY SEED------\n")


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: make_creds.py DIR", file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    operator = NKey(PREFIX_OPERATOR)
    system = NKey(PREFIX_ACCOUNT)
    app = NKey(PREFIX_ACCOUNT)
    user = NKey(PREFIX_USER)
    stranger = NKey(PREFIX_ACCOUNT)  # signs a user, but the operator never issued it
    other = NKey(PREFIX_USER)
    unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True,
                 "conn": -1, "leaf": -1}
    operator_jwt = jwt(operator, operator.public, "circbuf-test", {"type": "operator", "version": 2})
    system_jwt = jwt(operator, system.public, "SYS", {"limits": unlimited, "type": "account", "version": 2})
    jetstream = dict(unlimited, mem_storage=-1, disk_storage=-1, streams=-1, consumer=-1)
    app_jwt = jwt(operator, app.public, "APP", {"limits": jetstream, "type": "account", "version": 2})
    user_nats = {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2}
    user_jwt = jwt(app, user.public, "bridge", user_nats)
    other_jwt = jwt(stranger, other.public, "stranger", user_nats)
    with open(os.path.join(out, "server.conf"), "w", encoding="ascii") as f:
        f.write(f"operator: {operator_jwt}\n"
                f"system_account: {system.public}\n"
                "resolver: MEMORY\n"
                "resolver_preload: {\n"
                f"  {system.public}: {system_jwt}\n"
                f"  {app.public}: {app_jwt}\n"
                "}\n")
    for name, text in (("user.creds", creds(user_jwt, user)), ("other.creds", creds(other_jwt, other))):
        path = os.path.join(out, name)
        with open(path, "w", encoding="ascii") as f:
            f.write(text)
        os.chmod(path, 0o600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
