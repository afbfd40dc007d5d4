// The numbered SQL migrations embedded in the binary.
#pragma once

#include <string>
#include <vector>

namespace audsync::store {

struct Migration {
    int version;
    std::string name;
    std::string sql;
};

// Every file of migrations/, in order, embedded at build time.
const std::vector<Migration>& EmbeddedMigrations();

}  // namespace audsync::store
