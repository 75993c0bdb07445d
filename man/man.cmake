# The man pages (docs/cli.md, "Man pages"): made by man/gen.sh from the
# --help texts of the programs just built and the hand-written parts in
# man/*.txt, into build/man/. The commands come from the programs' usage
# texts at build time, so the list of pages is not known here: a stamp file
# stands for them, and install takes whatever *.1 and *.8 are there.
# Reproducible: the pages carry $SOURCE_DATE_EPOCH's day when it is set
# (dpkg-buildpackage sets it), else LK_MAN_DATE, never the build's time.
set(LK_MAN_DATE "2026-12-01" CACHE STRING "The date in the man pages when SOURCE_DATE_EPOCH is not set")
set(LK_MAN_DIR ${CMAKE_BINARY_DIR}/man)
file(GLOB LK_MAN_TXT CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.txt)
# In the sanitizer build the programs print their help under ASan and UBSan
# (they exit cleanly: no leak at --help).
add_custom_command(
  OUTPUT ${LK_MAN_DIR}/.stamp
  COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/gen.sh ${LK_MAN_DIR} ${CMAKE_SOURCE_DIR}
          ${CMAKE_RUNTIME_OUTPUT_DIRECTORY} ${PROJECT_VERSION} ${LK_MAN_DATE}
  COMMAND ${CMAKE_COMMAND} -E touch ${LK_MAN_DIR}/.stamp
  DEPENDS latchkey-cli latchkey-device latchkeyd ${CMAKE_CURRENT_LIST_DIR}/gen.sh
          ${CMAKE_CURRENT_LIST_DIR}/man.awk ${LK_MAN_TXT}
          ${CMAKE_SOURCE_DIR}/docs/cli.md ${CMAKE_SOURCE_DIR}/docs/daemon.md
  COMMENT "Man pages from the programs' --help (build/man)"
  VERBATIM)
add_custom_target(man ALL DEPENDS ${LK_MAN_DIR}/.stamp)
install(DIRECTORY ${LK_MAN_DIR}/ DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 FILES_MATCHING PATTERN "*.1")
install(DIRECTORY ${LK_MAN_DIR}/ DESTINATION ${CMAKE_INSTALL_MANDIR}/man8 FILES_MATCHING PATTERN "*.8")
