#!/usr/bin/env bash
# A real single-node SLURM cluster on localhost, end to end (issue #13).
#
#   sudo scripts/slurm_localhost.sh
#
# As root: installs slurm-wlm and munge from the distribution's packages if they are
# missing (apt-get), writes a private slurm.conf (one node "localhost" at 127.0.0.1 with
# this machine's CPUs and memory, one partition, no accounting) and a private munge key
# under a work folder, starts munged, slurmctld and slurmd, and waits until `sinfo` shows
# the node idle. Then it runs a tiny suite (two VGGs trained for 8 epochs, compared on
# two layers) three times:
#
#   1. through the `slurm` executor, with the training job requeued (`scontrol requeue`,
#      what a preemption does) after its first epoch: the run must complete;
#   2. through the `local` executor;
#   3. through the `slurm` executor again, undisturbed, from an empty cache;
#
# and checks that the three results tables are equal value for value, printing the wall
# time of each run; then (4.) interrupts a fourth run with SIGINT (Ctrl-C) once its training
# jobs are submitted and checks that simbench cancelled them (empty queue). The daemons it started are stopped at the end (trap), by pid.
# Every address it configures or contacts is loopback (127.0.0.1 / localhost).
#
# Environment: SIMBENCH_SLURM_WORK (work folder, default a new /tmp/simbench-slurm.*),
# SIMBENCH_PYTHON (a python that can import simbench's dependencies; default python3;
# this checkout is put first on PYTHONPATH). The last line printed is a JSON summary.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${SIMBENCH_PYTHON:-python3}
WORK=${SIMBENCH_SLURM_WORK:-$(mktemp -d /tmp/simbench-slurm.XXXXXX)}
WORK=$(mkdir -p "$WORK" && cd "$WORK" && pwd)
T_START=$(date +%s.%N)

say() { printf '[slurm_localhost %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts slurmctld, slurmd, munged)"
"$PY" -c "import simbench" 2>/dev/null || PYTHONPATH="$ROOT" "$PY" -c "import torch, submitit" \
    || die "$PY cannot import simbench's dependencies; set SIMBENCH_PYTHON"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# one run at a time on a machine: the daemons use the fixed ports 6817/6818
exec 9>/tmp/simbench-slurm-localhost.lock
flock -n 9 || die "another slurm_localhost.sh is running"
for d in slurmctld slurmd; do
    if pgrep -x "$d" >/dev/null; then
        die "a $d is already running on this machine; this script only starts its own cluster"
    fi
done

# -- packages -----------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm slurm-client munge >/dev/null
fi
say "$(slurmctld -V)"

# -- configuration (private, loopback only) ------------------------------------------------
# daemon state, sockets and pid files under a short path (Unix sockets: at most 108 bytes)
SHORT=$(mktemp -d /tmp/sbslurm.XXXXXX)
mkdir -p "$WORK"/{etc,log} "$SHORT"/{state,spool,run,munge}
chmod 700 "$SHORT/munge"
CPUS=$(getconf _NPROCESSORS_ONLN)  # (nproc follows OMP_NUM_THREADS)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
CONF="$WORK/etc/slurm.conf"
cat >"$CONF" <<EOF
# simbench: a single-node SLURM on localhost (scripts/slurm_localhost.sh)
ClusterName=simbench
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SHORT/munge/munge.sock
StateSaveLocation=$SHORT/state
SlurmdSpoolDir=$SHORT/spool/%n
SlurmctldPidFile=$SHORT/run/slurmctld.pid
SlurmdPidFile=$SHORT/run/slurmd-%n.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
JobRequeue=1
KillWait=1
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
Waittime=0
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$CONF"

# -- daemons ------------------------------------------------------------------------------
PIDS=()
cleanup() {
    local rc=$?
    set +e
    if [ -n "${RUN_PID:-}" ] && kill -0 "$RUN_PID" 2>/dev/null; then kill "$RUN_PID"; fi
    for f in "$SHORT/run/slurmd-localhost.pid" "$SHORT/run/slurmctld.pid" "$SHORT/munge/munged.pid"; do
        if [ -s "$f" ]; then
            pid=$(cat "$f")
            kill "$pid" 2>/dev/null && say "stopped pid $pid ($(basename "$f" .pid))" >&2
        fi
    done
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for _ in $(seq 50); do
        alive=0
        for f in "$SHORT/run/slurmd-localhost.pid" "$SHORT/run/slurmctld.pid" "$SHORT/munge/munged.pid"; do
            [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1
        done
        [ "$alive" = 0 ] && break
        sleep 0.2
    done
    [ "$alive" = 0 ] && rm -rf "$SHORT"
    exit "$rc"
}
trap cleanup EXIT INT TERM

mungekey --create --keyfile="$SHORT/munge/munge.key" --force >/dev/null 2>&1 \
    || dd if=/dev/urandom of="$SHORT/munge/munge.key" bs=1 count=1024 status=none
chmod 400 "$SHORT/munge/munge.key"
munged --force --key-file="$SHORT/munge/munge.key" --socket="$SHORT/munge/munge.sock" \
    --pid-file="$SHORT/munge/munged.pid" --log-file="$WORK/log/munged.log" \
    --seed-file="$SHORT/munge/munged.seed"
say "munged started (pid $(cat "$SHORT/munge/munged.pid"))"
slurmctld -f "$CONF"
slurmd -f "$CONF" -N localhost
for _ in $(seq 120); do
    state=$(sinfo -h -N -n localhost -o '%T' 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.5
done
[ "$state" = idle ] || { tail -20 "$WORK/log/slurmctld.log" "$WORK/log/slurmd.log"; die "node not idle: '$state'"; }
say "slurmctld (pid $(cat "$SHORT/run/slurmctld.pid")) and slurmd (pid $(cat "$SHORT/run/slurmd-localhost.pid")) up; sinfo:"
sinfo -N -o '%N %T %c %m %P'

# -- the suite ----------------------------------------------------------------------------
write_suite() {  # folder executor-yaml
    mkdir -p "$1"
    cat >"$1/suite.yaml" <<EOF
name: slurm-localhost
output: out
seed: 0
training: {epochs: 8, max_train_images: 2048, batch_size: 64}
models:
  - id: vgg
    architecture: {name: vgg, params: {width: 0.0625}}
    dataset: embedded
    seeds: [0, 1]
probe: {images: 64, batch_size: 32}
pairs:
  - [vgg@0, vgg@1]
layers: [conv1, conv2]
alignments: [identity, procrustes]
metrics: [cka, procrustes_distance]
executor: $2
EOF
}
# trained weights depend on the number of torch threads (the order of float reductions):
# every run uses one, as the SLURM tasks do (cpus_per_task: 1 -> SLURM_CPUS_PER_TASK)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
SLURM_EXEC="{name: slurm, params: {partition: debug, cpus_per_task: 1, mem_gb: 1, time_min: 10, poll_s: 1}}"
LOCAL_EXEC="{name: local, params: {workers: 1}}"
write_suite "$WORK/requeue" "$SLURM_EXEC"
write_suite "$WORK/local" "$LOCAL_EXEC"
write_suite "$WORK/slurm" "$SLURM_EXEC"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", b - a}'; }

# 1. slurm, the training job requeued after its first epoch
say "run 1: slurm executor, training requeued mid-run: simbench run $WORK/requeue/suite.yaml"
t0=$(now)
timeout 600 "$PY" -m simbench.cli run "$WORK/requeue/suite.yaml" --no-report >"$WORK/requeue.log" 2>&1 &
RUN_PID=$!
requeued=""
for _ in $(seq 600); do
    kill -0 "$RUN_PID" 2>/dev/null || break
    # a training task that has finished its first epoch (its log says so) and still runs
    log=$(grep -l "simbench.train: epoch 1/" "$WORK"/requeue/out/cache/slurm/*_log.err 2>/dev/null | head -1 || true)
    job=$(basename "${log:-none}" | sed -n 's/^\([0-9]*_[0-9]*\)_0_log.err$/\1/p')
    if [ -n "$job" ] && [ "$(squeue -h -j "$job" -o '%T' 2>/dev/null)" = RUNNING ]; then
        scontrol requeue "$job"
        requeued=$job
        say "requeued training job $job after its first epoch (scontrol requeue $job)"
        # SLURM delays a requeued job's start (about two minutes); a cluster whose nodes
        # free up reschedules it at once, so start it now once it is pending again
        for _ in $(seq 100); do
            [ "$(squeue -h -j "$job" -o '%T' 2>/dev/null)" = PENDING ] && break
            sleep 0.2
        done
        scontrol update JobId="$job" StartTime=now
        break
    fi
    sleep 0.2
done
rc=0
wait "$RUN_PID" || rc=$?
RUN_PID=""
t_requeue=$(elapsed "$t0" "$(now)")
cat "$WORK/requeue.log"
[ "$rc" = 0 ] || { tail -20 "$WORK/log/slurmd.log"; die "run 1 failed (exit $rc; 124: over 10 minutes)"; }
[ -n "$requeued" ] || die "the training job was never caught running after an epoch"
say "training log of the requeued job $requeued:"
cat "$WORK/requeue/out/cache/slurm/${requeued}_0_log.err"
# the requeued task ran again: it resumed after its last saved epoch, or (on a fast machine,
# where the killed task finished its epochs before SLURM's kill landed) found the model
# trained; tests/test_slurm.py checks the resume itself deterministically
requeue_log="$WORK/requeue/out/cache/slurm/${requeued}_0_log.err"
if grep -q "resuming after epoch" "$requeue_log"; then
    say "the requeued training resumed from its checkpoint: $(grep -o 'resuming after epoch [0-9]*' "$requeue_log")"
elif grep -q "already trained" "$requeue_log"; then
    say "the requeued training had finished before the kill; its rerun found the trained model"
else
    die "the requeued training job did not run again"
fi

# 2. local
say "run 2: local executor: simbench run $WORK/local/suite.yaml"
t0=$(now)
timeout 600 "$PY" -m simbench.cli run "$WORK/local/suite.yaml" --no-report
t_local=$(elapsed "$t0" "$(now)")

# 3. slurm, undisturbed
say "run 3: slurm executor: simbench run $WORK/slurm/suite.yaml"
t0=$(now)
timeout 600 "$PY" -m simbench.cli run "$WORK/slurm/suite.yaml" --no-report \
    || { tail -20 "$WORK/log/slurmd.log"; die "run 3 failed"; }
t_slurm=$(elapsed "$t0" "$(now)")
say "simbench status $WORK/slurm/suite.yaml:"
"$PY" -m simbench.cli status "$WORK/slurm/suite.yaml"

# 4. Ctrl-C while the training jobs are queued or running: simbench cancels them and exits
write_suite "$WORK/interrupt" "$SLURM_EXEC"
say "run 4: slurm executor, Ctrl-C (SIGINT) once the training jobs are submitted"
# (a background job of a script ignores SIGINT; give python its default handler back)
"$PY" -c 'import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); sys.argv = ["simbench", "run", sys.argv[1]]; runpy.run_module("simbench.cli", run_name="__main__")' \
    "$WORK/interrupt/suite.yaml" >"$WORK/interrupt.log" 2>&1 &
RUN_PID=$!
for _ in $(seq 300); do
    [ -n "$(squeue -h -n simbench-train -o '%i')" ] && break
    sleep 0.1
done
[ -n "$(squeue -h -n simbench-train -o '%i')" ] || die "run 4 submitted no training job"
t0=$(now)
kill -INT "$RUN_PID"
rc=0
wait "$RUN_PID" || rc=$?
RUN_PID=""
t_exit=$(elapsed "$t0" "$(now)")
cat "$WORK/interrupt.log"
left=$(squeue -h -n simbench-train -t PENDING,RUNNING -o '%i')
[ -z "$left" ] || die "training jobs still queued after Ctrl-C: $left"
grep -q "cancelled SLURM jobs" "$WORK/interrupt.log" || die "Ctrl-C did not report cancelled jobs"
say "Ctrl-C: simbench exited (status $rc) after $t_exit s; no training job left in the queue"

# -- compare ------------------------------------------------------------------------------
"$PY" - "$WORK" "$t_slurm" "$t_local" "$t_requeue" "$T_START" <<'EOF'
import json, sys, time
import numpy as np
import pandas as pd

work, t_slurm, t_local, t_requeue, t_start = sys.argv[1:]
cols = ["model_a", "model_b", "layer_a", "layer_b", "features", "alignment", "alignment_params",
        "metric", "metric_params", "draw", "value", "error"]  # results schema 3 keys
tables = {k: pd.read_parquet(f"{work}/{k}/out/results.parquet") for k in ("slurm", "local", "requeue")}
tables = {k: v[[c for c in cols if c in v.columns]].reset_index(drop=True) for k, v in tables.items()}
def equal(a, b):
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        return True
    except AssertionError as exc:
        print(exc)
        return False
eq = equal(tables["slurm"], tables["local"])
req = equal(tables["requeue"], tables["local"])
ref = tables["local"]
print(ref.to_string(index=False))
print(f"results equal: slurm == local: {eq}; requeued slurm == local: {req} ({len(ref)} rows, "
      f"{int(np.isfinite(ref['value']).sum())} finite values)")
if eq:
    print("results equal: slurm == local")
print(f"wall time: slurm {t_slurm} s, local {t_local} s, slurm with a requeue {t_requeue} s")
total = time.time() - float(t_start)
print(json.dumps({"equal": eq, "requeued_equal": req, "rows": len(ref), "slurm_s": float(t_slurm),
                  "local_s": float(t_local), "requeue_s": float(t_requeue), "total_s": round(total, 1)}))
sys.exit(0 if eq and req else 1)
EOF
