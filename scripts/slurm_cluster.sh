#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the integration tests of the SLURM
# launcher (tests/test_slurm.py) and for trying `hydra/launcher=slurm` without a cluster.
#
#   scripts/slurm_cluster.sh start         # as root: install (Debian packages) if missing, start, wait for the node
#   scripts/slurm_cluster.sh status        # sinfo
#   scripts/slurm_cluster.sh stop          # as root
#
# Needs root (it writes /etc/slurm and /etc/munge and starts daemons). The node has all of
# this machine's cores in one partition, `bnlab` (the default). Accounting is off: submitit
# then warns on every poll that `sacct` fails, which is harmless. proctrack/linuxproc and
# task/none, because containers have no cgroup delegation for slurmd.
set -euo pipefail

PARTITION=${BNLAB_SLURM_PARTITION:-bnlab}
CONF=/etc/slurm/slurm.conf
LOGDIR=/var/log/slurm

die() { echo "slurm_cluster: $*" >&2; exit 1; }

install() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null && return
    command -v apt-get >/dev/null || die "slurmctld/slurmd/munge are missing and there is no apt-get to install them"
    echo "slurm_cluster: installing slurmctld slurmd slurm-client munge (Debian packages)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

write_conf() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOGDIR"
    cat > "$CONF" <<EOF
# written by bnlab's scripts/slurm_cluster.sh: one node, one partition, no accounting
ClusterName=bnlab
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# schedule every few seconds (defaults: 60 s and 30 s), so a requeued job starts soon after
# it becomes eligible again
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
# time limits are enforced within seconds, so a test's one-minute limit means one minute
InactiveLimit=0
KillWait=10
MinJobAge=300
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true
    pgrep -x munged >/dev/null || su -s /bin/sh munge -c "munged --force" 2>/dev/null || munged --force
}

# The partition's node states as sinfo prints them (one per line: idle, mix, alloc, down*, ...).
node_states() { sinfo -h -p "$PARTITION" -o %t 2>/dev/null || true; }

# A node that takes jobs: idle, partly or fully allocated (sinfo may add a flag: idle*, mix~).
has_usable_node() { grep -qE '^(idle|mix|alloc)([^a-z]|$)'; }

# A cluster already running on this machine (started by an earlier `start`, or by someone
# else): reuse it when its partition has a node that takes jobs, else say what to do. Writing
# a new slurm.conf under a running slurmctld would leave the daemons and the file disagreeing.
# Returns 0 (reuse it), 1 (running but unusable: the caller stops), 2 (no slurmctld running).
existing_cluster() {
    local pid states
    pid=$(pgrep -x slurmctld | head -n 1) || return 2
    [ -n "$pid" ] || return 2
    states=$(node_states)
    if ! printf '%s\n' "$states" | has_usable_node && [ "$(id -u)" = 0 ]; then
        # a node left down by an earlier run is brought back (root only), then looked at again
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        for _ in 1 2 3 4 5; do
            sleep 1
            states=$(node_states)
            printf '%s\n' "$states" | has_usable_node && break
        done
    fi
    if printf '%s\n' "$states" | has_usable_node; then
        echo "slurm_cluster: reusing the running cluster (slurmctld pid $pid): partition $PARTITION is up"
        return 0
    fi
    echo "slurm_cluster: a slurmctld is already running (pid $pid) but partition $PARTITION has no idle node" \
         "(sinfo: $(printf '%s' "${states:-no such partition}" | tr '\n' ' ')); run \`scripts/slurm_cluster.sh stop\` (as root) and start again," \
         "or set BNLAB_SLURM_PARTITION to a partition of that cluster" >&2
    return 1
}

start() {
    local found=0
    existing_cluster || found=$?
    [ "$found" = 0 ] && return 0
    [ "$found" = 1 ] && exit 1
    [ "$(id -u)" = 0 ] || die "start needs root"
    install
    write_conf
    start_munge
    slurmctld
    sleep 1
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 1 60); do
        if node_states | has_usable_node; then
            echo "slurm_cluster: partition $PARTITION is up on $(hostname -s) ($(nproc) CPUs)"
            return 0
        fi
        # a node left down by an earlier run is brought back
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    # `tail -n 5`: the obsolete `tail -5` is refused with more than one file
    tail -n 5 "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log" >&2 || true
    die "the node did not come up within 60 s (logs above)"
}

stop() {
    pkill -x slurmd || true
    pkill -x slurmctld || true
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) sinfo ;;
    *) die "usage: $0 start|stop|status" ;;
esac
