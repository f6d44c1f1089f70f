#!/bin/bash
#SBATCH --job-name=syncbench-ssp
#SBATCH --ntasks=8
#SBATCH --time=00:30:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#
# Stale synchronous parallel: workers at most STALENESS steps ahead of the slowest; SERVERS tasks are servers.
#   mkdir -p logs && sbatch slurm/ssp.sh                           # 8 tasks, s = 2
#   STALENESS=4 sbatch --ntasks=16 slurm/ssp.sh --straggler 15:3   # options after the script go to `bench train`
# Settings shared by all scripts (launcher, venv, threads, results folder): slurm/env.sh.
export SYNCBENCH_BATCH_SCRIPT=${SYNCBENCH_BATCH_SCRIPT:-$0}
# shellcheck source=slurm/env.sh
source "${SYNCBENCH_DIR:-${SLURM_SUBMIT_DIR:-.}}/slurm/env.sh"

MODEL=${MODEL:-resnet20}
DATASET=${DATASET:-digits}
STEPS=${STEPS:-500}
SERVERS=${SERVERS:-1}
STALENESS=${STALENESS:-2}
run_bench train --strategy ssp --servers "$SERVERS" --staleness "$STALENESS" --model "$MODEL" --dataset "$DATASET" \
  --steps "$STEPS" --threads "$THREADS" --timeout "$BENCH_TIMEOUT" --out "$(result_path ssp "$MODEL")" "$@"
