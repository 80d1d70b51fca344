/* eng_sha: SHA-256 of source bytes (OpenSSL libcrypto), the content hash
 * that makes identical bytes one item per collection. */
#include "engine/eng_internal.h"

#include <openssl/evp.h>
#include <string.h>

void eng_sha256(const void *data, size_t len, uint8_t out[32]) {
    unsigned int n = 32;
    /* EVP_Digest with SHA-256 cannot fail on valid arguments short of
     * allocation failure; zero the output so such a case is visible. */
    if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL)) memset(out, 0, 32);
}
