// Reads for the operator's "why": the stored payload of a deciding event.
#include "audsync/store/inspect.hpp"

#include "access.hpp"

namespace audsync::store {

std::optional<std::string> FindEventRaw(Database& db, const std::string& destination,
                                        const std::string& message_id) {
    Statement s(detail::Access::Handle(db),
                "SELECT raw FROM events WHERE destination = ?1 AND message_id = ?2");
    s.Bind(1, destination).Bind(2, message_id);
    if (!s.Step()) return std::nullopt;
    return s.Text(0);
}

}  // namespace audsync::store
