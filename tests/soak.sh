#!/bin/bash
# make soak: churn and abusive peers against examples/mio-echo-threaded (2 workers).
#
#   1. churn: SOAK_CYCLES (default 1,000,000) connect / 1-byte echo / close cycles with
#      bench/mio-load --mode connect (64 concurrent loops, sources 127.0.0.1..8), in ten steps;
#      after each step the server's open fds and VmRSS are read from /proc/PID. Pass: every byte
#      echoed (mio-load exits 0), fds back to the baseline after every step, RSS at the end within
#      10 % + 1 MiB of RSS at the 10 % mark.
#   2. abuse: for SOAK_ABUSE_SECONDS (default 60) tests/soak-abuse runs slowloris, never-reading,
#      RST-mid-write, half-open and idle peers while mio-load pingpong (32 conns) must keep being
#      served with every byte verified. Pass: both exit 0, the server's peak RSS stays below
#      SOAK_RSS_LIMIT_MB (default 256), its fds return to the baseline once the abusers leave.
# Figures go to stdout (and tests/soak-report.txt in the build tree).
set -u
builddir=${top_builddir:-.}
cycles=${SOAK_CYCLES:-1000000}
abuse_s=${SOAK_ABUSE_SECONDS:-60}
rss_limit_mb=${SOAK_RSS_LIMIT_MB:-256}
server=$builddir/examples/mio-echo-threaded
load=$builddir/bench/mio-load
abuse=$builddir/tests/soak-abuse
report=$builddir/tests/soak-report.txt
fail=0

for p in "$server" "$load" "$abuse"; do
    [ -x "$p" ] || { echo "soak: $p not built"; exit 1; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null
exec > >(tee "$report") 2>&1

out=$(mktemp)
"$server" --listen 127.0.0.1:0 --workers 2 >"$out" &
spid=$!
trap 'kill $spid 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 50); do [ -s "$out" ] && break; sleep 0.1; done
addr=$(head -1 "$out")
[ -n "$addr" ] || { echo "soak: server did not start"; exit 1; }

fds() { ls /proc/$spid/fd 2>/dev/null | wc -l; }
rss() { awk '/^VmRSS/ {print $2}' /proc/$spid/status; }
settle() { # wait (up to 5 s) for the server's fd count to come back to $1
    for _ in $(seq 50); do [ "$(fds)" -le "$1" ] && return; sleep 0.1; done
}

base_fds=$(fds)
base_rss=$(rss)
echo "soak: server $addr pid $spid, $cycles cycles, baseline fds=$base_fds rss_kb=$base_rss"
echo
echo "| step | cycles done | conns/s | p99 us | server fds | server RSS KiB |"
echo "|---|---|---|---|---|---|"
step=$((cycles / 10))
done_cycles=0
rss10=
t0=$(date +%s.%N)
for i in $(seq 1 10); do
    line=$("$load" --target "$addr" --mode connect --conns 64 --threads 2 --sources 8 \
        --count "$step" --duration 3600 --no-progress)
    rc=$?
    done_cycles=$((done_cycles + step))
    settle "$base_fds"
    f=$(fds); r=$(rss)
    cps=$(echo "$line" | tr ' ' '\n' | awk -F= '$1=="conns_per_s"{print $2}')
    p99=$(echo "$line" | tr ' ' '\n' | awk -F= '$1=="p99_us"{print $2}')
    echo "| $((i * 10)) % | $done_cycles | $cps | $p99 | $f | $r |"
    [ $rc -eq 0 ] || { echo "soak: churn step $i lost or failed: $line"; fail=1; }
    [ "$f" -eq "$base_fds" ] || { echo "soak: fd count $f after step $i, baseline $base_fds"; fail=1; }
    [ $i -eq 1 ] && rss10=$r
done
t1=$(date +%s.%N)
rss_end=$(rss)
echo
echo "churn: $done_cycles cycles in $(echo "$t1 - $t0" | bc) s; RSS at 10 %: $rss10 KiB, at 100 %: $rss_end KiB"
if [ "$rss_end" -gt $((rss10 + rss10 / 10 + 1024)) ]; then
    echo "soak: RSS grew from $rss10 to $rss_end KiB after the 10 % mark"; fail=1
fi

echo
echo "abuse: $abuse_s s of slowloris / never-read / RST-mid-write / half-open peers, good clients meanwhile"
peak=0
"$abuse" --target "$addr" --seconds "$abuse_s" >"$out.abuse" &
apid=$!
sleep 1
"$load" --target "$addr" --mode pingpong --conns 32 --threads 2 --size 512 \
    --duration "$((abuse_s - 3))" --no-progress >"$out.good" &
gpid=$!
peak_fds=0
while kill -0 $apid 2>/dev/null; do
    r=$(rss); f=$(fds)
    [ "$r" -gt "$peak" ] && peak=$r
    [ "$f" -gt "$peak_fds" ] && peak_fds=$f
    sleep 0.5
done
wait $apid; arc=$?
wait $gpid; grc=$?
settle "$base_fds"
after_fds=$(fds); after_rss=$(rss)
cat "$out.abuse"
echo "good clients during abuse: $(cat "$out.good")"
echo "server during abuse: peak fds=$peak_fds peak RSS=$peak KiB; after: fds=$after_fds RSS=$after_rss KiB"
[ $arc -eq 0 ] || { echo "soak: slowloris peers were not all served"; fail=1; }
[ $grc -eq 0 ] || { echo "soak: good clients were not all served during abuse"; fail=1; }
[ "$peak" -lt $((rss_limit_mb * 1024)) ] || { echo "soak: server RSS $peak KiB above ${rss_limit_mb} MiB"; fail=1; }
[ "$after_fds" -eq "$base_fds" ] || { echo "soak: server holds $after_fds fds after abuse, baseline $base_fds"; fail=1; }
rm -f "$out.abuse" "$out.good"

kill -TERM $spid; wait $spid 2>/dev/null
trap - EXIT; rm -f "$out"
[ $fail -eq 0 ] && echo "soak: PASS" || echo "soak: FAIL"
exit $fail
