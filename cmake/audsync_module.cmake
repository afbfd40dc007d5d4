# audsync_module(): one static library per module, from src/<name>/*.cpp, with the
# third-party include check run as part of building it.
#
#   audsync_module(<name> [PUBLIC <module targets...>] [PRIVATE <targets...>]
#                  [SOURCES <extra sources...>])
#
# Creates audsync_<name> only when src/<name>/ holds sources (a module being added on
# another branch may have none yet); sets AUDSYNC_HAVE_<name> in the caller's scope.
function(audsync_module name)
    cmake_parse_arguments(M "" "" "PUBLIC;PRIVATE;SOURCES" ${ARGN})
    file(GLOB sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${name}/*.cpp)
    if(NOT sources)
        set(AUDSYNC_HAVE_${name} FALSE PARENT_SCOPE)
        return()
    endif()
    file(GLOB_RECURSE checked CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${name}/*
         ${PROJECT_SOURCE_DIR}/include/audsync/${name}/*)

    # The check's stamp is a source of the library, so the library does not build
    # when a file of the module includes a dependency it does not own.
    set(stamp ${PROJECT_BINARY_DIR}/include-check/${name}.stamp)
    add_custom_command(
        OUTPUT ${stamp}
        COMMAND ${CMAKE_COMMAND} -DROOT=${PROJECT_SOURCE_DIR} -DMODULES=${name} -DSTAMP=${stamp}
                -P ${PROJECT_SOURCE_DIR}/cmake/check_includes.cmake
        DEPENDS ${checked} ${PROJECT_SOURCE_DIR}/cmake/check_includes.cmake
        COMMENT "Checking third-party includes of src/${name}"
        VERBATIM)

    add_library(audsync_${name} STATIC ${sources} ${M_SOURCES} ${stamp})
    target_include_directories(audsync_${name} PUBLIC ${PROJECT_SOURCE_DIR}/include)
    target_link_libraries(audsync_${name} PUBLIC ${M_PUBLIC} PRIVATE ${M_PRIVATE})
    set(AUDSYNC_HAVE_${name} TRUE PARENT_SCOPE)
endfunction()
