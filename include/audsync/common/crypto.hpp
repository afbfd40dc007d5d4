// HMAC-SHA1, SHA-1, random ids and constant-time comparison of secrets (OpenSSL stays in common).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace audsync::crypto {

// Lower-case hex HMAC-SHA1 of `data` keyed by `key` (Segment's X-Signature).
std::string HmacSha1Hex(std::string_view key, std::string_view data);

// Lower-case hex SHA-1 of `data`.
std::string Sha1Hex(std::string_view data);

// The first 64 bits of SHA-1 of `data`, as a signed integer (SQLite's INTEGER): the
// de-duplication key of a (destination, messageId).
int64_t Hash64(std::string_view data);

// Compares two secrets in time that depends on neither content nor length: both are
// hashed with SHA-256 first and the digests compared with CRYPTO_memcmp.
bool SecretEquals(std::string_view a, std::string_view b);

// `bytes` random bytes from the OS, hex encoded.
std::string RandomHex(size_t bytes);

}  // namespace audsync::crypto
