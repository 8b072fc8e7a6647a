#!/bin/sh
# mio-chat on real sockets (127.0.0.1, port 0), 2 workers, acceptor and reuseport mode, driven by
# a python3 client written below. Broadcast: 20 clients (round robin puts 10 on each worker in
# acceptor mode; reuseport spreads them by hash) send numbered lines, one send per line, split
# into pieces of 1-7 bytes across sends, or all in one send; a line of exactly --max-line bytes
# and every byte value but "\n" included. Each client must receive every other client's lines
# exactly once, byte for byte, in the order sent, and none of its own. Over-long lines (complete,
# and a partial one) get "ERR line too long" and EOF, the good line before one still goes out,
# the others are unaffected. Slow consumer: one client never reads while two send 16 MB; it must
# be disconnected while the readers get everything, and the server's peak RSS (VmHWM) must stay
# within RSS_GROWTH_KB of its RSS before the 16 MB (without the limit it grows by the 16 MB the
# slow client does not read; not checked in sanitizer builds, whose allocators hold freed memory).
# SIGTERM: exit 0 with the summary line. Bad numbers: exit 2, one line. Skips (77) without python3.
set -u
b=${top_builddir:-.}
chat=$b/examples/mio-chat
RSS_GROWTH_KB=10240
tmp=$(mktemp -d) || exit 1
pids=
cleanup() {
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*.out "$tmp"/*.err; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; exit 1; }

if ! command -v python3 > /dev/null 2>&1; then
    echo "SKIP: python3 not installed"
    exit 77
fi
[ -x "$chat" ] || fail "$chat not built"
for f in "$b/examples/.libs/mio-chat" "$b/examples/mio-chat" "$b/lib/.libs/libmio.so"; do
    if [ -f "$f" ] && grep -qa -e __asan_init -e __tsan_init "$f"; then RSS_GROWTH_KB=0; fi
done

cat > "$tmp/client.py" << 'EOF'
import select, socket, sys, time

addr, test = sys.argv[1], sys.argv[2]
host, port = addr.rsplit(":", 1)
MAX_LINE = 64  # the server runs with --max-line 64 for the broadcast test

def die(msg):
    print("FAIL: " + msg)
    sys.exit(1)

class Client:
    def __init__(self, name, rcvbuf=0):
        self.name, self.buf, self.lines, self.eof, self.got, self.pings = name, b"", [], False, 0, 0
        self.s = socket.socket()
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.connect((host, int(port)))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.setblocking(False)

    def pump(self):  # reads what is there; complete lines go to self.lines
        try:
            while not self.eof:
                data = self.s.recv(1 << 18)
                if not data:
                    self.eof = True
                self.got += len(data)
                self.buf += data
        except BlockingIOError:
            pass
        except ConnectionResetError:
            self.eof = True
        *done, self.buf = self.buf.split(b"\n")
        self.lines += [l + b"\n" for l in done if l != b"ping"]
        self.pings += sum(1 for l in done if l == b"ping")

def wait(clients, cond, what, timeout=15):
    end = time.time() + timeout
    while not cond():
        left = end - time.time()
        if left <= 0:
            die("timed out waiting for " + what)
        live = [c.s for c in clients if not c.eof]
        select.select(live, [], [], min(left, 0.05))
        for c in clients:
            c.pump()

def sync(clients):
    # clients[0] pings until every other client got a ping: then each is in its worker's list,
    # and any line sent from now on reaches it. Pings are not counted as lines.
    end = time.time() + 10
    while not all(c.pings for c in clients[1:]):
        if time.time() > end:
            die("sync: some clients never got a line")
        clients[0].s.send(b"ping\n")
        time.sleep(0.02)
        for c in clients[1:]:
            c.pump()
    time.sleep(0.05)
    for c in clients[1:]:
        c.pump()
        c.lines = []

def line(i, j):
    head = b"L %d %d " % (i, j)
    size = MAX_LINE if j == 2 else 9 + (i * 7 + j * 13) % 40
    body = bytes((k * 31 + i + j) % 256 for k in range(size - len(head)))
    return head + body.replace(b"\n", b"\t") + b"\n"

def broadcast():
    n, per = 20, 5
    cl = [Client(i) for i in range(n)]
    sync(cl)
    chunks = []
    for i in range(n):
        lines = [line(i, j) for j in range(per)]
        if i % 3 == 0:
            chunks.append(lines)
        elif i % 3 == 1:
            stream, pieces, k = b"".join(lines), [], 0
            while k < len(stream):
                step = 1 + (k * 5 + i) % 7
                pieces.append(stream[k:k + step])
                k += step
            chunks.append(pieces)
        else:
            chunks.append([b"".join(lines)])
    for rnd in range(max(len(c) for c in chunks)):  # interleaved, one piece per client per round
        for i in range(n):
            if rnd < len(chunks[i]):
                cl[i].s.sendall(chunks[i][rnd])
        time.sleep(0.001)
    want = n - 1
    wait(cl, lambda: all(len(c.lines) >= want * per for c in cl), "all lines")
    time.sleep(0.2)  # anything extra (a duplicate) would arrive now
    for c in cl:
        c.pump()
        if len(c.lines) != want * per:
            die("client %d got %d lines, want %d" % (c.name, len(c.lines), want * per))
        by = {}
        for l in c.lines:
            by.setdefault(int(l.split(b" ")[1]), []).append(l)
        if c.name in by:
            die("client %d got its own line back" % c.name)
        for i in range(n):
            if i != c.name and by.get(i) != [line(i, j) for j in range(per)]:
                die("client %d: lines from %d wrong, out of order or duplicated: %r" %
                    (c.name, i, by.get(i)))
        c.lines = []
    print("ok: %d clients x %d lines each reached the %d others exactly once, in order" %
          (n, per, want))

    # Over-long lines. a: a good line then a complete long one in one send; b: a partial line
    # one byte over the limit.
    a, b = Client("a"), Client("b")
    a.s.sendall(b"good from a\n" + b"x" * (MAX_LINE + 1) + b"\n")
    b.s.sendall(b"y" * (MAX_LINE + 1))
    for c in (a, b):
        wait([c], lambda: c.eof, "EOF after the refusal")
        # b may be in the chat in time to get a's good line: nothing else before the refusal
        before = c.lines[:-1]
        if c.lines[-1:] != [b"ERR line too long\n"] or before not in ([], [b"good from a\n"]) or c.buf:
            die("client %s: got %r, want the refusal" % (c.name, c.lines + [c.buf]))
    # "after" answers a's line: it is sent once its sender has seen that line, so every client
    # must see the two in that order (causal order as the clients see it). Without that wait
    # the two lines come from different senders with nothing ordering them, as in any chat.
    wait([cl[1]], lambda: cl[1].lines[:1] == [b"good from a\n"], "a's line at client 1")
    cl[1].s.sendall(b"after\n")
    wait(cl, lambda: all(len(c.lines) >= (1 if c.name == 1 else 2) for c in cl),
         "the lines around the refusal")
    time.sleep(0.1)
    for c in cl:
        c.pump()
        want_lines = [b"good from a\n"] + ([] if c.name == 1 else [b"after\n"])
        if c.lines != want_lines or c.eof:
            die("client %d: got %r around the refusal, want %r" % (c.name, c.lines, want_lines))
    print("ok: over-long lines refused (ERR line too long, EOF); the others unaffected")
    for c in cl:
        c.s.close()

def rss(pid):
    with open("/proc/%s/status" % pid) as f:
        st = dict(l.split(":", 1) for l in f)
    return int(st["VmRSS"].split()[0]), int(st["VmHWM"].split()[0])

def slow(pid, growth_kb):
    senders, readers = [Client("s0"), Client("s1")], [Client("r0"), Client("r1")]
    slow = Client("slow", rcvbuf=4096)
    sync(senders + readers + [slow])  # then the slow client never reads again
    start = rss(pid)[0]
    count, size = 8000, 1000  # 16 MB: 8 MB from each sender
    WINDOW = 65536  # with two senders, a fast client is never more than 128 KiB behind
    def line(i, j):
        head = b"S %d %d " % (i, j)
        return head + b"z" * (size - len(head) - 1) + b"\n"
    out = [b"".join(line(i, j) for j in range(count)) for i in range(2)]
    fast, sent, peak, sample = senders + readers, [0, 0], 0, 0
    nxt = {(c.name, i): 0 for c in fast for i in range(2)}
    def done():
        return all(nxt[(c.name, i)] == count for c in fast for i in range(2) if c.name != "s%d" % i)
    end = time.time() + 30
    while not done():
        if time.time() > end:
            die("slow test: timed out: %r" % nxt)
        # Paced: at most WINDOW bytes of a sender's lines not yet read by every fast client,
        # so only the slow client falls behind.
        room = [WINDOW - sent[i] + size * min(nxt[(c.name, i)] for c in fast
                                                if c.name != "s%d" % i) for i in range(2)]
        wr = [s.s for i, s in enumerate(senders) if sent[i] < len(out[i]) and room[i] > 0]
        r, w, _ = select.select([c.s for c in fast], wr, [], 0.05)
        for i, s in enumerate(senders):
            if s.s in w:
                try:
                    sent[i] += s.s.send(out[i][sent[i]:sent[i] + room[i]])
                except BlockingIOError:
                    pass
        for c in fast:
            c.pump()
            if c.eof:
                die("slow test: fast client %s was disconnected" % c.name)
            for l in c.lines:  # checked as they come: each sender's lines, in order, once
                i, j = int(l.split(b" ")[1]), int(l.split(b" ")[2])
                if c.name == "s%d" % i or j != nxt[(c.name, i)] or l != line(i, j):
                    die("slow test: %s got %r, want line %d of s%d" %
                        (c.name, l[:30], nxt[(c.name, i)], i))
                nxt[(c.name, i)] += 1
            c.lines = []
        if time.time() > sample:
            peak, sample = max(peak, rss(pid)[0]), time.time() + 0.02
    slow.s.setblocking(True)
    slow.s.settimeout(10)
    got = 0
    try:
        while True:
            data = slow.s.recv(1 << 16)
            if not data:
                break
            got += len(data)
    except ConnectionResetError:
        pass
    except socket.timeout:
        die("slow test: the slow consumer was not disconnected (%d bytes read)" % got)
    now, hwm = rss(pid)
    print("ok: slow consumer disconnected after %d of %d bytes; readers got all %d lines" %
          (got, 2 * count * size, 2 * count))
    print("rss: VmRSS before %d kB, now %d kB, peak sampled %d kB, VmHWM %d kB (limit %s)" %
          (start, now, peak, hwm, "%d kB" % (start + growth_kb) if growth_kb else "not checked"))
    if growth_kb and hwm > start + growth_kb:
        die("server VmHWM %d kB over the %d kB limit" % (hwm, start + growth_kb))

if test == "broadcast":
    broadcast()
else:
    slow(sys.argv[3], int(sys.argv[4]))
EOF

# Waits until the server wrote its first line (the bound address) and prints it.
bound_addr() {
    i=0
    while [ $i -lt 200 ]; do
        line=$(head -n 1 "$1" 2>/dev/null)
        case "$line" in *:[0-9]*) echo "$line"; return 0 ;; esac
        sleep 0.05; i=$((i + 1))
    done
    return 1
}

# Stops server $1 with SIGTERM; it must exit 0 with its summary line in $2.
stop_server() {
    kill -TERM "$1" || fail "server $1 already gone"
    wait "$1"; rc=$?
    [ $rc -eq 0 ] || fail "server $1 exited $rc after SIGTERM"
    grep -q "^stopped: " "$2" || fail "no summary line from server $1"
}

# 1. command line
"$chat" --help > "$tmp/help.out" 2>&1 || fail "--help exited non-zero"
grep -q -- "--max-line BYTES" "$tmp/help.out" || fail "--help does not list --max-line"
grep -q -- "--max-pending BYTES" "$tmp/help.out" || fail "--help does not list --max-pending"
for bad in "--max-line 0" "--max-line abc" "--max-line 16777216" "--max-pending 0" \
    "--max-pending 1073741825" "--max-pending -5" "--workers 4097"; do
    # shellcheck disable=SC2086
    timeout 5 "$chat" --listen 127.0.0.1:0 $bad > "$tmp/bad.out" 2> "$tmp/bad.err"; rc=$?
    [ $rc -eq 2 ] || fail "'$bad' exited $rc, want 2"
    [ "$(wc -l < "$tmp/bad.err")" -eq 1 ] || fail "'$bad': want one line on stderr"
    grep -q -- "${bad%% *}" "$tmp/bad.err" || fail "'$bad': the message names no option"
    [ -s "$tmp/bad.out" ] && fail "'$bad' printed on stdout"
done
timeout 5 "$chat" --no-such-option > /dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "an unknown option exited $rc, want 2"
rm -f "$tmp/bad.out" "$tmp/bad.err"
echo "ok: command line"

# 2. broadcast, framing, over-long lines; then the slow consumer; in both modes
for mode in acceptor reuseport; do
    "$chat" --listen 127.0.0.1:0 --workers 2 --mode $mode --max-line 64 \
        > "$tmp/$mode.out" 2> "$tmp/$mode.err" &
    spid=$!; pids="$pids $spid"
    addr=$(bound_addr "$tmp/$mode.out") || fail "$mode: no address printed"
    python3 "$tmp/client.py" "$addr" broadcast > "$tmp/py.txt" 2>&1 ||
        { cat "$tmp/py.txt"; fail "$mode: broadcast"; }
    sed "s/^/$mode: /" "$tmp/py.txt"
    [ -s "$tmp/$mode.err" ] && fail "$mode: server wrote on stderr"
    stop_server "$spid" "$tmp/$mode.out"
    echo "$mode: ok: SIGTERM: exit 0"

    "$chat" --listen 127.0.0.1:0 --workers 2 --mode $mode --max-pending 262144 \
        > "$tmp/slow-$mode.out" 2> "$tmp/slow-$mode.err" &
    spid=$!; pids="$pids $spid"
    addr=$(bound_addr "$tmp/slow-$mode.out") || fail "$mode: no address printed"
    python3 "$tmp/client.py" "$addr" slow "$spid" "$RSS_GROWTH_KB" > "$tmp/py.txt" 2>&1 ||
        { cat "$tmp/py.txt"; fail "$mode: slow consumer"; }
    sed "s/^/$mode: /" "$tmp/py.txt"
    [ -s "$tmp/slow-$mode.err" ] && fail "$mode: server wrote on stderr"
    stop_server "$spid" "$tmp/slow-$mode.out"
    echo "$mode: ok: SIGTERM: exit 0"
done
exit 0
