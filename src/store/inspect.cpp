// Reads for the operator's "why": the stored payload of a deciding event.
#include "audsync/store/inspect.hpp"

#include <sys/stat.h>

#include "audsync/store/inbox.hpp"

namespace audsync::store {

std::optional<std::string> FindEventRaw(const std::string& inbox_path, int64_t seq,
                                        const std::string& destination,
                                        const std::string& message_id) {
    struct stat st {};
    if (::stat(inbox_path.c_str(), &st) != 0) return std::nullopt;
    Database inbox(inbox_path, false);
    InboxReader reader(inbox);
    return reader.Raw(seq, destination, message_id);
}

}  // namespace audsync::store
