// Reads for the operator's "why": the stored payload of a deciding event.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "audsync/store/database.hpp"

namespace audsync::store {

// The raw JSON of the event at inbox row `seq`, if that row is still retained (see
// raw_retention_hours) and is that event; nullopt otherwise or without an inbox.
// Throws SqliteError.
std::optional<std::string> FindEventRaw(const std::string& inbox_path, int64_t seq,
                                        const std::string& destination,
                                        const std::string& message_id);

}  // namespace audsync::store
