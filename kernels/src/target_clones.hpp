#pragma once
// EXOSPEC_CLONES: compile a hot loop for AVX-512, AVX2 and the baseline, and
// pick one at load time by the CPU (GCC function multi-versioning). Builds
// for users must not assume the build machine's ISA; a build that already
// targets AVX2 or better (-march=...) needs no clones.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__AVX2__)
#define EXOSPEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EXOSPEC_CLONES
#endif
