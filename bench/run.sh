#!/bin/sh
# Runs the benchmarks of a build: tables on stdout, CSV and SVG plots in BUILD_DIR/bench/.
#
# Usage: sh bench/run.sh BUILD_DIR [options for the benchmarks, e.g. --quick, --only pipe]
#
# Every bench/NAME.c is built into BUILD_DIR/bench/NAME and run as
#   NAME --csv FILE --dist-dir DIR [options]
# writing rows figure,transport,metric,value,ratio. The rows of all of them
# go to BUILD_DIR/bench/results.csv, the printed tables also to results.txt.
# (bench_fanout: fan-out to 1, 2 and 3 broadcast subscribers against a ring
# per reader, figures fanout_1..fanout_3.)
# With gnuplot, BUILD_DIR/bench/ also gets rtt_<size>.svg (round-trip latency
# by percentile), tput_<figure>.svg (throughput bars) and handover_1m.svg.
set -eu

if [ $# -lt 1 ]; then
    echo "usage: sh bench/run.sh BUILD_DIR [--quick] [--only NAME[,NAME...]]" >&2
    exit 2
fi
build=$1
shift
src=$(dirname "$0")
out=$build/bench
if [ ! -d "$out" ]; then
    echo "run.sh: $out does not exist: build first (cmake --build $build)" >&2
    exit 1
fi

csv=$out/results.csv
txt=$out/results.txt
dist=$out/dist
part=$out/.part.csv
rcfile=$out/.rc
mkdir -p "$dist"
rm -f "$dist"/*.dat "$out"/*.svg "$part"
: >"$txt"
: >"$csv.new"

# iceoryx needs its broker: start iox-roudi for the iceoryx rows of bench_ipc
# and stop it, by its pid, when the benchmarks end.
roudi_pid=""
stop_roudi() {
    if [ -n "$roudi_pid" ]; then
        kill "$roudi_pid" 2>/dev/null || true
        wait "$roudi_pid" 2>/dev/null || true
        roudi_pid=""
    fi
}
trap stop_roudi EXIT
trap 'stop_roudi; exit 130' INT TERM
if [ -x "$out/bench_ipc" ] && command -v iox-roudi >/dev/null 2>&1; then
    roudi_log=$out/iox-roudi.log
    iox-roudi >"$roudi_log" 2>&1 &
    roudi_pid=$!
    i=0
    while [ "$i" -lt 600 ] && ! grep -q "RouDi is ready for clients" "$roudi_log"; do
        kill -0 "$roudi_pid" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    if grep -q "RouDi is ready for clients" "$roudi_log"; then
        BENCH_IOX_ROUDI=1
        export BENCH_IOX_ROUDI
        echo "run.sh: iox-roudi started (pid $roudi_pid) for the iceoryx rows"
    else
        echo "run.sh: iox-roudi did not become ready (see $roudi_log): iceoryx rows skipped"
        stop_roudi
    fi
else
    echo "run.sh: iox-roudi not found: iceoryx rows skipped (make bench installs iceoryx)"
fi

ran=0
for c in "$src"/*.c; do
    name=$(basename "$c" .c)
    bin=$out/$name
    if [ ! -x "$bin" ]; then
        echo "run.sh: $bin missing: build first (cmake --build $build)" >&2
        exit 1
    fi
    # The pipe through tee hides the exit status: keep it in a file.
    { "$bin" --csv "$part" --dist-dir "$dist" "$@"; echo $? >"$rcfile"; } 2>&1 | tee -a "$txt"
    rc=$(cat "$rcfile")
    rm -f "$rcfile"
    if [ "$rc" -ne 0 ]; then
        echo "run.sh: $name failed (exit $rc)" >&2
        exit 1
    fi
    if [ "$ran" -eq 0 ]; then
        cat "$part" >"$csv.new"
    else
        tail -n +2 "$part" >>"$csv.new"
    fi
    rm -f "$part"
    ran=$((ran + 1))
done
# The NATS bridge (docs/distributed.md), when the tool was built with libnats:
# a nats-server of its own on 127.0.0.1, stopped by its pid.
if "$build/shmring" bridge --help >/dev/null 2>&1 && command -v nats-server >/dev/null 2>&1; then
    natsdir=$(mktemp -d)
    natspid=""
    for _try in 1 2 3 4 5; do
        port=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))
        nats-server -a 127.0.0.1 -p "$port" -js -sd "$natsdir" >"$natsdir/log" 2>&1 &
        natspid=$!
        i=0
        while [ $i -lt 100 ] && ! grep -q "Server is ready" "$natsdir/log"; do sleep 0.1; i=$((i + 1)); done
        grep -q "Server is ready" "$natsdir/log" && break
        kill "$natspid" 2>/dev/null; wait "$natspid" 2>/dev/null || true; natspid=""
    done
    if [ -n "$natspid" ]; then
        { "$build/shmring" bridge bench "nats://127.0.0.1:$port" --csv "$part" 2>/dev/null; echo $? >"$rcfile"; } | tee -a "$txt"
        kill "$natspid"; wait "$natspid" 2>/dev/null || true
        [ "$(cat "$rcfile")" -eq 0 ] || { echo "run.sh: shmring bridge bench failed" >&2; exit 1; }
        tail -n +2 "$part" >>"$csv.new"
        rm -f "$part" "$rcfile"
        ran=$((ran + 1))
    else
        echo "run.sh: nats-server did not start: no bridge benchmark" >&2
    fi
    rm -rf "$natsdir"
else
    echo "run.sh: no shmring bridge (libnats) or no nats-server: no bridge benchmark"
fi
stop_roudi
mv "$csv.new" "$csv"
echo "run.sh: $ran benchmark(s); rows in $csv, tables in $txt"

# Locked instructions per message, counted by callgrind (not a timing: the
# same on a busy machine as on a quiet one).
if command -v valgrind >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1 &&
    command -v objdump >/dev/null 2>&1; then
    python3 "$src/locked.py" "$build" | tee -a "$txt"
else
    echo "run.sh: valgrind, python3 or objdump missing: no count of locked instructions"
fi

if ! command -v gnuplot >/dev/null 2>&1; then
    echo "run.sh: gnuplot not found: no plots (make bench installs it)"
    exit 0
fi

svg_head() { # output-file title
    cat <<EOF
set terminal svg size 960,560 dynamic background rgb 'white' font 'sans,12'
set termoption noenhanced
set output '$1'
set title '$2'
set grid
set linetype 9 lc rgb '#7f7f7f' dt 2
set linetype 10 lc rgb '#000000' dt 3
set linetype cycle 10
EOF
}

# Round-trip latency by percentile, one curve per transport.
for f in "$dist"/rtt_*_*.dat; do
    [ -f "$f" ] || continue
    size=$(basename "$f" .dat | cut -d_ -f2)
    echo "$size"
done | sort -un | while read -r size; do
    plot=""
    for f in "$dist"/rtt_"$size"_*.dat; do
        t=$(basename "$f" .dat | cut -d_ -f3-)
        plot="$plot${plot:+, }'$f' using 2:3 with linespoints pt 7 ps 0.3 lw 2 title '$t'"
    done
    {
        svg_head "$out/rtt_$size.svg" "Round trip of $size-byte messages between two pinned processes"
        cat <<EOF
set logscale xy
set xlabel 'percentile'
set ylabel 'round trip (ns)'
set xtics ('0%%' 1, '50%%' 2, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000)
set key outside right
plot $plot
EOF
    } | gnuplot
done

# Throughput bars (messages per second, log scale) per throughput figure.
awk -F, 'NR > 1 && $3 == "msgs_per_s" { print $1 }' "$csv" | sort -u | while read -r fig; do
    data=$out/.bars.dat
    awk -F, -v f="$fig" '$1 == f && $3 == "msgs_per_s" { print $2, $4 }' "$csv" >"$data"
    {
        svg_head "$out/$fig.svg" "One-way throughput, $fig (messages/s; higher is better)"
        cat <<EOF
set logscale y
set ylabel 'messages per second'
set style fill solid 0.8 border -1
set boxwidth 0.7
set xtics nomirror font ',9'
set yrange [*:*]
plot '$data' using 0:2:xtic(1) with boxes lc rgb '#4477aa' notitle, \
     '' using 0:2:(sprintf('%.3g', \$2)) with labels offset 0,0.8 notitle
EOF
    } | gnuplot
    rm -f "$data"
done

# Hand-over of one large message: median ns per transport.
if grep -q '^handover_1m,.*,median_ns,' "$csv"; then
    data=$out/.bars.dat
    awk -F, '$1 == "handover_1m" && $3 == "median_ns" { print $2, $4 }' "$csv" >"$data"
    {
        svg_head "$out/handover_1m.svg" "Hand-over of a 1 MiB message, median (lower is better)"
        cat <<EOF
set ylabel 'ns per hand-over'
set style fill solid 0.8 border -1
set boxwidth 0.6
set xtics nomirror
set yrange [0:*]
plot '$data' using 0:2:xtic(1) with boxes lc rgb '#cc6677' notitle, \
     '' using 0:2:(sprintf('%.0f', \$2)) with labels offset 0,0.8 notitle
EOF
    } | gnuplot
    rm -f "$data"
fi
for f in "$out"/*.svg; do
    [ -f "$f" ] && echo "run.sh: plot $f"
done
exit 0
