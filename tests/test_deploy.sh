#!/bin/sh
# Deploying the threaded example servers, on real sockets:
# 1. --listen-fd: malformed numbers, fds that are not open, not sockets, not listening, UDP: exit
#    2 with one line naming the option; an inherited listener (tests/with_socket) is served, in
#    both pool modes, by every threaded example.
# 2. Socket activation through systemd-socket-activate (skipped, not failed, when missing): the
#    inherited socket replaces --listen; named fds; acceptor and reuseport mode.
# 3. Zero-downtime restart (SIGHUP) under load: mio-load --mode connect against
#    mio-echo-threaded in both modes, h2load against mio-http (when installed): 0 errors, every
#    byte verified; the old process exits 0 within its drain time, the new pid serves, its fd
#    count stays flat across further load and a second restart.
# 4. A restart whose new copy cannot start (fd limit lowered with prlimit): the reason on stderr,
#    the old process keeps serving; with the limit back, the next SIGHUP succeeds.
set -u
b=${top_builddir:-.}
echo_thr=$b/examples/mio-echo-threaded
drop_thr=$b/examples/mio-drop-threaded
chat=$b/examples/mio-chat
http=$b/examples/mio-http
load=$b/bench/mio-load
with=$b/tests/with_socket
tmp=$(mktemp -d) || exit 1
pids=
cleanup() {
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done; exit 1; }

for p in "$echo_thr" "$drop_thr" "$chat" "$load" "$with"; do
    [ -x "$p" ] || fail "$p not built"
done

# Waits until file $1 has a first line that is an address, and prints it.
bound_addr() {
    i=0
    while [ $i -lt 200 ]; do
        line=$(head -n 1 "$1" 2>/dev/null)
        case "$line" in *:[0-9]* | unix:*) echo "$line"; return 0 ;; esac
        sleep 0.05; i=$((i + 1))
    done
    return 1
}

# Waits until file $1 contains a line matching $2 (5 s at most).
wait_line() {
    i=0
    until grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 100 ] || return 1; sleep 0.05
    done
}

# One echo through the server at $1 (mio-load: every byte verified).
echo_check() {
    "$load" --target "$1" --mode pingpong --conns 2 --count 200 --duration 5 > "$tmp/check.out" 2>&1 \
        || fail "echo check against $1: $(cat "$tmp/check.out")"
}

stop_server() {
    kill -TERM "$1" 2>/dev/null || fail "server $1 already gone"
    wait "$1"; rc=$?
    [ $rc -eq 0 ] || fail "server $1 exited $rc after SIGTERM"
}

# A port below the ephemeral range (where TIME_WAIT sockets of other tests may sit) that binds now.
free_port() {
    port=$((20000 + ($$ * 7 + $1 * 131) % 12000))
    echo $port
}

# 1. --listen-fd
for prog in "$echo_thr" "$drop_thr" "$chat"; do
    name=$(basename "$prog")
    for v in abc -1 '' 1x 65536 99999999999999999999; do
        timeout 5 "$prog" --listen-fd "$v" > "$tmp/bad.out" 2> "$tmp/bad.err" < /dev/null; rc=$?
        [ $rc -eq 2 ] || fail "$name --listen-fd '$v' exited $rc, want 2"
        [ "$(wc -l < "$tmp/bad.err")" -eq 1 ] || fail "$name --listen-fd '$v': not one line"
        grep -q -- "--listen-fd" "$tmp/bad.err" || fail "$name --listen-fd '$v': option not named"
    done
    # not open; not a socket (stdin is /dev/null); bound but not listening; UDP
    timeout 5 "$prog" --listen-fd 77 > /dev/null 2> "$tmp/bad.err" < /dev/null; rc=$?
    [ $rc -eq 2 ] || fail "$name --listen-fd 77 (not open) exited $rc"
    grep -q "Bad file descriptor" "$tmp/bad.err" || fail "$name: no EBADF message: $(cat "$tmp/bad.err")"
    timeout 5 "$prog" --listen-fd 0 > /dev/null 2> "$tmp/bad.err" < /dev/null; rc=$?
    [ $rc -eq 2 ] || fail "$name --listen-fd 0 (not a socket) exited $rc"
    grep -qi "socket" "$tmp/bad.err" || fail "$name: no ENOTSOCK message: $(cat "$tmp/bad.err")"
    timeout 5 "$with" bound 127.0.0.1:0 5 "$prog" --listen-fd 5 > /dev/null 2> "$tmp/bad.err"; rc=$?
    [ $rc -eq 2 ] || fail "$name: a socket that does not listen: exit $rc"
    grep -q "listening stream socket" "$tmp/bad.err" || fail "$name: not-listening message: $(cat "$tmp/bad.err")"
    timeout 5 "$with" udp 127.0.0.1:0 5 "$prog" --listen-fd 5 > /dev/null 2> "$tmp/bad.err"; rc=$?
    [ $rc -eq 2 ] || fail "$name: a UDP socket: exit $rc"
    grep -q "listening stream socket" "$tmp/bad.err" || fail "$name: UDP message: $(cat "$tmp/bad.err")"
done
echo "ok: --listen-fd refuses bad values and sockets with exit 2"

for mode in acceptor reuseport; do
    "$with" listen 127.0.0.1:0 7 "$echo_thr" --listen-fd 7 --workers 2 --mode $mode \
        > "$tmp/lfd-$mode.out" 2> "$tmp/lfd-$mode.err" &
    spid=$!; pids="$pids $spid"
    addr=$(bound_addr "$tmp/lfd-$mode.out") || fail "--listen-fd: no address printed"
    grep -q "with_socket: $addr" "$tmp/lfd-$mode.err" || fail "--listen-fd: serves $addr, not the inherited socket"
    echo_check "$addr"
    stop_server "$spid"
    echo "ok: $mode: mio-echo-threaded serves an inherited listener (--listen-fd)"
done
# 2. socket activation. systemd-socket-activate binds, waits for the first connection, then execs
# the server with the socket as fd 3: the first client starts it and is served from the backlog.
# activate OUT ERR CMD...: starts it on a free port (a few tries); sets port and apid.
# systemd-socket-activate passes only LISTEN_* and the -E variables: the sanitizers' options
# (suppressions, leak checking) must be named.
activate() {
    aout=$1; aerr=$2; shift 2
    envs=
    for v in ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS; do
        eval "[ -n \"\${$v:-}\" ]" && envs="$envs -E $v"
    done
    for try in 1 2 3 4 5 6; do
        port=$(free_port $try)
        # shellcheck disable=SC2086
        systemd-socket-activate -l 127.0.0.1:$port $envs "$@" > "$aout" 2> "$aerr" &
        apid=$!
        sleep 0.3
        kill -0 $apid 2> /dev/null && return 0
        wait $apid
    done
    return 1
}
if command -v systemd-socket-activate > /dev/null 2>&1; then
    for mode in acceptor reuseport; do
        # --listen names an address nobody could bind: activation must replace it
        activate "$tmp/act.out" "$tmp/act.err" --fdname=web "$echo_thr" \
            --listen 192.0.2.1:1 --workers 2 --mode $mode || fail "systemd-socket-activate: no port"
        spid=$apid; pids="$pids $spid"
        echo_check "127.0.0.1:$port"
        addr=$(bound_addr "$tmp/act.out") || fail "activated server printed no address"
        [ "$addr" = "127.0.0.1:$port" ] || fail "activated server prints $addr, want 127.0.0.1:$port"
        echo_check "$addr"
        stop_server "$spid"
        echo "ok: $mode: mio-echo-threaded under systemd-socket-activate"
    done
    if [ -x "$http" ] && command -v curl > /dev/null 2>&1; then
        activate "$tmp/acth.out" "$tmp/acth.err" "$http" --workers 2 \
            || fail "systemd-socket-activate mio-http: no port"
        spid=$apid; pids="$pids $spid"
        body=$(curl -s --max-time 5 "http://127.0.0.1:$port/plaintext") || fail "curl mio-http (activated)"
        [ "$body" = "Hello, World!" ] || fail "activated mio-http answered '$body'"
        stop_server "$spid"
        echo "ok: mio-http under systemd-socket-activate"
    fi
else
    echo "skip: systemd-socket-activate not installed (apt-get install systemd): activation not tested"
fi

# 3. restart under load
# restart PID OUT: SIGHUP, wait for the handover line in OUT, print the new pid.
restart() {
    before=$(grep -c "^restarted: new pid" "$2")
    kill -HUP "$1" || fail "server $1 gone before SIGHUP"
    i=0
    until [ "$(grep -c "^restarted: new pid" "$2")" -gt "$before" ]; do
        i=$((i + 1)); [ $i -lt 200 ] || fail "no handover after SIGHUP"; sleep 0.05
    done
    sed -n 's/^restarted: new pid \([0-9]*\).*/\1/p' "$2" | tail -n 1
}
fdcount() { ls "/proc/$1/fd" | wc -l; }

for mode in acceptor reuseport; do
    "$echo_thr" --listen 127.0.0.1:0 --workers 2 --mode $mode --drain-ms 3000 \
        > "$tmp/r-$mode.out" 2> "$tmp/r-$mode.err" &
    old=$!; pids="$pids $old"
    addr=$(bound_addr "$tmp/r-$mode.out") || fail "restart: no address"
    "$load" --target "$addr" --mode connect --conns 16 --threads 2 --duration 3 > "$tmp/load.out" 2>&1 &
    lpid=$!
    sleep 1
    t0=$(date +%s%N)
    new=$(restart "$old" "$tmp/r-$mode.out")
    pids="$pids $new"
    wait "$old"; rc=$?
    t1=$(date +%s%N)
    [ $rc -eq 0 ] || fail "$mode: the old process exited $rc"
    ms=$(( (t1 - t0) / 1000000 ))
    [ $ms -lt 4500 ] || fail "$mode: the old process took $ms ms to exit (drain 3000)"
    wait "$lpid" || fail "$mode: mio-load across the restart: $(cat "$tmp/load.out")"
    grep -q " errors=0 " "$tmp/load.out" || fail "$mode: errors across the restart"
    grep -q " server_closed=0 " "$tmp/load.out" || fail "$mode: connections closed unanswered"
    grep -q " lost_bytes=0 " "$tmp/load.out" || fail "$mode: bytes lost"
    echo "$mode: restart under load: $(grep -o 'conns_done=[0-9]* conns_per_s=[0-9]*' "$tmp/load.out") errors=0; old exited in $ms ms"
    [ -s "$tmp/r-$mode.err" ] && fail "$mode: stderr: $(cat "$tmp/r-$mode.err")"
    kill -0 "$new" 2> /dev/null || fail "$mode: the new process $new is gone"
    echo_check "$addr"
    n1=$(fdcount "$new")
    "$load" --target "$addr" --mode connect --conns 16 --threads 2 --duration 1 > "$tmp/load2.out" 2>&1 \
        || fail "$mode: load on the new process"
    echo_check "$addr"
    n2=$(fdcount "$new")
    [ "$n1" -eq "$n2" ] || fail "$mode: new process fds $n1 -> $n2 after load"
    # and again: the restarted copy restarts too, with its inherited (adopted) sockets
    newer=$(restart "$new" "$tmp/r-$mode.out")
    pids="$pids $newer"
    wait "$new" 2> /dev/null
    i=0; while kill -0 "$new" 2> /dev/null; do i=$((i + 1)); [ $i -lt 100 ] || fail "second old process stays"; sleep 0.05; done
    echo_check "$addr"
    [ "$(fdcount "$newer")" -eq "$n2" ] || fail "$mode: fds after a second restart: $(fdcount "$newer"), want $n2"
    kill -TERM "$newer"
    i=0; while kill -0 "$newer" 2> /dev/null; do i=$((i + 1)); [ $i -lt 100 ] || fail "SIGTERM: still running"; sleep 0.05; done
    echo "ok: $mode: SIGHUP restart under load, 0 errors; the new pid serves with flat fds; restarts again"
done

if [ -x "$http" ] && command -v h2load > /dev/null 2>&1; then
    "$http" --listen 127.0.0.1:0 --workers 2 --drain-ms 3000 > "$tmp/h.out" 2> "$tmp/h.err" &
    old=$!; pids="$pids $old"
    addr=$(bound_addr "$tmp/h.out") || fail "http restart: no address"
    h2load --h1 -c 8 -D 3 "http://$addr/plaintext" > "$tmp/h2load.out" 2>&1 &
    lpid=$!
    sleep 1
    new=$(restart "$old" "$tmp/h.out")
    pids="$pids $new"
    wait "$old" || fail "http: the old process exited non-zero"
    wait "$lpid" || fail "h2load failed: $(cat "$tmp/h2load.out")"
    line=$(grep "^requests:" "$tmp/h2load.out")
    case "$line" in
    *" 0 failed, 0 errored, 0 timeout"*) ;;
    *) fail "h2load across the restart: $line" ;;
    esac
    echo "http: restart under h2load: $line; $(grep '^finished in' "$tmp/h2load.out")"
    h2load --h1 -n 200 -c 2 "http://$addr/plaintext" > "$tmp/h2load2.out" 2>&1
    grep -q "200 succeeded" "$tmp/h2load2.out" || fail "the new mio-http does not serve"
    kill -TERM "$new"
    echo "ok: mio-http SIGHUP restart under h2load: no failed request"
else
    echo "skip: mio-http or h2load missing: HTTP restart not tested"
fi

# 4. a new copy that cannot start
if command -v prlimit > /dev/null 2>&1; then
    "$echo_thr" --listen 127.0.0.1:0 --workers 2 > "$tmp/f.out" 2> "$tmp/f.err" &
    spid=$!; pids="$pids $spid"
    addr=$(bound_addr "$tmp/f.out") || fail "failed restart: no address"
    # Room for the restart pipe only: the child cannot move the sockets into place (F_DUPFD
    # above them finds no free number) and exits 127. Stray fds a test harness left open high
    # up are not counted.
    lim=$(( $(ls /proc/$spid/fd | sort -n | awk '$1 < 200' | tail -n 1) + 3 ))
    soft=$(prlimit --pid "$spid" --nofile --output SOFT --noheadings | tr -d ' ')
    prlimit --pid "$spid" --nofile=$lim: || fail "prlimit"
    kill -HUP "$spid"
    wait_line "$tmp/f.err" "still serving" || fail "no message for a failed restart"
    grep -q "^restarted" "$tmp/f.out" && fail "a failed restart was reported as done"
    prlimit --pid "$spid" --nofile=$soft: || fail "prlimit back to $soft"
    echo_check "$addr"
    new=$(restart "$spid" "$tmp/f.out")
    pids="$pids $new"
    wait "$spid" || fail "after the failed then good restart: old exited non-zero"
    echo_check "$addr"
    kill -TERM "$new"
    echo "ok: a new copy that fails to start: '$(head -n 1 "$tmp/f.err")'; the old one served on"
else
    echo "skip: prlimit missing: failed restart not tested"
fi
exit 0
