#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one short run (about 5-8 minutes of an H100-class GPU): Faster R-CNN
# and Mask R-CNN R50-FPN at 800 px, batch 8, each in fp32, bf16-mixed and bf16-mixed with channels_last; for each,
# losslab's loop against the bare reference loop (images/s, their ratio), peak GPU memory and how busy nvidia-smi
# saw the GPU (scripts/bench_overhead.py). The log goes to stdout and to ${OUT:-.}/bench_gpu.log.
#
#     bash scripts/bench_gpu.sh
#     DEVICE=cpu SIZE=96 STEPS=1 REPEATS=1 bash scripts/bench_gpu.sh     # a dry run of the script on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
log="${OUT:-.}/bench_gpu.log"
common=(--device "${DEVICE:-cuda}" --image-size "${SIZE:-800}" --steps "${STEPS:-12}" --repeats "${REPEATS:-3}")
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  for model in faster_rcnn mask_rcnn; do
    for variant in "32" "bf16-mixed" "bf16-mixed trainer.channels_last=true"; do
      read -r precision extra <<< "$variant"
      echo "== $model, $variant"
      python scripts/bench_overhead.py "${common[@]}" --precision "$precision" model="$model" \
        model.backbone=resnet50_fpn data.batch_size="${BATCH:-8}" ${extra:+"$extra"}
    done
  done
} 2>&1 | tee "$log"
