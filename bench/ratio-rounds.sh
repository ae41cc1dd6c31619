#!/usr/bin/env bash
# barlow's step against one PyTorch peer, interleaved (barlow, peer, barlow, peer, ...), with a
# ratio per round and their median: for VMs whose speed drifts within minutes, where
# bench_step's one-after-another ratio (barlow's steps, then each peer's) depends on when each
# ran. Both sides run the same step (bench/bench_step_torch.py is the reference's) with the
# same shapes, threads, warm-up and timed steps.
#
#   bench/ratio-rounds.sh [ROUNDS] [-- bench_step options]
#
# ROUNDS defaults to 5. Options after `--` go to both sides (--arch, --projector, --batch,
# --size, --threads, --warmup, --iters; defaults: bench_step's, except --iters 3). The peer is
# PEER_PYTHON (default /opt/torch2/bin/python3, else Debian's /usr/bin/python3) in
# channels_last (PEER_CL=1, the default; 0 for NCHW): the fastest peer in every bench_step
# run so far. Each round prints both medians of the timed steps, the load before each, and
# the ratio peer/barlow; the last line is the median ratio over the rounds (and by CPU time).
# EMULATE=avx2 stands in for an AVX2-only machine on an AVX-512 one: barlow runs with
# BARLOW_ISA=avx2 and the peer with ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2 and
# MKL_ENABLE_INSTRUCTIONS=AVX2 (PyTorch's own kernels, oneDNN's and MKL's then stop at AVX2;
# the header line prints the capability the peer reports). It is not a real AVX2-only CPU
# (caches, clocks and the number of vector units are the AVX-512 machine's).
# PRECISION=bf16 runs barlow with --precision bf16 and, unless PEER_BF16=0, the peer under
# PyTorch's bf16 autocast (--autocast-bf16): mixed precision against mixed precision.
# PEER_BF16=1 with PRECISION=fp32 pits barlow's float32 step against PyTorch's bf16.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=5
if [ $# -gt 0 ] && [ "$1" != "--" ]; then rounds=$1; shift; fi
case $rounds in '' | *[!0-9]* | 0) echo "ratio-rounds.sh: ROUNDS must be a positive integer, not '$rounds'" >&2; exit 2 ;; esac
[ "${1:-}" = "--" ] && shift
# bench_step's defaults, overridable by the options after `--`.
declare -A o=([arch]=resnet18-cifar [projector]=2048-2048-2048 [batch]=256 [size]=32
              [threads]=2 [warmup]=1 [iters]=3)
while [ $# -gt 0 ]; do
    k=${1#--}
    if [ -z "${o[$k]+x}" ] || [ $# -lt 2 ]; then
        echo "ratio-rounds.sh: unknown option or missing value: $1 (known: ${!o[*]})" >&2
        exit 2
    fi
    o[$k]=$2
    shift 2
done
py=${PEER_PYTHON:-}
if [ -z "$py" ]; then
    if [ -x /opt/torch2/bin/python3 ]; then py=/opt/torch2/bin/python3; else py=/usr/bin/python3; fi
fi
[ -x "$py" ] || { echo "ratio-rounds.sh: no Python at $py (PEER_PYTHON)" >&2; exit 2; }
cl=${PEER_CL:-1}
case ${EMULATE:-} in
'') ;;
avx2) export BARLOW_ISA=avx2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ;;
*) echo "ratio-rounds.sh: EMULATE must be avx2 or unset, not '$EMULATE'" >&2; exit 2 ;;
esac
prec=${PRECISION:-fp32}
case $prec in fp32 | bf16) ;; *) echo "ratio-rounds.sh: PRECISION must be fp32 or bf16, not '$prec'" >&2; exit 2 ;; esac
peer_bf16=${PEER_BF16:-$([ "$prec" = bf16 ] && echo 1 || echo 0)}
case $peer_bf16 in 0 | 1) ;; *) echo "ratio-rounds.sh: PEER_BF16 must be 0 or 1, not '$peer_bf16'" >&2; exit 2 ;; esac
make -s build/bench/bench_step >/dev/null
common=(--arch "${o[arch]}" --projector "${o[projector]}" --batch "${o[batch]}" --size "${o[size]}"
        --threads "${o[threads]}" --warmup "${o[warmup]}" --iters "${o[iters]}")
clopt=()
[ "$cl" = 1 ] && clopt=(--channels-last)
[ "$peer_bf16" = 1 ] && clopt+=(--autocast-bf16)
echo "== $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- src include bench 2>/dev/null || echo '+changes')"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(grep -m1 'vendor_id' /proc/cpuinfo | cut -d: -f2 | tr -d ' ') family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' ') model $(grep -m1 '^model' /proc/cpuinfo | cut -d: -f2 | tr -d ' '); $(nproc) cores"
cap=$("$py" -c 'import torch; print(torch.backends.cpu.get_cpu_capability())' 2>/dev/null || echo unknown)
echo "step: ${common[*]}; barlow --precision $prec; peer: $py$([ "$cl" = 1 ] && echo ' channels_last')$([ "$peer_bf16" = 1 ] && echo ' bf16 autocast'), PyTorch CPU capability $cap${EMULATE:+; EMULATE=$EMULATE}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for r in $(seq 1 "$rounds"); do
    l1=$(cut -d' ' -f1 /proc/loadavg)
    out=$(build/bench/bench_step --no-torch "${common[@]}" --precision "$prec" 2>/dev/null) || { echo "bench_step failed" >&2; exit 1; }
    [ "$r" = 1 ] && printf '%s\n' "$out" | grep -E '^(kernels|precision|convolutions):' || true
    read -r bs bc < <(printf '%s\n' "$out" | sed -n 's/^barlow : \([0-9.]*\) s\/step.*cpu \([0-9.]*\) s).*/\1 \2/p')
    l2=$(cut -d' ' -f1 /proc/loadavg)
    js=$("$py" bench/bench_step_torch.py "${common[@]}" "${clopt[@]}" 2>/dev/null | grep '^{' | tail -1) ||
        { echo "the PyTorch step failed ($py bench/bench_step_torch.py)" >&2; exit 1; }
    read -r ts tc tv < <(printf '%s\n' "$js" | "$py" -c 'import json,sys; j=json.loads(sys.stdin.read()); print(j["sec_per_step"], j["cpu_per_step"], j["torch"].split("+")[0])')
    if [ -z "${bs:-}" ] || [ -z "${ts:-}" ]; then echo "round $r: no result" >&2; exit 1; fi
    ratio=$(awk -v a="$ts" -v b="$bs" 'BEGIN {printf "%.3f", a / b}')
    cratio=$(awk -v a="$tc" -v b="$bc" 'BEGIN {printf "%.3f", a / b}')
    printf 'round %d: barlow %.3f s/step (cpu %.3f, load %s) | torch %s %.3f s/step (cpu %.3f, load %s) | ratio %sx (cpu %sx)\n' \
        "$r" "$bs" "$bc" "$l1" "$tv" "$ts" "$tc" "$l2" "$ratio" "$cratio"
    echo "$ratio $cratio" >>"$log"
done
median() { sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo "median over $rounds round(s): peer/barlow $(cut -d' ' -f1 "$log" | median)x (by CPU time $(cut -d' ' -f2 "$log" | median)x); rounds: $(cut -d' ' -f1 "$log" | tr '\n' ' ')"
