#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) for tests and development.
# Jars come from Maven Central through deploy/kafka/pom.xml and are cached outside the repository.
# Run `kafka.sh help` for usage. Progress goes to stderr; `start`/`restart` print only the
# bootstrap address (127.0.0.1:PORT) on stdout, so `B=$(kafka.sh start --dir D)` works.
set -euo pipefail

KAFKA_VERSION=4.3.1
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/daemon.sh
source "$SCRIPT_DIR/../lib/daemon.sh"
POM="$SCRIPT_DIR/pom.xml"
LOG4J_CONF="${PLAYSTREAM_KAFKA_LOG4J:-$SCRIPT_DIR/log4j2.properties}"
KAFKA_HOME="${PLAYSTREAM_KAFKA_HOME:-$HOME/.cache/playstream/kafka-$KAFKA_VERSION}"
LIBS="$KAFKA_HOME/libs"               # broker classpath
TOOLS_LIBS="$KAFKA_HOME/tools-libs"   # broker + kafka-tools classpath (perf test, CLI tools)
MVN="${MVN:-mvn}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"   # seconds to wait for "Kafka Server started"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"      # seconds between SIGTERM and SIGKILL
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
JVM_OPTS="${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}"
READY_LINE='Kafka Server started'

usage() {
  cat <<EOF
Usage: $(basename "$0") COMMAND [OPTIONS]

Commands:
  fetch [--tools]            Resolve the Kafka $KAFKA_VERSION jars with Maven into
                             $LIBS (with --tools also
                             $TOOLS_LIBS). Skipped when already complete.
  start --dir DIR [--port P] [--sasl-scram] [--tls] [--sasl-ssl]
                             Start a broker whose config, data, log and pid live in DIR.
                             Picks free ports when --port is not given. A DIR that already holds
                             a formatted broker is reused (same data, cluster id, ports,
                             listeners, users and certificates).
                             Prints the PLAINTEXT bootstrap 127.0.0.1:PORT as the last stdout line.
                             Extra listeners (127.0.0.1, free ports; fixed when DIR is formatted):
                               --sasl-scram  SASL_PLAINTEXT, mechanisms SCRAM-SHA-256,
                                             SCRAM-SHA-512 and PLAIN -> DIR/bootstrap.sasl
                               --tls         SSL (server cert from a CA made in DIR, client
                                             certs requested, not required) -> DIR/bootstrap.tls
                               --sasl-ssl    SASL_SSL, same mechanisms -> DIR/bootstrap.sasl_ssl
                             The SASL user exists for all three mechanisms with one password:
                             PLAYSTREAM_KAFKA_SASL_USER (default playstream) and
                             PLAYSTREAM_KAFKA_SASL_PASSWORD (default random), kept in
                             DIR/sasl.credentials (mode 600, lines username=, password=).
                             TLS: DIR/ca.pem (trust this), DIR/client.pem + DIR/client.key (a
                             client certificate signed by that CA), broker keystores in DIR/tls/.
  stop --dir DIR [--kill]    SIGTERM the broker recorded in DIR/broker.pid, SIGKILL after
                             ${STOP_TIMEOUT}s (--kill: SIGKILL at once, an unclean shutdown).
                             Does nothing if it is not running.
  restart --dir DIR [--kill] stop, then start again on the same ports with the same data.
  status --dir DIR           Exit 0 and print the bootstrap if the broker in DIR is running, else exit 1.
  perf --bootstrap B --topic T --record-size S --num-records N [-- EXTRA_ARGS...]
                             Run org.apache.kafka.tools.ProducerPerformance (acks=all,
                             unthrottled); EXTRA_ARGS are passed to it.
  groups ARGS...             Kafka's own kafka-consumer-groups.sh (ConsumerGroupCommand), e.g.
                             groups --bootstrap-server B --describe --group G
  help                       Show this message.

Files in DIR: server.properties, data/, broker.log, broker.pid, bootstrap, ports, format.log;
  with extra listeners also listeners ("NAME PORT" lines), bootstrap.sasl, bootstrap.tls,
  bootstrap.sasl_ssl, sasl.credentials, ca.pem, client.pem, client.key, tls/, tls.log.
Environment: PLAYSTREAM_KAFKA_HOME (jar cache, default ~/.cache/playstream/kafka-$KAFKA_VERSION),
  KAFKA_START_TIMEOUT (s, default 120), KAFKA_STOP_TIMEOUT (s, default 30), KAFKA_HEAP_OPTS
  (default "-Xms256m -Xmx512m"), KAFKA_JVM_OPTS, MVN (default mvn; MAVEN_OPTS is honoured).
EOF
}

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------- fetch
# Marker file content: Kafka version + sha256 of pom.xml, so editing the POM triggers a re-fetch.
fetch_marker_value() { echo "$KAFKA_VERSION $(sha256sum "$POM" | cut -d' ' -f1)"; }

fetch_one() {   # fetch_one DEST [-Ptools]
  local dest=$1 profile=${2:-} marker="$1/.fetch-complete" tmp want
  want=$(fetch_marker_value)
  if [[ -f $marker && $(cat "$marker") == "$want" ]]; then return 0; fi
  command -v "$MVN" >/dev/null || die "maven ($MVN) not found"
  command -v java >/dev/null || die "java not found (Kafka $KAFKA_VERSION needs Java 17+)"
  mkdir -p "$KAFKA_HOME"
  (
    flock 9   # serialise concurrent fetches into the same cache
    if [[ -f $marker && $(cat "$marker") == "$want" ]]; then exit 0; fi
    tmp="$dest.tmp.$$"
    rm -rf "$tmp"
    log "resolving Kafka $KAFKA_VERSION jars${profile:+ ($profile)} into $dest ..."
    # output kept in a log and shown only on failure (Maven 3.8 -q still prints stray ANSI resets)
    # shellcheck disable=SC2086
    "$MVN" -B -q -Dstyle.color=never -f "$POM" $profile dependency:copy-dependencies \
      -Dkafka.libs.dir="$tmp" >"$KAFKA_HOME/fetch.log" 2>&1 \
      || { cat "$KAFKA_HOME/fetch.log" >&2; rm -rf "$tmp"; die "mvn dependency:copy-dependencies failed"; }
    ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "kafka_2.13 jar missing after fetch"; }
    local bindings jars
    bindings=$(find "$tmp" -maxdepth 1 -regextype egrep \
      -regex '.*/(log4j-slf4j2?-impl|slf4j-(simple|nop|reload4j|log4j12|jdk14)|logback-classic)-[^/]*\.jar' | wc -l)
    [[ $bindings == 1 ]] || { rm -rf "$tmp"; die "expected exactly one SLF4J binding in $tmp, found $bindings"; }
    rm -rf "$dest"
    mv "$tmp" "$dest"
    echo "$want" > "$marker"
    jars=$(find "$dest" -maxdepth 1 -name '*.jar' | wc -l)
    log "fetched $jars jars into $dest"
  ) 9>"$KAFKA_HOME/.fetch.lock"
}

cmd_fetch() {
  local tools=0
  while [[ $# -gt 0 ]]; do
    case $1 in
      --tools) tools=1 ;;
      *) die "fetch: unknown argument '$1'" ;;
    esac
    shift
  done
  fetch_one "$LIBS"
  if [[ $tools == 1 ]]; then fetch_one "$TOOLS_LIBS" -Ptools; fi
}

# ---------------------------------------------------------------------------------------- helpers
# N (default 2) distinct free TCP ports on 127.0.0.1 (held open together so they differ).
free_ports() {
  python3 - "${1:-2}" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# Kafka Uuid: 16 random bytes, URL-safe base64 without padding (22 chars), not starting with '-'.
random_cluster_id() {
  python3 -c 'import base64,os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    if not s.startswith("-"): print(s); break'
}


running_pid() { daemon_pid "$1" broker.pid "kafka.Kafka $1/server.properties"; }

write_server_properties() {   # DIR PORT CONTROLLER_PORT
  local dir=$1 port=$2 cport=$3
  cat >"$dir/server.properties" <<EOF
# Written by deploy/kafka/kafka.sh -- single-node KRaft broker+controller for tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport$(sec_listeners)
advertised.listeners=PLAINTEXT://127.0.0.1:$port$(sec_listeners)
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT$(sec_protocol_map)
log.dirs=$dir/data
auto.create.topics.enable=true
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.dedupe.buffer.size=2097152
log.cleaner.threads=1
EOF
  if [[ ${#SEC_PORTS[@]} -gt 0 ]]; then
    chmod 600 "$dir/server.properties"   # holds the keystore password and the PLAIN user
    write_security_properties "$dir" >>"$dir/server.properties"
  fi
}

run_java() {   # CLASSPATH_DIR ARGS...  (short-lived tool JVM)
  local cp=$1; shift
  java -Xmx256m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J_CONF" -cp "$cp/*" "$@"
}

# kafka-storage format; with a SASL listener also adds the test user's SCRAM credentials. The
# main class and its arguments go through a java @argfile (mode 600, removed afterwards), so the
# password never shows in a process list.
format_storage() {   # DIR CLUSTER_ID
  local dir=$1 cid=$2 args=$1/.format.args m rc=0
  (
    umask 077
    echo "kafka.tools.StorageTool format -t $cid -c $dir/server.properties"
    if sec_any_sasl; then
      for m in SCRAM-SHA-256 SCRAM-SHA-512; do
        echo "--add-scram $m=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]"
      done
    fi
  ) >"$args"
  if sec_any_sasl; then (umask 077; : >"$dir/format.log"); fi   # it lists the salted credentials
  run_java "$LIBS" "@$args" >"$dir/format.log" 2>&1 || rc=$?
  rm -f "$args"
  return $rc
}

launch_and_wait() {   # DIR -> 0 when ready; 1 (broker killed) on failure
  local dir=$1 pid deadline
  [[ -f $dir/broker.log ]] && mv -f "$dir/broker.log" "$dir/broker.log.prev"
  # setsid: own session, so signals to the caller's process group do not hit the broker;
  # all fds redirected, so callers capturing our stdout do not wait for the broker.
  # (SC2086: the option strings are meant to split; SC2016: $$ and $1 expand in the child shell)
  # shellcheck disable=SC2086,SC2016
  setsid bash -c 'echo $$ >"$1/broker.pid"; shift; exec "$@"' _ "$dir" \
    java $HEAP_OPTS $JVM_OPTS -Dlog4j2.configurationFile="$LOG4J_CONF" \
    -Dkafka.logs.dir="$dir" -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >"$dir/broker.log" 2>&1 &
  local launcher=$!
  deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if grep -qF "$READY_LINE" "$dir/broker.log" 2>/dev/null; then return 0; fi
    if ! kill -0 "$launcher" 2>/dev/null; then
      log "broker process exited before becoming ready"; break
    fi
    if ((SECONDS >= deadline)); then
      log "broker not ready after ${START_TIMEOUT}s"; break
    fi
    sleep 0.5
  done
  pid=$(cat "$dir/broker.pid" 2>/dev/null || echo "$launcher")
  kill -KILL "$pid" 2>/dev/null || true
  wait "$launcher" 2>/dev/null || true
  rm -f "$dir/broker.pid"
  return 1
}

# ---------------------------------------------------------------------------------------- security
# Optional listeners besides PLAINTEXT (start --sasl-scram / --tls / --sasl-ssl). The controller
# and inter-broker traffic stay on PLAINTEXT. Listener name == security protocol, in this order.
SEC_NAMES=(SASL_PLAINTEXT SSL SASL_SSL)
declare -A SEC_PORTS=()          # listener name -> port ("" until picked)
declare -A SEC_FILE=([SASL_PLAINTEXT]=bootstrap.sasl [SSL]=bootstrap.tls [SASL_SSL]=bootstrap.sasl_ssl)
declare -A SEC_FLAG=([SASL_PLAINTEXT]=--sasl-scram [SSL]=--tls [SASL_SSL]=--sasl-ssl)
SASL_MECHANISMS=(SCRAM-SHA-256 SCRAM-SHA-512 PLAIN)
SCRAM_USER="" SCRAM_PASSWORD="" TLS_PASS=""

sec_has() { [[ -v "SEC_PORTS[$1]" ]]; }
sec_any_sasl() { sec_has SASL_PLAINTEXT || sec_has SASL_SSL; }
sec_any_tls() { sec_has SSL || sec_has SASL_SSL; }

sec_listeners() {   # ",NAME://127.0.0.1:PORT..." for the enabled extra listeners (empty if none)
  local n out=""
  for n in "${SEC_NAMES[@]}"; do sec_has "$n" && out+=",$n://127.0.0.1:${SEC_PORTS[$n]}"; done
  printf '%s' "$out"
}

sec_protocol_map() {
  local n out=""
  for n in "${SEC_NAMES[@]}"; do sec_has "$n" && out+=",$n:$n"; done
  printf '%s' "$out"
}

# DIR/listeners: one "NAME PORT" line per extra listener, fixed when the storage is formatted.
read_sec_listeners() {   # DIR
  local name p
  [[ -f $1/listeners ]] || return 0
  while read -r name p; do
    [[ -n $name ]] && SEC_PORTS[$name]=$p
  done <"$1/listeners"
}

write_sec_listeners() {   # DIR
  local n
  : >"$1/listeners"
  for n in "${SEC_NAMES[@]}"; do sec_has "$n" && echo "$n ${SEC_PORTS[$n]}" >>"$1/listeners"; done
  return 0
}

pick_sec_ports() {   # PORT CPORT: fill the extra listeners that have no port yet
  local need=0 n p
  local -a free
  for n in "${SEC_NAMES[@]}"; do sec_has "$n" && [[ -z ${SEC_PORTS[$n]} ]] && need=$((need + 1)); done
  [[ $need == 0 ]] && return 0
  read -r -a free < <(free_ports $((need + 2)))
  for n in "${SEC_NAMES[@]}"; do
    sec_has "$n" && [[ -z ${SEC_PORTS[$n]} ]] || continue
    for p in "${!free[@]}"; do
      if [[ ${free[$p]} != "$1" && ${free[$p]} != "$2" ]]; then
        SEC_PORTS[$n]=${free[$p]}; unset "free[$p]"; break
      fi
    done
  done
}

random_secret() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }

# The SASL test user (SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN, one password). Taken from
# PLAYSTREAM_KAFKA_SASL_USER / PLAYSTREAM_KAFKA_SASL_PASSWORD, else user "playstream" with a random
# password; kept in DIR/sasl.credentials (mode 600) so a restarted DIR keeps it. Never printed.
load_sasl_credentials() {   # DIR
  local f=$1/sasl.credentials key value
  if [[ ! -f $f ]]; then
    local user=${PLAYSTREAM_KAFKA_SASL_USER:-playstream} pw=${PLAYSTREAM_KAFKA_SASL_PASSWORD:-}
    [[ -n $pw ]] || pw=$(random_secret)
    # the --add-scram parser and the PLAIN JAAS line take these unquoted: keep them to a safe set
    [[ $user =~ ^[A-Za-z0-9._-]+$ ]] || die "PLAYSTREAM_KAFKA_SASL_USER: only letters, digits, '.', '_' and '-'"
    [[ $pw =~ ^[A-Za-z0-9._~+-]{8,}$ ]] \
      || die "PLAYSTREAM_KAFKA_SASL_PASSWORD: 8 or more of letters, digits, '.', '_', '~', '+', '-'"
    (umask 077; printf 'username=%s\npassword=%s\nmechanisms=%s\n' "$user" "$pw" \
      "$(IFS=,; echo "${SASL_MECHANISMS[*]}")" >"$f")
  fi
  while IFS='=' read -r key value; do
    case $key in username) SCRAM_USER=$value ;; password) SCRAM_PASSWORD=$value ;; esac
  done <"$f"
  [[ -n $SCRAM_USER && -n $SCRAM_PASSWORD ]] || die "$f lacks username= or password="
}

# A CA, a broker certificate (SAN IP:127.0.0.1, DNS:localhost) and a client certificate, made
# once per DIR with openssl; PKCS12 keystore and truststore for the broker (keytool for the
# truststore, whose trusted-cert entries openssl 3.0 cannot write). Kept across restarts.
ensure_tls() {   # DIR
  local dir=$1 t=$1/tls
  if [[ -f $t/broker.p12 && -f $t/truststore.p12 && -f $t/store.pass && -f $dir/ca.pem ]]; then
    TLS_PASS=$(cat "$t/store.pass"); return 0
  fi
  command -v openssl >/dev/null || die "openssl not found (needed for --tls / --sasl-ssl)"
  command -v keytool >/dev/null || die "keytool not found (needed for --tls / --sasl-ssl)"
  log "generating a test CA and certificates in $t"
  local tmp=$t.tmp.$$
  rm -rf "$tmp"
  (
    umask 077
    mkdir -p "$tmp" && cd "$tmp"
    random_secret >store.pass
    export KS_PASS; KS_PASS=$(cat store.pass)
    openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=playstream test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout ca.key -out ca.pem
    leaf() {   # NAME CN EKU [SAN]
      openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$1.key" -out "$1.csr"
      { echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$3"
        if [[ -n ${4:-} ]]; then echo "subjectAltName=$4"; fi; } >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
        -extfile "$1.ext" -out "$1.pem"
    }
    leaf broker localhost serverAuth,clientAuth "IP:127.0.0.1,DNS:localhost"
    leaf client playstream-test-client clientAuth
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
      -out broker.p12 -passout env:KS_PASS
    keytool -importcert -noprompt -alias playstream-test-ca -file ca.pem -keystore truststore.p12 \
      -storetype PKCS12 -storepass:env KS_PASS
  ) >"$dir/tls.log" 2>&1 || { cat "$dir/tls.log" >&2; rm -rf "$tmp"; die "certificate generation failed"; }
  rm -rf "$t"; mv "$tmp" "$t"
  install -m 644 "$t/ca.pem" "$dir/ca.pem"
  install -m 644 "$t/client.pem" "$dir/client.pem"
  install -m 600 "$t/client.key" "$dir/client.key"
  TLS_PASS=$(cat "$t/store.pass")
}

write_security_properties() {   # DIR (appended to server.properties)
  local dir=$1 n lname m mechs
  mechs=$(IFS=,; echo "${SASL_MECHANISMS[*]}")
  echo "# Extra listeners (kafka.sh start --sasl-scram / --tls / --sasl-ssl)."
  if sec_any_sasl; then
    echo "sasl.enabled.mechanisms=$mechs"
    for n in SASL_PLAINTEXT SASL_SSL; do
      sec_has "$n" || continue
      lname=${n,,}
      echo "listener.name.$lname.sasl.enabled.mechanisms=$mechs"
      for m in SCRAM-SHA-256 SCRAM-SHA-512; do
        echo "listener.name.$lname.${m,,}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
      done
      echo "listener.name.$lname.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SCRAM_USER=\"$SCRAM_PASSWORD\";"
    done
  fi
  if sec_any_tls; then
    cat <<EOF
ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/tls/broker.p12
ssl.keystore.password=$TLS_PASS
ssl.key.password=$TLS_PASS
ssl.truststore.type=PKCS12
ssl.truststore.location=$dir/tls/truststore.p12
ssl.truststore.password=$TLS_PASS
ssl.client.auth=requested
EOF
  fi
}

# ---------------------------------------------------------------------------------------- start
cmd_start() {
  local dir="" port="" n
  local -a want=()
  while [[ $# -gt 0 ]]; do
    case $1 in
      --dir) dir=${2:?--dir needs a value}; shift ;;
      --port) port=${2:?--port needs a value}; shift ;;
      --sasl-scram) want+=(SASL_PLAINTEXT) ;;
      --tls) want+=(SSL) ;;
      --sasl-ssl) want+=(SASL_SSL) ;;
      *) die "start: unknown argument '$1'" ;;
    esac
    shift
  done
  [[ -n $dir ]] || die "start: --dir DIR is required"
  [[ -z $port || $port =~ ^[0-9]+$ ]] || die "start: --port must be a number"
  dir=$(abs_dir "$dir")
  if running_pid "$dir" >/dev/null; then
    die "a broker is already running for $dir (pid $(cat "$dir/broker.pid")); use stop or restart"
  fi
  fetch_one "$LIBS"

  local formatted=0 cport="" auto_port=0 sec_auto=0
  [[ -f $dir/data/meta.properties && -f $dir/ports ]] && formatted=1
  if [[ $formatted == 1 ]]; then
    local old_port
    read -r old_port cport <"$dir/ports"
    port=${port:-$old_port}
    log "reusing formatted broker state in $dir (port $port, controller port $cport)"
    # the extra listeners are fixed at format time (SCRAM users live in the metadata log)
    read_sec_listeners "$dir"
    for n in "${want[@]}"; do
      sec_has "$n" || die "start: $dir was formatted without ${SEC_FLAG[$n]}; the extra listeners are fixed when the storage is formatted (use a new DIR)"
    done
    [[ ${#SEC_PORTS[@]} -gt 0 ]] && log "reusing listeners: $(sec_listeners | tr ',' ' ')"
  else
    rm -f "$dir/listeners"
    for n in "${want[@]}"; do SEC_PORTS[$n]=""; done
  fi
  sec_any_sasl && load_sasl_credentials "$dir"
  sec_any_tls && ensure_tls "$dir"

  for _ in 1 2 3; do
    if [[ -z $port ]]; then
      auto_port=1
      read -r port cport < <(free_ports)
    elif [[ -z $cport ]]; then
      cport=$(free_ports | while read -r a b; do [[ $a != "$port" ]] && echo "$a" || echo "$b"; done)
    fi
    for n in "${!SEC_PORTS[@]}"; do [[ -z ${SEC_PORTS[$n]} ]] && sec_auto=1; done
    pick_sec_ports "$port" "$cport"
    write_server_properties "$dir" "$port" "$cport"
    echo "$port $cport" >"$dir/ports"
    [[ ${#SEC_PORTS[@]} -gt 0 ]] && write_sec_listeners "$dir"
    if [[ $formatted == 0 ]]; then
      local cid
      cid=$(random_cluster_id)
      mkdir -p "$dir/data"
      log "formatting storage in $dir/data (cluster id $cid)"
      format_storage "$dir" "$cid" || { cat "$dir/format.log" >&2; die "storage format failed"; }
      echo "$cid" >"$dir/cluster.id"
      formatted=1
    fi
    log "starting broker on 127.0.0.1:$port (controller 127.0.0.1:$cport), log $dir/broker.log"
    local t0=$SECONDS
    if launch_and_wait "$dir"; then
      echo "127.0.0.1:$port" >"$dir/bootstrap"
      for n in "${!SEC_PORTS[@]}"; do echo "127.0.0.1:${SEC_PORTS[$n]}" >"$dir/${SEC_FILE[$n]}"; done
      [[ ${#SEC_PORTS[@]} -gt 0 ]] && log "extra listeners: $(sec_listeners | tr ',' ' ')"
      log "broker ready in $((SECONDS - t0))s (pid $(cat "$dir/broker.pid"))"
      echo "127.0.0.1:$port"
      return 0
    fi
    # a port we picked ourselves may have been taken in the meantime: retry with new ports
    if [[ $auto_port == 1 ]] && grep -q 'Address already in use' "$dir/broker.log"; then
      log "port clash, retrying with other ports"; port=""; cport=""
      if [[ $sec_auto == 1 ]]; then for n in "${!SEC_PORTS[@]}"; do SEC_PORTS[$n]=""; done; fi
      continue
    fi
    break
  done
  log "---- last 60 lines of $dir/broker.log ----"
  tail -n 60 "$dir/broker.log" >&2 || true
  die "broker failed to start"
}

# ---------------------------------------------------------------------------------------- stop
cmd_stop() {
  parse_stop_args stop "$@"
  stop_daemon "$STOP_DIR" broker.pid broker "$STOP_HARD"
}

cmd_restart() {
  parse_stop_args restart "$@"
  local dir=$STOP_DIR
  [[ -f $dir/ports && -f $dir/data/meta.properties ]] || die "restart: $dir holds no formatted broker (run start first)"
  stop_daemon "$dir" broker.pid broker "$STOP_HARD"
  cmd_start --dir "$dir"
}

cmd_status() {
  local dir=""
  while [[ $# -gt 0 ]]; do
    case $1 in
      --dir) dir=${2:?--dir needs a value}; shift ;;
      *) die "status: unknown argument '$1'" ;;
    esac
    shift
  done
  [[ -n $dir && -d $dir ]] || die "status: --dir DIR is required and must exist"
  dir=$(cd "$dir" && pwd)
  if running_pid "$dir" >/dev/null; then cat "$dir/bootstrap"; else log "not running"; return 1; fi
}

# ---------------------------------------------------------------------------------------- perf
cmd_perf() {
  local bootstrap="" topic="" size="" num=""
  while [[ $# -gt 0 ]]; do
    case $1 in
      --bootstrap) bootstrap=${2:?}; shift ;;
      --topic) topic=${2:?}; shift ;;
      --record-size) size=${2:?}; shift ;;
      --num-records) num=${2:?}; shift ;;
      --) shift; break ;;
      *) die "perf: unknown argument '$1'" ;;
    esac
    shift
  done
  [[ -n $bootstrap && -n $topic && -n $size && -n $num ]] \
    || die "perf: --bootstrap, --topic, --record-size and --num-records are required"
  fetch_one "$TOOLS_LIBS" -Ptools
  # full JIT and the heap kafka-producer-perf-test.sh uses (run_java limits both for short tools)
  # shellcheck disable=SC2086
  java -Xmx512m $JVM_OPTS -Dlog4j2.configurationFile="$LOG4J_CONF" -cp "$TOOLS_LIBS/*" \
    org.apache.kafka.tools.ProducerPerformance \
    --topic "$topic" --num-records "$num" --record-size "$size" --throughput -1 \
    --bootstrap-server "$bootstrap" --command-property acks=all "$@"
}

cmd_groups() {   # Kafka's own kafka-consumer-groups.sh: every argument is passed through
  fetch_one "$TOOLS_LIBS" -Ptools
  run_java "$TOOLS_LIBS" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@"
}

# ---------------------------------------------------------------------------------------- main
main() {
  [[ $# -gt 0 ]] || { usage >&2; exit 2; }
  local cmd=$1; shift
  case $cmd in
    fetch) cmd_fetch "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    restart) cmd_restart "$@" ;;
    status) cmd_status "$@" ;;
    perf) cmd_perf "$@" ;;
    groups) cmd_groups "$@" ;;
    help|-h|--help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
