#!/usr/bin/env bash
# `sam validate --lint` on every template in infra/ (AWS SAM CLI from PyPI, in its own
# ./.venv-sam: it pins boto3 exactly, which would fight moto's in ./.venv). Offline: no
# AWS credentials, a dummy region, telemetry off. cfn-lint misses errors inside
# AWS::Serverless::* resources (runtime, architectures, schedule expressions); so does
# `sam validate --lint`. scripts/lint-template.py lints the expanded template for those.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv-sam/bin/sam --version >/dev/null 2>&1; then
  python3 -m venv .venv-sam
  .venv-sam/bin/pip install --quiet --disable-pip-version-check 'aws-sam-cli>=1.170,<2'
fi
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
  AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
status=0
out=$(mktemp)
while IFS= read -r template; do
  if .venv-sam/bin/sam validate --lint --template "$template" >"$out" 2>&1; then
    echo "sam validate --lint $template: ok"
  else
    echo "sam validate --lint $template: FAILED"; cat "$out"; status=1
  fi
done < <(find infra -name '*.yaml' | sort)
rm -f "$out"
exit $status
