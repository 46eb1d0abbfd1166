#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, with real accounting (slurmdbd + MariaDB), for the tests.
#
#   .ci/slurm.sh start    install the Debian packages if missing, start munge, MariaDB, slurmdbd, slurmctld,
#                         slurmd, wait for an idle node; prints the state folder (also in /tmp/augbench-slurm/dir)
#   .ci/slurm.sh stop     cancel every job, then stop what start started, by the PIDs it recorded
#   .ci/slurm.sh status   sinfo and squeue
#
# Needs root and Debian's package registry.  Everything lives under $AUGBENCH_SLURM_DIR (default
# /tmp/augbench-slurm).  Settings follow the verified single-node recipe (shared/reference/slurm-single-node.md):
# linuxproc proctrack and no task plugin (no cgroups in the sandbox), a default memory per CPU so jobs share the
# node, a short credential expiry and scheduler interval so requeued jobs restart in seconds.
set -euo pipefail

D=${AUGBENCH_SLURM_DIR:-/tmp/augbench-slurm}
PKGS="slurmctld slurmd slurm-client munge mariadb-server-core mariadb-client-core slurmdbd"

log() { echo "[slurm.sh] $*" >&2; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null \
     && command -v munged >/dev/null; then
    return
  fi
  log "installing $PKGS"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local t0=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - t0 > limit )); then log "timed out waiting for $what"; return 1; fi
    sleep 0.3
  done
}

start() {
  [ "$(id -u)" = 0 ] || { log "must run as root"; exit 3; }
  install_packages
  if [ -f "$D/pids" ]; then stop || true; fi
  rm -rf "$D"; mkdir -p "$D"/{state,spool,log,run,mysql,munge}
  : >"$D/pids"
  local host; host=$(hostname)
  local cpus mem
  cpus=$(nproc); mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

  # munge
  id munge >/dev/null 2>&1 || useradd -r -s /usr/sbin/nologin munge
  mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
  [ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 700 /etc/munge /var/lib/munge /var/log/munge; chmod 400 /etc/munge/munge.key; chmod 755 /run/munge
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  wait_for 10 munge test -s /run/munge/munged.pid
  echo "munged $(cat /run/munge/munged.pid)" >>"$D/pids"
  wait_for 10 "munge round trip" bash -c 'munge -n | unmunge'

  # MariaDB (private datadir, own socket, loopback only)
  id mysql >/dev/null 2>&1 || useradd -r -s /usr/sbin/nologin mysql
  chown mysql:mysql "$D/mysql"
  mariadb-install-db --no-defaults --user=mysql --datadir="$D/mysql/data" \
    --auth-root-authentication-method=socket --skip-test-db >"$D/log/mariadb-install.log" 2>&1
  chown -R mysql:mysql "$D/mysql"
  /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$D/mysql/data" --socket="$D/mysql/mysql.sock" \
    --pid-file="$D/mysql/mysql.pid" --port=3306 --bind-address=127.0.0.1 --skip-name-resolve --skip-log-bin \
    --innodb-lock-wait-timeout=900 >"$D/log/mariadb.log" 2>&1 &
  wait_for 30 MariaDB mariadb --no-defaults --socket="$D/mysql/mysql.sock" -e 'select 1'
  echo "mariadbd $(cat "$D/mysql/mysql.pid")" >>"$D/pids"
  mariadb --no-defaults --socket="$D/mysql/mysql.sock" <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'augbench';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL

  # slurm.conf and slurmdbd.conf
  local node
  node=$(slurmd -C | head -1 | sed "s/NodeName=[^ ]*/NodeName=$host/")
  node=$(echo "$node" | sed -E "s/RealMemory=[0-9]+/RealMemory=$mem/")
  mkdir -p /etc/slurm
  cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=augbench
StorageLoc=slurm_acct_db
PidFile=$D/run/slurmdbd.pid
LogFile=$D/log/slurmdbd.log
EOF
  chmod 600 /etc/slurm/slurmdbd.conf
  cat >/etc/slurm/slurm.conf <<EOF
ClusterName=augbench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
JobRequeue=1
KillWait=5
MailProg=/bin/true
MaxArraySize=${AUGBENCH_SLURM_MAX_ARRAY:-1001}
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/none
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

  /usr/sbin/slurmdbd
  wait_for 20 slurmdbd test -s "$D/run/slurmdbd.pid"
  echo "slurmdbd $(cat "$D/run/slurmdbd.pid")" >>"$D/pids"
  wait_for 30 "slurmdbd answering" sacctmgr -n list cluster
  /usr/sbin/slurmctld
  wait_for 20 slurmctld test -s "$D/run/slurmctld.pid"
  echo "slurmctld $(cat "$D/run/slurmctld.pid")" >>"$D/pids"
  /usr/sbin/slurmd
  wait_for 20 slurmd test -s "$D/run/slurmd.pid"
  echo "slurmd $(cat "$D/run/slurmd.pid")" >>"$D/pids"
  wait_for 60 "an idle node" bash -c '[ "$(sinfo -h -N -o %T | head -1)" = idle ]'
  wait_for 30 "accounting" sacct -n -X
  echo "$D" >/tmp/augbench-slurm-dir
  log "cluster up: $(sinfo -h -N -o '%N %T %c CPUs')"
  echo "$D"
}

stop() {
  [ -f "$D/pids" ] || { log "nothing to stop"; return 0; }
  scancel --full --user=root >/dev/null 2>&1 || true
  for _ in $(seq 1 40); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
  tac "$D/pids" | while read -r name pid; do
    # only the process start recorded, not whatever reused its PID since
    [ "$(ps -p "$pid" -o comm= 2>/dev/null)" = "$name" ] || continue
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$D/pids"
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo; squeue ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
