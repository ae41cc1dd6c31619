#!/usr/bin/env bash
# The README's CIFAR-10 results table: Barlow Twins pretraining with barlow and with the
# PyTorch reference recipe (tools/ref_pretrain.py: main.py's model, loss, LARS and schedule)
# on the same data, configuration, augmentation and epochs, two seeds each, then kNN and a
# linear probe of every backbone with the same evaluation code (barlow knn / barlow linear),
# plus the same network at random initialisation.
#   bash tools/cifar-results.sh [OUT_DIR]      (default runs/cifar-results; ~45 min on 2 cores)
# Environment: EPOCHS (10), SEEDS ("0 1"), ARCH, PROJ, TRAIN_GLOB (the training subset),
# BARLOW_SHARED_DATA (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/cifar-results}
EPOCHS=${EPOCHS:-10}
SEEDS=${SEEDS:-"0 1"}
ARCH=${ARCH:-resnet18-cifar:w=0.125}
PROJ=${PROJ:-1024-1024-1024}
TRAIN_GLOB=${TRAIN_GLOB:-"cifar10/train/*/0???.jpg"}   # 1,000 images a class
SHARED=${BARLOW_SHARED_DATA:-../shared/data}
B=build/barlow
PY=/usr/bin/python3
COMMON=(--arch "$ARCH" --projector "$PROJ" --batch-size 256 --epochs "$EPOCHS" --warmup-epochs 1
        --learning-rate-weights 0.3 --lars-eta 0.02 --threads 2 --workers 2)

make -j2 build/barlow >/dev/null
mkdir -p "$OUT"
DATA=$OUT/data/cifar10
if [ ! -d "$DATA/test" ]; then
  mkdir -p "$OUT/data"
  tar xzf "$SHARED/cifar10-jpeg.tar.gz" -C "$OUT/data" --wildcards "$TRAIN_GLOB" 'cifar10/test/*'
fi
echo "data: $(find "$DATA/train" -name '*.jpg' | wc -l) train / $(find "$DATA/test" -name '*.jpg' | wc -l) test images"

evaluate() { # NAME WEIGHTS SECONDS
  local k l
  k=$($B knn "$DATA" --weights "$2" --preset cifar --threads 2 | tee "$OUT/$1.knn.log" |
      sed -n 's/.*top-1 \([0-9.]*\)%.*/\1/p' | tail -1)
  l=$($B linear "$DATA" --weights "$2" --preset cifar --cached-features --threads 2 |
      tee "$OUT/$1.linear.log" | sed -n 's/.*best top-1 \([0-9.]*\).*/\1/p' | tail -1)
  printf '%s\t%s\t%s\t%s\n' "$1" "$k" "$l" "$3" | tee -a "$OUT/results.tsv"
}

printf 'run\tknn_top1\tlinear_top1\tpretrain_s\n' > "$OUT/results.tsv"
for s in $SEEDS; do
  rm -rf "$OUT/barlow-s$s" "$OUT/torch-s$s"
  t0=$(date +%s)
  $B pretrain "$DATA" "${COMMON[@]}" --preset cifar --seed "$s" --print-freq 20 \
     --checkpoint-dir "$OUT/barlow-s$s" > "$OUT/barlow-s$s.log" 2>&1
  tb=$(( $(date +%s) - t0 ))
  t0=$(date +%s)
  $PY tools/ref_pretrain.py "$DATA" "${COMMON[@]}" --seed "$s" --print-freq 20 \
     --checkpoint-dir "$OUT/torch-s$s" > "$OUT/torch-s$s.log" 2>&1
  tt=$(( $(date +%s) - t0 ))
  evaluate "barlow-s$s" "$OUT/barlow-s$s/backbone.safetensors" "$tb"
  evaluate "torch-s$s" "$OUT/torch-s$s/backbone.safetensors" "$tt"
  evaluate "random-s$s" "$OUT/barlow-s$s/checkpoint-first.safetensors" 0
done
column -t "$OUT/results.tsv"
