#!/usr/bin/env bash
# The GPU check, in one short run (the steps' limits add up to 570 s): the card, a smoke run of
# the tiny model, then the operators benchmark at the SmolVLM-256M shape in bfloat16, eager (as
# the anchors were measured) and static + compiled, the CPU preprocessing rate on every core of
# the node, and the families' shared-prefix engine against the plain one. Figures land in $OUT
# (or ./bench-out) as JSON and text, for docs/benchmarks.md.
# Needs torch, transformers, numpy, pillow and pydantic on the GPU machine (and num2words for
# SmolVLM2's processor); run from the repository root.
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
# A quick first step: if the tiny model cannot run on the card, stop here with its error instead of
# spending every step's limit on the same failure.
step smoke 90 python bench/operators.py --shape tiny --device cuda --batch 4 --naive-posts 2 \
    --repeats 1 --skip cache --json "$out/smoke.json"
if ! grep -q "smoke: exit 0" "$out/steps.txt"; then
    echo "the tiny model did not run on the card: see $out/smoke.txt" >&2
    exit 3
fi
shape=(--shape smolvlm-256m --device cuda --dtype bfloat16 --attn sdpa)
step eager-64 100 python bench/operators.py "${shape[@]}" --batch 64 --naive-posts 8 --repeats 3 \
    --json "$out/eager-64.json"
# Compiling the static decoder at this shape took over 120 s on an H200 (2026-12-04): the
# compiled step gets the most time, and batch 256 waits for a run of its own.
step compiled-64 220 python bench/operators.py "${shape[@]}" --batch 64 --naive-posts 8 --repeats 3 \
    --engine static --compile --skip full,cache --json "$out/compiled-64.json"
step preprocess 70 python bench/preprocess.py --workers "$(nproc)" --json "$out/preprocess.json" \
    --modes "1 tile@512" "fast 1 tile@512" "fast 512 draft" "fast tiled" tiled
# Families: shared-prefix against plain on the twins of one checkpoint per engine path (the GPU
# box needs torchvision for Qwen's processor; a family that cannot build prints its error row).
step families 90 python bench/families.py --device cuda --posts 16 --json "$out/families.json" \
    --like HuggingFaceTB/SmolVLM-256M-Instruct google/gemma-3-4b-it Qwen/Qwen2.5-VL-3B-Instruct \
    OpenGVLab/InternVL3-1B-hf
