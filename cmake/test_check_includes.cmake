# Proves check_includes.cmake catches what it must and passes the real tree.
# Run with cmake -P. Inputs: SOURCE (the real source tree), WORK (a scratch directory).
cmake_minimum_required(VERSION 3.22)
set(script ${CMAKE_CURRENT_LIST_DIR}/check_includes.cmake)
set(failures 0)

# Runs the check on `root`/`modules`; `expect` is PASS or FAIL; `needle` must appear in
# the output of a failure.
function(expect_check name root modules expect needle)
    execute_process(COMMAND ${CMAKE_COMMAND} -DROOT=${root} -DMODULES=${modules} -P ${script}
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    set(ok TRUE)
    if(expect STREQUAL "PASS" AND NOT rc EQUAL 0)
        set(ok FALSE)
    elseif(expect STREQUAL "FAIL")
        if(rc EQUAL 0)
            set(ok FALSE)
        elseif(needle AND NOT "${out}${err}" MATCHES "${needle}")
            set(ok FALSE)
        endif()
    endif()
    if(ok)
        message(STATUS "ok: ${name}")
    else()
        message(STATUS "FAILED: ${name} (exit ${rc}, expected ${expect} ${needle})\n${out}${err}")
        math(EXPR f "${failures} + 1")
        set(failures ${f} PARENT_SCOPE)
    endif()
endfunction()

# Writes a probe tree holding one file.
function(probe dir relpath text)
    file(REMOVE_RECURSE ${dir})
    get_filename_component(parent ${dir}/${relpath} DIRECTORY)
    file(MAKE_DIRECTORY ${parent})
    file(WRITE ${dir}/${relpath} "${text}")
endfunction()

set(p ${WORK}/probe)
probe(${p} src/admin/x.cpp "// probe\n#include <string>\n\n#include <curl/curl.h>\n")
expect_check("curl in admin fails, naming file and line" ${p} admin FAIL
             "src/admin/x.cpp:4: #include <curl/curl.h>")
expect_check("curl in admin fails in a whole-tree scan" ${p} ALL FAIL "src/admin/x.cpp:4")

probe(${p} src/targets/x.cpp "#include <curl/curl.h>\n")
expect_check("curl in targets passes" ${p} targets PASS "")

probe(${p} src/sync/x.cpp "  #  include \"sqlite3.h\"\n")
expect_check("sqlite in sync fails, quotes and spaces too" ${p} sync FAIL "src/sync/x.cpp:1")

probe(${p} src/store/x.cpp "#include <sqlite3.h>\n")
expect_check("sqlite in store passes" ${p} store PASS "")

probe(${p} include/audsync/store/x.hpp "#pragma once\n#include <sqlite3.h>\n")
expect_check("sqlite in a public store header fails" ${p} store FAIL
             "include/audsync/store/x.hpp:2")

probe(${p} src/cli/x.cpp "#include <pistache/http.h>\n")
expect_check("pistache in cli fails" ${p} cli FAIL "src/cli/x.cpp:1")

probe(${p} src/admin/x.cpp "#include <boost/beast/http.hpp>\n")
expect_check("boost in admin fails" ${p} admin FAIL "src/admin/x.cpp:1")

probe(${p} src/http/x.cpp "#include <boost/beast/http.hpp>\n#include <pistache/http.h>\n")
expect_check("boost and pistache in http pass" ${p} http PASS "")

probe(${p} tools/ld_emulator/x.cpp "#include <boost/asio.hpp>\n")
expect_check("boost in the emulator passes" ${p} ALL PASS "")

probe(${p} src/store/x.cpp "#include <openssl/evp.h>\n")
expect_check("openssl in store fails" ${p} store FAIL "src/store/x.cpp:1")

probe(${p} src/main.cpp "#include <sqlite3.h>\n")
expect_check("sqlite in main.cpp fails" ${p} ALL FAIL "src/main.cpp:1")

probe(${p} src/admin/x.cpp "// #include <curl/curl.h> is only mentioned\nint x[2]; // [brackets]\n")
expect_check("a commented include passes" ${p} admin PASS "")

expect_check("the real tree passes" ${SOURCE} ALL PASS "")
file(REMOVE_RECURSE ${p})

if(failures GREATER 0)
    message(FATAL_ERROR "${failures} include-check case(s) failed")
endif()
