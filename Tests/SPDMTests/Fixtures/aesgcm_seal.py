#!/usr/bin/env python3
"""AES-256-GCM seal for Cove's secured-message test: JSON {key, iv, plaintext, aad} (hex) in,
{sealed} = ciphertext ‖ tag (hex) out. Python's `cryptography`, independent of Cove."""
import json
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

r = {k: bytes.fromhex(v) for k, v in json.load(sys.stdin).items()}
json.dump({"sealed": AESGCM(r["key"]).encrypt(r["iv"], r["plaintext"], r["aad"]).hex()}, sys.stdout)
