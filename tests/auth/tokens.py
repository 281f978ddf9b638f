"""Makes the JWTs tests/auth.rs needs, with PyJWT and cryptography (not the crate wsd verifies with).

Reads a JSON list of specs on stdin and prints a JSON list of tokens, in order. A spec:
  {"alg": "RS256", "key": "tests/keys/rsa.key" | "hs:<secret>", "claims": {...},
   "exp_in": seconds from now (optional), "nbf_in": seconds from now (optional),
   "mode": "sign" (default) | "none" (alg none, no signature) | "confused" (HS256 with the key
   file's bytes as the HMAC secret, the algorithm-confusion attack; PyJWT refuses to do it,
   so it is signed by hand)}
"""

import base64
import hashlib
import hmac
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make(spec):
    claims = dict(spec.get("claims", {}))
    now = int(time.time())
    if "exp_in" in spec:
        claims["exp"] = now + spec["exp_in"]
    if "nbf_in" in spec:
        claims["nbf"] = now + spec["nbf_in"]
    mode = spec.get("mode", "sign")
    if mode == "none":
        header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{header}.{b64(json.dumps(claims).encode())}."
    key = spec["key"]
    if mode == "confused":
        secret = open(key, "rb").read()
        header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = b64(json.dumps(claims).encode())
        sig = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{b64(sig)}"
    if key.startswith("hs:"):
        signing_key = key[3:]
    else:
        signing_key = serialization.load_pem_private_key(open(key, "rb").read(), password=None)
    return jwt.encode(claims, signing_key, algorithm=spec["alg"])


print(json.dumps([make(s) for s in json.load(sys.stdin)]))
