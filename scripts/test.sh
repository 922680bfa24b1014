#!/usr/bin/env bash
# The project's test command (README, .ci/run): the templates (cfn-lint as written and
# expanded, `sam validate --lint`, a CloudFormation smoke test on moto), formatting,
# lints, then every test — unit tests, the Cloudflare simulator's own tests, the harness
# tests, and the end-to-end tests that drive the built binary through the Lambda Runtime
# API against moto server and the simulator on 127.0.0.1, with every AWS call judged
# against the template's IAM policies and every Cloudflare request against Cloudflare's
# OpenAPI document — and finally every sample event through cargo-lambda's own emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
AWS_DEFAULT_REGION=us-east-1 .venv/bin/python scripts/lint-template.py
scripts/validate-sam.sh                               # sam validate --lint, offline
.venv/bin/python scripts/smoke-cloudformation.py      # the expanded template on moto's CloudFormation
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
rm -f target/tmp/iam-unjudged.log
cargo test --workspace --locked
if [ -s target/tmp/iam-unjudged.log ]; then
  echo "What the IAM evaluator could not judge in this run (one line each):"
  sed -E 's#ecs-tunnels/[^/ ]+/[^/ ]+/token#ecs-tunnels/<cluster>/<service>/token#g' target/tmp/iam-unjudged.log | sort -u | sed 's/^/  /'
fi
scripts/check-cargo-lambda.sh                         # every sample event through cargo-lambda's emulator
