#!/bin/sh
# Runs one test program (the arguments) in a private shm directory: every
# ctest entry gets its own $SHMRING_SHM_DIR, created here inside the one
# given (or /dev/shm) and removed afterwards, whether the program passes,
# fails, crashes or is interrupted. A run killed outright (SIGKILL: no trap
# runs) leaves its directory behind; the next run removes the directories
# whose runner is gone. Tests of the default directory set it themselves.
set -u
base=${SHMRING_SHM_DIR:-/dev/shm}
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}

for stale in "$base"/shmring-test.*; do
    [ -d "$stale" ] || continue
    pid=${stale##*.}
    case $pid in '' | *[!0-9]*) continue ;; esac
    kill -0 "$pid" 2>/dev/null || rm -rf "$stale"
done

dir="$base/shmring-test.$$"
rm -rf "$dir"
mkdir -m 0700 "$dir" || exit 1
child=
cleanup() {
    [ -n "$child" ] && kill -KILL "$child" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

SHMRING_SHM_DIR=$dir
export SHMRING_SHM_DIR
"$@" &
child=$!
wait "$child"
rc=$?
child=
exit "$rc"
