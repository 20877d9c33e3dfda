#!/usr/bin/env bash
# The GPU check, in one go, on a CUDA machine that has torch, sentence-transformers,
# scikit-learn, pandas and pytest but not this package: installs nothing.
#   here, once:   python benchmarks/prepare_gpu_carry.py      (fp16 MiniLM -> .carry/)
#   device tool:  run(command="bash benchmarks/gpu_check.sh $OUT", carry=[".carry"],
#                     timeout_s=600)
# Writes four files to OUT_DIR (the device tool brings back only a few): gpu.txt (card and
# versions), tests.log (the CUDA tests and every step's output), summary.md (every
# report's table) and results.tar.gz (the reports, markdown and json: fit_gpu,
# profile_gpu, profile_eager, profile_fold_in, micro_gpu, embed_gpu, embed_threads).
set -uo pipefail
final=${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}
mkdir -p "$final"
out=$(mktemp -d)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export SKLEARN_LORE_MINILM_DIR="$PWD/.carry/minilm-fp16"
status=0

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
python3 -c "import torch, sklearn, sentence_transformers as s; print('torch', torch.__version__, 'sklearn', sklearn.__version__, 'sentence-transformers', s.__version__)" >> "$out/gpu.txt" 2>&1

# every step has its own limit (580 s together; the whole script took 239 and 290 s
# on H200 machines in runs 4 and 5), so that a 15-minute device budget leaves room for a rerun
# (timeout_s=600)
# CUDA tests and the backend contract (torch on CUDA vs numpy)
timeout 100 python3 -m pytest -q -p no:cacheprovider -m cuda \
    tests/test_estimator.py tests/test_embedding.py > "$out/tests.log" 2>&1 || status=1
timeout 40 python3 -m pytest -q -p no:cacheprovider -k "Torch" tests/test_estimator.py \
    >> "$out/tests.log" 2>&1 || status=1

# fit 1000 users x 50 pairs, d = 4096, rank 8; fold-in 500 users x 10 pairs (ours vs published
# Adam), float32 inputs as sentence embeddings are, for every model
timeout 150 python3 benchmarks/bench_fit.py --device cuda --n-users 1000 --n-pairs 50 \
    --n-features 4096 --n-components 8 --repeats 3 --dtype float32 --out "$out/fit_gpu" \
    >> "$out/tests.log" 2>&1 || status=1

# where the fit's time goes on the card (phase wall times, synchronized), and the torch
# operations and host syncs of each phase (counted in a second, untimed fit)
timeout 45 python3 benchmarks/profile_fit.py --device cuda --n-users 1000 --n-pairs 40 \
    --n-features 4096 --n-components 8 --dtype float32 --count-ops --out "$out/profile_gpu" \
    >> "$out/tests.log" 2>&1 || status=1
# the same without the user step's CUDA graphs (seconds only)
SKLEARN_LORE_CUDA_GRAPHS=0 timeout 40 python3 benchmarks/profile_fit.py --device cuda \
    --n-users 1000 --n-pairs 40 --n-features 4096 --n-components 8 --dtype float32 \
    --out "$out/profile_eager" >> "$out/tests.log" 2>&1 || status=1

# where a fold-in's time goes on this machine, and the host projection's routes
timeout 40 python3 benchmarks/profile_fold_in.py --device cuda --out "$out/profile_fold_in" \
    >> "$out/tests.log" 2>&1 || status=1

# what a sync, a launch, a d x d copy to the host, eigh and an inverse cost on this card
timeout 40 python3 benchmarks/micro_gpu.py --out "$out/micro_gpu" >> "$out/tests.log" 2>&1 \
    || status=1

# embedding throughput against the raw model forward (fp16, 64 tokens)
timeout 70 python3 benchmarks/bench_embed.py --model "$SKLEARN_LORE_MINILM_DIR" \
    --n-texts 8192 --batch-size 512 --out "$out/embed_gpu" >> "$out/tests.log" 2>&1 || status=1
# the same with the tokenizing worker processes switched off (host threads only)
timeout 55 python3 benchmarks/bench_embed.py --model "$SKLEARN_LORE_MINILM_DIR" \
    --n-texts 8192 --batch-size 512 --repeats 2 --tokenize-processes 0 --out "$out/embed_threads" \
    >> "$out/tests.log" 2>&1 || status=1

cat "$out"/*.md > "$final/summary.md" 2>/dev/null
cp "$out/gpu.txt" "$out/tests.log" "$final/"
tar czf "$final/results.tar.gz" -C "$out" $(cd "$out" && ls *.md *.json 2>/dev/null)
cat "$final/summary.md"
grep -E "passed|failed|error" "$final/tests.log" | tail -5
exit $status
