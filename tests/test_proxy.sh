#!/bin/sh
# mio-proxy in front of two mio-echo-threaded upstreams on real sockets (127.0.0.1, port 0), in
# acceptor and reuseport mode: every byte intact (echo_clients: each client sends, shuts down
# writing and must get all its bytes back then EOF, i.e. the client's half-close carried across;
# mio-load pingpong and pipeline verify every byte), round robin over both upstreams (their
# accepted counts at exit), SIGTERM/SIGINT -> exit 0 with the summary. With python3: a refusing
# upstream and one that never answers the SYN (--connect-timeout) close the client quickly while
# the proxy goes on serving through the good upstream; a client that reads late does not stall
# its pair; the upstream's half-close carried to the client; and memory bounded while a client
# sends 48 MiB to an upstream that reads slowly. Bad options: exit 2 with one line on stderr.
set -u
b=${top_builddir:-.}
proxy=$b/examples/mio-proxy
echo=$b/examples/mio-echo-threaded
clients=$b/tests/echo_clients
load=$b/bench/mio-load
tmp=$(mktemp -d) || exit 1
pids=
cleanup() {
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; exit 1; }

for p in "$proxy" "$echo" "$clients" "$load"; do [ -x "$p" ] || fail "$p not built"; done

# Waits until a server wrote its first line (the bound address) and prints it.
bound_addr() {
    i=0
    while [ $i -lt 200 ]; do
        line=$(head -n 1 "$1" 2>/dev/null)
        case "$line" in *:[0-9]*) echo "$line"; return 0 ;; esac
        sleep 0.05; i=$((i + 1))
    done
    return 1
}

# Waits until file $1 has a first line and prints it.
first_line() {
    i=0
    while [ $i -lt 200 ]; do
        line=$(head -n 1 "$1" 2>/dev/null)
        [ -n "$line" ] && { echo "$line"; return 0; }
        sleep 0.05; i=$((i + 1))
    done
    return 1
}

# Stops server $1 with signal $2; it must exit 0 with its summary line in $3.
stop_server() {
    kill -"$2" "$1" || fail "server $1 already gone"
    wait "$1"; rc=$?
    [ $rc -eq 0 ] || fail "server $1 exited $rc after SIG$2"
    grep -q "^stopped: " "$3" || fail "no summary line from server $1"
}

# Starts "$@" with its output in $tmp/$name.out and sets spid and addr.
start() {
    name=$1; shift
    rm -f "$tmp/$name.out" # the shell truncates it only once the job runs: no stale address read
    "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" &
    spid=$!; pids="$pids $spid"
    addr=$(bound_addr "$tmp/$name.out") || fail "$name: no address printed"
}

# 1. command line
"$proxy" --help > "$tmp/help" 2>&1 || fail "--help exited non-zero"
grep -q -- "--upstream ADDR" "$tmp/help" || fail "--help does not describe --upstream"
grep -q -- "--connect-timeout MS" "$tmp/help" || fail "--help does not list --connect-timeout"
for bad in "" "--upstream nope" "--upstream 127.0.0.1:1,,127.0.0.1:2" "--upstream 127.0.0.1:1," \
    "--upstream=" "--upstream 127.0.0.1:1 --connect-timeout abc" \
    "--upstream 127.0.0.1:1 --connect-timeout 86400001" "--upstream 127.0.0.1:1 --workers 4097"; do
    # shellcheck disable=SC2086
    timeout 5 "$proxy" --listen 127.0.0.1:0 $bad > "$tmp/bad.out" 2> "$tmp/bad.err"; rc=$?
    [ $rc -eq 2 ] || fail "'$bad' exited $rc, want 2"
    [ "$(wc -l < "$tmp/bad.err")" -eq 1 ] || fail "'$bad': want one line on stderr"
    grep -q -- "--" "$tmp/bad.err" || fail "'$bad': the message names no option"
    [ -s "$tmp/bad.out" ] && fail "'$bad' printed on stdout"
done
if "$proxy" --upstream 127.0.0.1:1 --no-such-option > /dev/null 2>&1; then
    fail "a bad option is accepted"
fi
echo "ok: command line"

# 2. bytes intact and round robin, acceptor mode then reuseport mode
start up1 "$echo" --listen 127.0.0.1:0 --workers 2; up1_pid=$spid; up1=$addr
start up2 "$echo" --listen 127.0.0.1:0 --workers 2; up2_pid=$spid; up2=$addr
for mode in acceptor reuseport; do
    start "proxy-$mode" "$proxy" --listen 127.0.0.1:0 --workers 2 --mode $mode \
        --upstream "$up1,$up2"
    "$clients" tcp "$addr" 40 200000 > "$tmp/clients-$mode" 2>&1 || fail "$mode: echo_clients"
    for m in pingpong pipeline; do
        "$load" --target "$addr" --mode $m --conns 4 --duration 1 --no-progress \
            > "$tmp/load-$mode-$m" 2>&1 || fail "$mode: mio-load --mode $m"
        grep -q "lost_bytes=0 errors=0 .*complete=1" "$tmp/load-$mode-$m" ||
            fail "$mode: mio-load --mode $m lost bytes"
    done
    if [ "$mode" = acceptor ]; then sig=TERM; else sig=INT; fi
    stop_server "$spid" $sig "$tmp/proxy-$mode.out"
    echo "ok: $mode: echo_clients 40 x 200000 B (half-close), pingpong, pipeline; SIG$sig"
done
stop_server "$up1_pid" TERM "$tmp/up1.out"
stop_server "$up2_pid" TERM "$tmp/up2.out"
n1=$(sed -n 's/.*accepted=\([0-9]*\).*/\1/p' "$tmp/up1.out")
n2=$(sed -n 's/.*accepted=\([0-9]*\).*/\1/p' "$tmp/up2.out")
[ "${n1:-0}" -gt 0 ] && [ "${n2:-0}" -gt 0 ] || fail "round robin: upstreams served $n1 and $n2"
d=$((n1 - n2)); [ $d -lt 0 ] && d=$((-d))
# One counter per proxy process, so each run splits its connections evenly, to one.
[ $d -le 2 ] || fail "round robin: upstreams served $n1 and $n2 connections"
echo "ok: round robin: upstreams served $n1 and $n2 connections"

# 3. failures, the upstream's half-close, bounded memory (python3 plays client and upstream)
if ! command -v python3 > /dev/null 2>&1; then
    echo "SKIP (part): no python3 for the failure, half-close and memory checks"
    exit 0
fi
cat > "$tmp/check.py" << 'EOF'
import os, socket, sys, threading, time

def hostport(a):
    h, p = a.rsplit(":", 1)
    return h, int(p)

def echo_ok(proxy, n=100000):
    """One client through the proxy: n bytes sent, shut down, all back then EOF."""
    c = socket.create_connection(hostport(proxy), timeout=5)
    data = os.urandom(n)
    threading.Thread(target=lambda: (c.sendall(data), c.shutdown(socket.SHUT_WR))).start()
    got = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        got += d
    c.close()
    return got == data

def closed_within(proxy, secs):
    """A client whose upstream fails: its connection must end (EOF or reset) within secs."""
    c = socket.create_connection(hostport(proxy), timeout=secs)
    t0 = time.time()
    try:
        c.sendall(b"hello")
        d = c.recv(100)
        ok = d == b""
    except socket.timeout:
        ok = False
    except OSError:  # reset, before or after our bytes went
        ok = True
    c.close()
    return ok, time.time() - t0

def listener(backlog=8):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(backlog)
    return s, "127.0.0.1:%d" % s.getsockname()[1]

cmd = sys.argv[1]
if cmd == "port":  # a port nothing listens on
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
elif cmd == "failures":  # proxy upstreams: good,refusing,blackhole; sequential clients
    proxy = sys.argv[2]
    for i, want in enumerate(["echo", "closed", "closed", "echo", "closed", "closed", "echo"]):
        if want == "echo":
            if not echo_ok(proxy):
                sys.exit("client %d: bytes not echoed intact" % i)
        else:
            ok, secs = closed_within(proxy, 3)
            if not ok:
                sys.exit("client %d: not closed within 3 s" % i)
            print("client %d: closed after %.2f s" % (i, secs))
elif cmd == "late-reader":  # sends MB to an echo upstream, reads nothing for 2 s, then all of it
    total = int(sys.argv[3]) << 20
    c = socket.create_connection(hostport(sys.argv[2]))
    def send():
        chunk = os.urandom(65536)
        for _ in range(total // len(chunk)):
            c.sendall(chunk)
        c.shutdown(socket.SHUT_WR)
    threading.Thread(target=send, daemon=True).start()
    time.sleep(2)
    c.settimeout(10)
    n = 0
    try:
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            n += len(d)
    except socket.timeout:
        pass
    if n != total:
        sys.exit("got %d of %d bytes back (no progress for 10 s)" % (n, total))
elif cmd == "blackhole":  # a full listen queue: SYNs to it are dropped, connects hang
    s, addr = listener(0)
    fill = []
    for _ in range(8):
        f = socket.socket(); f.setblocking(False)
        f.connect_ex(hostport(addr)); fill.append(f)
    time.sleep(0.2)
    p = socket.socket(); p.settimeout(0.5)
    try:
        p.connect(hostport(addr)); print("none", flush=True)  # the kernel answers after all
    except (socket.timeout, OSError):
        print(addr, flush=True)
    sys.stdin.read()  # held until the shell closes our stdin
elif cmd == "upstream-fin":  # upstream greets then shuts down; client must see it, then send
    s, addr = listener()
    print(addr, flush=True)
    proxy = sys.stdin.readline().strip()
    res = {}
    def up():
        u, _ = s.accept()
        u.sendall(b"greeting"); u.shutdown(socket.SHUT_WR)
        n = 0
        while True:
            d = u.recv(65536)
            if not d:
                break
            n += len(d)
        res["n"] = n
        u.close()
    t = threading.Thread(target=up); t.start()
    c = socket.create_connection(hostport(proxy), timeout=5)
    got = b""
    while True:
        d = c.recv(100)
        if not d:
            break
        got += d
    if got != b"greeting":
        sys.exit("client got %r before EOF" % got)
    c.sendall(b"y" * 300000); c.shutdown(socket.SHUT_WR)
    if c.recv(1) != b"":
        sys.exit("client: no EOF at the end")
    t.join(5)
    if res.get("n") != 300000:
        sys.exit("upstream got %r of 300000 bytes after its own FIN" % res.get("n"))
elif cmd == "slow-upstream":  # client sends MB fast; upstream reads 64 KiB per 10 ms
    total = int(sys.argv[2]) << 20
    s, addr = listener()
    print(addr, flush=True)
    proxy = sys.stdin.readline().strip(); pid = sys.stdin.readline().strip()
    res = {}
    def up():
        u, _ = s.accept()
        n = 0
        while True:
            d = u.recv(65536)
            if not d:
                break
            n += len(d); time.sleep(0.01)
        res["n"] = n
        u.close()
    t = threading.Thread(target=up); t.start()
    rss = [0]; done = [False]
    def watch():
        while not done[0]:
            for line in open("/proc/%s/status" % pid):
                if line.startswith("VmRSS:"):
                    rss[0] = max(rss[0], int(line.split()[1]))
            time.sleep(0.1)
    w = threading.Thread(target=watch); w.start()
    c = socket.create_connection(hostport(proxy), timeout=30)
    chunk = b"z" * 65536
    for _ in range(total // len(chunk)):
        c.sendall(chunk)
    c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
    t.join(30); done[0] = True; w.join()
    print("upstream got %s of %d bytes; proxy VmRSS at most %d kB" % (res.get("n"), total, rss[0]))
    if res.get("n") != total:
        sys.exit("bytes lost")
EOF
py() { python3 "$tmp/check.py" "$@"; }

# Upstreams, in turn: good, refusing, blackholed (or refusing again when the kernel answers).
start up1 "$echo" --listen 127.0.0.1:0 --workers 1; up1_pid=$spid; up1=$addr
dead=127.0.0.1:$(py port)
mkfifo "$tmp/bh.in"
py blackhole < "$tmp/bh.in" > "$tmp/bh.out" 2>&1 &
bh_pid=$!; pids="$pids $bh_pid"
exec 3> "$tmp/bh.in"
bh=$(first_line "$tmp/bh.out") || fail "blackhole: $(cat "$tmp/bh.out")"
case "$bh" in none) echo "note: no blackhole (the kernel answers a full queue)"; bh=$dead ;; esac
start proxy-fail "$proxy" --listen 127.0.0.1:0 --workers 2 --connect-timeout 300 \
    --upstream "$up1,$dead,$bh"
py failures "$addr" > "$tmp/failures" 2>&1 || fail "failures: $(cat "$tmp/failures")"
sed 's/^/failures: /' "$tmp/failures"
stop_server "$spid" TERM "$tmp/proxy-fail.out"
exec 3>&-
echo "ok: refused and timed-out upstreams close their client; the proxy serves on"

# A client that stops reading for 2 s while it sends 128 MiB: the held upstream-to-client
# direction must not stop the client-to-upstream one, or the echo upstream, unable to send,
# stops reading too and the pair stalls for good.
start proxy-late "$proxy" --listen 127.0.0.1:0 --workers 2 --upstream "$up1"
py late-reader "$addr" 128 > "$tmp/late" 2>&1 || fail "late reader: $(cat "$tmp/late")"
stop_server "$spid" TERM "$tmp/proxy-late.out"
echo "ok: a client that reads late gets its 128 MiB back (the directions are independent)"

# The upstream's FIN reaches the client, which then still sends 300 kB the other way.
mkfifo "$tmp/fin.in"
py upstream-fin < "$tmp/fin.in" > "$tmp/fin.out" 2>&1 &
fin_pid=$!; pids="$pids $fin_pid"
exec 4> "$tmp/fin.in"
fin=$(bound_addr "$tmp/fin.out") || fail "upstream-fin: no address"
start proxy-fin "$proxy" --listen 127.0.0.1:0 --workers 1 --upstream "$fin"
echo "$addr" >&4
wait $fin_pid || fail "upstream half-close: $(cat "$tmp/fin.out")"
stop_server "$spid" TERM "$tmp/proxy-fin.out"
exec 4>&-
echo "ok: the upstream's half-close carried to the client, 300 kB still relayed after it"

# 48 MiB towards an upstream reading ~6 MB/s: the proxy holds at most the marks, not the stream.
mkfifo "$tmp/slow.in"
py slow-upstream 48 < "$tmp/slow.in" > "$tmp/slow.out" 2>&1 &
slow_pid=$!; pids="$pids $slow_pid"
exec 5> "$tmp/slow.in"
slow=$(bound_addr "$tmp/slow.out") || fail "slow-upstream: no address"
start proxy-slow "$proxy" --listen 127.0.0.1:0 --workers 2 --upstream "$slow"
base=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$spid/status")
[ -n "$base" ] || fail "no VmRSS for the proxy (pid $spid)"
printf '%s\n%s\n' "$addr" "$spid" >&5
wait $slow_pid || fail "slow upstream: $(cat "$tmp/slow.out")"
peak=$(sed -n 's/.*VmRSS at most \([0-9]*\).*/\1/p' "$tmp/slow.out")
# Sanitizer builds' allocators hold freed memory (ASan's quarantine): all bytes must still
# pass, but the RSS bound is checked only in the plain builds.
sanitized=no
for f in "$b/examples/.libs/mio-proxy" "$b/examples/mio-proxy" "$b/lib/.libs/libmio.so"; do
    if [ -f "$f" ] && grep -qa -e __asan_init -e __tsan_init "$f"; then sanitized=yes; fi
done
if [ $sanitized = no ]; then
    [ $((peak - base)) -lt 8192 ] || fail "proxy VmRSS grew from $base kB to $peak kB"
fi
echo "ok: slow upstream: VmRSS $base kB at start, $peak kB at most while 48 MiB passed (sanitizer build: $sanitized)"
stop_server "$spid" TERM "$tmp/proxy-slow.out"
exec 5>&-
stop_server "$up1_pid" TERM "$tmp/up1.out"
exit 0
