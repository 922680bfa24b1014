#!/usr/bin/env bash
# What one service costs (issue 11, "lean reconcile"): Cloudflare calls and writes of a
# create (warm process), the cold start's extra calls, the dependent round trips of a
# create (50 ms on every Cloudflare call), the converged events (task, tag, CloudTrail
# UpdateService), a teardown, each in an empty and in a crowded account (1,000 unrelated
# Access apps, 1,000 policies, 50 zones, 5,000 DNS records); then the sweep rows (adopting
# --services tagged services, default 1,000; a converged sweep with 50 ms on every AWS
# call). Prints one Markdown table, then what each number is made of.
# Usage: scripts/bench-calls.sh [--services N (0: no sweep rows)] [--page-cap 20] [...]
# (see --help)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
cargo build --quiet --release --bin ecs-tunnels -p ecs-tunnels
cargo run --quiet --release -p devtools --bin bench-calls -- --binary target/release/ecs-tunnels "$@"
