#!/usr/bin/env bash
# Storm benchmark (issue 11: one Cloudflare API budget for the whole install): N services
# (default 300) tagged at once, then their task events, through the event door as the
# template wires it, against the simulator's rate limit (default 200 requests per 10 s,
# Cloudflare's pace 5 times faster). Prints the time to converge, Cloudflare calls, 429s
# and services exposed.
# Usage: scripts/bench-storm.sh [--services N] [--limit N --window SECONDS] [--no-budget] [--json]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
cargo build --quiet --release --bin ecs-tunnels -p ecs-tunnels
cargo run --quiet --release -p devtools --bin bench-storm -- --binary target/release/ecs-tunnels "$@"
