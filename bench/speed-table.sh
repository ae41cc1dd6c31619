#!/usr/bin/env bash
# The README's speed table in one script: the GEMM against OpenBLAS's forced cores, the
# ResNet-18/CIFAR step on every ISA path against the fastest PyTorch peer (with the 1-thread
# speed-up), and the ResNet-50 step, one after another, with the CPU and the load at each
# step; where the CPU has AVX512_BF16, also the GEMM and the ResNet-18 step with
# --precision bf16 (against PyTorch's fp32 and bf16 autocast peers). Run from the repository root after `make bench`; about 12 minutes on 2 quiet Zen 4 cores,
# 17 on the Intel family 6 model 207 VM.
#   bench/speed-table.sh [LOG]     (default: bench-speed-table.log)
# Figures on a shared machine move with its load: note the `load` lines beside them.
set -u
log=${1:-bench-speed-table.log}
cd "$(dirname "$0")/.." || exit 1
make -j"$(nproc)" bench build/tests/tools/isa_paths >/dev/null || exit 1
paths=$(build/tests/tools/isa_paths | tr '\n' ' ') || exit 1
first=${paths%% *}
{
    echo "== $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '+changes')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); $(nproc) cores; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
    echo "paths: $paths"
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "== bench_gemm (2 threads, 1024^3 and the step's shapes)"
    build/bench/bench_gemm --shapes all --rounds 3
    echo "== bench_gemm (1 thread, 1024^3)"
    build/bench/bench_gemm --threads 1 --shapes 1024 --rounds 3
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
    for p in $paths; do
        [ "$p" = generic ] && continue
        echo "== bench_step resnet18-cifar, BARLOW_ISA=$p"
        if [ "$p" = "$first" ]; then
            BARLOW_ISA=$p build/bench/bench_step --iters 5 --scaling
        else
            BARLOW_ISA=$p build/bench/bench_step --iters 5
        fi
        echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
    done
    echo "== bench_step resnet50 224, batch 32, projector 8192-8192-8192"
    build/bench/bench_step --arch resnet50 --size 224 --batch 32 --projector 8192-8192-8192 --iters 3
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
    if grep -qw avx512_bf16 /proc/cpuinfo && [ "$first" = avx512 ]; then
        echo "== bench_gemm --precision bf16 (1 thread, 1024^3 and the step's shapes)"
        build/bench/bench_gemm --threads 1 --shapes all --rounds 2 --no-openblas --precision bf16
        echo "== bench_step resnet18-cifar --precision bf16"
        build/bench/bench_step --iters 5 --precision bf16
        echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
    else
        echo "== no AVX512_BF16 on the avx512 path here: no bf16 rows"
    fi
    echo "== $(date -u +%FT%TZ) done"
} 2>&1 | grep --line-buffered -v '^  running:' | tee "$log"
