#!/bin/sh
# Checks tests/private_shm.sh: each run gets a fresh private directory that
# is gone afterwards, after a failure, a crash, a SIGTERM, and (at the next
# run) after a SIGKILL of the runner itself.
set -u
here=$(dirname "$0")
base=$(mktemp -d "${TMPDIR:-/tmp}/private-shm-check.XXXXXX") || exit 1
trap 'rm -rf "$base"' EXIT
fail() { echo "private_shm_check: $*" >&2; exit 1; }
run() { SHMRING_SHM_DIR=$base sh "$here/private_shm.sh" "$@"; }
# In the background, the runner itself is the job (its pid in $!).
run_bg() { (SHMRING_SHM_DIR=$base exec sh "$here/private_shm.sh" "$@" >/dev/null 2>&1) & }
left() { ls -A "$base"; }

# The program sees its own directory inside the given one, and leaves nothing.
run sh -c 'case $SHMRING_SHM_DIR in "'"$base"'"/shmring-test.*) ;; *) exit 9 ;; esac
           [ -d "$SHMRING_SHM_DIR" ] && touch "$SHMRING_SHM_DIR/seg" && [ -z "$(ls -A "$SHMRING_SHM_DIR" | grep -v seg)" ]'
[ $? -eq 0 ] || fail "no private directory"
[ -z "$(left)" ] || fail "left after a pass: $(left)"

# A failing and a crashing program: status kept, nothing left.
run sh -c 'touch "$SHMRING_SHM_DIR/a"; exit 3'
[ $? -eq 3 ] || fail "exit status not kept"
[ -z "$(left)" ] || fail "left after a failure: $(left)"
run sh -c 'touch "$SHMRING_SHM_DIR/b"; kill -SEGV $$'
[ $? -eq 139 ] || fail "crash status not kept"
[ -z "$(left)" ] || fail "left after a crash: $(left)"

# The runner stopped by SIGTERM while the program runs.
run_bg sh -c 'touch "$SHMRING_SHM_DIR/c"; exec sleep 30'
runner=$!
i=0
while [ -z "$(ls "$base"/shmring-test.*/c 2>/dev/null)" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
kill -TERM "$runner"
wait "$runner"
[ -z "$(left)" ] || fail "left after SIGTERM: $(left)"

# The runner killed outright: its directory stays until the next run.
run_bg sh -c 'echo $$ > "$SHMRING_SHM_DIR/d"; exec sleep 30'
runner=$!
i=0
while [ -z "$(cat "$base"/shmring-test.*/d 2>/dev/null)" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
kill -KILL "$runner"
wait "$runner" 2>/dev/null
orphan=$(cat "$base"/shmring-test.*/d 2>/dev/null)
[ -n "$orphan" ] || fail "SIGKILL case did not start"
kill -KILL "$orphan" # the program outlived its runner
run true || fail "a plain run failed"
[ -z "$(left)" ] || fail "left after SIGKILL and another run: $(left)"
echo "private_shm_check: ok"
