#!/usr/bin/env bash
# Installs the Python tools the tests and the demo use into ./.venv (once):
# moto server, which stands in for AWS on 127.0.0.1, and cfn-lint with the SAM
# translator, which lint the templates in infra/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import moto.server, cfnlint, samtranslator' 2>/dev/null; then
  exit 0
fi
echo "installing moto server, cfn-lint and aws-sam-translator into .venv (once; about a minute)..." >&2
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5.2,<5.3' 'cfn-lint>=1.58,<2' 'aws-sam-translator>=1.115,<2'
