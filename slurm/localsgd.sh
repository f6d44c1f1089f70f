#!/bin/bash
#SBATCH --job-name=syncbench-localsgd
#SBATCH --ntasks=8
#SBATCH --time=00:30:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#
# Local SGD: LOCAL_STEPS local steps, then ring averaging of parameters (post-local SGD warm-up, SlowMo: see --help).
#   mkdir -p logs && sbatch slurm/localsgd.sh                      # 8 tasks
#   sbatch --ntasks=32 slurm/localsgd.sh --steps 1000              # options after the script go to `bench train`
#   MODEL=cnn DATASET=digits STEPS=200 sbatch slurm/localsgd.sh
# Settings shared by all scripts (launcher, venv, threads, results folder): slurm/env.sh.
export SYNCBENCH_BATCH_SCRIPT=${SYNCBENCH_BATCH_SCRIPT:-$0}
# shellcheck source=slurm/env.sh
source "${SYNCBENCH_DIR:-${SLURM_SUBMIT_DIR:-.}}/slurm/env.sh"

MODEL=${MODEL:-resnet20}
DATASET=${DATASET:-digits}
STEPS=${STEPS:-500}
LOCAL_STEPS=${LOCAL_STEPS:-8}
run_bench train --strategy localsgd --local-steps "$LOCAL_STEPS" --model "$MODEL" --dataset "$DATASET" --steps "$STEPS" \
  --threads "$THREADS" --timeout "$BENCH_TIMEOUT" --out "$(result_path localsgd "$MODEL")" "$@"
