# The Debian package (`cpack -G DEB`, driven by scripts/package): the audsync binary, its
# systemd unit, a default config and EnvironmentFile, and the documentation. The platform
# emulators are test tools and are never installed.
#
# Configure with -DCMAKE_INSTALL_PREFIX=/usr (scripts/package does): the binary goes to
# /usr/bin; the unit, the config and the EnvironmentFile go where Debian expects them,
# whatever the prefix.
include(GNUInstallDirs)

set(AUDSYNC_PACKAGE_MAINTAINER "audsync maintainers <maintainers@audsync.invalid>"
    CACHE STRING "Maintainer field of the Debian package")

install(TARGETS audsync RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_SOURCE_DIR}/packaging/audsync.service DESTINATION /lib/systemd/system)
# Both may hold secrets once edited: not readable by others. postinst gives the config
# to the group audsync (the service reads it); systemd reads the EnvironmentFile as root.
install(FILES ${CMAKE_SOURCE_DIR}/packaging/audsync.json DESTINATION /etc/audsync
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/default DESTINATION /etc/default RENAME audsync
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
# README's links point into docs/, and the docs link to each other: keep the tree.
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/audsync)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/docs/
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/audsync/docs)

set(CPACK_PACKAGE_NAME audsync)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR audsync)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "Segment audiences synced to feature-flag platforms")
set(CPACK_PACKAGE_DESCRIPTION
    "audsync receives Twilio Segment audience and journey membership events, stores every\n\
synced segment's membership durably in SQLite (de-duplicated, ordered by event time)\n\
and keeps LaunchDarkly, Flagsmith, ConfigCat and Unleash segments in step with it.\n\
Runs as the systemd service audsync.service under its own system user.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR DEB)

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${AUDSYNC_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The libraries come from dpkg-shlibdeps (libc6, libcurl4, libsqlite3-0, libssl3,
# libstdc++6, ...); adduser creates the system user in postinst.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS adduser)

# Conffiles: dpkg keeps an operator's edits across upgrades and removes them on purge.
set(AUDSYNC_CONFFILES ${CMAKE_BINARY_DIR}/packaging/conffiles)
file(WRITE ${AUDSYNC_CONFFILES} "/etc/audsync/audsync.json\n/etc/default/audsync\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${AUDSYNC_CONFFILES}
    ${CMAKE_SOURCE_DIR}/packaging/debian/postinst
    ${CMAKE_SOURCE_DIR}/packaging/debian/prerm
    ${CMAKE_SOURCE_DIR}/packaging/debian/postrm)
# Maintainer scripts 0755 and conffiles 0644 in the control archive, whatever the
# checkout's modes.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
