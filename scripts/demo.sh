#!/usr/bin/env bash
# The offline demo: builds ecs-tunnels, then runs it as a Lambda function against moto
# server and the Cloudflare simulator on 127.0.0.1 (see devtools/src/bin/demo.rs).
# The first run on a fresh clone installs moto into .venv (about a minute) and builds
# (about 3-4 minutes on 2 cores); later runs start in seconds. The build is the one the
# test command uses (same workspace features), so running the tests afterwards does not
# rebuild the dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -x .venv/bin/python ]; then
  echo "== installing moto, cfn-lint and aws-sam-translator into .venv (first run only)" >&2
fi
scripts/setup-python.sh
echo "== building ecs-tunnels and the demo (cargo build --workspace --bins)" >&2
cargo build --workspace --bins
exec target/debug/demo --binary target/debug/ecs-tunnels "$@"
