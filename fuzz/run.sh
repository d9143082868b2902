#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/CMakeLists.txt) in build-fuzz and runs each
# for a given time on a scratch copy of the kept corpus (fuzz/corpus/<target>
# and the regression inputs fuzz/regressions/<target>), then prints per target
# the executions, exec/s, coverage (cov: edges, ft: features) and whether
# anything was found. Exit status 1 if anything was (a crash, sanitizer report,
# leak, timeout > 10 s, out-of-memory or slow unit), 2 on a usage or build error.
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET] [--targets "fuzz_catalogue ..."]
#                    [--keep-corpus] [--work DIR] [--no-build]
#
#   SECONDS_PER_TARGET  default 20 (-max_total_time); targets run one at a time,
#                       one process on one core each (libFuzzer's default, what
#                       -jobs=1 does through a child process): a CI may share
#                       the machine.
#   --keep-corpus       merge new coverage into fuzz/corpus/<target> (-merge=1,
#                       only inputs that add coverage); otherwise the repository
#                       is not written to.
#   --work DIR          scratch directory (default: a new /tmp/exospec-fuzz.XXXXXX,
#                       kept: it holds the logs, the corpus grown and artifacts).
#   --no-build          use build-fuzz as it is.
# Environment: EXOSPEC_FUZZ_BUILD (build directory, default <repo>/build-fuzz),
# EXOSPEC_FUZZ_BUILD_JOBS (default 2), EXOSPEC_FUZZ_ARGS (more libFuzzer flags).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${EXOSPEC_FUZZ_BUILD:-$repo/build-fuzz}
all_targets="fuzz_run_config fuzz_simulate_config fuzz_catalogue fuzz_contract fuzz_cli"
seconds=20
targets=$all_targets
keep=0
work=""
do_build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --targets) targets=$2; shift 2 ;;
    --keep-corpus) keep=1; shift ;;
    --work) work=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    -h|--help) sed -n "2,24p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *)
      if [[ "$1" =~ ^[0-9]+$ ]]; then seconds=$1; shift
      else echo "fuzz/run.sh: unknown argument $1 (see --help)" >&2; exit 2; fi ;;
  esac
done
for t in $targets; do
  case " $all_targets " in *" $t "*) ;; *) echo "fuzz/run.sh: unknown target $t ($all_targets)" >&2; exit 2 ;; esac
done

if [ "$do_build" = 1 ]; then
  if [ ! -f "$build/CMakeCache.txt" ]; then
    # RelWithDebInfo without NDEBUG: optimised, with line numbers and assertions.
    CC=clang CXX=clang++ cmake -S "$repo" -B "$build" -G Ninja \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -g" \
      -DEXOSPEC_FUZZ=ON -DEXOSPEC_SANITIZE=address,undefined,fuzzer-no-link \
      -DEXOSPEC_BUILD_TESTS=OFF -DEXOSPEC_BUILD_BENCHMARKS=OFF -DEXOSPEC_BUILD_PYTHON=OFF \
      -DEXOSPEC_BUILD_CLI=ON >/dev/null || { echo "fuzz/run.sh: configure failed" >&2; exit 2; }
  fi
  # shellcheck disable=SC2086
  cmake --build "$build" -j "${EXOSPEC_FUZZ_BUILD_JOBS:-2}" --target $targets \
    || { echo "fuzz/run.sh: build failed" >&2; exit 2; }
fi

[ -n "$work" ] || work=$(mktemp -d /tmp/exospec-fuzz.XXXXXX)
mkdir -p "$work"
# Speed: no allocation stack traces (reproduce an artifact with the target
# binary and the default options to get them).
export ASAN_OPTIONS=${ASAN_OPTIONS:-malloc_context_size=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

found_any=0
summary=()
for t in $targets; do
  bin=$build/fuzz/$t
  [ -x "$bin" ] || { echo "fuzz/run.sh: $bin missing (build it, or drop --no-build)" >&2; exit 2; }
  dir=$work/$t
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp "$repo/fuzz/corpus/$t/"* "$dir/corpus/"
  find "$repo/fuzz/regressions/$t" -maxdepth 1 -type f -exec cp {} "$dir/corpus/" \; 2>/dev/null || true
  echo "fuzz/run.sh: $t for ${seconds} s (log $dir/log.txt)" >&2
  set +e
  # shellcheck disable=SC2086
  dict=()
  [ -f "$repo/fuzz/$t.dict" ] && dict=(-dict="$repo/fuzz/$t.dict")
  case "$t" in fuzz_run_config|fuzz_simulate_config|fuzz_catalogue) dict=(-dict="$repo/fuzz/toml.dict") ;; esac
  "$bin" "$dir/corpus" "${dict[@]}" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/" ${EXOSPEC_FUZZ_ARGS:-} >"$dir/log.txt" 2>&1
  rc=$?
  set -e
  log=$dir/log.txt
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  last=$(grep -a -E '^#[0-9]+' "$log" | grep -a 'cov:' | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  artifacts=$(cd "$dir/artifacts" && ls 2>/dev/null | tr '\n' ' ')
  if [ "$rc" -ne 0 ] || [ -n "$artifacts" ]; then
    found_any=1
    what="FOUND (exit $rc): ${artifacts:-see log}"
    grep -a -m3 -E 'ERROR|BUG|SUMMARY|Slowest unit' "$log" | sed 's/^/    /' >&2 || true
    for a in $artifacts; do
      echo "    reproduce: $bin $dir/artifacts/$a   (or $build/fuzz/${t}_replay FILE)" >&2
    done
  else
    what="nothing found"
  fi
  summary+=("$(printf '%-22s %10s %8s %7s %7s %6s %6s  %s' "$t" "${execs:-?}" "${rate:-?}" \
                "${cov:-?}" "${ft:-?}" "${corp:-?}" "${rss:-?}" "$what")")
  if [ "$keep" = 1 ]; then
    "$bin" -merge=1 -max_len=8192 "$repo/fuzz/corpus/$t" "$dir/corpus" >"$dir/merge.txt" 2>&1 \
      && echo "fuzz/run.sh: $t: merged into fuzz/corpus/$t ($(grep -a -o 'added [0-9]* new units' "$dir/merge.txt" | tail -1))" >&2
  fi
done

printf '\n%-22s %10s %8s %7s %7s %6s %6s  %s\n' target executions exec/s cov ft corpus rss_mb result
for line in "${summary[@]}"; do echo "$line"; done
echo "(work directory: $work)"
exit $found_any
