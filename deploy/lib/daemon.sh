# Process handling shared by deploy/kafka/kafka.sh and deploy/s3/s3.sh (sourced, not run):
# each script starts one long-lived Java server per --dir, records its pid in a file there, and
# stops it with SIGTERM, then SIGKILL after $STOP_TIMEOUT seconds. The sourcing script defines
# log, STOP_TIMEOUT and running_pid DIR (its pid file and command-line marker, via daemon_pid).

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

# True while PID exists and is not a zombie (a zombie would keep `kill -0` succeeding forever
# where nothing reaps it, e.g. a container without an init process).
is_alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [[ $state != Z ]]
}

# daemon_pid DIR PIDFILE MARKER: prints the pid if DIR/PIDFILE names a live process whose
# command line contains MARKER (a guard against a recycled pid).
daemon_pid() {
  local dir=$1 pidfile=$2 marker=$3 pid
  [[ -f $dir/$pidfile ]] || return 1
  pid=$(cat "$dir/$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  is_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" || return 1
  echo "$pid"
}

# parse_stop_args CMD ARGS...: sets STOP_DIR (absolute, or empty if it does not exist) and
# STOP_HARD (1 with --kill) from `CMD --dir DIR [--kill]`.
parse_stop_args() {
  local cmd=$1
  shift
  STOP_DIR="" STOP_HARD=0
  while [[ $# -gt 0 ]]; do
    case $1 in
      --dir) STOP_DIR=${2:?--dir needs a value}; shift ;;
      --kill) STOP_HARD=1 ;;
      *) die "$cmd: unknown argument '$1'" ;;
    esac
    shift
  done
  [[ -n $STOP_DIR ]] || die "$cmd: --dir DIR is required"
  if [[ -d $STOP_DIR ]]; then STOP_DIR=$(cd "$STOP_DIR" && pwd); fi
}

# stop_daemon DIR PIDFILE LABEL HARD: SIGTERM (or with HARD=1 SIGKILL at once, an unclean
# shutdown) the server running for DIR, wait until it is gone, remove its pid file.
stop_daemon() {
  local dir=$1 pidfile=$2 label=$3 hard=$4 pid
  [[ -d $dir ]] || { log "no such dir $dir; nothing to stop"; return 0; }
  if ! pid=$(running_pid "$dir"); then
    rm -f "$dir/$pidfile"
    log "no $label running for $dir"
    return 0
  fi
  if [[ $hard == 1 ]]; then
    log "killing $label pid $pid (SIGKILL, unclean shutdown)"
  else
    log "stopping $label pid $pid (SIGTERM)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while is_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    is_alive "$pid" && log "still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
  fi
  if is_alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    while is_alive "$pid"; do sleep 0.1; done
  fi
  rm -f "$dir/$pidfile"
  log "stopped"
}
