// libFuzzer: the batch splitter and the X-Signature check. The signature over the first
// element's bytes must verify; a signature over anything else must not.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "audsync/common/crypto.hpp"
#include "audsync/segment/body.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view body(reinterpret_cast<const char*>(data), size);
    auto span = audsync::segment::FirstElementSpan(body);
    if (span) {
        if (span->first > span->second || span->second > body.size()) __builtin_trap();
        std::string_view first = body.substr(span->first, span->second - span->first);
        std::string sig = audsync::crypto::HmacSha1Hex("secret", first);
        if (!audsync::segment::VerifySignature(body, "secret", sig)) __builtin_trap();
        if (audsync::segment::VerifySignature(body, "other", sig)) __builtin_trap();
    }
    size_t i = 0;
    while (i < body.size() &&
           (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
        ++i;
    if (i >= body.size() || body[i] != '[') {
        std::string sig = audsync::crypto::HmacSha1Hex("secret", body);
        if (!audsync::segment::VerifySignature(body, "secret", sig)) __builtin_trap();
    }
    (void)audsync::segment::BasicAuthUser(body);
    return 0;
}
