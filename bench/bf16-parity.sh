#!/usr/bin/env bash
# The learning-parity check of --precision bf16: the same pretraining in fp32 and in bf16 from
# the same seeds, each evaluated with kNN at the same epoch count; bf16 passes when its mean
# kNN top-1 is within seed noise of fp32's: |mean(bf16) - mean(fp32)| <= 2 x the standard
# deviation of fp32 across its seeds (and the same bound with bf16's spread). The seed-by-seed
# differences are printed too: the two runs of a seed share data order and initialisation.
#   bash bench/bf16-parity.sh [RUN_DIR]          (default runs/bf16-parity)
# Settings (environment): DATA, ARCH, PROJECTOR, EPOCHS, BATCH, SEEDS (space-separated).
# The defaults are the main job's (tools/main-job.sh): builtin shapes, resnet18-cifar at width
# 1/8, 15 epochs, seeds 0 1 2: about 3 minutes per run on 2 cores (18 in all).
# Needs a CPU with AVX512_BF16 (barlow refuses --precision bf16 elsewhere); exit 1 when the
# check fails, 2 on bad settings.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/bf16-parity}
DATA=${DATA:-builtin:shapes:train=5000,test=1000}
ARCH=${ARCH:-resnet18-cifar:w=0.125}
PROJECTOR=${PROJECTOR:-256-256}
EPOCHS=${EPOCHS:-15}
BATCH=${BATCH:-128}
SEEDS=${SEEDS:-0 1 2}
B=build/barlow
[ -x "$B" ] || make -j2 build/barlow >/dev/null
set -- $SEEDS
[ $# -ge 2 ] || { echo "bf16-parity: SEEDS needs at least two seeds (got '$SEEDS')" >&2; exit 2; }
mkdir -p "$RUN"
echo "bf16 parity: $DATA, $ARCH, projector $PROJECTOR, $EPOCHS epochs, batch $BATCH, seeds $SEEDS"
grep -m1 'model name' /proc/cpuinfo || true
res="$RUN/results.tsv"
printf 'precision\tseed\tknn_top1\tfinal_loss\tseconds\n' > "$res"
for seed in $SEEDS; do
  for prec in fp32 bf16; do
    d="$RUN/$prec-seed$seed"
    rm -rf "$d"
    t0=$(date +%s)
    # the main job's recipe (solo-learn's LARS settings for CIFAR; crops of at least 30%)
    if ! $B pretrain "$DATA" --arch "$ARCH" --projector "$PROJECTOR" --preset cifar \
         --batch-size "$BATCH" --epochs "$EPOCHS" --warmup-epochs 1 --learning-rate-weights 0.3 \
         --lars-eta 0.02 --aug scale-min=0.3 --print-freq 50 --tb-image-every 0 --seed "$seed" \
         --precision "$prec" --checkpoint-dir "$d" > "$d.log" 2>&1; then
      echo "bf16-parity: pretraining $prec seed $seed failed:" >&2
      tail -3 "$d.log" >&2
      exit 2
    fi
    secs=$(( $(date +%s) - t0 ))
    loss=$(grep '"loss"' "$d/stats.txt" | tail -1 | sed -n 's/.*"loss":\([-0-9.e+]*\).*/\1/p')
    top1=$($B knn "$DATA" --weights "$d/backbone.safetensors" --preset cifar --k 20 \
           | sed -n 's/.*top-1 \([0-9.]*\)%.*/\1/p' | tail -1)
    printf '%s\t%s\t%s\t%s\t%s\n' "$prec" "$seed" "$top1" "$loss" "$secs" | tee -a "$res"
  done
done
python3 - "$res" <<'PY'
import statistics as st, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
k = {p: [float(r[2]) for r in rows if r[0] == p] for p in ("fp32", "bf16")}
t = {p: [float(r[4]) for r in rows if r[0] == p] for p in ("fp32", "bf16")}
m = {p: st.mean(v) for p, v in k.items()}
s = {p: st.stdev(v) for p, v in k.items()}
d = m["bf16"] - m["fp32"]
for p in ("fp32", "bf16"):
    print(f"{p}: kNN top-1 {' '.join(f'{x:.2f}' for x in k[p])}: mean {m[p]:.2f}%, sd {s[p]:.2f}"
          f" (pretraining {st.mean(t[p]):.0f} s per run)")
seeds = [r[1] for r in rows if r[0] == "fp32"]
pair = [float(b[2]) - float(a[2]) for a in rows if a[0] == "fp32"
        for b in rows if b[0] == "bf16" and b[1] == a[1]]
print(f"seed by seed, bf16 - fp32: {' '.join(f'{x:+.2f}' for x in pair)} (mean {st.mean(pair):+.2f})")
bound = 2 * max(s["fp32"], s["bf16"])
ok = abs(d) <= bound
print(f"bf16 - fp32 = {d:+.2f} points; seed noise bound 2 sd = {bound:.2f}: "
      f"{'within seed noise' if ok else 'OUTSIDE seed noise'}")
sys.exit(0 if ok else 1)
PY
