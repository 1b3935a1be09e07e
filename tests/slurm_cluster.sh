#!/usr/bin/env bash
# A private single-node SLURM cluster on localhost, for the tests of SLURM sweeps.
#
#   tests/slurm_cluster.sh install     install slurmctld, slurmd, the SLURM client and munge
#                                      from the distribution's packages (apt; as root or with
#                                      sudo); does nothing when they are already installed
#   tests/slurm_cluster.sh start DIR   start munged, slurmctld and slurmd with their config,
#                                      keys, state and logs all in DIR (free ports picked, so
#                                      several clusters can run side by side); waits until the
#                                      node is idle and prints "SLURM_CONF=DIR/slurm.conf"
#   tests/slurm_cluster.sh stop DIR    stop the daemons started in DIR and wait for them
#
# Clients reach the cluster with the environment variable SLURM_CONF=DIR/slurm.conf. No
# system file is touched besides the installed packages; DIR can be deleted after stop.
set -euo pipefail

DAEMONS=(slurmctld slurmd munged sbatch sacct)

installed() {
    local d
    for d in "${DAEMONS[@]}"; do
        command -v "$d" >/dev/null 2>&1 || [ -x "/usr/sbin/$d" ] || return 1
    done
}

install() {
    if installed; then
        echo "slurm_cluster: SLURM and munge already installed"
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && sudo="sudo -n" || {
            echo "slurm_cluster: SLURM is not installed and installing it needs root" >&2
            return 1
        }
    fi
    command -v apt-get >/dev/null 2>&1 || { echo "slurm_cluster: no apt-get to install SLURM with" >&2; return 1; }
    local started=$SECONDS
    # Package lists are fetched only when the packages are not known yet (a fresh image).
    apt-cache show slurmctld >/dev/null 2>&1 || $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null
    installed || { echo "slurm_cluster: the SLURM packages installed but their commands are missing" >&2; return 1; }
    echo "slurm_cluster: installed SLURM $(/usr/sbin/slurmctld -V | cut -d' ' -f2) in $((SECONDS - started)) s"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir
    dir=$(mkdir -p "$1" && cd "$1" && pwd)
    chmod 700 "$dir"
    mkdir -p "$dir/ctld" "$dir/spool"
    PATH="/usr/sbin:$PATH"

    # munge: a private key and socket; munged refuses keys and folders others can read.
    dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge.key"
    munged --force --socket="$dir/munge.socket" --key-file="$dir/munge.key" --pid-file="$dir/munged.pid" \
        --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"

    # The node as slurmd sees this machine (CPUs, memory), under a fixed name on 127.0.0.1.
    local node
    node=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //' -e 's/RealMemory=\([0-9]*\)/RealMemory=\1/')
    local user
    user=$(id -un)
    cat >"$dir/slurm.conf" <<EOF
ClusterName=popsim-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
ReturnToService=2
KillWait=5
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.log
NodeName=popsim-node NodeAddr=127.0.0.1 NodeHostname=popsim-node $node State=UNKNOWN
PartitionName=debug Nodes=popsim-node Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF" -i
    slurmd -f "$SLURM_CONF" -N popsim-node
    local i
    for i in $(seq 1 60); do
        if sinfo -h -N -o '%T' 2>/dev/null | grep -q '^idle'; then
            echo "SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        sleep 0.5
    done
    echo "slurm_cluster: the node did not become idle; logs in $dir" >&2
    sinfo -N -l >&2 || true
    tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
    stop "$dir"
    return 1
}

stop() {
    local dir=$1 name pid i
    for name in slurmd slurmctld munged; do
        [ -f "$dir/$name.pid" ] || continue
        pid=$(cat "$dir/$name.pid")
        kill "$pid" 2>/dev/null || continue
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$dir/$name.pid"
    done
}

case "${1:-}" in
    install) install ;;
    start) start "${2:?usage: $0 start DIR}" ;;
    stop) stop "${2:?usage: $0 stop DIR}" ;;
    *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
