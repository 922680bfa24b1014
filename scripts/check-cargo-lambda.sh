#!/usr/bin/env bash
# Every sample in events/ through cargo-lambda's own emulator: `cargo lambda watch` plus
# `cargo lambda invoke --data-file`, against moto server and the Cloudflare simulator on
# 127.0.0.1 (details and the verdict rules: scripts/check-cargo-lambda.py). Prints a table;
# exits non-zero if any sample is not accepted. Offline once the tools are installed.
#
#   scripts/check-cargo-lambda.sh                  # the deployable: the bootstrap in
#                                                  # target/lambda/ecs-tunnels/bootstrap.zip
#                                                  # (else a debug build of ecs-tunnels)
#   scripts/check-cargo-lambda.sh --binary PATH [--runner 'chroot DIR']
#   scripts/check-cargo-lambda.sh --watch-runs-function   # plain `cargo lambda watch` (cargo run)
#   scripts/check-cargo-lambda.sh --no-deadline-fix       # see the emulator's 1970 deadline
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
if ! .venv/bin/cargo-lambda lambda --version >/dev/null 2>&1; then
  # watch and invoke need no Zig: skip the ziglang wheel (100 MB; `cargo lambda build` needs it).
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps 'cargo-lambda>=1.9.2,<2'
fi
export PATH="$PWD/.venv/bin:$PATH"
target_dir=$(cargo metadata --no-deps --format-version 1 --locked | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
# The workspace's binaries as scripts/test.sh's `cargo test --workspace` builds them (same
# features), so after the test suite this is a no-op: the simulator, and the debug
# ecs-tunnels used when there is no cargo-lambda build.
cargo build --quiet --locked --workspace --bins
args=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ " $* " != *" --binary "* ]]; then
  if [[ " $* " == *" --watch-runs-function "* ]]; then
    args+=(--binary unused)
    cargo build --quiet --locked -p ecs-tunnels --bin ecs-tunnels   # what watch's `cargo run` runs
  elif [ -f "$target_dir/lambda/ecs-tunnels/bootstrap.zip" ]; then
    # The deployable itself: the bootstrap inside the zip `sam deploy` would upload.
    .venv/bin/python -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("bootstrap", sys.argv[2])' \
      "$target_dir/lambda/ecs-tunnels/bootstrap.zip" "$work"
    chmod +x "$work/bootstrap"
    echo "function: bootstrap from $target_dir/lambda/ecs-tunnels/bootstrap.zip"
    args+=(--binary "$work/bootstrap")
  elif [ -x "$target_dir/lambda/ecs-tunnels/bootstrap" ]; then
    echo "function: $target_dir/lambda/ecs-tunnels/bootstrap"
    args+=(--binary "$target_dir/lambda/ecs-tunnels/bootstrap")
  else
    echo "function: $target_dir/debug/ecs-tunnels (no cargo-lambda build found)"
    args+=(--binary "$target_dir/debug/ecs-tunnels")
  fi
fi
.venv/bin/python scripts/check-cargo-lambda.py --sim "$target_dir/debug/cloudflare-sim" "${args[@]}"
