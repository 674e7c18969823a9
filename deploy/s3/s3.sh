#!/usr/bin/env bash
# Local S3-compatible object store (S3Proxy, filesystem backend) for tests and development.
# The jar comes from Maven Central through deploy/s3/pom.xml and is cached outside the repository.
# Run `s3.sh help` for usage. Progress goes to stderr; `start`/`restart` print the endpoint URL
# (http://127.0.0.1:PORT) as the last stdout line, so `E=$(s3.sh start --dir D)` works.
# The credentials are fixed test credentials for a server bound to 127.0.0.1 only; they are
# written to DIR (mode 600) and printed only by `env`, never logged.
set -euo pipefail

S3PROXY_VERSION=4.1.0
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/daemon.sh
source "$SCRIPT_DIR/../lib/daemon.sh"
POM="$SCRIPT_DIR/pom.xml"
S3PROXY_HOME="${PLAYSTREAM_S3PROXY_HOME:-$HOME/.cache/playstream/s3proxy-$S3PROXY_VERSION}"
LIBS="$S3PROXY_HOME/libs"
JAR="$LIBS/s3proxy.jar"
MVN="${MVN:-mvn}"
JAVA="${S3PROXY_JAVA:-java}"
START_TIMEOUT="${S3PROXY_START_TIMEOUT:-60}"   # seconds to wait for /healthz
STOP_TIMEOUT="${S3PROXY_STOP_TIMEOUT:-20}"     # seconds between SIGTERM and SIGKILL
HEAP_OPTS="${S3PROXY_HEAP_OPTS:--Xms64m -Xmx512m}"
BUCKET="${S3PROXY_BUCKET:-playstream}"
REGION=us-east-1
IDENTITY=playstream-test
CREDENTIAL=playstream-test-secret

usage() {
  cat <<EOF
Usage: $(basename "$0") COMMAND [OPTIONS]

Commands:
  fetch                      Resolve org.gaul:s3proxy:$S3PROXY_VERSION (jar-with-dependencies) with
                             Maven into $JAR. Skipped when already there.
  start --dir DIR [--port P] Start S3Proxy whose config, objects (DIR/data), log and pid live in DIR,
                             bound to 127.0.0.1 only. Picks a free port when --port is not given; a DIR
                             that was started before keeps its port and its objects. The bucket
                             '$BUCKET' exists when start returns. Prints the endpoint URL
                             http://127.0.0.1:PORT as the last stdout line.
  stop --dir DIR [--kill]    SIGTERM the S3Proxy recorded in DIR/s3proxy.pid, SIGKILL after
                             ${STOP_TIMEOUT}s (--kill: SIGKILL at once). Does nothing if it is not running.
  restart --dir DIR [--kill] stop, then start again on the same port with the same objects.
  status --dir DIR           Exit 0 and print the endpoint if the S3Proxy in DIR is running, else exit 1.
  env --dir DIR              Print the export line a shell needs to reach it:
                             export AWS_ENDPOINT_URL=... AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...
                             AWS_DEFAULT_REGION=$REGION   (use: eval "\$(s3.sh env --dir DIR)")
  help                       Show this message.

Files in DIR: s3proxy.conf (mode 600), credentials (mode 600), data/ (one folder per bucket),
  s3proxy.log (plus s3proxy.log.prev), s3proxy.pid, port, endpoint.
Environment: PLAYSTREAM_S3PROXY_HOME (jar cache, default ~/.cache/playstream/s3proxy-$S3PROXY_VERSION),
  S3PROXY_JAVA (default java; Java 17+), S3PROXY_START_TIMEOUT (s, default 60),
  S3PROXY_STOP_TIMEOUT (s, default 20), S3PROXY_HEAP_OPTS (default "-Xms64m -Xmx512m"),
  S3PROXY_BUCKET (default playstream), MVN (default mvn; MAVEN_OPTS is honoured).
EOF
}

log() { echo "s3.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------- fetch
# Marker content: version + sha256 of pom.xml, so editing the POM triggers a re-fetch.
fetch_marker_value() { echo "$S3PROXY_VERSION $(sha256sum "$POM" | cut -d' ' -f1)"; }

cmd_fetch() {
  [[ $# -eq 0 ]] || die "fetch: unknown argument '$1'"
  local marker="$LIBS/.fetch-complete" want
  want=$(fetch_marker_value)
  if [[ -f $marker && -f $JAR && $(cat "$marker") == "$want" ]]; then return 0; fi
  command -v "$MVN" >/dev/null || die "maven ($MVN) not found"
  mkdir -p "$S3PROXY_HOME"
  (
    flock 9   # serialise concurrent fetches into the same cache
    if [[ -f $marker && -f $JAR && $(cat "$marker") == "$want" ]]; then exit 0; fi
    local tmp="$LIBS.tmp.$$"
    rm -rf "$tmp"
    log "resolving org.gaul:s3proxy:$S3PROXY_VERSION into $LIBS ..."
    "$MVN" -B -q -Dstyle.color=never -f "$POM" dependency:copy -Ds3proxy.libs.dir="$tmp" \
      >"$S3PROXY_HOME/fetch.log" 2>&1 \
      || { cat "$S3PROXY_HOME/fetch.log" >&2; rm -rf "$tmp"; die "mvn dependency:copy failed"; }
    [[ -f $tmp/s3proxy.jar ]] || { rm -rf "$tmp"; die "s3proxy.jar missing after fetch"; }
    python3 -c 'import sys, zipfile
sys.exit(b"org.gaul.s3proxy.Main" not in zipfile.ZipFile(sys.argv[1]).read("META-INF/MANIFEST.MF"))' \
      "$tmp/s3proxy.jar" \
      || { rm -rf "$tmp"; die "fetched jar is not the executable S3Proxy jar"; }
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    echo "$want" >"$marker"
    log "fetched $(du -h "$JAR" | cut -f1) into $JAR"
  ) 9>"$S3PROXY_HOME/.fetch.lock"
}

# ---------------------------------------------------------------------------------------- helpers
free_port() {
  python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

check_java() {
  command -v "$JAVA" >/dev/null || die "java ($JAVA) not found (S3Proxy $S3PROXY_VERSION needs Java 17+)"
  local v
  v=$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  [[ $v =~ ^[0-9]+$ && $v -ge 17 ]] || die "S3Proxy $S3PROXY_VERSION needs Java 17+, $JAVA is ${v:-unknown}"
}

running_pid() { daemon_pid "$1" s3proxy.pid "--properties $1/s3proxy.conf"; }

write_config() {   # DIR PORT
  local dir=$1 port=$2
  (
    umask 077
    cat >"$dir/s3proxy.conf" <<EOF
# Written by deploy/s3/s3.sh -- S3Proxy $S3PROXY_VERSION for tests, bound to 127.0.0.1 only.
s3proxy.endpoint=http://127.0.0.1:$port
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$IDENTITY
s3proxy.credential=$CREDENTIAL
jclouds.provider=filesystem
jclouds.identity=$IDENTITY
jclouds.credential=$CREDENTIAL
jclouds.filesystem.basedir=$dir/data
EOF
    printf 'identity=%s\ncredential=%s\nregion=%s\n' "$IDENTITY" "$CREDENTIAL" "$REGION" >"$dir/credentials"
  )
}

healthy() {   # PORT -> 0 when GET /healthz answers 200
  python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

launch_and_wait() {   # DIR PORT -> 0 when ready; 1 (process killed) on failure
  local dir=$1 port=$2 pid deadline
  [[ -f $dir/s3proxy.log ]] && mv -f "$dir/s3proxy.log" "$dir/s3proxy.log.prev"
  # setsid: own session, so signals to the caller's process group do not hit the server;
  # all fds redirected, so callers capturing our stdout do not wait for it.
  # shellcheck disable=SC2086,SC2016
  setsid bash -c 'echo $$ >"$1/s3proxy.pid"; shift; exec "$@"' _ "$dir" \
    "$JAVA" $HEAP_OPTS -Djava.awt.headless=true -DLOG_LEVEL=info -DJETTY_LOG_LEVEL=warn \
    -jar "$JAR" --properties "$dir/s3proxy.conf" \
    </dev/null >"$dir/s3proxy.log" 2>&1 &
  local launcher=$!
  deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if healthy "$port" && running_pid "$dir" >/dev/null; then return 0; fi
    if ! kill -0 "$launcher" 2>/dev/null; then
      log "S3Proxy exited before becoming ready"; break
    fi
    if ((SECONDS >= deadline)); then
      log "S3Proxy not ready after ${START_TIMEOUT}s"; break
    fi
    sleep 0.3
  done
  pid=$(cat "$dir/s3proxy.pid" 2>/dev/null || echo "$launcher")
  kill -KILL "$pid" 2>/dev/null || true
  wait "$launcher" 2>/dev/null || true
  rm -f "$dir/s3proxy.pid"
  return 1
}

# ---------------------------------------------------------------------------------------- start
cmd_start() {
  local dir="" port=""
  while [[ $# -gt 0 ]]; do
    case $1 in
      --dir) dir=${2:?--dir needs a value}; shift ;;
      --port) port=${2:?--port needs a value}; shift ;;
      *) die "start: unknown argument '$1'" ;;
    esac
    shift
  done
  [[ -n $dir ]] || die "start: --dir DIR is required"
  [[ -z $port || $port =~ ^[0-9]+$ ]] || die "start: --port must be a number"
  dir=$(abs_dir "$dir")
  if running_pid "$dir" >/dev/null; then
    die "S3Proxy is already running for $dir (pid $(cat "$dir/s3proxy.pid")); use stop or restart"
  fi
  cmd_fetch
  check_java

  local auto_port=0
  if [[ -z $port && -f $dir/port ]]; then
    port=$(cat "$dir/port")
    log "reusing $dir (port $port, objects in $dir/data)"
  fi
  # The filesystem backend keeps one folder per bucket under the base dir: creating the folder
  # before the start is how the bucket is made (no request, no credentials needed for it).
  mkdir -p "$dir/data/$BUCKET"

  for _ in 1 2 3; do
    if [[ -z $port ]]; then auto_port=1; port=$(free_port); fi
    write_config "$dir" "$port"
    echo "$port" >"$dir/port"
    log "starting S3Proxy $S3PROXY_VERSION on 127.0.0.1:$port, log $dir/s3proxy.log"
    local t0=$SECONDS
    if launch_and_wait "$dir" "$port"; then
      echo "http://127.0.0.1:$port" >"$dir/endpoint"
      log "S3Proxy ready in $((SECONDS - t0))s (pid $(cat "$dir/s3proxy.pid")), bucket $BUCKET"
      echo "http://127.0.0.1:$port"
      return 0
    fi
    # a port we picked ourselves may have been taken in the meantime: retry with another one
    if [[ $auto_port == 1 ]] && grep -qiE 'Address already in use|BindException' "$dir/s3proxy.log"; then
      log "port clash, retrying with another port"; port=""; continue
    fi
    break
  done
  log "---- last 40 lines of $dir/s3proxy.log ----"
  tail -n 40 "$dir/s3proxy.log" >&2 || true
  die "S3Proxy failed to start"
}

# ---------------------------------------------------------------------------------------- stop
cmd_stop() {
  parse_stop_args stop "$@"
  stop_daemon "$STOP_DIR" s3proxy.pid S3Proxy "$STOP_HARD"
}

cmd_restart() {
  parse_stop_args restart "$@"
  local dir=$STOP_DIR
  [[ -f $dir/port ]] || die "restart: $dir holds no S3Proxy (run start first)"
  stop_daemon "$dir" s3proxy.pid S3Proxy "$STOP_HARD"
  cmd_start --dir "$dir"
}

dir_arg() {   # CMD ARGS... -> prints the absolute DIR of --dir DIR
  local cmd=$1 dir=""; shift
  while [[ $# -gt 0 ]]; do
    case $1 in
      --dir) dir=${2:?--dir needs a value}; shift ;;
      *) die "$cmd: unknown argument '$1'" ;;
    esac
    shift
  done
  [[ -n $dir && -d $dir ]] || die "$cmd: --dir DIR is required and must exist"
  (cd "$dir" && pwd)
}

cmd_status() {
  local dir
  dir=$(dir_arg status "$@")
  if running_pid "$dir" >/dev/null; then cat "$dir/endpoint"; else log "not running"; return 1; fi
}

cmd_env() {
  local dir
  dir=$(dir_arg env "$@")
  [[ -f $dir/port && -f $dir/credentials ]] || die "env: $dir holds no S3Proxy (run start first)"
  local identity credential
  identity=$(sed -n 's/^identity=//p' "$dir/credentials")
  credential=$(sed -n 's/^credential=//p' "$dir/credentials")
  echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$dir/port") AWS_ACCESS_KEY_ID=$identity" \
    "AWS_SECRET_ACCESS_KEY=$credential AWS_DEFAULT_REGION=$REGION"
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
    env) cmd_env "$@" ;;
    help|-h|--help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
