#!/bin/bash
# Scaling sweep: submit one job per task count, the same benchmark each time, for the speedup tables
# (python -m analysis report results/). Run it with bash, not sbatch: it calls sbatch itself.
#   mkdir -p logs && bash slurm/sweep.sh slurm/ring.sh                 # 1 2 4 8 16 32 64 tasks
#   SIZES="2 4 8" bash slurm/sweep.sh slurm/localsgd.sh --steps 300    # options after the script go to `bench train`
#   SBATCH_ARGS="-p <partition> -A <account>" bash slurm/sweep.sh slurm/ps.sh
#   WAIT=1 bash slurm/sweep.sh slurm/ring.sh                           # one job after another, each with --wait
# Results are named <strategy>_<model>_n<tasks>_<jobid>.h5 by the script, so the sizes sort themselves out.
set -euo pipefail
script=${1:?usage: bash slurm/sweep.sh SCRIPT [bench train options]}
shift
SIZES=${SIZES:-1 2 4 8 16 32 64}
read -r -a extra <<<"${SBATCH_ARGS:-}"
[ "${WAIT:-0}" = 1 ] && extra+=(--wait)
name=$(basename "$script" .sh)
for n in $SIZES; do
  sbatch "${extra[@]}" --ntasks="$n" --job-name="syncbench-sweep-$name-n$n" "$script" "$@"
done
