# The Flagsmith emulator (tools/flagsmith_emulator): an in-memory Flagsmith environment
# that the tests push to, and its executable.
add_library(flagsmith_emulator STATIC tools/flagsmith_emulator/emulator.cpp)
target_include_directories(flagsmith_emulator PUBLIC ${CMAKE_SOURCE_DIR}/tools/flagsmith_emulator)
target_link_libraries(flagsmith_emulator PUBLIC audsync_common emulator_common
                                         PRIVATE Threads::Threads)
add_executable(audsync-flagsmith-emulator tools/flagsmith_emulator/main.cpp)
target_link_libraries(audsync-flagsmith-emulator PRIVATE flagsmith_emulator)
