#!/usr/bin/env bash
# Runs every built test program (or those whose names contain one of the arguments), from the
# repository root, and prints the total as "N passed, N failed". Exit status non-zero if any
# test program failed or crashed.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
pass=0; fail=0; bad=()
for t in "$BUILD"/tests/test_*; do
  name=$(basename "$t")
  if [ $# -gt 0 ]; then
    keep=0; for f in "$@"; do [[ $name == *"$f"* ]] && keep=1; done
    [ $keep = 1 ] || continue
  fi
  echo "== $name"
  out=$("$t" 2>&1); rc=$?
  echo "$out"
  line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
  if [ -n "$line" ]; then
    p=$(echo "$line" | awk '{print $1}'); f=$(echo "$line" | awk '{print $3}')
    pass=$((pass+p)); fail=$((fail+f))
  fi
  if [ $rc -ne 0 ]; then
    bad+=("$name"); [ -n "$line" ] && [ "$f" -gt 0 ] || fail=$((fail+1))
  fi
done
echo
[ ${#bad[@]} -gt 0 ] && echo "failing programs: ${bad[*]}"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ] && [ ${#bad[@]} -eq 0 ]
