#!/bin/sh
# Install the Debian packages shmring needs to build and test, if missing.
# Usage: scripts/deps.sh [--build-only] [extra-package ...]
#   --build-only  only what building and installing the library and the
#                 `shmring` tool need (`make install`); without it, also the
#                 tools of the tests, sanitizer and fuzz builds (`make test`)
set -eu

build_only=0
if [ "${1:-}" = --build-only ]; then
    build_only=1
    shift
fi

packages="cmake make gcc clang libclang-rt-14-dev libck-dev libcriterion-dev pkg-config libnats-dev nats-server libuv1-dev $*"
[ "$build_only" -eq 0 ] || packages="cmake make gcc libck-dev $*"

missing=""
for p in $packages; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
    esac
done

[ -z "$missing" ] && exit 0

echo "shmring: installing missing packages:$missing"
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "shmring: need root (or sudo) to install:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
