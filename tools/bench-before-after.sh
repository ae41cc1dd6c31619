#!/usr/bin/env bash
# bench_step of an older commit against this working tree, in the same run, interleaved
# (old, new, old, new, ...) so that both see the same load on a shared machine.
#
#   tools/bench-before-after.sh OLD_COMMIT [ROUNDS] [-- bench_step options]
#
# OLD_COMMIT is built in a temporary git worktree (removed at the end; KEEP=1 keeps it, and a
# kept one is reused; OLD_TREE=DIR uses an existing checkout of OLD_COMMIT and leaves it);
# this tree's bench_step is built with `make`. Each round runs the old
# then the new binary with `--no-torch --iters 5` (plus any options after `--`), printing the
# `uptime` load before each run. At the end: each run's median s/step and CPU s/step, and the
# median over the rounds of each build. ROUNDS defaults to 2. JOBS (default 2) is make's -j.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
old=$(git rev-parse --verify "$1^{commit}")
shift
rounds=2
if [ $# -gt 0 ] && [ "$1" != "--" ]; then rounds=$1; shift; fi
[ "${1:-}" = "--" ] && shift
extra=("$@")
jobs=${JOBS:-2}
short=$(git rev-parse --short "$old")
new_desc="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src include bench Makefile || echo '+changes')"
if [ -n "${OLD_TREE:-}" ]; then
    wt=$OLD_TREE
    KEEP=1
    [ "$(git -C "$wt" rev-parse HEAD)" = "$old" ] || { echo "$wt is not at $short" >&2; exit 2; }
else
    wt="${TMPDIR:-/tmp}/barlow-bench-old-$short"
fi

cleanup() {
    if [ "${KEEP:-0}" != 1 ] && [ -d "$wt" ]; then git worktree remove --force "$wt"; fi
}
trap cleanup EXIT

if [ ! -d "$wt" ]; then git worktree add --detach "$wt" "$old" >/dev/null; fi
echo "== building bench_step: old $short in $wt, new $new_desc here" >&2
make -C "$wt" -j"$jobs" build/bench/bench_step >/dev/null
make -j"$jobs" build/bench/bench_step >/dev/null

log=$(mktemp)
run_one() { # label binary
    local load out sec cpu
    load=$(uptime | sed 's/.*load average: //')
    out=$("$2" --no-torch --iters 5 "${extra[@]}" 2>/dev/null)
    [ "$1" = old ] && [ -z "${shown:-}" ] && shown=1 && printf '%s\n' "$out" | grep '^config:' || true
    sec=$(printf '%s\n' "$out" | sed -n 's/^barlow : \([0-9.]*\) s\/step.*cpu \([0-9.]*\) s).*/\1/p')
    cpu=$(printf '%s\n' "$out" | sed -n 's/^barlow : \([0-9.]*\) s\/step.*cpu \([0-9.]*\) s).*/\2/p')
    if [ -z "$sec" ]; then
        echo "bench_step ($1) printed no result:" >&2
        printf '%s\n' "$out" >&2
        exit 1
    fi
    printf '%-4s %s s/step  cpu %s s/step  (load before: %s)\n' "$1" "$sec" "$cpu" "$load" | tee -a "$log"
}
echo "bench_step --no-torch --iters 5 ${extra[*]}"
for r in $(seq 1 "$rounds"); do
    echo "-- round $r"
    run_one old "$wt/build/bench/bench_step"
    run_one new build/bench/bench_step
done
median() { sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
om=$(awk '$1 == "old" {print $2}' "$log" | median)
nm=$(awk '$1 == "new" {print $2}' "$log" | median)
echo "median over $rounds round(s): old $short $om s/step, new $new_desc $nm s/step (new/old $(awk -v a="$nm" -v b="$om" 'BEGIN {printf "%.3f", a / b}'))"
echo "load after: $(uptime | sed 's/.*load average: //')"
rm -f "$log"
