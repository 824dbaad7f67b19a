#!/usr/bin/env bash
# Builds registrar exactly as the Dockerfile's build stage does (static, CGO_ENABLED=0)
# and checks that the result is a static executable that starts the way the ECS task
# runs it: `serve` with a self-signed TLS certificate, a data directory of its own and
# nothing else writable, answering /healthz over HTTPS. CI runs this because it cannot
# run Docker; infra's tests check that the Dockerfile uses the same build command.
#
#   infra/check-binary.sh [OUTPUT]      (default output: a temporary file)
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
out=${1:-$work/registrar}
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# BUILD (kept identical to the Dockerfile's go build line)
CGO_ENABLED=0 go build -trimpath -buildvcs=false -tags timetzdata -ldflags "-s -w -X main.version=check" -o "$out" ./cmd/registrar

if command -v file >/dev/null && ! file "$out" | grep -q "statically linked"; then
  echo "check-binary: $out is not statically linked: $(file "$out")" >&2
  exit 1
fi
if command -v ldd >/dev/null && ldd "$out" >/dev/null 2>&1; then
  echo "check-binary: $out has dynamic dependencies:" >&2
  ldd "$out" >&2
  exit 1
fi

mkdir -p "$work/data" "$work/documents"
# As in the task: TLS with a self-signed certificate, its own data and documents
# directories, and an empty environment otherwise (no HOME to write to). Port 0: the
# server takes a free port and prints the address it listens on.
env -i PATH=/usr/bin:/bin HOME=/nonexistent \
  REGISTRAR_DATA="$work/data" REGISTRAR_DOCUMENTS_DIR="$work/documents" \
  REGISTRAR_ADDR="127.0.0.1:0" REGISTRAR_TLS_SELF_SIGNED=true \
  "$out" serve >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  base=$(sed -n 's|.*listening on \(https://127\.0\.0\.1:[0-9]*\).*|\1|p' "$work/log" | head -1)
  if [[ -n "$base" ]] && curl -fsk --max-time 2 "$base/healthz" >/dev/null 2>&1 && kill -0 "$pid" 2>/dev/null; then
    echo "check-binary: static binary serves /healthz over TLS on ${base#https://}"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null || true
    pid=""
    echo "check-binary: registrar exited:" >&2
    cat "$work/log" >&2
    exit 1
  fi
  sleep 0.2
done
echo "check-binary: no answer on /healthz within 20 s:" >&2
cat "$work/log" >&2
exit 1
