#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (Debian, as root), for the slurm launcher's tests and
# for trying the launcher:
#   bash scripts/slurm_cluster.sh install   the Debian packages (slurm-wlm, munge, slurmdbd, MariaDB)
#   bash scripts/slurm_cluster.sh start     munged, MariaDB, slurmdbd, slurmctld, slurmd; waits
#                                           until the node is idle
#   bash scripts/slurm_cluster.sh stop      stops the daemons that `start` launched (its pid files)
#   bash scripts/slurm_cluster.sh status    which of them run, and sinfo
# The node is this machine (hostname -s, nproc CPUs, its memory less some headroom) in one
# partition, $ADBENCH_SLURM_PARTITION (default "debug"). Accounting (slurmdbd on a private MariaDB)
# is there because submitit reads job states with sacct. State, logs and pid files go under
# $ADBENCH_SLURM_DIR (default /var/lib/adbench-slurm); the configs go to /etc/slurm, where sbatch,
# squeue and sacct look for them. No systemd needed: the daemons are started directly.
set -euo pipefail

STATE=${ADBENCH_SLURM_DIR:-/var/lib/adbench-slurm}
PARTITION=${ADBENCH_SLURM_PARTITION:-debug}
DB_PORT=${ADBENCH_SLURM_DB_PORT:-3307}
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARK="# written by adbench scripts/slurm_cluster.sh"
RUN=$STATE/run
LOG=$STATE/log
DB_SOCKET=$RUN/mariadb.sock
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)  # stop order
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)

log() { echo "slurm_cluster: $*" >&2; }
die() { log "$*"; exit 1; }

pid_of() {  # the live pid recorded for daemon $1, or nothing
  local file=$RUN/$1.pid pid
  [[ -s $file ]] || return 0
  pid=$(tr -dc 0-9 < "$file")
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null \
      && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]; then
    echo "$pid"
  fi
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds
  local seconds=$1 what=$2 end
  shift 2
  end=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then
      log "timed out after ${seconds} s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

dump_logs() {
  local file
  for file in "$LOG"/*.log; do
    [[ -f $file ]] || continue
    echo "----- $file (last 40 lines)" >&2
    tail -n 40 "$file" >&2
  done
}

install() {
  local tool missing=0
  for tool in sbatch sacct slurmctld slurmd slurmdbd munged mariadbd; do
    command -v "$tool" >/dev/null || missing=1
  done
  if ((!missing)); then
    log "already installed"
    return
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; }
}

write_file() {  # write_file PATH MODE: stdin to PATH unless PATH is someone else's file
  local path=$1 mode=$2
  if [[ -e $path ]] && ! grep -qF "$MARK" "$path"; then
    die "$path exists and was not written by this script; move it away first"
  fi
  local tmp
  tmp=$(mktemp "$path.XXXXXX")
  cat > "$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$path"
}

write_configs() {
  local host cpus mem_mb
  host=$(hostname -s)
  cpus=$(nproc)
  mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  mem_mb=$((mem_mb > 2048 ? mem_mb - 1024 : mem_mb / 2))  # headroom for the OS and daemons
  mkdir -p /etc/slurm
  write_file "$CONF" 644 <<EOF
$MARK
ClusterName=adbench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=5
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobRequeue=1
ReturnToService=2
KillWait=2
MinJobAge=300
InactiveLimit=0
SlurmdTimeout=300
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobCompType=jobcomp/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  write_file "$DBD_CONF" 600 <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=adbench
StorageLoc=slurm_acct_db
EOF
}

start_munged() {
  if munge_works; then
    [[ -n $(pid_of munged) ]] || log "using the munged already running"
    return
  fi
  if [[ ! -s /etc/munge/munge.key ]]; then
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key
  fi
  chown munge:munge /etc/munge /etc/munge/munge.key
  chmod 700 /etc/munge
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge "$STATE/munge" /var/lib/munge /var/log/munge
  chown munge:munge /run/munge "$STATE/munge" /var/lib/munge /var/log/munge
  chmod 755 /run/munge
  runuser -u munge -- munged --pid-file="$STATE/munge/munged.pid" \
    --log-file="$STATE/munge/munged.log" 9>&-
  wait_for 10 munged munge_works
  ln -sf "$STATE/munge/munged.pid" "$RUN/munged.pid"
}

start_mariadb() {
  [[ -z $(pid_of mariadbd) ]] || return 0
  if [[ ! -d $STATE/mysql/mysql ]]; then
    rm -rf "$STATE/mysql"
    mariadb-install-db --no-defaults --user=root --datadir="$STATE/mysql" \
      --auth-root-authentication-method=socket --skip-test-db > "$LOG/mariadb-install.log" 2>&1 \
      || { dump_logs; die "mariadb-install-db failed"; }
  fi
  setsid mariadbd --no-defaults --user=root --datadir="$STATE/mysql" --socket="$DB_SOCKET" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --pid-file="$RUN/mariadbd.pid" \
    --log-error="$LOG/mariadb.log" --innodb-buffer-pool-size=64M \
    --innodb-lock-wait-timeout=900 --max-connections=50 < /dev/null > /dev/null 2>&1 9>&- &
  wait_for 60 MariaDB mariadb-admin --no-defaults --socket="$DB_SOCKET" ping \
    || { dump_logs; die "MariaDB did not start"; }
  mariadb --no-defaults --socket="$DB_SOCKET" -u root -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'adbench';
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'adbench';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

start_slurm_daemon() {  # start_slurm_daemon NAME ARGS...: start it unless our copy runs
  local name=$1
  shift
  [[ -z $(pid_of "$name") ]] || return 0
  if pgrep -x "$name" >/dev/null; then
    die "a $name not started by this script is running; stop it first"
  fi
  "$name" "$@" 9>&- || { dump_logs; die "$name failed to start"; }
  wait_for 10 "$name's pid file" test -s "$RUN/$name.pid" || { dump_logs; die "$name died"; }
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
no_jobs() { [[ -z $(squeue -h -o %i 2>/dev/null) ]]; }
registered() { sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx adbench; }

node_idle() {
  [[ $(sinfo -h -n "$(hostname -s)" -o %t 2>/dev/null) =~ ^(idle|mix|alloc) ]]
}

start() {
  local begin=$SECONDS host
  [[ $(id -u) == 0 ]] || die "run as root"
  command -v slurmctld >/dev/null || die "SLURM is not installed: run '$0 install' first"
  host=$(hostname -s)
  mkdir -p "$STATE/slurmctld" "$STATE/slurmd" "$RUN" "$LOG"
  chmod 755 "$STATE"
  write_configs
  start_munged
  start_mariadb
  start_slurm_daemon slurmdbd
  wait_for 60 slurmdbd sacctmgr -n list cluster || { dump_logs; die "slurmdbd is not answering"; }
  start_slurm_daemon slurmctld
  start_slurm_daemon slurmd -N "$host"
  wait_for 30 "the node to register" sinfo -h -n "$host" || true
  if [[ $(sinfo -h -n "$host" -o %t 2>/dev/null) =~ ^(down|drain|drng) ]]; then
    scontrol update nodename="$host" state=resume || true
  fi
  if ! wait_for 60 "node $host to be idle" node_idle; then
    sinfo -N -l >&2 || true
    dump_logs
    die "the node did not come up"
  fi
  wait_for 30 "the cluster in the accounting database" registered
  log "up in $((SECONDS - begin)) s: partition $PARTITION, node $host"
}

stop() {
  if [[ -n $(pid_of slurmctld) ]] && [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
    squeue -h -o %i | xargs -r scancel --full || true  # no job outlives its cluster
    wait_for 20 "the jobs to end" no_jobs || true
  fi
  terminate slurmd slurmctld slurmdbd  # the SLURM daemons first, then what they use
  terminate mariadbd munged
}

any_alive() {
  local pid
  for pid in "$@"; do
    kill -0 "$pid" 2>/dev/null && return 0
  done
  return 1
}

terminate() {  # terminate NAME...: SIGTERM our copies of these daemons, wait, SIGKILL stragglers
  local name pid pids=() names=()
  for name in "$@"; do
    pid=$(pid_of "$name")
    [[ -n $pid ]] || continue
    kill "$pid"
    pids+=("$pid")
    names+=("$name")
  done
  ((${#pids[@]})) || return 0
  for _ in $(seq 80); do
    any_alive "${pids[@]}" || break
    sleep 0.25
  done
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[i]}" 2>/dev/null; then
      log "${names[i]} (${pids[i]}) ignored SIGTERM: SIGKILL"
      kill -9 "${pids[i]}" 2>/dev/null || true
    fi
    rm -f "$RUN/${names[i]}.pid"
    log "stopped ${names[i]} (${pids[i]})"
  done
}

status() {
  local name pid running=0
  for name in "${DAEMONS[@]}"; do
    pid=$(pid_of "$name")
    if [[ -n $pid ]]; then
      echo "$name: running (pid $pid)"
      running=1
    else
      echo "$name: stopped"
    fi
  done
  if ((running)); then
    sinfo || true
  fi
  node_idle
}

serialised() {  # one start or stop at a time (the daemons do not inherit the lock's fd 9)
  mkdir -p "$STATE"
  exec 9> "$STATE/.lock"
  flock -w 300 9 || die "another start or stop holds $STATE/.lock"
  "$@"
}

case ${1:-} in
  install) install ;;
  start) serialised start ;;
  stop) serialised stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
