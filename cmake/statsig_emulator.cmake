# The Statsig emulator (tools/statsig_emulator): an in-memory Statsig Console API
# (segments and their ID lists) that the tests push to, and its executable
# (docs/platforms/statsig.md).
add_library(statsig_emulator STATIC tools/statsig_emulator/emulator.cpp)
target_include_directories(statsig_emulator PUBLIC ${CMAKE_SOURCE_DIR}/tools/statsig_emulator)
target_link_libraries(statsig_emulator PUBLIC audsync_common emulator_common
                                       PRIVATE Threads::Threads)
add_executable(audsync-statsig-emulator tools/statsig_emulator/main.cpp)
target_link_libraries(audsync-statsig-emulator PRIVATE statsig_emulator)
