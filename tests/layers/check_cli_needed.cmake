# layers.cli_links_static_hdf5: the exospec command, linked with HDF5's static
# archive (cli/CMakeLists.txt), loads no shared HDF5 and none of the libraries
# that only Debian's shared HDF5 brings (libcurl and its TLS, Kerberos, LDAP).
# Run as: cmake -DEXE=<path> -P check_cli_needed.cmake
execute_process(COMMAND readelf -d "${EXE}" OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf -d ${EXE} failed (${rc})")
endif()
string(REGEX MATCHALL "Shared library: \\[[^]]+\\]" needed "${dyn}")
message(STATUS "${EXE} needs: ${needed}")
if(NOT needed MATCHES "libc\\.so")
  message(FATAL_ERROR "${EXE}: no NEEDED entries read (${needed})")
endif()
foreach(unwanted libhdf5 libcurl libgnutls libkrb5 libldap libssh2)
  if(needed MATCHES "${unwanted}")
    message(FATAL_ERROR "${EXE} still loads ${unwanted}: ${needed}")
  endif()
endforeach()
