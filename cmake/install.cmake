# `cmake --install build --prefix P` puts headers under P/include/karlton, the
# library under P/lib, and a package config so that another project's
# `find_package(karlton)` + `target_link_libraries(app karlton::karlton)` work.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# A sanitized static library needs the sanitizer runtimes in every program that
# links it; in the tree, add_link_options in CMakeLists.txt already adds them.
if(KARLTON_SANITIZE STREQUAL "address")
  target_link_options(karlton INTERFACE
    $<INSTALL_INTERFACE:-fsanitize=address,undefined>)
endif()

install(TARGETS karlton EXPORT karltonTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
# Only the public headers (KARLTON_PUBLIC_HEADERS, CMakeLists.txt).
foreach(header IN LISTS KARLTON_PUBLIC_HEADERS)
  get_filename_component(dir ${header} DIRECTORY)
  install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/${header}
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/karlton/${dir})
endforeach()
install(EXPORT karltonTargets NAMESPACE karlton::
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/karlton)
configure_package_config_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/karltonConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/karltonConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/karlton)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/karltonConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${CMAKE_CURRENT_BINARY_DIR}/karltonConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/karltonConfigVersion.cmake
  ${CMAKE_CURRENT_SOURCE_DIR}/cmake/FindCAF.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/karlton)
