#!/bin/sh
# The io_uring yardstick (bench/baselines/uring_echo) under bench/mio-load, which verifies every
# byte: pingpong, pipeline and a connect storm with the default buffer ring; then a ring of 4
# buffers of 64 bytes (multishot recvs end with ENOBUFS all the time and must be re-armed without
# losing a byte), and 4 KiB send buffers with 1 MiB pipelines (short sends and paused reading).
# Skips (77) when configure found no liburing or the kernel refuses io_uring (io_uring_disabled,
# seccomp, a kernel before 6.0).
set -u
b=${top_builddir:-.}
srv=$b/bench/baselines/uring_echo
load=$b/bench/mio-load
tmp=$(mktemp -d) || exit 1
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; exit 1; }

if [ ! -x "$srv" ]; then
    echo "SKIP: $srv not built (configure found no liburing >= 2.3)"
    exit 77
fi
[ -x "$load" ] || fail "$load not built"

# Starts the server with the given options and sets pid and addr. Exits 77 if io_uring is refused.
start() {
    # A fresh file: the shell truncates it only once the background job runs, and a read before
    # that would find the previous server's address.
    rm -f "$tmp/srv.out"
    "$srv" --listen 127.0.0.1:0 "$@" > "$tmp/srv.out" 2> "$tmp/srv.err" &
    pid=$!
    i=0
    while [ $i -lt 100 ]; do
        addr=$(head -n 1 "$tmp/srv.out" 2>/dev/null)
        case "$addr" in *:[0-9]*) return 0 ;; esac
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"; rc=$?; pid=
            if [ $rc -eq 77 ]; then
                echo "SKIP: io_uring refused here: $(cat "$tmp/srv.err")"
                exit 77
            fi
            fail "uring_echo $* exited $rc at start"
        fi
        sleep 0.05; i=$((i + 1))
    done
    fail "uring_echo $* printed no address"
}

# Stops the server with SIGTERM: exit 0 and its summary (the stats line follows it on stderr).
stop() {
    kill -TERM "$pid" || fail "server already gone"
    wait "$pid"; rc=$?; pid=
    [ $rc -eq 0 ] || fail "uring_echo exited $rc after SIGTERM"
    grep -q "stopped by signal 15" "$tmp/srv.err" || fail "no summary line"
}

# Runs mio-load; every byte must come back (exit 0, lost_bytes=0 errors=0).
check() {
    what=$1; shift
    "$load" --target "$addr" --no-progress --drain 10 "$@" > "$tmp/load.out" 2> "$tmp/load.err" \
        || fail "$what: mio-load exit $?"
    grep -q " lost_bytes=0 errors=0 " "$tmp/load.out" || fail "$what: bytes lost"
    echo "ok: $what"
}

# The value of key=N in the server's final stats line.
stat() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" "$tmp/srv.err" | tail -n 1; }

"$srv" --help > "$tmp/help" 2>&1 || fail "--help exited non-zero"
grep -q usage "$tmp/help" || fail "--help prints no usage"
if "$srv" --bufs 3 > /dev/null 2>&1; then fail "--bufs 3 (not a power of two) accepted"; fi

start
check "pingpong 64 B x 64 conns" --mode pingpong --conns 64 --duration 1
check "pipeline 16 KiB x 16 conns" --mode pipeline --window 16384 --conns 16 --duration 1
check "connect storm" --mode connect --conns 32 --duration 1
stop
echo "ok: default ring: $(tail -n 1 "$tmp/srv.err")"

start --bufs 4 --buf-size 64
check "4 buffers: pipeline 16 KiB x 16 conns" --mode pipeline --window 16384 --conns 16 --duration 1
check "4 buffers: pingpong 1000 B x 32 conns" --mode pingpong --size 1000 --conns 32 --duration 1
stop
[ "$(stat enobufs)" -gt 0 ] || fail "4 buffers: no recv ever ran out of buffers"
echo "ok: 4 buffers: $(tail -n 1 "$tmp/srv.err")"

start --sndbuf 4096
check "4 KiB sndbuf: pipeline 1 MiB x 4 conns" --mode pipeline --window 1048576 --conns 4 --duration 1
check "4 KiB sndbuf: pingpong 20000 B x 16 conns" --mode pingpong --size 20000 --conns 16 --duration 1
stop
[ "$(stat paused)" -gt 0 ] || fail "4 KiB sndbuf: reading never paused"
# Short sends depend on how the kernel retries partial sends; reported, not required.
echo "ok: 4 KiB sndbuf: $(tail -n 1 "$tmp/srv.err")"
exit 0
