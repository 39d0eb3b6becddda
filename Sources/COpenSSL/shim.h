// Shim over the system OpenSSL (libssl-dev). Swift cannot call function-like macros, so the few
// OpenSSL macros Cove needs are re-exported here as static inline functions.
#ifndef COVE_COPENSSL_SHIM_H
#define COVE_COPENSSL_SHIM_H

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/x509_vfy.h>

#endif
