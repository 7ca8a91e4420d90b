#!/usr/bin/env bash
# A slice of the `gpu` profile of experiments/santurkar.yaml, for a GPU machine lent for a few
# minutes: the paper's full-width VGG on CIFAR-10, one seed per arm, and the GPU code paths.
#
#   BNLAB_DATA=<data root> bash scripts/gpu_slice.sh <out folder> [seconds]
#
# Phase 0: bnlab-bench's one table on the GPU (the trainer, the minimal loop, a DataLoader
#   pipeline and stacks of K = 1, 8, 64 MLPs; the full-width VGG-11), at most 100 s.
# Phase A: seed 0 of all four arms (none, batch, noisy_batch, noise) at lr 0.1, four jobs at
#   once on the one GPU, to the paper's 15,000 steps (stopped at 70% of the time if slower).
# Phase B: the same at lr 0.5, until the time is nearly up: the jobs are sent SIGTERM, finish
#   their step, save a checkpoint and end `failed` with the reason (the cooperative stop).
# Phase C: phase B's command again for a few seconds: each run resumes from its checkpoint on
#   the GPU (the resume path), then is stopped again.
# Into <out folder>: the GPU's name, the log, and the runs without their checkpoints (runs.tgz:
# every run's config, metrics.jsonl and summary.json), to be analysed where they land.
set -uo pipefail
out=${1:?usage: scripts/gpu_slice.sh <out folder> [seconds]}
budget=${2:-480}
start=$(date +%s)
runs=${RUNS:-/tmp/gpu_slice_runs}
py=${PYTHON:-python3}
mkdir -p "$out" "$runs"
left() { echo $(( budget - ($(date +%s) - start) )); }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" >> "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
common=(experiments=santurkar profile=gpu seed=0 tracking.mode=disabled trainer.progress=false
        "paths.results=$runs" hydra.launcher.n_jobs=4 trainer.num_threads=4 model.norm=none,batch,noisy_batch,noise
        ${EXTRA:-})  # EXTRA: more overrides, e.g. a tiny budget to try the script on a CPU

echo "== phase 0: bnlab-bench --stacked on the GPU ($(left) s left)"
timeout -s TERM 100 "$py" -m bnlab.bench --stacked 1 8 64 --device cuda --steps 2000 --repeats 3 --vgg-width 1 \
    --vgg-steps 50 | tee "$out/bench.md"
echo "== phase 0 ended rc=$? ($(left) s left)"

echo "== phase A: lr 0.1, 15,000 steps ($(left) s left)"
timeout -s TERM $(( budget * 7 / 10 )) "$py" -m bnlab.train "${common[@]}" optim.lr=0.1
echo "== phase A ended rc=$? ($(left) s left)"

echo "== phase B: lr 0.5 until the time is nearly up ($(left) s left)"
b=$(( $(left) - 75 ))
if [ "$b" -gt 30 ]; then
    timeout -s TERM "$b" "$py" -m bnlab.train "${common[@]}" optim.lr=0.5
    echo "== phase B ended rc=$? ($(left) s left)"
    echo "== phase C: resume phase B's runs from their checkpoints for a few seconds"
    timeout -s TERM 45 "$py" -m bnlab.train "${common[@]}" optim.lr=0.5
    echo "== phase C ended rc=$? ($(left) s left)"
fi
tar czf "$out/runs.tgz" --exclude='*.pt' --exclude='*.pt.tmp' -C "$runs" .
ls -la "$out"
