// The status page's files, embedded in the binary at build time from ui/status/
// (cmake/embed_files.cmake): nothing is read from disk or loaded from the internet.
#pragma once

#include <optional>
#include <string_view>

namespace audsync::http {

struct StaticFile {
    std::string_view body;
    std::string_view content_type;
};

// "index.html" (served at /), "app.js" and "app.css" (served under /status/); nullopt
// for any other name.
std::optional<StaticFile> StatusPageFile(std::string_view name);

// The headers every status page answer carries: a Content-Security-Policy that lets the
// page load only its own script and style and talk only to its own origin, no framing,
// no referrer, no caching of a page that an upgrade may change.
inline constexpr const char* kStatusPageCsp =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

}  // namespace audsync::http
