// Reads for the operator's "why": the stored payload of a deciding event.
#pragma once

#include <optional>
#include <string>

#include "audsync/store/database.hpp"

namespace audsync::store {

// The raw JSON of an event still in the de-duplication log; nullopt once pruned.
// Throws SqliteError.
std::optional<std::string> FindEventRaw(Database& db, const std::string& destination,
                                        const std::string& message_id);

}  // namespace audsync::store
