#!/bin/bash
#SBATCH --job-name=syncbench-ring
#SBATCH --ntasks=8
#SBATCH --time=00:30:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#
# Synchronous data-parallel SGD with ring all-reduce.
#   mkdir -p logs && sbatch slurm/ring.sh                      # 8 tasks
#   sbatch --ntasks=32 slurm/ring.sh --steps 1000              # options after the script go to `bench train`
#   MODEL=cnn DATASET=digits STEPS=200 sbatch slurm/ring.sh
# Settings shared by all scripts (launcher, venv, threads, results folder): slurm/env.sh.
export SYNCBENCH_BATCH_SCRIPT=${SYNCBENCH_BATCH_SCRIPT:-$0}
# shellcheck source=slurm/env.sh
source "${SYNCBENCH_DIR:-${SLURM_SUBMIT_DIR:-.}}/slurm/env.sh"

MODEL=${MODEL:-resnet20}
DATASET=${DATASET:-digits}
STEPS=${STEPS:-500}
run_bench train --strategy ring --model "$MODEL" --dataset "$DATASET" --steps "$STEPS" \
  --threads "$THREADS" --timeout "$BENCH_TIMEOUT" --out "$(result_path ring "$MODEL")" "$@"
