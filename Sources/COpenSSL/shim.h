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
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/x509_vfy.h>

// ---- Macros re-exported as functions (Swift cannot import function-like or compound macros) ----

/// `STACK_OF(X509)` helpers: the typed `sk_X509_*` accessors are macros over `OPENSSL_sk_*`.
static inline STACK_OF(X509) *cove_sk_X509_new_null(void) { return sk_X509_new_null(); }
static inline int cove_sk_X509_push(STACK_OF(X509) *stack, X509 *cert) { return sk_X509_push(stack, cert); }
static inline int cove_sk_X509_num(const STACK_OF(X509) *stack) { return sk_X509_num(stack); }
static inline X509 *cove_sk_X509_value(const STACK_OF(X509) *stack, int index) {
  return sk_X509_value(stack, index);
}
/// Frees the stack only; the certificates stay owned by their Swift wrappers.
static inline void cove_sk_X509_free(STACK_OF(X509) *stack) { sk_X509_free(stack); }
/// Frees the stack and drops one reference on every certificate (for `X509_STORE_CTX_get1_chain`).
static inline void cove_sk_X509_pop_free(STACK_OF(X509) *stack) { sk_X509_pop_free(stack, X509_free); }

/// `OPENSSL_free` is a macro carrying file/line information.
static inline void cove_OPENSSL_free(void *pointer) { OPENSSL_free(pointer); }

/// `BIO_get_mem_data` is a macro over `BIO_ctrl`.
static inline long cove_BIO_get_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }

/// Key-selection masks for `EVP_PKEY_fromdata` (compound macros).
static inline int cove_EVP_PKEY_KEYPAIR(void) { return EVP_PKEY_KEYPAIR; }
static inline int cove_EVP_PKEY_PUBLIC_KEY(void) { return EVP_PKEY_PUBLIC_KEY; }

/// `MBSTRING_UTF8` is defined in terms of `MBSTRING_FLAG`.
static inline int cove_MBSTRING_UTF8(void) { return MBSTRING_UTF8; }

/// Distinguished-name print flags: RFC 2253 escaping and separators (',' without spaces), but the
/// RDNs in encoding order rather than reversed, and UTF-8 kept as is instead of `\XX` escapes.
static inline unsigned long cove_name_print_flags(void) {
  return (XN_FLAG_RFC2253 & ~XN_FLAG_DN_REV & ~ASN1_STRFLGS_ESC_MSB) | ASN1_STRFLGS_UTF8_CONVERT;
}

// ---- Legacy EC_KEY / ECDSA calls, deprecated in OpenSSL 3.0 but still the only way in 3.0 ----
// RFC 6979 deterministic ECDSA: OpenSSL 3.0 has no "nonce-type" signature parameter (added in 3.2),
// so Cove computes k itself and passes k^-1 and r to ECDSA_do_sign_ex, which exists only on the
// EC_KEY interface. The wrappers keep the deprecation warnings to this one place.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wdeprecated-declarations"
#endif
static inline EC_KEY *cove_EC_KEY_new_by_curve_name(int nid) { return EC_KEY_new_by_curve_name(nid); }
/// Copies `priv`; the caller keeps ownership of it.
static inline int cove_EC_KEY_set_private_key(EC_KEY *key, const BIGNUM *priv) {
  return EC_KEY_set_private_key(key, priv);
}
static inline void cove_EC_KEY_free(EC_KEY *key) { EC_KEY_free(key); }
/// s = kinv·(e + d·r) mod n with the caller's kinv = k^-1 mod n and r = x(k·G) mod n. Returns NULL
/// with EC_R_NEED_NEW_SETUP_VALUES on the queue when s = 0 (the caller must pick another k).
static inline ECDSA_SIG *cove_ECDSA_do_sign_ex(
    const unsigned char *digest, int length, const BIGNUM *kinv, const BIGNUM *r, EC_KEY *key) {
  return ECDSA_do_sign_ex(digest, length, kinv, r, key);
}
#if defined(__clang__)
#pragma clang diagnostic pop
#endif

#endif
