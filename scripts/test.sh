#!/usr/bin/env bash
# The project's test command (README, .ci/run): formatting, lints, then every test —
# unit tests, the Cloudflare simulator's own tests, the harness tests, and the end-to-end
# tests that drive the built binary through the Lambda Runtime API against moto server
# and the simulator on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
AWS_DEFAULT_REGION=us-east-1 .venv/bin/python scripts/lint-template.py
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
