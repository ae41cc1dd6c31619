#!/usr/bin/env bash
# Regenerates tests/fixtures/trajectory/<build fingerprint>.txt (the 5-step bit-identity fixture of
# tests/test_trajectory.c) with the current build. Run it only after an intentional numerical
# change (e.g. a new GEMM summation order), and commit the fixture with that change.
#   tools/regen-trajectory-fixture.sh            (uses build/)
#   CC=clang BUILD=build-clang tools/regen-trajectory-fixture.sh
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
make -s BUILD="$BUILD" "$BUILD/barlow" "$BUILD/tests/test_trajectory"
BUILD=$BUILD BARLOW_REGEN_FIXTURE=1 "$BUILD/tests/test_trajectory"
git status --short -- tests/fixtures/trajectory/ || true
