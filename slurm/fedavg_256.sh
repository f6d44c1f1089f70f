#!/bin/bash
#SBATCH --job-name=syncbench-fedavg
#SBATCH --ntasks=257
#SBATCH --time=01:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#
# Federated averaging with CLIENTS logical clients: rank 0 aggregates, the other tasks host the clients (257 tasks:
# one client per rank). Fewer tasks run the same 256 clients, spread evenly over the ranks:
#   mkdir -p logs && sbatch slurm/fedavg_256.sh                    # 257 tasks, one client each
#   sbatch --ntasks=8 slurm/fedavg_256.sh                          # the same 256 clients on 7 client ranks
#   sbatch --ntasks=33 slurm/fedavg_256.sh --rounds 200 --server-opt adam   # options go to `bench train`
#   ROUNDS=50 FRACTION=0.2 sbatch slurm/fedavg_256.sh
# Settings shared by all scripts (launcher, venv, threads, results folder): slurm/env.sh.
export SYNCBENCH_BATCH_SCRIPT=${SYNCBENCH_BATCH_SCRIPT:-$0}
# shellcheck source=slurm/env.sh
source "${SYNCBENCH_DIR:-${SLURM_SUBMIT_DIR:-.}}/slurm/env.sh"

MODEL=${MODEL:-cnn}
DATASET=${DATASET:-digits}
CLIENTS=${CLIENTS:-256}
FRACTION=${FRACTION:-0.1}
ROUNDS=${ROUNDS:-100}
LOCAL_EPOCHS=${LOCAL_EPOCHS:-1}
PARTITION=${PARTITION:-dirichlet}
ALPHA=${ALPHA:-0.5}
run_bench train --strategy fedavg --clients "$CLIENTS" --fraction "$FRACTION" --rounds "$ROUNDS" \
  --local-epochs "$LOCAL_EPOCHS" --partition "$PARTITION" --alpha "$ALPHA" --model "$MODEL" --dataset "$DATASET" \
  --eval-every 10 --threads "$THREADS" --timeout "$BENCH_TIMEOUT" --out "$(result_path fedavg "$MODEL")" "$@"
