# The ConfigCat emulator: an in-memory Public Management API (segments) that the tests
# push to (docs/platforms/configcat.md).
add_library(configcat_emulator STATIC tools/configcat_emulator/emulator.cpp)
target_include_directories(configcat_emulator PUBLIC ${CMAKE_SOURCE_DIR}/tools/configcat_emulator)
target_link_libraries(configcat_emulator PUBLIC audsync_common emulator_common audsync_config
                                         PRIVATE Threads::Threads)
add_executable(audsync-configcat-emulator tools/configcat_emulator/main.cpp)
target_link_libraries(audsync-configcat-emulator PRIVATE configcat_emulator)
