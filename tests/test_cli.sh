#!/bin/sh
# Command lines and fd exhaustion of the example programs and bench/mio-load.
#
# 1. Every option that takes a number or an address refuses a malformed one (empty, leading blank,
#    sign, trailing garbage, overflow, out of the option's range) with exit status 2 and one line on
#    stderr naming the option and the value; valid values are accepted (servers bind 127.0.0.1:0,
#    print their address first and stop on SIGTERM).
# 2. mio-echo under `ulimit -n 64` serves 150 clients that connect at once: accepting resumes when
#    fds free up, with no new connection arriving afterwards, and accept failures are reported a
#    few lines in all, not one per failure.
# 3. mio-drop whose fd limit is lowered (prlimit) to what it already uses while clients arrive in
#    waves: it complains a few lines only, and once the limit is raised again it accepts the
#    waiting clients on its own.
set -u
b=${top_builddir:-.}
drop=$b/examples/mio-drop
echo_srv=$b/examples/mio-echo
udp_srv=$b/examples/mio-udp-echo
echo_thr=$b/examples/mio-echo-threaded
drop_thr=$b/examples/mio-drop-threaded
load=$b/bench/mio-load
clients=$b/tests/echo_clients
tmp=$(mktemp -d) || exit 1
pids=
failures=0
cleanup() {
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; exit 1; }
bad() { echo "FAIL: $*"; failures=$((failures + 1)); }

for p in "$drop" "$echo_srv" "$udp_srv" "$echo_thr" "$drop_thr" "$load" "$clients"; do
    [ -x "$p" ] || fail "$p not built"
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

# Stops server $1 with SIGTERM; it must exit 0 and its stdout ($2) must contain $3.
stop_server() {
    kill -TERM "$1" || fail "server $1 already gone"
    wait "$1"; rc=$?
    [ $rc -eq 0 ] || fail "server $1 exited $rc after SIGTERM"
    grep -q "$3" "$2" || fail "server $1: no '$3' in its output"
}

# reject OPT VALUE CMD...: CMD must exit 2 without serving, with one stderr line naming OPT and
# 'VALUE'. The bound only catches a program that starts serving instead; it is generous because
# a libtool wrapper on a loaded 2-core machine can take seconds to start.
reject() {
    o=$1; v=$2; shift 2
    timeout 15 "$@" < /dev/null > "$tmp/rej.out" 2> "$tmp/rej.err"; rc=$?
    what="$(basename "$1") $o '$v'"
    if [ $rc -ne 2 ]; then
        bad "$what: exit status $rc, want 2"
    elif [ "$(wc -l < "$tmp/rej.err")" -ne 1 ]; then
        bad "$what: stderr is not one line: $(cat "$tmp/rej.err")"
    elif ! grep -qF -- "$o" "$tmp/rej.err" || ! grep -qF -- "'$v'" "$tmp/rej.err"; then
        bad "$what: message does not name the option and value: $(cat "$tmp/rej.err")"
    fi
}

# reject_ints OPT "OUT-OF-RANGE..." CMD...: the malformed integers any option refuses, then the
# values outside this option's range.
reject_ints() {
    o=$1; extra=$2; shift 2
    reject "$o" '' "$@" "$o" ''
    reject "$o" ' 1' "$@" "$o" ' 1'
    for v in abc 2x -1 +1 0x10 1.5 18446744073709551616 99999999999999999999999 $extra; do
        reject "$o" "$v" "$@" "$o" "$v"
    done
}

# reject_secs OPT CMD...: the same for an option taking seconds (a decimal fraction).
reject_secs() {
    o=$1; shift
    reject "$o" '' "$@" "$o" ''
    reject "$o" ' 1' "$@" "$o" ' 1'
    for v in abc 2x -1 +1 nan inf 1e999 1e7 4294967297 0.5s; do
        reject "$o" "$v" "$@" "$o" "$v"
    done
}

# reject_addrs OPT CMD...: malformed addresses.
reject_addrs() {
    o=$1; shift
    for v in '' abc 127.0.0.1 127.0.0.1: 127.0.0.1:abc 127.0.0.1:2x 127.0.0.1:-1 127.0.0.1:+1 \
        127.0.0.1:65536 127.0.0.1:4294967297 256.0.0.1:80 '127.0.0.1: 80'; do
        reject "$o" "$v" "$@" "$o" "$v"
    done
}

# 1. Numbers and addresses on the command line.
L='--listen 127.0.0.1:0'
for p in "$drop" "$echo_srv" "$udp_srv" "$echo_thr" "$drop_thr"; do
    reject_addrs --listen "$p"
done
reject_ints --self-test "0 10000001 4294967297" "$drop" $L
reject_ints --workers "4097 4294967297" "$echo_thr" $L
reject_ints --workers "4097 4294967297" "$drop_thr" $L
for p in "$echo_thr" "$drop_thr"; do
    for v in '' kqueue EPOLL 'uring '; do reject --backend "$v" "$p" $L --backend "$v"; done
done
T='--target 127.0.0.1:1'
reject_addrs --target "$load"
reject_ints --threads "0 257 4294967297" "$load" $T
reject_ints --conns "0 1000001 4294967297" "$load" $T
reject_ints --size "0 16777217 4294967297" "$load" $T
reject_ints --window "0 67108865 4294967297" "$load" $T
reject_ints --count "" "$load" $T
reject_ints --interval-us "10000001 4294967297" "$load" $T
reject_ints --sources "255 4294967297" "$load" $T
reject_ints --max-connecting "0 100001 4294967297" "$load" $T
reject_secs --duration "$load" $T
reject_secs --drain "$load" $T
[ $failures -eq 0 ] || fail "$failures malformed command-line values were not refused as they should be"
echo "ok: malformed numbers and addresses refused with exit 2 and a one-line message"

timeout 30 "$drop" $L --self-test 5 > "$tmp/drop.out" 2>&1 || fail "drop --self-test 5"
grep -q "self-test ok: accepted 5" "$tmp/drop.out" || fail "drop --self-test 5 summary"
for w in 0 2; do
    for p in "$echo_thr" "$drop_thr"; do
        # Emptied here, not by the child's redirection: that runs after the fork, so bound_addr
        # could still read the last run's address and signal a server not yet set up.
        : > "$tmp/thr.out"
        "$p" $L --workers $w > "$tmp/thr.out" 2>&1 &
        tpid=$!; pids="$pids $tpid"
        bound_addr "$tmp/thr.out" > /dev/null || fail "$p --workers $w printed no address"
        stop_server "$tpid" "$tmp/thr.out" "stopped: workers="
    done
done
grep -q "stopped: workers=2 " "$tmp/thr.out" || fail "--workers 2 did not give 2 workers"
# --backend epoll and auto always run (auto falls back to epoll where io_uring cannot).
for be in epoll auto; do
    : > "$tmp/thr.out"
    "$echo_thr" $L --workers 1 --backend $be > "$tmp/thr.out" 2>&1 &
    tpid=$!; pids="$pids $tpid"
    bound_addr "$tmp/thr.out" > /dev/null || fail "--backend $be printed no address"
    stop_server "$tpid" "$tmp/thr.out" "stopped: workers="
done
"$udp_srv" $L > "$tmp/udp.out" 2>&1 &
upid=$!; pids="$pids $upid"
bound_addr "$tmp/udp.out" > /dev/null || fail "udp echo printed no address"
stop_server "$upid" "$tmp/udp.out" "stopped by signal 15"
"$echo_srv" $L > "$tmp/echo.out" 2>&1 &
epid=$!; pids="$pids $epid"
addr=$(bound_addr "$tmp/echo.out") || fail "echo printed no address"
timeout 30 "$load" --target "$addr" --mode pingpong --threads 2 --conns 4 --size 100 --window 1000 \
    --count 200 --interval-us 10 --sources 1 --max-connecting 8 --duration 0.5 --drain 1.5 \
    --no-progress > "$tmp/load.out" 2>&1 || fail "mio-load with valid numbers"
stop_server "$epid" "$tmp/echo.out" "stopped by signal 15"
echo "ok: valid numbers and addresses accepted"

# 2. mio-echo at a low fd limit: about 58 fds free for 150 clients that connect at once.
(ulimit -n 64) 2> /dev/null || { echo "SKIP: cannot set ulimit -n 64"; exit 77; }
( ulimit -n 64 && exec "$echo_srv" $L ) > "$tmp/emfile.out" 2> "$tmp/emfile.err" &
epid=$!; pids="$pids $epid"
addr=$(bound_addr "$tmp/emfile.out") || fail "echo under ulimit -n 64 printed no address"
timeout 10 "$clients" tcp "$addr" 150 1000 > "$tmp/emfile-clients.out" 2>&1 \
    || fail "echo under ulimit -n 64 did not serve all 150 clients within 10 s"
n=$(wc -l < "$tmp/emfile.err")
[ "$n" -le 5 ] || fail "echo under ulimit -n 64 wrote $n lines to stderr, want <= 5"
stop_server "$epid" "$tmp/emfile.out" "150 connections accepted, 150 closed"
echo "ok: echo under ulimit -n 64 served 150 clients ($n stderr lines)"

# 3. mio-drop out of fds until its soft limit is raised again.
if ! command -v prlimit > /dev/null 2>&1 || [ ! -d /proc/self/fd ]; then
    echo "SKIP: drop at its fd limit (needs prlimit and /proc)"
    exit 77
fi
"$drop" $L > "$tmp/dropfd.out" 2> "$tmp/dropfd.err" &
dpid=$!; pids="$pids $dpid"
addr=$(bound_addr "$tmp/dropfd.out") || fail "drop printed no address"
soft=$(prlimit --pid "$dpid" --nofile --noheadings --output SOFT) || fail "prlimit cannot read"
lowest=0
while [ -e "/proc/$dpid/fd/$lowest" ]; do lowest=$((lowest + 1)); done
if ! prlimit --pid "$dpid" --nofile="$lowest:"; then
    stop_server "$dpid" "$tmp/dropfd.out" "stopped by signal 15"
    echo "SKIP: drop at its fd limit (prlimit cannot change its limit here)"
    exit 77
fi
# Eight waves of 5 clients, 0.25 s apart: each wave is a new edge on the listener.
cpids=
for wave in 1 2 3 4 5 6 7 8; do
    timeout 10 "$clients" tcp "$addr" 5 0 > "$tmp/dropfd-clients$wave.out" 2>&1 &
    cpids="$cpids $!"; pids="$pids $!"
    sleep 0.25
done
prlimit --pid "$dpid" --nofile="$soft:" || fail "prlimit cannot raise the limit"
for c in $cpids; do
    wait "$c" || fail "drop did not accept the waiting clients once fds were available"
done
n=$(wc -l < "$tmp/dropfd.err")
[ "$n" -ge 1 ] || fail "drop at its fd limit reported nothing"
[ "$n" -le 5 ] || fail "drop at its fd limit wrote $n lines to stderr, want <= 5"
stop_server "$dpid" "$tmp/dropfd.out" "accepted 40 connections"
echo "ok: drop at its fd limit resumed on its own ($n stderr lines)"
exit 0
