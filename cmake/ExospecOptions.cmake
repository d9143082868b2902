# Build flags shared by every exospec target, kept in INTERFACE targets that are
# linked PRIVATELY so that nothing leaks to consumers of the installed package.

# Warnings (errors with EXOSPEC_WERROR=ON, as in CI).
add_library(exospec_warnings INTERFACE)
target_compile_options(exospec_warnings INTERFACE
  $<$<COMPILE_LANG_AND_ID:CXX,GNU,Clang>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion
    -Wno-sign-conversion -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
    -Woverloaded-virtual -Wdouble-promotion -Wformat=2>
  $<$<AND:$<BOOL:${EXOSPEC_WERROR}>,$<COMPILE_LANG_AND_ID:CXX,GNU,Clang>>:-Werror>)

# Instruction set and sanitizers: the same on every target (Eigen objects that
# cross a library boundary must be compiled with the same flags).
add_library(exospec_flags INTERFACE)
if(EXOSPEC_ARCH)
  target_compile_options(exospec_flags INTERFACE -march=${EXOSPEC_ARCH})
endif()
if(EXOSPEC_SANITIZE)
  string(REPLACE " " "" _exospec_san "${EXOSPEC_SANITIZE}")
  target_compile_options(exospec_flags INTERFACE -fsanitize=${_exospec_san} -fno-omit-frame-pointer
                                                  -fno-sanitize-recover=all)
  target_link_options(exospec_flags INTERFACE -fsanitize=${_exospec_san})
endif()

# exospec_target_defaults(<target>): warnings and flags, privately.
function(exospec_target_defaults target)
  target_link_libraries(${target} PRIVATE $<BUILD_INTERFACE:exospec_warnings>
                                          $<BUILD_INTERFACE:exospec_flags>)
endfunction()
