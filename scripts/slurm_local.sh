#!/usr/bin/env bash
# A one-node Slurm on this machine, for the tests marked `slurm` (tests/test_slurm.py) and for trying
# `hydra/launcher=slurm` without a cluster. Debian/Ubuntu, as root:
#   scripts/slurm_local.sh up     install slurm-wlm + munge (apt) if needed, start munged, slurmctld
#                                 and slurmd on localhost (no accounting daemon: sacct does not work)
#   scripts/slurm_local.sh down   stop the daemons it started
# `up` takes seconds once the packages are installed; it exits non-zero, saying why, where it cannot
# (not root, no apt, no network): .ci/run then goes on and the slurm tests skip, saying why.
set -euo pipefail

STATE=/var/lib/gl-slurm-local          # this script's spool, state and logs; nothing else is touched
CONF=/etc/slurm/slurm.conf

say() { echo "slurm_local: $*" >&2; }

install() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
    command -v apt-get >/dev/null || { say "no apt-get: install slurm-wlm and munge yourself"; return 1; }
    say "installing slurm-wlm and munge (apt)"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -q >/dev/null || { say "apt-get update failed (no network?)"; return 1; }
    timeout 600 apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null \
        || { say "apt-get install slurm-wlm munge failed"; return 1; }
}

write_conf() {
    local node cpus mem
    node=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
    mkdir -p /etc/slurm "$STATE"/{ctld,d,log}
    # KillWait: seconds between SIGTERM and SIGKILL at a time limit or scancel; gl-train needs one
    # iteration and a checkpoint in between. MinJobAge: finished jobs stay visible to scontrol
    # (what submitit falls back to without sacct) for this long.
    cat >"$CONF" <<EOF
ClusterName=gl-local
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=30
MinJobAge=600
SchedulerParameters=sched_interval=1
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

up() {
    [ "$(id -u)" = 0 ] || { say "run as root (it installs packages and starts daemons)"; return 1; }
    install
    write_conf
    mkdir -p /run/munge && chown munge:munge /run/munge
    [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null;
                                     chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
    pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
    for _ in $(seq 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            say "up: $(sinfo -h -o '%P %D %T %c CPUs')"
            return 0
        fi
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    say "the node did not become idle; see $STATE/log"
    return 1
}

down() {
    for daemon in slurmd slurmctld; do
        [ -f "$STATE/$daemon.pid" ] && kill "$(cat "$STATE/$daemon.pid")" 2>/dev/null || true
    done
    say "down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
