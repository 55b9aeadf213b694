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
# myproxy's own credential, which a browser sends as a cookie: the suite
# sends it too (--cookie), and its front-door cases check that the proxy
# refuses requests without it.
front="$bin/front-token"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$front"
cookie="execconform_front=$(cat "$front")"

echo "== 1. any proxy, one process per case (--proxy-cmd): the whole matrix"
execconform run \
  --proxy-cmd "execconform proxy --listen {{.Listen}} --backend {{.Backend}} --ca-file {{.CAFile}} --token-file {{.TokenFile}} --front-token-file '$front' --ping-interval 1s --pong-timeout 2s" \
  --cookie "$cookie" \
  --keepalive 3s \
  --out "$report/proxy-cmd"

echo "== 2. a translating terminal: its front's dialect in a file (--dialect)"
# myterminal is execconform's translating reference proxy serving that
# dialect (client-go's executor to the API server); put your terminal's
# command instead, pointed at {{.Backend}} with {{.CAFile}} and {{.TokenFile}}.
# (The command runs in a directory of its own: the file by its full path.)
dialect_file="$PWD/docs/examples/dialect.yaml"
execconform run --dialect "$dialect_file" \
  --proxy-cmd "execconform proxy --dialect '$dialect_file' --listen {{.Listen}} --backend {{.Backend}} --ca-file {{.CAFile}} --token-file {{.TokenFile}} --front-token-file '$front' --ping-interval 1s --pong-timeout 2s" \
  --cookie "$cookie" \
  --keepalive 3s \
  --out "$report/dialect"

echo "== 3. a proxy that is already running (--target-url)"
# Make the fake API server's CA once (kept in ./backend-ca, reused by every run).
cadir="$bin/backend-ca"
timeout 2 execconform fakeapiserver --listen 127.0.0.1:0 --cert-dir "$cadir" >/dev/null 2>&1 || true
test -s "$cadir/ca.crt" -a -s "$cadir/ca.key"
# The proxy listens on a port the kernel picks (it prints url=...); the
# fake API server, which run starts, on a free port picked here. Nothing
# else may answer for either: the proxy's address is its own, and a run
# whose backend port another program took fails to bind (then it is tried
# again on another port), never talks to that program.
proxy=
trap 'stop_proxy; rm -rf "$bin"' EXIT
stop_proxy() {
  [[ -z $proxy ]] || { kill "$proxy" 2>/dev/null; wait "$proxy" 2>/dev/null || true; }
  proxy=
}
free_port() {
  local p
  for _ in $(seq 50); do
    p=$(shuf -i 20000-60999 -n 1)
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  echo "no free port found" >&2
  return 1
}
done_run=
for _ in 1 2 3; do
  backend_port=$(free_port)
  execconform proxy --listen 127.0.0.1:0 --path-prefix /api/kubernetes \
    --backend "https://127.0.0.1:$backend_port" --ca-file "$cadir/ca.crt" --token example-token \
    --front-token-file "$front" \
    --ping-interval 1s --pong-timeout 2s >"$bin/proxy.out" 2>"$bin/proxy.log" &
  proxy=$!
  # Wait (10 s at most) for the address it listens on.
  url=
  for _ in $(seq 100); do
    kill -0 "$proxy" 2>/dev/null || { echo "the proxy exited:"; cat "$bin/proxy.log"; exit 1; }
    url=$(sed -n 's/^url=//p' "$bin/proxy.out")
    [[ -z $url ]] || break
    sleep 0.1
  done
  [[ -n $url ]] || { echo "the proxy printed no url= line in 10 s:"; cat "$bin/proxy.log"; exit 1; }
  rc=0
  execconform run \
    --target-url "$url" --cookie "$cookie" \
    --backend-listen "127.0.0.1:$backend_port" --backend-token example-token --backend-cert-dir "$cadir" \
    --keepalive 3s --run '/disconnect/' \
    --out "$report/target-url" 2>&1 | tee "$bin/run.log" || rc=$?
  stop_proxy
  if ((rc != 0)) && grep -q 'address already in use' "$bin/run.log"; then
    echo "(port $backend_port was taken meanwhile; again on another)"
    continue
  fi
  ((rc == 0)) || exit "$rc"
  done_run=1
  break
done
[[ -n $done_run ]] || { echo "no free backend port in 3 tries"; exit 1; }
echo "examples: ok"
