#!/usr/bin/env bash
# Shows that the parity tests can fail: for each mutation (one sign flipped in an op), a copy
# of the tree (with its build/, so only the mutated objects recompile) gets the change, and
# the parity tests that judge that op run on every CPU path (tests/run.sh); each must fail
# on each path. The working tree is never touched.
#
# usage: tools/mutation-check.sh [NAME...]     (default: every mutation below)
# Prints, per mutation, the test programs' per-path summaries and the first failures, and
# ends with one line per mutation: "caught" (every path failed) or "MISSED". Exit status 1
# if any mutation was missed.
set -u
cd "$(dirname "$0")/.."
# name | file | perl substitution | test programs | the case that must fail
MUTATIONS=(
  "bn-dx|src/ops/batchnorm_internal.h|s/\(dyc\[i\] - mdy - /(dyc[i] + mdy - /|test_parity_model test_ops_norm|resnet18_cifar_gram test_torch_parity"
  "conv-dx|src/ops/conv2d.c|s/(cblas_sgemm\(CblasRowMajor, CblasTrans, CblasNoTrans, CRS, GP, K,) 1\.0f/\1 -1.0f/g|test_conv_linear|test_torch_parity"
  "linear-dw|src/ops/linear.c|s/(CblasTrans, CblasNoTrans, O, In, N,) 1\.0f/\1 -1.0f/|test_conv_linear|test_torch_parity"
  "loss-diag|src/train/bt_loss.inc|s/c\[i\] = 2 \* \(cii - 1\);/c[i] = 2 * (1 - cii);/|test_loss test_parity_model|test_torch_parity resnet18_cifar_direct"
  "lars-wd|src/train/lars.c|s/float d = \(g\[i\] \+ wd \* p\[i\]\) \* q;/float d = (g[i] - wd * p[i]) * q;/|test_lars|test_lars_torch"
  "bn-beta|src/ops/batchnorm.c|s/b = beta \? beta\[c\] : 0\.0f;/b = beta ? -beta[c] : 0.0f;/|test_interop|export_cifar_into_reference_backbone"
  "probe-dw|src/ops/linear.c|s/(CblasTrans, CblasNoTrans, O, In, N,) 1\.0f/\1 -1.0f/|test_eval|test_linear_vs_torch"
)
want=("$@")
tmp=$(mktemp -d /tmp/barlow-mutation-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
verdicts=()
for m in "${MUTATIONS[@]}"; do
  IFS='|' read -r name file subst progs cases <<< "$m"
  if [ ${#want[@]} -gt 0 ] && [[ " ${want[*]} " != *" $name "* ]]; then continue; fi
  echo "######## mutation $name: $file: $subst"
  rm -rf "$tmp/tree"; mkdir -p "$tmp/tree"
  tar --exclude=./build-san --exclude=./build-clang --exclude=./.git -cf - . | tar -xf - -C "$tmp/tree"
  perl -pi -e "$subst" "$tmp/tree/$file"
  if cmp -s "$file" "$tmp/tree/$file"; then
    echo "mutation $name: the substitution matched nothing in $file"; verdicts+=("$name: NOT APPLIED"); continue
  fi
  diff "$file" "$tmp/tree/$file" | sed 's/^/  /'
  if ! (cd "$tmp/tree" && make -j2 tests mpi > "$tmp/build.log" 2>&1); then
    tail -20 "$tmp/build.log"; verdicts+=("$name: BUILD FAILED"); continue
  fi
  out=$(cd "$tmp/tree" && BT_TEST_PATHS=all bash tests/run.sh $progs 2>&1)
  echo "$out" | grep -E '^(######## path|-- path|FAIL [a-z_0-9]+ \(|  FAIL )' |
    awk '/^######## path/{k=0} /^  FAIL/{if (++k > 2) next} {print}' | cut -c1-200
  npaths=$(echo "$out" | grep -c '^######## path')
  ok=1
  while read -r line; do
    [[ $line == "-- path "* ]] || continue
    f=$(echo "$line" | sed -E 's/.*: [0-9]+ passed, ([0-9]+) failed.*/\1/')
    [ "$f" -gt 0 ] || ok=0
  done <<< "$(echo "$out" | grep '^-- path')"
  for c in $cases; do
    n=$(echo "$out" | grep -c "^FAIL $c (")
    [ "$n" -eq "$npaths" ] || { ok=0; echo "  case $c failed on $n of $npaths paths"; }
  done
  [ $ok = 1 ] && verdicts+=("$name: caught on all $npaths paths ($cases)") || verdicts+=("$name: MISSED")
done
echo
printf '%s\n' "${verdicts[@]}"
! printf '%s\n' "${verdicts[@]}" | grep -q -E 'MISSED|NOT APPLIED|BUILD FAILED'
