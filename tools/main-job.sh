#!/usr/bin/env bash
# The main job: installs what is missing, builds, pretrains a small ResNet with Barlow Twins on
# the built-in procedural dataset (no download), evaluates the learned features with kNN and a
# linear probe against the same network at random initialisation, draws the pictures, and
# prints a summary. About 5 minutes on 2 cores (build included).
#   bash tools/main-job.sh [RUN_DIR]            (default ./runs/main-job)
#   QUICK=1 bash tools/main-job.sh              (a shorter run, as the CI test does)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/main-job}
bash tools/install-deps.sh
make -j2 build/barlow >/dev/null

if [ "${QUICK:-0}" = 1 ]; then
  DATA="builtin:shapes:train=5000,test=1000"; EPOCHS=6; LIN_EPOCHS=30
else
  DATA="builtin:shapes:train=5000,test=1000"; EPOCHS=15; LIN_EPOCHS=30
fi
ARCH="resnet18-cifar:w=0.125"
B=build/barlow
rm -rf "$RUN"
mkdir -p "$RUN"
# One console line per epoch while it runs (epoch, loss, kNN when measured, time left), read
# from its stats.txt: the log file alone would leave the console silent for minutes.
progress() {
  local pid=$1 shown=0 line ep loss knn now left
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    line=$(grep '"loss"' "$RUN/stats.txt" 2>/dev/null | tail -1) || true
    ep=$(sed -n 's/.*"epoch":\([0-9]*\).*/\1/p' <<<"$line")
    [ -n "$ep" ] && [ "$ep" -gt "$shown" ] || continue
    shown=$ep
    loss=$(sed -n 's/.*"loss":\([-0-9.e+]*\).*/\1/p' <<<"$line")
    [ -n "$loss" ] || continue
    knn=$(grep '"knn_top1"' "$RUN/stats.txt" | tail -1 | sed -n 's/.*"epoch":\([0-9]*\),.*"knn_top1":\([0-9]*\.[0-9][0-9]\).*/, kNN top-1 \2% (after epoch \1)/p') || true
    now=$(( $(date +%s) - start ))
    left=$(( now * (EPOCHS - ep) / ep ))
    printf '   %d of %d epochs done: loss %.4g%s, %d s so far, about %d s left\n' "$ep" "$EPOCHS" "$loss" "$knn" "$now" "$left" || true
  done
}
echo "== pretraining $ARCH on $DATA for $EPOCHS epochs (log: $RUN/pretrain.log)"
start=$(date +%s)
# LARS as solo-learn trains on CIFAR (lr 0.3, eta 0.02): with the reference's eta 0.001 the
# updates are too small to learn much in a few hundred steps. Crops of at least 30% of the
# image keep some of the shape in both views.
$B pretrain "$DATA" --arch "$ARCH" --projector 256-256 --preset cifar --batch-size 128 \
   --epochs "$EPOCHS" --warmup-epochs 1 --learning-rate-weights 0.3 --lars-eta 0.02 \
   --aug scale-min=0.3 --print-freq 10 --knn-every 3 --tb-image-every 50 \
   --checkpoint-dir "$RUN" > "$RUN/pretrain.log" 2>&1 &
pid=$!
progress "$pid"
wait "$pid" # its status: under set -e a failed pretraining ends the job here, as before
echo "   done in $(( $(date +%s) - start )) s"

knn() { $B knn "$DATA" --weights "$1" --preset cifar --k 20 | tee -a "$RUN/eval.log" |
        sed -n 's/.*top-1 \([0-9.]*\)%.*/\1/p' | tail -1; }
linear() { $B linear "$DATA" --weights "$1" --preset cifar --cached-features --epochs "$LIN_EPOCHS" \
           --lr-classifier 0.3 | tee -a "$RUN/eval.log" | sed -n 's/.*best top-1 \([0-9.]*\).*/\1/p' | tail -1; }
echo "== evaluating (log: $RUN/eval.log)"
k_learned=$(knn "$RUN/backbone.safetensors")
k_random=$(knn "$RUN/checkpoint-first.safetensors")
l_learned=$(linear "$RUN/backbone.safetensors")
l_random=$(linear "$RUN/checkpoint-first.safetensors")
$B report "$RUN" > "$RUN/report.log" 2>&1

cat > "$RUN/summary.txt" <<SUM
barlow main job: Barlow Twins on $DATA, $ARCH, projector 256-256, $EPOCHS epochs

                         kNN top-1 (k=20)   linear top-1 ($LIN_EPOCHS epochs, cached features)
learned features         ${k_learned}%              ${l_learned}%
random initialisation    ${k_random}%              ${l_random}%

pictures: $RUN/loss.png $RUN/lr.png $RUN/knn.png $RUN/corr.png $RUN/pca.png
TensorBoard events: $RUN/tb    checkpoint: $RUN/checkpoint.safetensors
SUM
echo
cat "$RUN/summary.txt"
