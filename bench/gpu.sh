#!/usr/bin/env bash
# The GPU check, in one short run (under 10 minutes): the card, then the operators benchmark at the
# SmolVLM-256M shape in bfloat16, eager (as the anchors were measured) and static + compiled, a
# larger batch, and the CPU preprocessing rate on every core of the node. Figures land in $OUT
# (or ./bench-out) as JSON and text, for docs/benchmarks.md.
# Needs only torch, transformers, numpy and pillow on the GPU machine; run from the repository root.
# Each step has its own time limit, so one slow step still leaves the others' figures.
set -uo pipefail
out="${OUT:-bench-out}"
mkdir -p "$out"
step() {  # step NAME SECONDS COMMAND...: run with a limit, keep its output, carry on if it fails
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)" | tee -a "$out/steps.txt"
    local started=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - started)) s" | tee -a "$out/steps.txt"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$out/gpu.txt"
shape=(--shape smolvlm-256m --device cuda --dtype bfloat16 --attn sdpa)
step eager-64 140 python bench/operators.py "${shape[@]}" --batch 64 --naive-posts 8 --repeats 3 \
    --json "$out/eager-64.json"
step compiled-64 150 python bench/operators.py "${shape[@]}" --batch 64 --naive-posts 8 --repeats 3 \
    --engine static --compile --skip full,cache --json "$out/compiled-64.json"
step compiled-256 100 python bench/operators.py "${shape[@]}" --batch 256 --naive-posts 4 --repeats 3 \
    --engine static --compile --skip full,posts,cache --json "$out/compiled-256.json"
step preprocess 90 python bench/preprocess.py --workers "$(nproc)" --json "$out/preprocess.json" \
    --modes "1 tile@512" "fast 1 tile@512" "fast 512 draft" "fast tiled" tiled
# Families: shared-prefix against plain on the twins of one checkpoint per engine path (the GPU
# box needs torchvision for Qwen's processor; a family that cannot build prints its error row).
step families 150 python bench/families.py --device cuda --posts 16 --json "$out/families.json" \
    --like HuggingFaceTB/SmolVLM-256M-Instruct google/gemma-3-4b-it Qwen/Qwen2.5-VL-3B-Instruct \
    OpenGVLab/InternVL3-1B-hf
