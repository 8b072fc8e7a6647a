#!/bin/sh
# mio-http against tests/http_client on real sockets (127.0.0.1, port 0): keep-alive, HEAD,
# HTTP/1.0, Connection: close, pipelining in one send, one byte at a time, the same stream split
# at every byte boundary, 400 / 411 / 431 / 408 and the close after them, the 8 KiB header limit
# exactly, idle close, a fresh Date header and some concurrent load; in acceptor and reuseport
# mode. Then a graceful stop (SIGTERM, SIGINT) with a keep-alive connection open: exit 0, the
# connection closed. Bad numbers on the command line: exit 2 with one line. curl, when
# installed, is an extra client. Skips (77) when mio-http was not built (no libhttp-parser).
set -u
b=${top_builddir:-.}
http=$b/examples/mio-http
client=$b/tests/http_client
tmp=$(mktemp -d) || exit 1
pids=
cleanup() {
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; exit 1; }

if [ ! -x "$http" ]; then
    echo "SKIP: mio-http not built (configure found no libhttp-parser)"
    exit 77
fi
[ -x "$client" ] || fail "$client not built"

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

# Stops server $1 with signal $2; it must exit 0 with its summary line in $3.
stop_server() {
    kill -"$2" "$1" || fail "server $1 already gone"
    wait "$1"; rc=$?
    [ $rc -eq 0 ] || fail "server $1 exited $rc after SIG$2"
    grep -q "^stopped: " "$3" || fail "no summary line from server $1"
}

# 1. command line
"$http" --help > "$tmp/help" 2>&1 || fail "--help exited non-zero"
grep -q -- "--header-timeout MS" "$tmp/help" || fail "--help does not list --header-timeout"
for bad in "--header-timeout abc" "--header-timeout -1" "--header-timeout 86400001" \
    "--idle-timeout 1x" "--idle-timeout 99999999999999999999999" "--workers 4097"; do
    # shellcheck disable=SC2086
    timeout 5 "$http" --listen 127.0.0.1:0 $bad > "$tmp/bad.out" 2> "$tmp/bad.err"; rc=$?
    [ $rc -eq 2 ] || fail "'$bad' exited $rc, want 2"
    [ "$(wc -l < "$tmp/bad.err")" -eq 1 ] || fail "'$bad': want one line on stderr"
    grep -q -- "${bad%% *}" "$tmp/bad.err" || fail "'$bad': the message names no option"
    [ -s "$tmp/bad.out" ] && fail "'$bad' printed on stdout"
done
if "$http" --no-such-option > /dev/null 2>&1; then fail "a bad option is accepted"; fi
echo "ok: command line"

# 2. conformance, acceptor mode then reuseport mode
for mode in acceptor reuseport; do
    "$http" --listen 127.0.0.1:0 --workers 2 --mode $mode --header-timeout 500 \
        --idle-timeout 1000 > "$tmp/$mode.out" 2> "$tmp/$mode.err" &
    spid=$!; pids="$pids $spid"
    addr=$(bound_addr "$tmp/$mode.out") || fail "$mode: no address printed"
    "$client" "$addr" 500 1000 > "$tmp/client-$mode.out" 2>&1 || fail "$mode: http_client"
    sed "s/^/$mode: /" "$tmp/client-$mode.out"

    # curl, if there is one: an independent client
    if command -v curl > /dev/null 2>&1; then
        body=$(curl -s --max-time 5 "http://$addr/plaintext") || fail "$mode: curl"
        [ "$body" = "Hello, World!" ] || fail "$mode: curl got '$body'"
        code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://$addr/nope")
        [ "$code" = 404 ] || fail "$mode: curl /nope got $code"
        curl -sI --max-time 5 "http://$addr/plaintext" > "$tmp/curl.head" || fail "$mode: curl -I"
        grep -q "^Content-Length: 13" "$tmp/curl.head" || fail "$mode: curl -I: no Content-Length 13"
        body=$(curl -s --http1.0 --max-time 5 "http://$addr/") || fail "$mode: curl --http1.0"
        [ "$body" = "Hello, World!" ] || fail "$mode: curl --http1.0 got '$body'"
        curl -sv --max-time 5 -o /dev/null -o /dev/null "http://$addr/plaintext" \
            "http://$addr/" > "$tmp/curl.v" 2>&1 || fail "$mode: curl twice"
        grep -qi "re-using existing connection" "$tmp/curl.v" || fail "$mode: curl did not keep alive"
        echo "$mode: ok: curl"
    else
        echo "$mode: curl not installed: extra check skipped"
    fi
    [ -s "$tmp/$mode.err" ] && fail "$mode: server wrote on stderr"
    stop_server "$spid" TERM "$tmp/$mode.out"
    echo "ok: $mode mode, SIGTERM"
done

# 3. graceful stop with a keep-alive connection open (default timeouts: it stays open)
for sig in TERM INT; do
    "$http" --listen 127.0.0.1:0 --workers 2 > "$tmp/stop-$sig.out" 2> "$tmp/stop-$sig.err" &
    spid=$!; pids="$pids $spid"
    addr=$(bound_addr "$tmp/stop-$sig.out") || fail "stop: no address printed"
    # a file per signal: the shell may truncate it only after the grep below has run, and the
    # last round's "held" must not be taken for this round's
    "$client" "$addr" hold > "$tmp/hold-$sig.out" 2>&1 &
    cpid=$!; pids="$pids $cpid"
    i=0
    until grep -q held "$tmp/hold-$sig.out"; do
        i=$((i + 1)); [ $i -lt 100 ] || fail "hold client got no answer"; sleep 0.05
    done
    stop_server "$spid" "$sig" "$tmp/stop-$sig.out"
    wait "$cpid" || fail "the held connection was not closed by SIG$sig"
    echo "ok: SIG$sig with a keep-alive connection open: exit 0, connection closed"
done
exit 0
