#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the workflow's SLURM test (tests/test_slurm.py).
#   slurm_single_node.sh install          apt-get install slurm-wlm munge (root; no-op when present)
#   slurm_single_node.sh start STATE_DIR  write a slurm.conf for this host, start munged,
#                                         slurmctld and slurmd; their PIDs go to STATE_DIR/*.pid
#   slurm_single_node.sh stop STATE_DIR   stop the daemons by those PIDs
# No slurmdbd: the profile polls job status with squeue, which needs no accounting.
set -euo pipefail

install() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return 0; fi
    if [ "$(id -u)" != 0 ]; then
        echo "slurm_single_node.sh: slurm-wlm and munge are not installed, and apt-get needs root" >&2
        return 1
    fi
    # No systemd here: keep the packages' maintainer scripts from trying to start services.
    local policy=/usr/sbin/policy-rc.d created=""
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    if [ -n "$created" ]; then rm -f "$policy"; fi
}

start() {
    local state=$1 host cpus mem_mb
    mkdir -p "$state"/{spool,ctld,log,munge}
    state=$(cd "$state" && pwd)
    host=$(hostname -s)
    cpus=$(nproc)
    # 90% of the memory, leaving the rest to the OS and the test process.
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)

    # munge as root (like slurmctld and slurmd, SlurmUser=root), with its own key and socket in
    # the state folder: nothing of /etc/munge is used, and the folder may sit under a 0700 one.
    chmod 700 "$state/munge"
    dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$state/munge/munge.key"
    local socket="$state/munge/munge.socket"
    munged --force --key-file="$state/munge/munge.key" --socket="$socket" \
        --pid-file="$state/munge/munged.pid" --log-file="$state/munge/munged.log" \
        --seed-file="$state/munge/munged.seed"
    cp "$state/munge/munged.pid" "$state/munged.pid"

    cat > "$state/slurm.conf" <<CONF
ClusterName=ferret-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
# scancel: SIGKILL 5 s after SIGTERM (default 30 s).
KillWait=5
ReturnToService=2
# Finished jobs stay visible to squeue for 10 min, so the executor sees how they ended.
MinJobAge=600
# An oversized request fails at submission instead of pending forever (Reason=PartitionConfig).
EnforcePartLimits=ALL
SchedulerType=sched/backfill
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    # srun inside a job (Snakemake's jobstep) reads /etc/slurm/slurm.conf, not $SLURM_CONF.
    mkdir -p /etc/slurm
    ln -sf "$state/slurm.conf" /etc/slurm/slurm.conf
    export SLURM_CONF="$state/slurm.conf"
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    local i
    for i in $(seq 1 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^idle'; then return 0; fi
        sleep 0.5
    done
    echo "slurm_single_node.sh: node did not become idle; see $state/log" >&2
    sinfo >&2 || true
    return 1
}

stop() {
    local state name pid
    state=$(cd "$1" && pwd)
    for name in slurmd slurmctld munged; do
        [ -f "$state/$name.pid" ] || continue
        pid=$(cat "$state/$name.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$state/$name.pid"
    done
    if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$state/slurm.conf" ]; then rm -f /etc/slurm/slurm.conf; fi
}

case "${1:-}" in
    install) install ;;
    start) start "${2:?usage: $0 start STATE_DIR}" ;;
    stop) stop "${2:?usage: $0 stop STATE_DIR}" ;;
    *) echo "usage: $0 install | start STATE_DIR | stop STATE_DIR" >&2; exit 2 ;;
esac
