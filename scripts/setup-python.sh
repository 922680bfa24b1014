#!/usr/bin/env bash
# Installs the tools the tests and the demo use (once): into ./.venv, moto server, which
# stands in for AWS on 127.0.0.1, and cfn-lint with the SAM translator, which lint the
# templates in infra/ and expand them for the IAM checks; into devtools/iam/node_modules
# (npm ci, from the committed package-lock.json), the IAM policy simulator
# @cloud-copilot/iam-simulate that devtools' IamAuthorizer runs under Node.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! { [ -x .venv/bin/python ] && .venv/bin/python -c 'import moto.server, cfnlint, samtranslator' 2>/dev/null; }; then
  echo "installing moto server, cfn-lint and aws-sam-translator into .venv (once; about a minute)..." >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5.2,<5.3' 'cfn-lint>=1.58,<2' 'aws-sam-translator>=1.115,<2'
fi
# npm ci again only when the lock file changed since the last install.
stamp=devtools/iam/node_modules/.installed-package-lock.json
if ! cmp -s devtools/iam/package-lock.json "$stamp" 2>/dev/null; then
  command -v npm >/dev/null || { echo "npm (Node.js 18+) is needed for devtools/iam: apt-get install nodejs npm" >&2; exit 1; }
  echo "installing the IAM policy simulator into devtools/iam (npm ci, once)..." >&2
  npm ci --prefix devtools/iam --no-audit --no-fund --loglevel=error
  cp devtools/iam/package-lock.json "$stamp"
fi
