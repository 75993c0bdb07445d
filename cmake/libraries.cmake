# The installed libraries: one per layer (docs/architecture.md, "What `make
# install` installs"), each with the headers of its layer, a pkg-config file
# and an export map (cmake/exports/latchkey-LAYER.map) so that only the
# functions those headers declare are visible. tests/install/run.sh checks
# all of it against an installed tree. The tools, the tests and the broker
# plugin keep linking the static libraries (lk_core, lk_se ...), which are
# not installed.

# A header is installed with the library that implements it.
set(LK_HEADERS_core lk_error.h lk_util.h lk_b64url.h lk_sha256.h lk_se.h lk_jwt.h lk_iotcore.h)
set(LK_HEADERS_se lk_softstore.h lk_pkcs11.h)
set(LK_HEADERS_device lk_device.h)
set(LK_HEADERS_verify lk_verify.h)
set(LK_HEADERS_registry lk_registry.h lk_reg_provision.h lk_reg_console.h lk_manifest.h lk_reg_audit.h
    lk_reg_backup.h)
set(LK_HEADERS_spool lk_spool.h)
set(LK_LAYERS core se device verify registry spool)

# A new public header must be given to a library, or it would not be installed.
file(GLOB lk_public_headers RELATIVE ${LK_INCLUDE_DIR}/latchkey ${LK_INCLUDE_DIR}/latchkey/*.h)
foreach(h ${lk_public_headers})
  set(lk_owner "")
  foreach(layer ${LK_LAYERS})
    if(h IN_LIST LK_HEADERS_${layer})
      set(lk_owner ${layer})
    endif()
  endforeach()
  if(lk_owner STREQUAL "")
    message(FATAL_ERROR "include/latchkey/${h} belongs to no installed library: add it to cmake/libraries.cmake")
  endif()
endforeach()

# The .pc files find the prefix relative to their own place.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  message(FATAL_ERROR "CMAKE_INSTALL_LIBDIR and CMAKE_INSTALL_INCLUDEDIR must be relative to the prefix")
endif()
file(RELATIVE_PATH LK_PC_TO_PREFIX "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
string(REGEX REPLACE "/$" "" LK_PC_TO_PREFIX "${LK_PC_TO_PREFIX}")

# lk_install_library(LAYER DESCRIPTION text OBJECTS objlib... LINK target...
#                    [REQUIRES pc...] [REQUIRES_PRIVATE pc...] [LIBS_PRIVATE -lx...])
# builds liblatchkey-LAYER.so (target liblatchkey-LAYER) from the object
# libraries, exporting only what cmake/exports/latchkey-LAYER.map lists, and
# installs it (component LAYER) with LK_HEADERS_LAYER and latchkey-LAYER.pc.
# LINK: what it is linked with (another liblatchkey-* target is also named,
# as latchkey-*, in REQUIRES).
function(lk_install_library layer)
  cmake_parse_arguments(A "" "DESCRIPTION" "OBJECTS;LINK;REQUIRES;REQUIRES_PRIVATE;LIBS_PRIVATE" ${ARGN})
  set(name latchkey-${layer})
  set(target lib${name}) # the tool latchkey-device has the plain name
  set(objects "")
  foreach(o ${A_OBJECTS})
    list(APPEND objects $<TARGET_OBJECTS:${o}>)
  endforeach()
  add_library(${target} SHARED ${objects})
  target_link_libraries(${target} PRIVATE ${A_LINK})
  set(map ${CMAKE_SOURCE_DIR}/cmake/exports/${name}.map)
  # --no-undefined: each library names everything it needs, so a program
  # linking it needs nothing but what pkg-config gives.
  target_link_options(${target} PRIVATE -Wl,--version-script=${map} -Wl,--no-undefined)
  set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS ${map})
  set_target_properties(${target} PROPERTIES OUTPUT_NAME ${name} VERSION ${PROJECT_VERSION}
                        SOVERSION ${PROJECT_VERSION_MAJOR})
  install(TARGETS ${target} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT ${layer})

  list(TRANSFORM LK_HEADERS_${layer} PREPEND ${LK_INCLUDE_DIR}/latchkey/ OUTPUT_VARIABLE headers)
  install(FILES ${headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/latchkey COMPONENT ${layer})

  set(LK_PC_NAME ${name})
  set(LK_PC_DESCRIPTION "${A_DESCRIPTION}")
  set(LK_PC_REQUIRES "")
  foreach(r ${A_REQUIRES})
    list(APPEND LK_PC_REQUIRES "${r} = ${PROJECT_VERSION}")
  endforeach()
  list(JOIN LK_PC_REQUIRES ", " LK_PC_REQUIRES)
  list(JOIN A_REQUIRES_PRIVATE ", " LK_PC_REQUIRES_PRIVATE)
  set(LK_PC_LIBS "-L\${libdir} -l${name}")
  list(JOIN A_LIBS_PRIVATE " " LK_PC_LIBS_PRIVATE)
  configure_file(${CMAKE_SOURCE_DIR}/cmake/latchkey-lib.pc.in ${CMAKE_BINARY_DIR}/pkgconfig/${name}.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/pkgconfig/${name}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
          COMPONENT ${layer})
endfunction()

lk_install_library(core
  DESCRIPTION "latchkey core: errors, base64url, SHA-256, the secure-element interface, the token builder, IoT Core's names and limits"
  OBJECTS lk_core_obj lk_iotcore_obj)
lk_install_library(se
  DESCRIPTION "latchkey secure-element backends: the software key store and PKCS#11 tokens"
  OBJECTS lk_se_obj
  LINK liblatchkey-core OpenSSL::Crypto ${CMAKE_DL_LIBS}
  REQUIRES latchkey-core
  REQUIRES_PRIVATE "libcrypto >= 3.0"
  LIBS_PRIVATE -ldl)
lk_install_library(device
  DESCRIPTION "latchkey device client: one IoT Core device over MQTT and TLS, tokens from a secure element"
  OBJECTS lk_device_obj
  LINK liblatchkey-core OpenSSL::SSL OpenSSL::Crypto PkgConfig::LIBMOSQUITTO
  REQUIRES latchkey-core
  REQUIRES_PRIVATE libmosquitto "libssl >= 3.0" "libcrypto >= 3.0")
lk_install_library(verify
  DESCRIPTION "latchkey token verifier: IoT Core device tokens (ES256, RS256) against registered credentials"
  OBJECTS lk_verify_obj lk_verify_shared_obj
  LINK liblatchkey-core OpenSSL::Crypto PkgConfig::JANSSON
  REQUIRES latchkey-core
  REQUIRES_PRIVATE "libcrypto >= 3.0" jansson)
# The registry builds on the verifier's public functions; the internals it
# shares (the RSA exponent and PEM framing rules, the "say why" helper) are
# compiled into it as a private copy; so is common/dbfile.c, which the spool
# carries too.
lk_install_library(registry
  DESCRIPTION "latchkey device registry: IoT Core's registries, devices, credentials, configs and commands on SQLite"
  OBJECTS lk_registry_obj lk_manifest_obj lk_verify_shared_obj lk_dbfile_obj
  LINK liblatchkey-verify liblatchkey-core OpenSSL::Crypto PkgConfig::JANSSON PkgConfig::SQLITE3
  REQUIRES latchkey-core latchkey-verify
  REQUIRES_PRIVATE "libcrypto >= 3.0" jansson "sqlite3 >= 3.37")

# The delivery spool: the broker plugin's and latchkeyd's shared queue.
lk_install_library(spool
  DESCRIPTION "latchkey delivery spool: the durable queue of messages for push subscriptions, on SQLite"
  OBJECTS lk_spool_obj lk_dbfile_obj
  LINK liblatchkey-core PkgConfig::SQLITE3
  REQUIRES latchkey-core
  REQUIRES_PRIVATE "sqlite3 >= 3.37")

# latchkey.pc: all of them, for programs that want everything.
set(LK_PC_NAME latchkey)
set(LK_PC_DESCRIPTION "latchkey: every library (core, se, device, verify, registry, spool)")
set(LK_PC_REQUIRES "")
foreach(layer ${LK_LAYERS})
  list(APPEND LK_PC_REQUIRES "latchkey-${layer} = ${PROJECT_VERSION}")
endforeach()
list(JOIN LK_PC_REQUIRES ", " LK_PC_REQUIRES)
set(LK_PC_REQUIRES_PRIVATE "")
set(LK_PC_LIBS "")
set(LK_PC_LIBS_PRIVATE "")
configure_file(${CMAKE_SOURCE_DIR}/cmake/latchkey-lib.pc.in ${CMAKE_BINARY_DIR}/pkgconfig/latchkey.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/pkgconfig/latchkey.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
        COMPONENT all)
