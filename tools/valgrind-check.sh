#!/usr/bin/env bash
# One short `barlow pretrain` under Valgrind memcheck: no invalid accesses, no uninitialised
# reads, no definite or indirect leaks (exit non-zero otherwise). The OpenMP and OpenBLAS
# thread pools keep their memory until exit by design ("still reachable"), which is not
# counted. Uses the gcc build (build/barlow) and a few CIFAR-10 images from ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/barlow}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar xzf "${BARLOW_SHARED_DATA:-../shared/data}/cifar10-jpeg.tar.gz" -C "$tmp" \
    --wildcards 'cifar10/train/*/000*.jpg' 'cifar10/test/*/000*.jpg'
OMP_NUM_THREADS=1 valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite,indirect \
  --show-leak-kinds=definite,indirect --error-exitcode=99 --track-origins=no --quiet \
  "$BIN" pretrain "$tmp/cifar10" --arch resnet18-cifar:w=0.125 --projector 16-16 --preset cifar \
  --batch-size 8 --train-limit 32 --epochs 1 --threads 1 --workers 1 --print-freq 1 --max-steps 2 \
  --knn-every 1 --checkpoint-dir "$tmp/ck"
echo "valgrind-check: memcheck clean (no errors, no definite/indirect leaks)"
