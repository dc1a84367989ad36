#!/usr/bin/env bash
# One session on a lent GPU, unattended: the benchmark suite on an idle GPU (CUDA-graph variants
# included: the 256 px fast recipe at batch 1 in fp16 and bf16, replayed from graphs, images/s at batch
# 16, forward MFU at batch 16, DeepCache's full and shallow step, loading before and after), then the
# demo on CUDA answering 8 concurrent gradio_client users (a one-minute soak), then the shapes family
# trained side by side (`glide.train_default --recipe gpu`, exported into glide/assets/shapes/), then
# its evaluation on the GPU. Each step is time-bounded;
# GLIDE_STEPS picks steps: GLIDE_STEPS=bench,demo is the speed figures alone, in under 5 minutes.
#
#   scripts/gpu-session.sh OUT_DIR        # writes OUT_DIR/*.safetensors and OUT_DIR/session.tar.gz
#   GLIDE_STEPS=bench,demo scripts/gpu-session.sh OUT_DIR
#   GLIDE_STEPS=tradeoff scripts/gpu-session.sh OUT_DIR   # the guidance trade-off sweep (glide.eval --tradeoff)
#
# GLIDE_DEVICE=cpu GLIDE_MINUTES_SCALE=0.02 GLIDE_QUICK=1 scripts/gpu-session.sh /tmp/x   # a dry run on a CPU
set -u
out=$(realpath -m "${1:?usage: scripts/gpu-session.sh OUT_DIR}")
device=${GLIDE_DEVICE:-cuda}
scale=${GLIDE_MINUTES_SCALE:-1}
quick=${GLIDE_QUICK:+--quick}
python=${PYTHON:-python3}
steps=",${GLIDE_STEPS:-bench,demo,train,eval},"
budget=${GLIDE_BENCH_BUDGET:-150}
work=$(mktemp -d)
mkdir -p "$out" "$work/logs"
export PYTHONUNBUFFERED=1
step() { echo "[$(date +%T)] $*"; }

step "machine"
{ nvidia-smi; $python -c "import torch, sys; print(sys.version); print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"; nproc; } > "$work/logs/machine.txt" 2>&1
cat "$work/logs/machine.txt" | tail -4

if [[ $steps == *,bench,* ]]; then
    step "benchmark"
    cuda_graphs=$([[ $device == cuda* ]] && echo --cuda-graphs)
    timeout -k 10 $((budget + 30)) $python -m bench --device "$device" --budget-s "$budget" $cuda_graphs $quick \
        --out "$work/bench" > "$work/logs/bench.log" 2>&1
    step "benchmark exit $?"; tail -5 "$work/logs/bench.log"
fi

if [[ $steps == *,demo,* ]]; then
    step "demo: 8 gradio_client users on app.py (device auto)"
    soak_minutes=$([[ -n $quick ]] && echo 0.2 || echo 1)
    timeout -k 10 150 $python -m bench.soak --clients 8 --minutes "$soak_minutes" --warm-up 20 \
        --out "$work/bench" > "$work/logs/demo.log" 2>&1
    step "demo exit $?"; tail -8 "$work/logs/demo.log"
fi

if [[ $steps == *,train,* ]]; then
    step "train"
    $python -m glide.train_default --recipe gpu --minutes-scale "$scale" --runs "$work/runs" 2>&1 | tee "$work/logs/train.log"
    step "train exit ${PIPESTATUS[0]}"
    for f in "$work"/runs/*.log; do tail -2 "$f"; done
fi

if [[ $steps == *,eval,* ]]; then
    step "eval"
    timeout "${GLIDE_EVAL_SECONDS:-75}" $python -m glide.eval shapes --device "$device" --n "${GLIDE_EVAL_N:-256}" \
        --out glide/assets/shapes/EVAL.json > "$work/logs/eval.log" 2>&1
    step "eval exit $?"; tail -12 "$work/logs/eval.log"
fi

if [[ $steps == *,tradeoff,* ]]; then   # not in the default steps: GLIDE_STEPS=tradeoff
    step "tradeoff"
    timeout "${GLIDE_TRADEOFF_SECONDS:-300}" $python -m glide.eval shapes --tradeoff --device "$device" \
        > "$work/logs/tradeoff.log" 2>&1
    step "tradeoff exit $?"; tail -3 "$work/logs/tradeoff.log"
    cp glide/assets/shapes/EVAL_TRADEOFF.json glide/assets/shapes/tradeoff.png "$out"/ 2>/dev/null
fi

step "pack"
mkdir -p "$work/pack"
cp -r "$work/logs" "$work/bench" "$work/pack/" 2>/dev/null
if [[ $steps == *,train,* ]]; then
    cp glide/assets/shapes/*.safetensors "$out"/
    cp glide/assets/shapes/MODEL_CARD.json glide/assets/shapes/EVAL.json "$work/pack/" 2>/dev/null
    for run in "$work"/runs/*/; do
        name=$(basename "$run"); mkdir -p "$work/pack/runs/$name"
        cp "$run/state.json" "$work/pack/runs/$name/" 2>/dev/null
    done
    cp "$work"/runs/*.log "$work/pack/runs/" 2>/dev/null
    cp "$work/runs/base/model.safetensors" "$work/pack/runs/base/" 2>/dev/null   # raw weights, to compare with the EMA
fi
tar -czf "$out/session.tar.gz" -C "$work/pack" .
ls -la "$out"
