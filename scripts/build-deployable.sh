#!/usr/bin/env bash
# Builds the deployable the way users build it: cargo-lambda (from PyPI, with Zig) writes
# target/lambda/ecs-tunnels/bootstrap.zip, the zip `sam deploy` uploads (`sam build`
# runs the same cargo-lambda build). Prints the zip and binary sizes and the glibc floor
# (the newest GLIBC_x.y symbol version the binary needs; provided.al2023 has 2.34). The
# glibc target is pinned in Cargo.toml ([package.metadata.lambda.build]).
#
#   scripts/build-deployable.sh                 # build, sizes, floor
#   scripts/build-deployable.sh --check-floor   # also run it under Debian 11's glibc 2.31
#                                               # (needs root and debootstrap; ~2 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
if ! .venv/bin/python -c 'import ziglang' 2>/dev/null || ! .venv/bin/cargo-lambda lambda --version >/dev/null 2>&1; then
  echo "installing cargo-lambda and Zig into .venv (pip install cargo-lambda)..." >&2
  .venv/bin/pip install --quiet --disable-pip-version-check 'cargo-lambda>=1.9.2,<2'
fi
export PATH="$PWD/.venv/bin:$PATH"
start=$(date +%s)
cargo lambda build --release --bin ecs-tunnels --output-format zip
echo "build: $(( $(date +%s) - start )) s"
zip=target/lambda/ecs-tunnels/bootstrap.zip
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("bootstrap", sys.argv[2])' "$zip" "$work"
chmod +x "$work/bootstrap"
floor=$(objdump -T "$work/bootstrap" | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -1)
echo "bootstrap.zip: $(stat -c %s "$zip") bytes; bootstrap: $(stat -c %s "$work/bootstrap") bytes; glibc floor: ${floor#GLIBC_}"
if [ "${1:-}" = "--check-floor" ]; then
  root=${FLOOR_ROOT:-/tmp/ecs-tunnels-bullseye}
  if [ ! -x "$root/bin/sh" ]; then
    command -v debootstrap >/dev/null || apt-get install -y debootstrap
    debootstrap --variant=minbase bullseye "$root" http://deb.debian.org/debian
    chroot "$root" apt-get install -y --no-install-recommends ca-certificates
  fi
  cp "$work/bootstrap" "$root/bootstrap"
  echo "glibc in the chroot: $(chroot "$root" ldd --version | head -1)"
  chroot "$root" /bootstrap --version
  chroot "$root" /bootstrap --help >/dev/null && echo "runs under Debian 11's glibc: ok"
fi
