include(CMakePackageConfigHelpers)

install(TARGETS exospec exospec_core exospec_kernels exospec_io exospec_pipeline
        EXPORT exospecTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# (The MPI headers only in the MPI build: they include mpi.h.)
if(EXOSPEC_MPI)
  set(_exospec_header_excludes "")
else()
  set(_exospec_header_excludes PATTERN parallel.hpp EXCLUDE PATTERN run_mpi.hpp EXCLUDE)
endif()
foreach(dir core kernels io pipeline)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir}/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
          ${_exospec_header_excludes})
endforeach()
install(FILES ${PROJECT_BINARY_DIR}/generated/exospec/version.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/exospec)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/data/ DESTINATION ${CMAKE_INSTALL_DATADIR}/exospec
        FILES_MATCHING PATTERN "*.toml")

set(_cfgdir ${CMAKE_INSTALL_LIBDIR}/cmake/exospec)
install(EXPORT exospecTargets NAMESPACE exospec:: DESTINATION ${_cfgdir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/exospecConfig.cmake.in
  ${PROJECT_BINARY_DIR}/exospecConfig.cmake INSTALL_DESTINATION ${_cfgdir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/exospecConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/exospecConfig.cmake
              ${PROJECT_BINARY_DIR}/exospecConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindFFTW3.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindLibdeflate.cmake
        DESTINATION ${_cfgdir})
