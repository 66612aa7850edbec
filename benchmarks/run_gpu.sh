#!/usr/bin/env bash
# The benchmarks' GPU columns, in one run on a machine with CUDA: the engine on the GPU beside
# the CPU, adaptation latency, MAML vs `higher`, meta-training throughput and a short Omniglot
# run. Each writes benchmarks/results/*_cuda.json (or gpu_check.json, omniglot_quality_*_gpu.json)
# and its section of BENCHMARKS.md (new sections go at its end; the "On a GPU" table sums them up). Needs: torch with CUDA, numpy, pillow, safetensors,
# networkx, matplotlib, higher, and the Omniglot zips where engine.tasks.OMNIGLOT_DIR finds them.
#
#     bash benchmarks/run_gpu.sh [all|speed|quality|distributed]   # python3 by default; PYTHON=... to choose
#     GPUS=4 bash benchmarks/run_gpu.sh distributed   # torchrun data-parallel, 1 and GPUS processes (default: all)
#     OMNIGLOT_MINUTES=1,2,3 DECAY_AT=2 bash benchmarks/run_gpu.sh quality
set -u
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
status=0
step() {  # one benchmark; a failure is reported and the next one still runs
    echo "== $*"
    local t0=$SECONDS
    "$PY" -m engine bench "$@" || { echo "!! failed: $*"; status=1; }
    echo "== done in $((SECONDS - t0)) s"
}
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
part=${1:-all}
if [[ $part == all || $part == speed ]]; then
    step gpu_check --device cuda --iterations 40 --episodes 50
    step adaptation_latency --device cuda --runs 200
    step maml_speed --device cuda --repeats 3 --iters-sine 100 --iters-conv 20
    step meta_training --device cuda --iters 10 --no-scaling
fi
if [[ $part == all || $part == distributed ]]; then
    gpus=${GPUS:-$("$PY" -c 'import torch; print(torch.cuda.device_count())')}
    counts=1
    for n in 2 4 8 "$gpus"; do ((n <= gpus)) && [[ ,$counts, != *,$n,* ]] && counts="$counts,$n"; done
    ((gpus > 1)) || echo "!! one GPU: distributed_training measures 1 process only"
    step distributed_training --device cuda --nprocs "$counts" --iters 10 --batch 32 --repeats 3
fi
if [[ $part == all || $part == quality ]]; then
    step omniglot_quality --device cuda --minutes "${OMNIGLOT_MINUTES:-1.5,3,4.5}" --decay-at "${DECAY_AT:-3}" \
        --augment-shift 2 --episodes 400 --threads 4 --tag gpu
fi
exit $status
