#!/usr/bin/env bash
# The offline demo: builds ecs-tunnels, then runs it as a Lambda function against moto
# server and the Cloudflare simulator on 127.0.0.1 (see devtools/src/bin/demo.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
cargo build --quiet --bin ecs-tunnels -p ecs-tunnels
cargo run --quiet -p devtools --bin demo -- --binary target/debug/ecs-tunnels "$@"
