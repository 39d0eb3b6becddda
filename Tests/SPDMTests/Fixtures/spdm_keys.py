#!/usr/bin/env python3
"""Independent SPDM 1.2/1.3 key schedule (DSP0274 §12) for Cove's tests.

Reads JSON on stdin with hex fields: version ("1.2"/"1.3"), hash ("sha256"/"sha384"), message_a,
cert_chain (SPDM format), key_exchange, key_exchange_rsp (whole, incl. verify data), finish,
finish_rsp, dhe_secret, signature_size, and optionally record_req (a secured record the requester
sent first under the data keys). Prints JSON with th1, th2, every derived secret/key/iv, the verify
data, and the decrypted record. Written from the specification with Python's `cryptography`; it
shares no code with Cove.
"""
import hashlib
import hmac
import json
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

req = json.load(sys.stdin)
hname = req["hash"]
H = {"sha256": 32, "sha384": 48}[hname]
halg = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384()}[hname]
minor = req["version"].split(".")[1]
b = {k: bytes.fromhex(v) for k, v in req.items() if k not in ("version", "hash", "signature_size")}


def digest(data):
    return hashlib.new(hname, data).digest()


def bin_str(length, label, context=b""):
    return length.to_bytes(2, "little") + b"spdm1." + minor.encode() + b" " + label + context


def expand(prk, info, length):
    return HKDFExpand(algorithm=halg, length=length, info=info).derive(prk)


def extract(salt, ikm):
    return hmac.new(salt, ikm, hname).digest()


ke_rsp = b["key_exchange_rsp"]
through_sig = ke_rsp[: len(ke_rsp) - H]
verify_rsp = ke_rsp[len(ke_rsp) - H:]
prefix = b["message_a"] + digest(b["cert_chain"]) + b["key_exchange"] + through_sig
th1 = digest(prefix)
hs = extract(bytes(H), b["dhe_secret"])
req_hs = expand(hs, bin_str(H, b"req hs data", th1), H)
rsp_hs = expand(hs, bin_str(H, b"rsp hs data", th1), H)
req_fin = expand(req_hs, bin_str(H, b"finished"), H)
rsp_fin = expand(rsp_hs, bin_str(H, b"finished"), H)
rsp_verify = hmac.new(rsp_fin, th1, hname).digest()
finish = b["finish"]
req_verify = hmac.new(req_fin, digest(prefix + verify_rsp + finish[:4]), hname).digest()
th2 = digest(prefix + verify_rsp + finish + b["finish_rsp"])
salt1 = expand(hs, bin_str(H, b"derived"), H)
ms = extract(salt1, bytes(H))
req_app = expand(ms, bin_str(H, b"req app data", th2), H)
rsp_app = expand(ms, bin_str(H, b"rsp app data", th2), H)


def key_iv(secret):
    return expand(secret, bin_str(32, b"key"), 32), expand(secret, bin_str(12, b"iv"), 12)


req_key, req_iv = key_iv(req_app)
rsp_key, rsp_iv = key_iv(rsp_app)
out = {
    "th1": th1.hex(), "th2": th2.hex(), "handshake_secret": hs.hex(),
    "req_hs_secret": req_hs.hex(), "rsp_hs_secret": rsp_hs.hex(),
    "rsp_verify_data": rsp_verify.hex(), "req_verify_data": req_verify.hex(),
    "master_secret": ms.hex(), "req_app_secret": req_app.hex(), "rsp_app_secret": rsp_app.hex(),
    "req_key": req_key.hex(), "req_iv": req_iv.hex(), "rsp_key": rsp_key.hex(), "rsp_iv": rsp_iv.hex(),
    "req_update_secret": expand(req_app, bin_str(H, b"traffic upd"), H).hex(),
}
if "record_req" in b:
    # DSP0277 over DOE: SessionID u32 | Length u16 | ciphertext | tag; AAD = first 6 bytes; IV = iv
    # XOR sequence number (0 for the first data-phase record).
    rec = b["record_req"]
    plain = AESGCM(req_key).decrypt(req_iv, rec[6:], rec[:6])
    n = int.from_bytes(plain[:2], "little")
    out["record_plaintext"] = plain[2:2 + n].hex()
json.dump(out, sys.stdout)
