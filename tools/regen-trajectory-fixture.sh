#!/usr/bin/env bash
# Regenerates the 5-step bit-identity fixtures of tests/test_trajectory.c
# (tests/fixtures/trajectory/<XXH64 of the key>.txt) with the current build. Run it only after an
# intentional numerical change (e.g. a new GEMM summation order), and commit the fixtures with
# that change. A fixture's key names what decides its bits (kernel path, the GEMM's KC, the
# Winograd setting, libm's FMA variants), not the CPU, so one machine can remake them all:
#   tools/regen-trajectory-fixture.sh               this machine's key (BARLOW_ISA, BARLOW_GEMM_KC
#                                                   and BT_CONV_WINOGRAD are honoured)
#   tools/regen-trajectory-fixture.sh --all         every committed fixture, each under its own key
#                                                   (needs a CPU with every path in them: AVX-512)
#   CC=clang BUILD=build-clang tools/regen-trajectory-fixture.sh --all
#   BARLOW_GEMM_KC=256 tools/regen-trajectory-fixture.sh   a KC of another CPU (L1d 32 KiB, AVX-512)
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DIR=tests/fixtures/trajectory
case "${1:-}" in
"" | --all) ;;
*)
    echo "regen-trajectory-fixture: unknown argument '$1' (usage: $0 [--all])" >&2
    exit 2
    ;;
esac
make -s BUILD="$BUILD" "$BUILD/barlow" "$BUILD/tests/test_trajectory"
if [ "${1:-}" != --all ]; then
    BUILD=$BUILD BARLOW_REGEN_FIXTURE=1 "$BUILD/tests/test_trajectory"
else
    have_fma=$(grep -m1 '^flags' /proc/cpuinfo | grep -qw fma && echo 1 || echo 0)
    have_avx2=$(grep -m1 '^flags' /proc/cpuinfo | grep -qw avx2 && echo 1 || echo 0)
    n=0
    for f in "$DIR"/*.txt; do
        key=$(sed -n 's/^# key: //p' "$f")
        # trajectory key 2 | isa P | gemm kc K | winograd W | libm fma F avx2 A[ | sanitizer build]
        read -r isa kc wino fma avx2 < <(sed -E -n 's/^trajectory key 2 \| isa ([a-z0-9]+) \| gemm kc ([0-9]+) \| winograd ([a-z0-9]+) \| libm fma ([01]) avx2 ([01])$/\1 \2 \3 \4 \5/p' <<<"$key")
        if [ -z "${isa:-}" ]; then
            echo "regen-trajectory-fixture: $f: key '$key' is not one this script can remake" >&2
            exit 1
        fi
        if [ "$fma $avx2" != "$have_fma $have_avx2" ]; then
            echo "regen-trajectory-fixture: $f: needs libm fma $fma avx2 $avx2, this CPU has $have_fma $have_avx2" >&2
            exit 1
        fi
        w=()
        [ "$wino" != default ] && w=("BT_CONV_WINOGRAD=$wino")
        env -u BT_CONV_WINOGRAD "${w[@]}" BUILD="$BUILD" BARLOW_REGEN_FIXTURE=1 BARLOW_ISA="$isa" \
            BARLOW_GEMM_KC="$kc" "$BUILD/tests/test_trajectory"
        if [ ! -f "$f" ]; then
            echo "regen-trajectory-fixture: remaking $f wrote another key (see above)" >&2
            exit 1
        fi
        n=$((n + 1))
        isa=
    done
    echo "regen-trajectory-fixture: remade $n fixtures"
fi
git status --short -- "$DIR" || true
