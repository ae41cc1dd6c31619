#!/usr/bin/env bash
# Runs every built test program (or those whose names contain one of the arguments), from the
# repository root, once per CPU code path this machine can execute, and prints the total as
# "N passed, M failed, K skipped". Exit status non-zero if any test program failed, crashed or
# printed no summary, or if the arguments match no test program.
#
# Code paths: barlow's kernels take the widest instruction-set path the CPU offers (avx512,
# avx2, generic: include/barlow/cpu.h), and float sums come out in another order on each, so
# every check runs on each path the CPU can execute, with BARLOW_ISA set (the test harness and
# the barlow program read it). BT_TEST_PATHS=first runs only the first path (the detected
# one; the sanitizer build uses it), BT_TEST_PATHS=all (default) every one.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
# The programs the tests drive come from the same build (BARLOW_BIN overrides).
export BUILD BARLOW_BIN=${BARLOW_BIN:-$BUILD/barlow}
progs=()
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  if [ $# -gt 0 ]; then
    keep=0; for f in "$@"; do [[ $name == *"$f"* ]] && keep=1; done
    [ $keep = 1 ] || continue
  fi
  progs+=("$t")
done
if [ ${#progs[@]} -eq 0 ]; then
  echo "tests/run.sh: no test program in $BUILD/tests matches '$*' (built: $(ls "$BUILD"/tests 2>/dev/null | grep '^test_' | tr '\n' ' '))" >&2
  exit 2
fi

# The paths: "label|env-assignment" per entry.
paths=()
isas=$("$BUILD"/tests/tools/isa_paths 2>/dev/null)
if [ -z "$isas" ]; then
  echo "tests/run.sh: $BUILD/tests/tools/isa_paths is missing or failed: run 'make tests'" >&2
  exit 2
fi
first=1
for isa in $isas; do
  if [ $first = 1 ]; then paths+=("$isa(detected)|BARLOW_ISA=$isa"); first=0
  else paths+=("$isa|BARLOW_ISA=$isa"); fi
done
[ "${BT_TEST_PATHS:-all}" = first ] && paths=("${paths[0]}")

pass=0; fail=0; skip=0; bad=()
for p in "${paths[@]}"; do
  label=${p%%|*}; envs=${p#*|}
  echo "######## path $label ${envs:+($envs)}"
  pp=0; pf=0; ps=0
  for t in "${progs[@]}"; do
    name=$(basename "$t")
    echo "== $name [$label]"
    out=$(env $envs "$t" 2>&1); rc=$?
    echo "$out"
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' | tail -1)
    p_=0; f_=0; s_=0
    if [ -n "$line" ]; then
      read -r p_ _ f_ _ s_ _ <<< "$line"
    fi
    if [ $rc -ne 0 ] || [ -z "$line" ]; then
      bad+=("$name[$label]")
      [ -z "$line" ] && echo "  FAIL $name printed no summary line (exit status $rc)"
      [ "$f_" -gt 0 ] || f_=1
    fi
    pp=$((pp+p_)); pf=$((pf+f_)); ps=$((ps+s_))
  done
  echo "-- path $label: $pp passed, $pf failed, $ps skipped"
  pass=$((pass+pp)); fail=$((fail+pf)); skip=$((skip+ps))
done
echo
[ ${#bad[@]} -gt 0 ] && echo "failing programs: ${bad[*]}"
echo "paths: ${#paths[@]} ($(for p in "${paths[@]}"; do printf '%s ' "${p%%|*}"; done))"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ] && [ ${#bad[@]} -eq 0 ]
