#!/usr/bin/env bash
# The command-line examples of docs/testing-your-proxy.md, run by
# make examples. "myproxy" is execconform's reference proxy run as an
# external command (execconform proxy); put your proxy's command instead.
set -Eeuo pipefail
# Whatever stops the script says where: the line, the command, its status.
trap 'echo "${BASH_SOURCE[0]}: ERROR: line $LINENO: \`$BASH_COMMAND\` exited with status $?" >&2' ERR
cd "$(dirname "$0")/../.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/execconform" ./cmd/execconform
export PATH="$bin:$PATH"
report=${REPORT_DIR:-$bin/report}

echo "== 1. any proxy, one process per case (--proxy-cmd): the whole matrix"
execconform run \
  --proxy-cmd 'execconform proxy --listen {{.Listen}} --backend {{.Backend}} --ca-file {{.CAFile}} --token {{.Token}} --ping-interval 1s --pong-timeout 2s' \
  --keepalive 3s \
  --out "$report/proxy-cmd"

echo "== 2. a proxy that is already running (--target-url)"
# Make the fake API server's CA once (kept in ./backend-ca, reused by every run).
cadir="$bin/backend-ca"
timeout 2 execconform fakeapiserver --listen 127.0.0.1:0 --cert-dir "$cadir" >/dev/null 2>&1 || true
test -s "$cadir/ca.crt" -a -s "$cadir/ca.key"
execconform proxy --listen 127.0.0.1:18080 --path-prefix /api/kubernetes \
  --backend https://127.0.0.1:19443 --ca-file "$cadir/ca.crt" --token example-token \
  --ping-interval 1s --pong-timeout 2s >"$bin/proxy.log" 2>&1 &
proxy=$!
trap 'kill $proxy 2>/dev/null; wait $proxy 2>/dev/null; rm -rf "$bin"' EXIT
# Wait (10 s at most) until it listens.
for _ in $(seq 100); do
  kill -0 $proxy 2>/dev/null || { echo "the proxy exited:"; cat "$bin/proxy.log"; exit 1; }
  (exec 3<>/dev/tcp/127.0.0.1/18080) 2>/dev/null && break
  sleep 0.1
done
execconform run \
  --target-url http://127.0.0.1:18080/api/kubernetes \
  --backend-listen 127.0.0.1:19443 --backend-token example-token --backend-cert-dir "$cadir" \
  --keepalive 3s --run '/disconnect/' \
  --out "$report/target-url"
echo "examples: ok"
