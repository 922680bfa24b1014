#!/usr/bin/env bash
# Lambda numbers: release binary size and zipped size, cold start next to Python + boto3,
# peak RSS handling a create, and an untagged service's event cost.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
.venv/bin/python -c 'import boto3' 2>/dev/null || .venv/bin/pip install --quiet boto3
cargo build --quiet --release --bin ecs-tunnels -p ecs-tunnels
bin=target/release/ecs-tunnels
size=$(stat -c %s "$bin")
zipped=$(.venv/bin/python -c "import io,zipfile,sys; b=io.BytesIO(); z=zipfile.ZipFile(b,'w',zipfile.ZIP_DEFLATED); z.write(sys.argv[1],'bootstrap'); z.close(); print(len(b.getvalue()))" "$bin")
echo "binary: $((size / 1024)) KiB; bootstrap.zip: $((zipped / 1024)) KiB"
cargo run --quiet --release -p devtools --bin bench-lambda -- --binary "$bin" "$@"
