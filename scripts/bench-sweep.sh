#!/usr/bin/env bash
# Sweep benchmark (issue: the sweep within Cloudflare's API budget): seeds N services
# (default 1,000) into moto + the Cloudflare simulator and runs the release binary's
# sweep three times. Usage: scripts/bench-sweep.sh [--services N] [--clusters C] [--json]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
cargo build --quiet --release --bin ecs-tunnels -p ecs-tunnels
cargo run --quiet --release -p devtools --bin bench-sweep -- --binary target/release/ecs-tunnels "$@"
