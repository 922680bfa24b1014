#!/usr/bin/env bash
# A sandbox for the CLI: moto server (AWS) and the Cloudflare simulator on 127.0.0.1, with
# a tagged service demo/web, running in the background.
#
#   scripts/sandbox.sh start     # builds, starts, prints the environment (also in .sandbox/env)
#   source .sandbox/env          # AWS_ENDPOINT_URL, AWS_REGION, dummy keys, CLOUDFLARE_*
#   target/debug/ecs-tunnels plan --cluster demo --service web
#   scripts/sandbox.sh stop
#
# SANDBOX_DIR (default .sandbox) holds the env file, the pid and the log; --no-build uses
# the binaries already in target/debug.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${SANDBOX_DIR:-.sandbox}"
cmd="${1:-start}"
stop() {
  if [ -f "$dir/pid" ]; then
    kill "$(cat "$dir/pid")" 2>/dev/null || true
    rm -f "$dir/pid"
  fi
}
case "$cmd" in
  start)
    stop
    scripts/setup-python.sh
    if [ "${2:-}" != "--no-build" ]; then
      echo "building ecs-tunnels and the sandbox (first build on a fresh clone: about 3-4 minutes)..." >&2
      cargo build --workspace --bins
    fi
    mkdir -p "$dir"
    rm -f "$dir/env"
    nohup target/debug/sandbox --env-file "$dir/env" >"$dir/log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 1 600); do
      [ -f "$dir/env" ] && break
      if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        echo "the sandbox stopped while starting:" >&2
        cat "$dir/log" >&2
        exit 1
      fi
      sleep 0.1
    done
    [ -f "$dir/env" ] || { echo "the sandbox did not start within 60 s:" >&2; cat "$dir/log" >&2; exit 1; }
    cat "$dir/env"
    echo "# ready. Next: source $dir/env && target/debug/ecs-tunnels plan --cluster demo --service web" >&2
    ;;
  stop)
    stop
    rm -f "$dir/env"
    ;;
  *)
    echo "usage: scripts/sandbox.sh start [--no-build] | stop" >&2
    exit 2
    ;;
esac
