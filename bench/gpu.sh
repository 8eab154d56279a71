#!/usr/bin/env bash
# The GPU check, in one short run: the card, then the operators benchmark at the SmolVLM-256M
# shape in bfloat16 (figures for docs/benchmarks.md), then the tiny model as a smoke test.
# Needs only torch, transformers and pillow on the GPU machine; run from the repository root.
set -euo pipefail
mkdir -p "${OUT:-bench-out}"
out="${OUT:-bench-out}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$out/gpu.txt"
python bench/operators.py --shape smolvlm-256m --device cuda --dtype bfloat16 --batch 64 \
    --naive-posts 8 --repeats 3 --json "$out/operators-256m.json" | tee "$out/operators-256m.txt"
python bench/operators.py --device cuda --batch 64 --json "$out/operators-tiny.json" \
    | tee "$out/operators-tiny.txt"
