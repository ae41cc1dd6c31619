#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined, with the library
# compiled by clang under the same sanitizers into build-fuzz/, not the gcc build's objects)
# and runs each for a bounded time on a scratch copy of its seed corpus.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every target)
#
# Prints executions and exec/s per target. A crash (or leak, or sanitizer report) is saved to
# fuzz/crashes/<target>/ and makes the script exit 1 once every target has run.
# BUILD_ONLY=1 builds and stops. JOBS (default 2) compiles in parallel.
set -u
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(safetensors cifar tar image args)
JOBS=${JOBS:-2}
CC=${FUZZ_CC:-clang}
B=build-fuzz
BLASDIR=/usr/lib/x86_64-linux-gnu/openblas-openmp
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
# Flags, libraries and library sources come from the Makefile (printed, not duplicated), so
# new include paths or dependencies there reach this build too; the fallback is the
# original set. The optimisation flags are replaced, and -Werror dropped for library code.
mkvar() {
  make -s --no-print-directory -f Makefile -f <(printf 'print-%%:\n\t@echo $(%s)\n' '$*') \
       "print-$1" OPT= 2>/dev/null
}
MK_CFLAGS=$(mkvar CFLAGS | sed 's/-Werror//; s/-Wextra//; s/-Wall//')
MK_LIBS=$(mkvar LDLIBS)
MK_SRC=$(mkvar LIB_SRC)
[ -n "$MK_CFLAGS" ] || MK_CFLAGS="-std=c11 -D_GNU_SOURCE -fopenmp -Iinclude -Isrc \
 -I/usr/include/x86_64-linux-gnu/openblas-openmp -I/usr/include/cjson"
[ -n "$MK_LIBS" ] || MK_LIBS="-L$BLASDIR -Wl,-rpath,$BLASDIR -lopenblas -lcjson -lturbojpeg -lpng -lz -lm -lpthread"
[ -n "$MK_SRC" ] || MK_SRC=$(ls src/core/*.c src/ops/*.c src/nn/*.c src/train/*.c src/io/*.c src/data/*.c)
CFLAGS="$MK_CFLAGS -O1 -g -fno-omit-frame-pointer $SAN -Wno-pass-failed"
LIBS="$MK_LIBS"

# ---- build: library (+ the CLI option parser) compiled with the fuzzing sanitizers ----
mkdir -p "$B/obj" "$B/bin"
SRCS="$MK_SRC src/cli/args.c"
# Rebuild everything when a header changed after the last build (no dependency tracking here).
stamp="$B/.stamp"
if [ -f "$stamp" ] && [ -n "$(find include src fuzz -name '*.h' -newer "$stamp" 2>/dev/null)" ]; then
  rm -f "$B"/obj/*.o
fi
objs=()
pids=()
fail=0
for s in $SRCS; do
  o="$B/obj/$(echo "${s%.c}" | tr / _).o"
  objs+=("$o")
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ]; then
    ( $CC $CFLAGS -fsanitize=fuzzer-no-link -c "$s" -o "$o" 2>"$o.log" ||
      { echo "fuzz/run.sh: warning: $s does not compile here (left out; see $o.log)" >&2
        rm -f "$o"; } ) &
    pids+=($!)
    if [ ${#pids[@]} -ge "$JOBS" ]; then wait "${pids[0]}" || fail=1; pids=("${pids[@]:1}"); fi
  fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ $fail = 0 ] || { echo "fuzz/run.sh: library build failed" >&2; exit 2; }
have=()
for o in "${objs[@]}"; do [ -f "$o" ] && have+=("$o"); done
rm -f "$B/libbarlow-fuzz.a"
ar rcs "$B/libbarlow-fuzz.a" "${have[@]}"
for t in "${TARGETS[@]}"; do
  [ -f "fuzz/fuzz_$t.c" ] || { echo "fuzz/run.sh: no target fuzz/fuzz_$t.c" >&2; exit 2; }
  $CC $CFLAGS -fsanitize=fuzzer -Wall -Wextra -Werror "fuzz/fuzz_$t.c" "$B/libbarlow-fuzz.a" \
      $LIBS -o "$B/bin/fuzz_$t" || { echo "fuzz/run.sh: build of fuzz_$t failed" >&2; exit 2; }
done
touch "$stamp"
[ "${BUILD_ONLY:-0}" = 1 ] && { echo "built: ${TARGETS[*]} in $B/bin"; exit 0; }

# ---- run ----
declare -A MAXLEN=([safetensors]=65536 [cifar]=16384 [tar]=65536 [image]=65536 [args]=4096)
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1
status=0
summary=()
for t in "${TARGETS[@]}"; do
  work="$B/run/$t"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp fuzz/corpus/"$t"/* "$work/corpus/" 2>/dev/null
  log="$work/log.txt"
  echo "== fuzz_$t: ${SECS}s, max_len ${MAXLEN[$t]}"
  # -rss_limit_mb: the readers must refuse absurd sizes before allocating, so a large
  # allocation is itself a finding (malloc_limit_mb defaults to the same limit).
  "$B/bin/fuzz_$t" "$work/corpus" -max_total_time="$SECS" -max_len="${MAXLEN[$t]}" \
      -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$work/artifacts/" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  ncrash=$(ls "$work/artifacts" | wc -l)
  if [ $rc -ne 0 ] || [ "$ncrash" -gt 0 ]; then
    status=1
    mkdir -p "fuzz/crashes/$t"
    cp "$work"/artifacts/* "fuzz/crashes/$t/" 2>/dev/null
    echo "   CRASH (rc $rc): reproducer(s) copied to fuzz/crashes/$t/:"
    ls "$work/artifacts" | sed 's/^/     /'
    grep -m1 -E 'ERROR: |runtime error|SUMMARY' "$log" | sed 's/^/     /'
    echo "   full log: $log"
  fi
  line=$(printf '%-12s %5ss  %10s execs  %7s exec/s  %-10s crashes %s' "$t" "$SECS" "${execs:-?}" \
         "${rate:-?}" "${cov:-cov: ?}" "$ncrash")
  echo "   $line"
  summary+=("$line")
done
echo
echo "target         time       executions    exec/s   coverage    crashes"
printf '%s\n' "${summary[@]}"
exit $status
