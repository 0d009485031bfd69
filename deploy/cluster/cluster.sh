#!/usr/bin/env bash
# A RabbitMQ cluster of three nodes on this machine, for tests and development (not for production:
# one machine is one failure domain). Each node has its own name, ports and folders under one directory,
# and its own Erlang cookie there; nothing of the machine's own broker (rabbit@localhost, port 5672) is
# read or touched.
#
#   deploy/cluster/cluster.sh start        start the nodes, join them, print the failover URL
#   deploy/cluster/cluster.sh stop         stop every node and remove the directory
#   deploy/cluster/cluster.sh status       which nodes run, and the cluster as node 1 sees it
#   deploy/cluster/cluster.sh url          the EDA_BROKER_URL of the cluster (every node, ';'-separated)
#   deploy/cluster/cluster.sh ctl N ARGS   rabbitmqctl ARGS against node N (e.g. ctl 2 stop_app)
#   deploy/cluster/cluster.sh queues N ARGS  rabbitmq-queues ARGS against node N
#
# Settings (environment):
#   EDA_CLUSTER_DIR    where the nodes keep data, logs and the cookie [/tmp/eda-cluster]
#   EDA_CLUSTER_PORT   AMQP port of node 1; node N listens on PORT+N-1, its Erlang distribution on
#                      PORT+N-1+20000 [5781: 5781-5783 and 25781-25783]
#   EDA_CLUSTER_NAME   node N is NAME-N@localhost [eda-cluster]
#   EDA_CLUSTER_NODES  how many nodes [3]
#   RABBITMQ_SBIN      folder of RabbitMQ's own scripts [the rabbitmq-server package's, else PATH's]
set -euo pipefail

DIR=${EDA_CLUSTER_DIR:-/tmp/eda-cluster}
BASE_PORT=${EDA_CLUSTER_PORT:-5781}
NAME=${EDA_CLUSTER_NAME:-eda-cluster}
NODES=${EDA_CLUSTER_NODES:-3}
START_TIMEOUT=${EDA_CLUSTER_START_TIMEOUT:-120}

die() { echo "error: $*" >&2; exit "${2:-1}"; }

sbin() {
  # Debian's /usr/sbin/rabbitmq-* are wrappers that switch to the rabbitmq user and its files; the
  # package's own scripts run as whoever calls them, with the environment given here.
  if [ -n "${RABBITMQ_SBIN:-}" ]; then echo "$RABBITMQ_SBIN"; return; fi
  local own
  own=$(dpkg -L rabbitmq-server 2>/dev/null | grep '/lib/rabbitmq_server-[^/]*/sbin/rabbitmq-server$' | head -1 || true)
  if [ -n "$own" ]; then dirname "$own"; return; fi
  own=$(command -v rabbitmq-server || true)
  [ -n "$own" ] || die "rabbitmq-server not found: install RabbitMQ or set RABBITMQ_SBIN"
  dirname "$(readlink -f "$own")"
}

node() { echo "$NAME-$1@localhost"; }
port() { echo $((BASE_PORT + $1 - 1)); }
dist_port() { echo $((BASE_PORT + $1 - 1 + 20000)); }

node_env() {
  # The environment of node N (for the server and the CLI tools talking to it).
  local n=$1 d="$DIR/node$1"
  export HOME="$DIR" \
    RABBITMQ_NODENAME="$(node "$n")" \
    RABBITMQ_NODE_PORT="$(port "$n")" \
    RABBITMQ_DIST_PORT="$(dist_port "$n")" \
    RABBITMQ_MNESIA_BASE="$d/mnesia" \
    RABBITMQ_LOG_BASE="$d/log" \
    RABBITMQ_PID_FILE="$d/pid" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
    RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf" \
    ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

ctl() {
  local n=$1; shift
  (node_env "$n"; "$(sbin)/rabbitmqctl" -n "$(node "$n")" "$@")
}

queues() {
  local n=$1; shift
  (node_env "$n"; "$(sbin)/rabbitmq-queues" -n "$(node "$n")" "$@")
}

port_used() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

url() {
  local urls=() n
  for n in $(seq "$NODES"); do urls+=("amqp://guest:guest@127.0.0.1:$(port "$n")//"); done
  (IFS=';'; echo "${urls[*]}")
}

wait_for() {  # wait_for WHAT COMMAND...: retry COMMAND until it succeeds or START_TIMEOUT passes
  local what=$1; shift
  local deadline=$((SECONDS + START_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what: not done within ${START_TIMEOUT}s (logs: $DIR/node*/log; \`$0 stop\` stops the nodes and removes them)"
    sleep 0.5
  done
}

start_node() {
  local n=$1 d="$DIR/node$1"
  mkdir -p "$d/mnesia" "$d/log"
  cat >"$d/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$(port "$n")
loopback_users = none
cluster_partition_handling = pause_minority
EOF
  # The consistent-hash exchange is what ordered workers' partitions need; nothing else is enabled.
  echo '[rabbitmq_consistent_hash_exchange].' >"$d/enabled_plugins"
  : >"$d/rabbitmq-env.conf"
  (node_env "$n"; cd "$d"; setsid nohup "$(sbin)/rabbitmq-server" >"$d/server.out" 2>&1 </dev/null &)
}

cmd_start() {
  local n
  if [ -d "$DIR" ] && ctl 1 ping >/dev/null 2>&1; then
    echo "the cluster is already running (deploy/cluster/cluster.sh stop first to start afresh)" >&2
    url; return 0
  fi
  for n in $(seq "$NODES"); do
    for p in "$(port "$n")" "$(dist_port "$n")"; do
      ! port_used "$p" || die "port $p is in use: set EDA_CLUSTER_PORT to a free range"
    done
  done
  rm -rf "$DIR"
  mkdir -p "$DIR"
  # A cookie of this cluster's own: the machine's other Erlang nodes cannot reach these, nor these them.
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr 'a-f' 'A-F' >"$DIR/.erlang.cookie")
  chmod 400 "$DIR/.erlang.cookie"
  for n in $(seq "$NODES"); do start_node "$n"; done
  for n in $(seq "$NODES"); do
    # await_startup fails at once while the node is not registered yet: ping first.
    wait_for "node $(node "$n") answering" ctl "$n" ping
    wait_for "node $(node "$n") booting" ctl "$n" await_startup
  done
  for n in $(seq 2 "$NODES"); do
    ctl "$n" stop_app >/dev/null
    ctl "$n" join_cluster "$(node 1)" >/dev/null
    ctl "$n" start_app >/dev/null
    wait_for "node $(node "$n") joining" ctl "$n" await_startup
  done
  for n in $(seq "$NODES"); do wait_for "port $(port "$n")" port_used "$(port "$n")"; done
  url
}

node_pid() { cat "$DIR/node$1/pid" 2>/dev/null || true; }

cmd_stop() {
  local n pid pids=()
  [ -d "$DIR" ] || return 0
  for n in $(seq "$NODES"); do
    pid=$(node_pid "$n")
    [ -n "$pid" ] && pids+=("$pid")
    ctl "$n" stop >/dev/null 2>&1 &  # all at once: a node stopping alone waits on its peers
  done
  wait
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$DIR"
}

cmd_status() {
  local n code=0
  [ -d "$DIR" ] || { echo "no cluster in $DIR"; return 3; }
  for n in $(seq "$NODES"); do
    if ctl "$n" await_startup --timeout 1 >/dev/null 2>&1; then
      echo "$(node "$n") running, amqp://127.0.0.1:$(port "$n")"
    elif ctl "$n" ping >/dev/null 2>&1; then
      echo "$(node "$n") up, app stopped"; code=3
    else
      echo "$(node "$n") down"; code=3
    fi
  done
  for n in $(seq "$NODES"); do
    if ctl "$n" cluster_status --formatter json >"$DIR/status.json" 2>/dev/null; then
      echo "cluster as $(node "$n") sees it: $(tr -d '\n' <"$DIR/status.json" | grep -o '"running_nodes":\[[^]]*\]')"
      break
    fi
  done
  return $code
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) url ;;
  ctl) [ $# -ge 3 ] || die "usage: $0 ctl NODE_NUMBER RABBITMQCTL_ARGS..." 2; shift; ctl "$@" ;;
  queues) [ $# -ge 3 ] || die "usage: $0 queues NODE_NUMBER RABBITMQ_QUEUES_ARGS..." 2; shift; queues "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
