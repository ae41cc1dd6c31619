#!/usr/bin/env bash
# Shows that the parity tests can fail: for each mutation (one sign flipped in an op, or the
# ReLU's mask of a fused op broken, or a first writer's overwrite of an input gradient
# broken), a copy of the tree (with its build/, so only the mutated objects recompile) gets
# the change, and the parity tests that judge that op run on every CPU path (tests/run.sh);
# each must fail on each path. The working tree is never touched.
#
# usage: tools/mutation-check.sh [NAME...]     (default: every mutation below)
# Prints, per mutation and case, the paths and the first failures, and ends with one line per
# mutation: "caught" (the case failed on every path) or "MISSED". Exit status 1 if any
# mutation was missed.
set -u
cd "$(dirname "$0")/.."
# name | file | perl substitution | program:case pairs that must fail (each run alone, TU_ONLY)
MUTATIONS=(
  "bn-dx|src/ops/batchnorm_internal.h|s/0\.0f - \(mdy\)\) - \(\(xv\) - \(m\)\)/0.0f - (mdy)) + ((xv) - (m))/|test_parity_model:resnet18_cifar_gram test_ops_norm:test_torch_parity"
  "bnrelu-mask|src/ops/batchnorm_internal.h|s/!\(y <= 0\)/!(y < 0)/|test_bn_kernels:test_fused_bit_identical test_bn_kernels:test_relu_loops_vs_plain test_backend_ops:test_batchnorm test_ops_norm:test_torch_parity test_trajectory:test_trajectory_bit_identical"
  "addrelu-mask|src/ops/elementwise.c|s/const float g = y\[i\] <= 0 \? 0\.0f : d\[i\];/const float g = d[i];/|test_bn_kernels:test_fused_bit_identical test_backend_ops:test_elementwise test_ops_norm:test_opt_elementwise test_trajectory:test_trajectory_bit_identical"
  "conv-dx|src/ops/conv2d.c|s/(bt_sgemm\(BT_TRANS, BT_NOTRANS, CRS, GP, K,) 1\.0f/\1 -1.0f/g|test_conv_linear:test_torch_parity"
  "linear-dw|src/ops/linear.c|s/(bt_sgemm\(BT_TRANS, BT_NOTRANS, O, In, N,) 1\.0f/\1 -1.0f/|test_conv_linear:test_torch_parity test_eval:test_linear_vs_torch"
  "loss-diag|src/train/bt_loss.inc|s/c\[i\] = 2 \* \(cii - 1\);/c[i] = 2 * (1 - cii);/|test_loss:test_torch_parity test_parity_model:resnet18_cifar_direct"
  "lars-wd|src/train/lars.c|s/float d = \(g\[i\] \+ wd \* p\[i\]\) \* q;/float d = (g[i] - wd * p[i]) * q;/|test_lars:test_lars_torch"
  "bn-beta|src/ops/batchnorm_internal.h|s/b = beta \? beta\[c\] : 0\.0f;/b = beta ? -beta[c] : 0.0f;/|test_interop:export_cifar_into_reference_backbone test_parity_model:resnet50_bottleneck"
  "bn-dx-set-sign|src/ops/batchnorm_internal.h|s/\(set\) \? 0\.0f \+ \(v\)/(set) ? (v)/|test_bn_kernels:test_set_loops_vs_add test_backend_ops:test_bn_first_writer"
  "wino-dx-set|src/ops/conv_winograd.c|s/d->W, 1, !dinp_set,/d->W, 1, 1 + 0 * dinp_set,/|test_backend_ops:test_conv_first_writer"
  "im2col-dx-set|src/ops/conv2d.c|s/if \(dinp_set\) memset/if (dinp_set < 0) memset/|test_backend_ops:test_conv_first_writer"
  "wino-f4-input|src/ops/conv_winograd.c|s/= 2 \* t_ - s_;/= 2 * t_ + s_;/|test_winograd:test_wino_fixed_shapes test_conv_linear:test_torch_parity test_parity_model:resnet18_cifar_gram"
  "wino-dx-tile|src/ops/conv_winograd.c|s/tile == BT_WINO_F2_DX4 \x7c\x7c tile == BT_WINO_F2_DX4_DW4 \? BT_WINO_F4 : tile/tile/|test_winograd:test_wino_mixed_bits test_trajectory:test_trajectory_bit_identical"
  "wino-f4-wgrad|src/ops/conv_winograd.c|s/\(\(y0\) \+ 4 \* \(y2\)\) - 2 \*/((y0) + 4 * (y2)) + 2 */|test_winograd:test_wino_fixed_shapes test_conv_linear:test_torch_parity test_parity_model:resnet18_cifar_gram"
  "wino-f4-fold|src/ops/conv_winograd.c|s/p_ - \(8\.0 \/ 15\)/p_ + (8.0 \/ 15)/|test_winograd:test_wino_fixed_shapes test_conv_linear:test_torch_parity"
  "wino-dw-tile|src/ops/conv_winograd.c|s/\(tile == BT_WINO_F2_DX4_DW4 \x7c\x7c tile == BT_WINO_F4\) &&/(tile == BT_WINO_F4) \&\&/|test_winograd:test_wino_mixed_bits test_trajectory:test_trajectory_bit_identical"
  "wino-f4-outpair|src/ops/conv_winograd.c|s/r\[4 \* j \+ b\] = q\[j\]\[4 \* a \+ b\];/r[4 * j + b] = q[j][4 * a + (b ^ 1)];/|test_winograd:test_wino_fixed_shapes test_conv_linear:test_torch_parity"
  "wino-wtile8|src/ops/conv_winograd.c|s/t\[2\]\[j\] = 0\.5f \* \(a - b \+ c\);/t[2][j] = 0.5f * (a + b + c);/|test_winograd:test_wino_fixed_shapes test_conv_linear:test_torch_parity"
  "wino-f4-fold-parts|src/ops/conv_winograd.c|s/u\[xi\] \+= __builtin_convertvector/u[xi] -= __builtin_convertvector/|test_winograd:test_wino_fixed_shapes test_conv_linear:test_torch_parity"
  "model-first-writer|src/nn/model.c|s/m->grad_birth\[root\] == i &&/m->grad_birth[root] >= 0 \&\&/|test_trajectory:test_trajectory_bit_identical"
  "bf16-round-ties|src/ops/gemm/ukernel_ref.c|s/\(u \+ 0x7fffu \+ \(\(u >> 16\) & 1u\)\) >> 16/(u + 0x8000u) >> 16/|test_gemm_bf16:test_rounding"
  "bf16-last-pair|src/ops/gemm/ukernel_ref.c|s/for \(int p = 0; p < \(kc \+ 1\) \/ 2; p\+\+, a \+= mr, b \+= nr\)/for (int p = 0; p < kc \/ 2; p++, a += mr, b += nr)/|test_gemm_bf16:test_shapes"
  "bf16-pack-interleave|src/ops/gemm/ukernel_avx512_bf16.c|s/16, 0\);/0, 16);/|test_gemm_bf16:test_packs"
  "bf16-backend|src/backend/cpu.c|s/bt_gemm_set_precision\(\(bt_precision\)/bt_gemm_set_precision(0 * (bt_precision)/|test_pretrain:test_precision"
)
want=("$@")
tmp=$(mktemp -d /tmp/barlow-mutation-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
verdicts=()
for m in "${MUTATIONS[@]}"; do
  IFS='|' read -r name file subst checks <<< "$m"
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
  ok=1
  for pc in $checks; do
    prog=${pc%%:*}; case=${pc#*:}
    out=$(cd "$tmp/tree" && TU_ONLY=$case BT_TEST_PATHS=all bash tests/run.sh "$prog" 2>&1)
    echo "$out" | grep -E '^(######## path|FAIL [a-z_0-9]+ \(|  FAIL )' |
      awk '/^######## path/{k=0} /^  FAIL/{if (++k > 2) next} {print}' | cut -c1-200
    npaths=$(echo "$out" | grep -c '^######## path')
    n=$(echo "$out" | grep -c "^FAIL $case (")
    echo "  $prog $case: failed on $n of $npaths paths"
    [ "$n" -eq "$npaths" ] && [ "$npaths" -gt 0 ] || ok=0
  done
  [ $ok = 1 ] && verdicts+=("$name: caught on every path ($checks)") || verdicts+=("$name: MISSED ($checks)")
done
echo
printf '%s\n' "${verdicts[@]}"
! printf '%s\n' "${verdicts[@]}" | grep -q -E 'MISSED|NOT APPLIED|BUILD FAILED'
