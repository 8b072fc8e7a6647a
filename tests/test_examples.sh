#!/bin/sh
# Runs the net examples for real: drop --self-test 1000; echo driven by 100 concurrent clients
# that each check their echoed bytes; udp_echo driven by a datagram client. Servers bind port 0
# and the script reads the address they print first. Each server must stop cleanly on SIGTERM
# with its one-line summary.
set -u
b=${top_builddir:-.}
drop=$b/examples/mio-drop
echo_srv=$b/examples/mio-echo
udp_srv=$b/examples/mio-udp-echo
clients=$b/tests/echo_clients
tmp=$(mktemp -d) || exit 1
pids=
cleanup() {
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; exit 1; }

for p in "$drop" "$echo_srv" "$udp_srv"; do
    [ -x "$p" ] || fail "$p not built"
    "$p" --help > "$tmp/help" 2>&1 || fail "$p --help exited non-zero"
    grep -q usage "$tmp/help" || fail "$p --help prints no usage"
    if "$p" --no-such-option > /dev/null 2>&1; then fail "$p accepts a bad option"; fi
done

# Waits until the server wrote its first line (the bound address) and prints it.
bound_addr() {
    i=0
    while [ $i -lt 200 ]; do
        line=$(head -n 1 "$1" 2>/dev/null)
        case "$line" in *:[0-9]*) echo "$line"; return 0 ;; esac
        sleep 0.1; i=$((i + 1))
    done
    return 1
}

# Stops a server with SIGTERM and checks a clean exit with its summary line.
stop_server() {
    kill -TERM "$1" || fail "server $1 already gone"
    wait "$1"; rc=$?
    [ $rc -eq 0 ] || fail "server $1 exited $rc after SIGTERM"
    grep -q "stopped by signal 15" "$2" || fail "no summary line from server $1"
}

# 1. drop: the seed program's own self test
"$drop" --listen 127.0.0.1:0 --self-test 1000 > "$tmp/drop.out" 2> "$tmp/drop.err" \
    || fail "drop --self-test 1000"
grep -q "self-test ok: accepted 1000" "$tmp/drop.out" || fail "drop summary"
echo "ok: drop --self-test 1000"

# drop as a server, stopped by SIGINT
"$drop" --listen 127.0.0.1:0 > "$tmp/drop2.out" 2>&1 &
dpid=$!; pids="$pids $dpid"
bound_addr "$tmp/drop2.out" > /dev/null || fail "drop printed no address"
kill -INT "$dpid"; wait "$dpid" || fail "drop did not exit 0 on SIGINT"
grep -q "stopped by signal 2" "$tmp/drop2.out" || fail "drop SIGINT summary"
echo "ok: drop stops on SIGINT"

# 2. echo with 100 concurrent clients, 256 KiB each (more than socket buffers hold)
"$echo_srv" --listen 127.0.0.1:0 > "$tmp/echo.out" 2> "$tmp/echo.err" &
epid=$!; pids="$pids $epid"
addr=$(bound_addr "$tmp/echo.out") || fail "echo printed no address"
"$clients" tcp "$addr" 100 262144 > "$tmp/clients.out" 2>&1 || fail "echo clients"
"$clients" tcp "$addr" 3 0 >> "$tmp/clients.out" 2>&1 || fail "echo clients (empty)"
stop_server "$epid" "$tmp/echo.out"
grep -q "103 connections accepted, 103 closed, 26214400 bytes" "$tmp/echo.out" \
    || fail "echo summary counts"
echo "ok: echo with 100 clients"

# 3. udp echo
"$udp_srv" --listen 127.0.0.1:0 > "$tmp/udp.out" 2> "$tmp/udp.err" &
upid=$!; pids="$pids $upid"
addr=$(bound_addr "$tmp/udp.out") || fail "udp echo printed no address"
"$clients" udp "$addr" 2000 > "$tmp/udpclients.out" 2>&1 || fail "udp clients"
stop_server "$upid" "$tmp/udp.out"
echo "ok: udp echo"
exit 0
