#!/bin/sh
# Packaging test: installs a build into a temporary prefix and builds a program against it.
#
# Usage: sh check.sh [--fresh notests|nocriterion] BUILD_DIR SOURCE_DIR LIBDIR VERSION [CC [CMAKE]]
#   LIBDIR   CMAKE_INSTALL_LIBDIR of the build (lib, lib64, lib/x86_64-linux-gnu)
#   VERSION  the project version the build was configured with
#   --fresh  do not install BUILD_DIR: configure and build SOURCE_DIR anew with CC in
#            a temporary directory, and install that build:
#            notests      -DSHMRING_TESTS=OFF (and no benchmarks, no examples);
#            nocriterion  the README's plain `cmake -S . -B build` with Criterion
#                         hidden from CMake's find_* (CMAKE_IGNORE_PREFIX_PATH and
#                         CMAKE_IGNORE_PATH cover /usr, /usr/local and /; Concurrency
#                         Kit's ck_pr.h is offered from a directory of its own):
#                         configuring must succeed and say that the tests are
#                         skipped, and nothing built may need libcriterion. Then,
#                         configure only, with a compiler that rejects -fsanitize:
#                         SHMRING_SANITIZE=thread and SHMRING_FUZZ=ON are skipped
#                         with a warning, and the library still builds.
#            Each source file of the library must be compiled once.
#
# Checks, against the installed copy only:
#  - the files: libshmring.so.VERSION with its SONAME (major version) and
#    symlinks, libshmring.a, shmring.h and shmring/*.h (no header of src/),
#    the tool and its man page, the CMake package and the pkg-config file,
#    the documentation in share/doc/shmring (README.md, docs/*.md) and a
#    manual page that points there;
#  - the shared library exports exactly the functions the installed headers
#    declare, all shmring_*, all in a version node of src/shmring.map, and
#    the map names exactly those functions;
#  - tests/packaging/consumer.c, built with find_package(shmring) (shared
#    and static) and with pkg-config (shared and static), runs: it pushes and
#    pops a message and checks that shmring_version() and
#    SHMRING_VERSION_STRING agree; its output must show VERSION;
#  - DESTDIR staging writes only under DESTDIR and keeps DESTDIR out of the
#    pkg-config file.
# Everything is built in a temporary directory, removed on exit; the build's
# install_manifest.txt is restored.
set -eu

fresh=
if [ "${1:-}" = --fresh ]; then
    fresh=${2:-}
    shift 2 || true
    case $fresh in
    notests | nocriterion) ;;
    *)
        echo "check.sh: --fresh takes notests or nocriterion" >&2
        exit 2
        ;;
    esac
fi
if [ $# -lt 4 ]; then
    echo "usage: sh check.sh [--fresh notests|nocriterion] BUILD_DIR SOURCE_DIR LIBDIR VERSION [CC [CMAKE]]" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
libdir=$3
version=$4
cc=${5:-cc}
cmake=${6:-cmake}
major=${version%%.*}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmring-packaging.XXXXXX")
manifest=$build/install_manifest.txt
had_manifest=0
if [ -f "$manifest" ]; then
    cp -p "$manifest" "$tmp/install_manifest.saved"
    had_manifest=1
fi
cleanup() {
    if [ "$had_manifest" -eq 1 ]; then
        cp -p "$tmp/install_manifest.saved" "$manifest"
    else
        rm -f "$manifest"
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

fails=0
fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}
ok() {
    echo "ok: $*"
}
# Runs a command quietly; on failure shows its output and stops.
run() {
    what=$1
    shift
    if ! "$@" >"$tmp/out.log" 2>&1; then
        cat "$tmp/out.log" >&2
        echo "FAIL: $what" >&2
        exit 1
    fi
}

prefix=$tmp/prefix
unset DESTDIR LD_LIBRARY_PATH PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR || true

# ---- A fresh build (--fresh) --------------------------------------------------
# The value of a CMake cache entry of BUILD_DIR, or nothing.
cache_value() {
    sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt" 2>/dev/null | head -n 1
}
# Configures $src in directory $1 with the remaining arguments; the output is in $1.log.
configure() {
    dir=$1
    shift
    if ! "$cmake" -S "$src" -B "$dir" -DCMAKE_C_COMPILER="$cc" "$@" >"$dir.log" 2>&1; then
        cat "$dir.log" >&2
        echo "FAIL: configuring with $*" >&2
        exit 1
    fi
}
# Whether the log $2 says $1 (a grep pattern), whatever CMake's line wrapping.
said() {
    tr -s ' \n' '  ' <"$2" | grep -q "$1"
}
# Each source file of the library is compiled once (not once per library).
compiled_once() { # build log
    for c in "$src"/src/*.c; do
        n=$(grep -c "Building C object .*src/$(basename "$c")\.o\$" "$1" || true)
        [ "$n" -eq 1 ] || fail "src/$(basename "$c") compiled $n times, not once"
    done
}
if [ -n "$fresh" ]; then
    fb=$tmp/build
    mkdir -p "$fb"
    if [ "$fresh" = notests ]; then
        configure "$fb" -DSHMRING_TESTS=OFF -DSHMRING_BENCH=OFF -DSHMRING_EXAMPLES=OFF
        ok "configured with SHMRING_TESTS=OFF"
    else
        ck=$(cache_value CK_INCLUDE_DIR)
        [ -f "$ck/ck_pr.h" ] || ck=/usr/include
        mkdir -p "$tmp/ck"
        ln -s "$ck/ck_pr.h" "$tmp/ck/ck_pr.h"
        ignore="/usr/include;/usr/local/include;/usr/lib;/usr/local/lib;/usr/lib64;/lib;/lib64"
        multiarch=$("$cc" -print-multiarch 2>/dev/null || true)
        [ -z "$multiarch" ] || ignore="$ignore;/usr/lib/$multiarch;/lib/$multiarch"
        crit=$(cache_value CRITERION_LIBRARY)
        case $crit in */*) ignore="$ignore;$(dirname "$crit")" ;; esac
        crit=$(cache_value CRITERION_INCLUDE_DIR)
        case $crit in /*) ignore="$ignore;$crit" ;; esac
        configure "$fb" -DCMAKE_IGNORE_PREFIX_PATH="/usr;/usr/local;/" \
            -DCMAKE_IGNORE_PATH="$ignore" -DCMAKE_INCLUDE_PATH="$tmp/ck"
        if said "Criterion (libcriterion-dev) not found: the test suites in tests/ are skipped" "$fb.log"; then
            ok "configured without Criterion: the test suites are skipped, with a message"
        else
            cat "$fb.log" >&2
            fail "configuring without Criterion did not say that the tests are skipped"
        fi
        build=$fb # cache_value reads the fresh build's cache from here on
        [ "$(cache_value CRITERION_LIBRARY)" = CRITERION_LIBRARY-NOTFOUND ] ||
            fail "Criterion was found at '$(cache_value CRITERION_LIBRARY)' although hidden"
        [ "$(cache_value CK_INCLUDE_DIR)" = "$tmp/ck" ] ||
            fail "ck_pr.h found at '$(cache_value CK_INCLUDE_DIR)', not where it was offered"
    fi
    build=$fb
    run "cmake --build (fresh $fresh build)" "$cmake" --build "$fb" -j 2
    cp "$tmp/out.log" "$fb.build.log"
    compiled_once "$fb.build.log"
    ok "built; each library source compiled once"
    (cd "$fb" && ctest -N) >"$tmp/ctest.txt" 2>&1 || true
    if [ "$fresh" = notests ] && ! grep -q 'Total Tests: 0' "$tmp/ctest.txt"; then
        fail "the build configured with SHMRING_TESTS=OFF registers tests:"
        cat "$tmp/ctest.txt" >&2
    fi
    if grep -q ' test_' "$tmp/ctest.txt"; then
        fail "the fresh $fresh build registers Criterion suites:"
        cat "$tmp/ctest.txt" >&2
    fi
    find "$fb" -type f \( -perm -u+x -o -name '*.so*' \) ! -name '*.sh' >"$tmp/elves"
    while read -r f; do
        if objdump -p "$f" 2>/dev/null | grep -q 'NEEDED.*libcriterion'; then
            fail "${f#"$fb"/} needs libcriterion"
        fi
    done <"$tmp/elves"
    ok "no Criterion suite registered, nothing built needs libcriterion"
    if [ "$fresh" = nocriterion ]; then
        # A compiler without sanitizers or libFuzzer (gcc without its runtimes).
        nosan=$tmp/cc-nosan
        printf '%s\n' '#!/bin/sh' 'for a; do case $a in -fsanitize=*)' \
            '    echo "cc-nosan: $a: unsupported" >&2; exit 1 ;; esac; done' \
            "exec \"$cc\" \"\$@\"" >"$nosan"
        chmod +x "$nosan"
        for opt in SHMRING_SANITIZE=thread SHMRING_SANITIZE=address SHMRING_FUZZ=ON; do
            dir=$tmp/skip-${opt%%=*}-${opt#*=}
            cc_saved=$cc
            cc=$nosan
            configure "$dir" -D"$opt" -DSHMRING_TESTS=OFF -DSHMRING_BENCH=OFF \
                -DSHMRING_EXAMPLES=OFF -DSHMRING_CLI=OFF
            cc=$cc_saved
            if said "${opt%%=*}.* skipped" "$dir.log"; then
                run "building the library after $opt was skipped" "$cmake" --build "$dir" -j 2
                ok "$opt without compiler support: skipped with a message, the library builds"
            else
                cat "$dir.log" >&2
                fail "$opt without compiler support: no skip message"
            fi
        done
    fi
fi

# ---- Install ----------------------------------------------------------------
run "cmake --install $build --prefix $prefix" "$cmake" --install "$build" --prefix "$prefix"
ok "installed into a temporary prefix"

lib=$prefix/$libdir
real=libshmring.so.$version
if [ -f "$lib/$real" ] && [ ! -L "$lib/$real" ]; then ok "$libdir/$real"; else fail "$libdir/$real missing"; fi
link=$(readlink "$lib/libshmring.so.$major" || true)
[ "$link" = "$real" ] && ok "libshmring.so.$major -> $link" ||
    fail "libshmring.so.$major links to '$link', expected $real"
link=$(readlink "$lib/libshmring.so" || true)
[ "$link" = "libshmring.so.$major" ] && ok "libshmring.so -> $link" ||
    fail "libshmring.so links to '$link', expected libshmring.so.$major"
soname=$(objdump -p "$lib/$real" 2>/dev/null | awk '$1 == "SONAME" { print $2 }')
[ "$soname" = "libshmring.so.$major" ] && ok "SONAME $soname" ||
    fail "SONAME is '$soname', expected libshmring.so.$major"
if [ -f "$lib/libshmring.a" ] && ar t "$lib/libshmring.a" | grep -q '\.o$'; then
    ok "$libdir/libshmring.a"
else
    fail "$libdir/libshmring.a missing or empty"
fi
for f in "$libdir/cmake/shmring/shmringConfig.cmake" \
    "$libdir/cmake/shmring/shmringConfigVersion.cmake" \
    "$libdir/cmake/shmring/shmringTargets.cmake" "$libdir/pkgconfig/shmring.pc" \
    share/man/man1/shmring.1; do
    [ -f "$prefix/$f" ] && ok "$f" || fail "$f missing"
done
if [ -x "$build/shmring" ]; then
    [ -x "$prefix/bin/shmring" ] && ok "bin/shmring" || fail "bin/shmring missing"
fi

# ---- Documentation ------------------------------------------------------------
docdir=$prefix/share/doc/shmring
missing_docs=
for f in "$src"/README.md "$src"/docs/*.md; do
    rel=${f#"$src"/}
    cmp -s "$f" "$docdir/$rel" || missing_docs="$missing_docs $rel"
done
if [ -z "$missing_docs" ]; then
    ok "share/doc/shmring: README.md and $(ls "$src"/docs/*.md | wc -l) pages of docs/"
else
    fail "share/doc/shmring lacks:$missing_docs"
fi
grep -q 'share/doc/shmring' "$prefix/share/man/man1/shmring.1" 2>/dev/null &&
    ok "the manual page points to share/doc/shmring" ||
    fail "the manual page does not name share/doc/shmring"

# ---- Headers: exactly the public ones ---------------------------------------
expected=$tmp/headers.expected
{
    echo shmring.h
    echo shmring/version.h
    for h in "$src"/include/shmring/*.h; do
        [ -f "$h" ] && echo "shmring/$(basename "$h")"
    done
} | sort -u >"$expected"
(cd "$prefix/include" && find . -type f | sed 's|^\./||' | sort) >"$tmp/headers.installed"
if cmp -s "$expected" "$tmp/headers.installed"; then
    ok "headers: $(tr '\n' ' ' <"$expected")"
else
    fail "installed headers differ from include/ (< expected, > installed):"
    diff "$expected" "$tmp/headers.installed" >&2 || true
fi
# No file anywhere in the prefix is a copy of a private header of src/.
find "$prefix" -type f -name '*.h' >"$tmp/all_headers"
for h in "$src"/src/*.h "$src"/src/*/*.h; do
    [ -f "$h" ] || continue
    while read -r f; do
        if cmp -s "$h" "$f"; then
            fail "internal header ${h#"$src"/} installed as ${f#"$prefix"/}"
        fi
    done <"$tmp/all_headers"
done
# Every quoted include of an installed header names an installed header.
for h in $(cat "$tmp/headers.installed"); do
    dir=$(dirname "$prefix/include/$h")
    for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' \
        "$prefix/include/$h"); do
        [ -f "$dir/$inc" ] || [ -f "$prefix/include/$inc" ] ||
            fail "$h includes \"$inc\", which is not installed"
    done
done
ok "no internal header installed"

# ---- Exported symbols -------------------------------------------------------
nodes=$(sed -n 's/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_.]*\)[[:space:]]*{.*/\1/p' "$src/src/shmring.map")
[ -n "$nodes" ] || fail "no version node found in src/shmring.map"
nm -D --defined-only "$lib/$real" >"$tmp/nm.txt"
: >"$tmp/exported"
while read -r _addr type sym; do
    name=${sym%%@*}
    node=${sym##*@}
    if [ "$type" = A ]; then # the version nodes themselves
        echo "$nodes" | grep -qx "$name" || fail "absolute symbol $name is not a node of shmring.map"
        continue
    fi
    case $name in
    shmring__*) fail "internal symbol $sym exported" ;;
    shmring_*) ;;
    *) fail "symbol $sym exported outside the shmring_ namespace" ;;
    esac
    if [ "$name" = "$sym" ] || ! echo "$nodes" | grep -qx "$node"; then
        fail "symbol $sym not in a version node of shmring.map ($(echo $nodes))"
    fi
    echo "$name" >>"$tmp/exported"
done <"$tmp/nm.txt"
sort -u "$tmp/exported" -o "$tmp/exported"
sed -n 's/.*SHMRING_API[^(]*[[:space:]*]\(shmring_[A-Za-z0-9_]*\)[[:space:]]*(.*/\1/p' \
    $(sed "s|^|$prefix/include/|" "$tmp/headers.installed") | sort -u >"$tmp/declared"
# The map itself names exactly the public functions: no pattern, nothing more.
sed -n '/global:/,/local:/p' "$src/src/shmring.map" | sed 's|/\*.*\*/||' |
    tr -d ' \t' | sed -n 's/^\([^:]*\);$/\1/p' | sort -u >"$tmp/mapped"
if cmp -s "$tmp/declared" "$tmp/mapped"; then
    ok "src/shmring.map names the $(wc -l <"$tmp/mapped") declared functions, nothing else"
else
    fail "the global names of src/shmring.map differ from the declared functions (< declared, > map):"
    diff "$tmp/declared" "$tmp/mapped" >&2 || true
fi
if [ ! -s "$tmp/declared" ]; then
    fail "no SHMRING_API function found in the installed headers"
elif cmp -s "$tmp/declared" "$tmp/exported"; then
    ok "exports the $(wc -l <"$tmp/exported") declared functions, versioned $(echo $nodes)"
else
    fail "exported symbols differ from the functions the headers declare (< declared, > exported):"
    diff "$tmp/declared" "$tmp/exported" >&2 || true
fi

# ---- A consumer built with find_package(shmring) ----------------------------
check_output() { # what, program
    out=$("$2" 2>&1) || {
        echo "$out" >&2
        fail "$1: consumer failed"
        return 0
    }
    if [ "$out" = "library $version header $version" ]; then
        ok "$1: $out"
    else
        echo "$out" >&2
        fail "$1: expected 'library $version header $version'"
    fi
}
loads_installed() { # what, program
    so=$(ldd "$2" | awk '$1 ~ /^libshmring/ { print $3 }')
    so=$(readlink -f "$so" 2>/dev/null || true)
    [ "$so" = "$(readlink -f "$lib/$real")" ] || fail "$1 loads '$so', not the installed library"
}
links_no_shared() { # what, program
    if ldd "$2" | grep -q libshmring; then fail "$1 needs libshmring.so"; fi
}
run "cmake configure of tests/packaging" "$cmake" -S "$src/tests/packaging" -B "$tmp/cmake" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DSHMRING_EXPECT_VERSION="$version" \
    -DSHMRING_EXPECT_DIR="$prefix/$libdir/cmake/shmring"
run "cmake build of tests/packaging" "$cmake" --build "$tmp/cmake"
check_output "find_package, shmring::shmring" "$tmp/cmake/consumer_shared"
loads_installed "find_package, shmring::shmring" "$tmp/cmake/consumer_shared"
check_output "find_package, shmring::shmring_static" "$tmp/cmake/consumer_static"
links_no_shared "find_package, shmring::shmring_static" "$tmp/cmake/consumer_static"

# ---- A consumer built with pkg-config ---------------------------------------
PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
export PKG_CONFIG_PATH
pcv=$(pkg-config --modversion shmring)
[ "$pcv" = "$version" ] && ok "pkg-config --modversion: $pcv" || fail "pkg-config version '$pcv'"
pcp=$(pkg-config --variable=prefix shmring)
[ "$pcp" = "$prefix" ] || fail "pkg-config prefix '$pcp', expected $prefix"
pclib=$(pkg-config --variable=libdir shmring)
strict="-std=c11 -Wall -Wextra -Werror -pedantic"
# shellcheck disable=SC2046,SC2086
run "cc with pkg-config (shared)" "$cc" $strict -o "$tmp/pc_shared" "$src/tests/packaging/consumer.c" \
    $(pkg-config --cflags --libs shmring) -Wl,-rpath,"$pclib"
check_output "pkg-config, shared" "$tmp/pc_shared"
loads_installed "pkg-config, shared" "$tmp/pc_shared"
# shellcheck disable=SC2046,SC2086
run "cc with pkg-config --static" "$cc" $strict -o "$tmp/pc_static" "$src/tests/packaging/consumer.c" \
    $(pkg-config --cflags shmring) "$pclib/libshmring.a" $(pkg-config --static --libs-only-other shmring)
check_output "pkg-config, static" "$tmp/pc_static"
links_no_shared "pkg-config, static" "$tmp/pc_static"

# ---- DESTDIR staging ----------------------------------------------------------
stage=$tmp/stage
dest=/opt/shmring-packaging-test-$$
run "DESTDIR install" env DESTDIR="$stage" "$cmake" --install "$build" --prefix "$dest"
if [ -e "$dest" ]; then
    fail "DESTDIR install wrote to $dest"
elif grep -qx "prefix=$dest" "$stage$dest/$libdir/pkgconfig/shmring.pc" 2>/dev/null &&
    [ -f "$stage$dest/$libdir/$real" ]; then
    ok "DESTDIR install: files under DESTDIR, pkg-config prefix=$dest"
else
    fail "DESTDIR install: library or 'prefix=$dest' in shmring.pc missing under DESTDIR"
fi

if [ "$fails" -ne 0 ]; then
    echo "packaging: $fails check(s) failed" >&2
    exit 1
fi
echo "packaging: all checks passed"
