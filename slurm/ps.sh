#!/bin/bash
#SBATCH --job-name=syncbench-ps
#SBATCH --ntasks=8
#SBATCH --time=00:30:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#
# Sharded parameter server: SERVERS tasks hold the parameters, the rest are workers; PS_MODE sync (BSP) or async.
#   mkdir -p logs && sbatch slurm/ps.sh                            # 8 tasks, 1 server, sync
#   PS_MODE=async SERVERS=2 sbatch --ntasks=16 slurm/ps.sh
#   sbatch slurm/ps.sh --straggler 7:3                             # options after the script go to `bench train`
# Settings shared by all scripts (launcher, venv, threads, results folder): slurm/env.sh.
export SYNCBENCH_BATCH_SCRIPT=${SYNCBENCH_BATCH_SCRIPT:-$0}
# shellcheck source=slurm/env.sh
source "${SYNCBENCH_DIR:-${SLURM_SUBMIT_DIR:-.}}/slurm/env.sh"

MODEL=${MODEL:-resnet20}
DATASET=${DATASET:-digits}
STEPS=${STEPS:-500}
SERVERS=${SERVERS:-1}
PS_MODE=${PS_MODE:-sync}
run_bench train --strategy ps --servers "$SERVERS" --ps-mode "$PS_MODE" --model "$MODEL" --dataset "$DATASET" \
  --steps "$STEPS" --threads "$THREADS" --timeout "$BENCH_TIMEOUT" --out "$(result_path "ps-$PS_MODE" "$MODEL")" "$@"
