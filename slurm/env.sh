# shellcheck shell=bash
# Shared settings for syncbench's sbatch scripts; sourced by each of them, never run.
#
# Submit from the syncbench checkout (sbatch copies the script elsewhere, so it finds this file through
# SLURM_SUBMIT_DIR); mkdir -p logs first: Slurm fails a job whose --output folder does not exist.
#
# Every choice can be set in the environment before sbatch (sbatch passes the environment on):
#   SYNCBENCH_DIR  the syncbench checkout                 default: $SLURM_SUBMIT_DIR
#   VENV           virtual environment to activate        default: $SYNCBENCH_DIR/.venv ("" = use PATH as it is)
#   LAUNCHER       srun | mpiexec                         default: srun (as: srun --mpi=$SRUN_MPI)
#   SRUN_MPI       srun's PMI plugin                      default: pmi2 (PyPI's MPICH has no PMIx)
#   RESULTS_DIR    where results files go                 default: $SYNCBENCH_DIR/results
#   THREADS        torch threads per rank                 default: $SLURM_CPUS_PER_TASK, else 1
#   BENCH_TIMEOUT  bench --timeout: seconds a rank may wait on peers, and the grace to stop after the
#                  time-limit warning (keep it below the --signal lead time)   default: 100
#   RESUME         1: continue from the checkpoint beside the results file (bench train --resume)
#                  default: 0; always 1 in a requeued job (SLURM_RESTART_COUNT > 0)
#   REQUEUE        1: a run stopped by the time-limit warning, with a checkpoint, requeues its job    default: 1
#
# Preemptible runs: the scripts ask for --requeue and --open-mode=append. On the time-limit warning the ranks
# stop at the next agreed step and write a checkpoint (OUT.ckpt/); the job then requeues itself
# (scontrol requeue), and the requeued job, with the same job id and so the same results file, resumes.
set -euo pipefail

SYNCBENCH_DIR=${SYNCBENCH_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}
VENV=${VENV-$SYNCBENCH_DIR/.venv}
LAUNCHER=${LAUNCHER:-srun}
SRUN_MPI=${SRUN_MPI:-pmi2}
RESULTS_DIR=${RESULTS_DIR:-$SYNCBENCH_DIR/results}
THREADS=${THREADS:-${SLURM_CPUS_PER_TASK:-1}}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-100}
RESUME=${RESUME:-0}
[ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] && RESUME=1  # a requeued job always continues its run
REQUEUE=${REQUEUE:-1}
export OMP_NUM_THREADS=$THREADS

# Slurm's time-limit warning (--signal=B:USR1@T) reaches only this batch shell, and may come up to a minute
# early, even before the ranks have started (a rank that has not yet blocked the signal would die of it). So it is
# turned into a stop file, which `bench train --stop-file` checks at every agreed step. Trap it first thing.
SYNCBENCH_STOP_FILE=$RESULTS_DIR/.stop-${SLURM_JOB_ID:-$$}
trap 'mkdir -p "$RESULTS_DIR" && echo SIGUSR1 > "$SYNCBENCH_STOP_FILE"' USR1
rm -f "$SYNCBENCH_STOP_FILE"
trap 'rm -f "$SYNCBENCH_STOP_FILE"' EXIT

cd "$SYNCBENCH_DIR"
if [ -n "$VENV" ]; then
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
fi
mkdir -p "$RESULTS_DIR"

# results/<strategy>_<model>_n<tasks>_<job>.h5 (array jobs: <job>_<task>)
result_path() {
  local job=${SLURM_JOB_ID:-local}
  [ -n "${SLURM_ARRAY_TASK_ID:-}" ] && job=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}
  printf '%s/%s_%s_n%s_%s.h5' "$RESULTS_DIR" "$1" "$2" "${SLURM_NTASKS:-1}" "$job"
}

# run_bench ARGS...: python -m bench ARGS on every task of the job (`train` also gets --stop-file, above; the
# ranks then stop at the next agreed step and write their results). SIGTERM (scancel, the limit itself) is
# forwarded to the launcher, which passes it to every rank.
# out_of ARGS...: the last --out given (the results file), or nothing.
out_of() {
  local out="" prev=""
  for arg in "$@"; do
    [ "$prev" = --out ] && out=$arg
    case "$arg" in --out=*) out=${arg#--out=} ;; esac
    prev=$arg
  done
  printf '%s' "$out"
}

# requeue_if_stopped OUT: after a run the time-limit warning stopped, with a checkpoint: requeue this job, which
# then resumes (RESUME defaults to 1 in a requeued job).
requeue_if_stopped() {
  if [ "$REQUEUE" = 1 ] && [ -f "$SYNCBENCH_STOP_FILE" ] && [ -f "$1.ckpt/manifest.json" ] && [ -n "${SLURM_JOB_ID:-}" ] \
    && python -c 'import h5py, sys; sys.exit(h5py.File(sys.argv[1], "r").attrs.get("status") != "stopped")' "$1"; then
    echo "+ scontrol requeue $SLURM_JOB_ID (stopped at the time-limit warning; the requeued job resumes)"
    scontrol requeue "$SLURM_JOB_ID"
  fi
}

run_bench() {
  local cmd out args=("$@")
  out=$(out_of "$@")
  if [ "${1:-}" = train ]; then
    args+=(--stop-file "$SYNCBENCH_STOP_FILE")
    [ "$RESUME" = 1 ] && [ -f "$out.ckpt/manifest.json" ] && args+=(--resume)
  fi
  case "$LAUNCHER" in
    srun) cmd=(srun --mpi="$SRUN_MPI" --kill-on-bad-exit=1 python -m bench "${args[@]}") ;;
    mpiexec) cmd=(mpiexec -n "${SLURM_NTASKS:?}" python -m bench "${args[@]}") ;;
    *) echo "slurm/env.sh: LAUNCHER must be srun or mpiexec, not '$LAUNCHER'" >&2; return 2 ;;
  esac
  echo "+ ${cmd[*]}"
  "${cmd[@]}" &
  local pid=$! rc=0
  trap 'kill -TERM "$pid" 2>/dev/null || true' TERM
  wait "$pid" || rc=$?
  while kill -0 "$pid" 2>/dev/null; do  # a trapped signal ends `wait` early: wait again for the real exit
    rc=0
    wait "$pid" || rc=$?
  done
  trap - TERM
  [ "${1:-}" = train ] && [ "$rc" = 0 ] && requeue_if_stopped "$out"
  return "$rc"
}
