#!/bin/bash
# make check-install (after make deb): libmio as a user gets it.
#  1. The packages: apt-get resolves their dependencies (a simulation: nothing is installed), each
#     holds what it should, and, unpacked with dpkg -x into a scratch root, the README's example
#     builds with the README's line, pkg-config pointed at that root (PKG_CONFIG_SYSROOT_DIR),
#     and runs; every program of mio-tools runs; man opens pages of libmio-dev by file and name.
#  2. make install to a temporary prefix (from the dist tarball make deb kept), then the README's
#     non-system-prefix line (rpath from pkg-config's libdir) builds the example, which runs
#     without LD_LIBRARY_PATH and loads libmio from that prefix.
# The packages are unpacked, not installed with dpkg -i: the check needs no root, leaves the
# machine's /usr as it was (others may build on it at the same time), and a libmio already
# installed there cannot stand in for the one under test.
# Environment: top_srcdir, top_builddir, deb_dir, PACKAGE, PACKAGE_VERSION (from make).
set -euo pipefail
srcdir=${top_srcdir:?}
builddir=${top_builddir:?}
debs=${deb_dir:?}
version=${PACKAGE_VERSION:?}
readme="$srcdir/README.md"
port=13265 # the README example's address

step() { echo "check-install: $*"; }
die() { echo "check-install: FAIL: $*" >&2; exit 1; }

tmp=$(mktemp -d "$builddir/check-install.XXXXXX")
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# The commands the README gives are the ones run here: if the README changes them, this fails
# until it is brought along.
readme_line() {
    grep -qF -- "$1" "$readme" || die "README.md no longer shows: $1"
}
# shellcheck disable=SC2016 # the README's text, $(...) and all
readme_line 'cc example.c $(pkg-config --cflags --libs mio)'
# shellcheck disable=SC2016
readme_line '-Wl,-rpath,$(pkg-config --variable=libdir mio)'
awk '/^```c$/{on=1;next} /^```$/{if(on){exit}} on' "$readme" > "$tmp/example.c"
[ -s "$tmp/example.c" ] || die "no C example in README.md"

# Runs the README example built as $1 for a second: it must bind, stay up and accept a connection.
run_example() {
    local bin=$1
    "$bin" & server=$!
    local up=no
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=yes; break; fi
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$server" 2>/dev/null || { wait "$server" || true; server=; die "$bin exited (port $port busy?)"; }
    kill "$server"; wait "$server" 2>/dev/null || true; server=
    [ $up = yes ] || die "$bin did not accept on 127.0.0.1:$port"
}

# Opens a page with man -l and a name with man -M: status 0 and nothing on stderr.
man_ok() {
    local tree=$1 sec=$2 name=$3 err file
    file=$(find "$tree/man$sec" -name "$name.$sec*" -print -quit)
    [ -n "$file" ] || die "no page $name($sec) under $tree"
    if ! err=$(LC_ALL=C man -l "$file" 2>&1 >/dev/null) || [ -n "$err" ]; then
        die "man -l $file: $err"
    fi
    if ! err=$(LC_ALL=C man -M "$tree" "$sec" "$name" 2>&1 >/dev/null) || [ -n "$err" ]; then
        die "man -M $tree $sec $name: $err"
    fi
}

# ---- 1. the packages
command -v dpkg-deb >/dev/null || die "dpkg-deb not found"
command -v man >/dev/null || die "man not found (apt-get install man-db)"
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
pkgs=()
for name in libmio0 libmio-dev mio-tools; do
    f=$(find "$debs" -maxdepth 1 -name "${name}_${version}-*_$arch.deb" -print -quit)
    [ -n "$f" ] || die "no ${name}_${version}-*_$arch.deb in $debs (make deb)"
    pkgs+=("$f")
done

step "dependencies of the packages resolve (apt-get install --simulate)"
if ! out=$(apt-get install --simulate --no-install-recommends "${pkgs[@]}" 2>&1); then
    echo "$out"; die "apt-get cannot resolve the packages' dependencies"
fi

step "contents"
# (grep reads a here-string, not a pipe: grep -q quitting early would fail a pipeline under pipefail)
contents() { dpkg-deb -c "$1" | awk '{print $6}' | sed 's|^\./|/|'; }
has() { grep -qx -- "$2" <<< "$(contents "$1")" || die "$(basename "$1") lacks $2"; }
lacks() { ! grep -q -- "$2" <<< "$(contents "$1")" || die "$(basename "$1") should not hold $2"; }
has "${pkgs[0]}" "/usr/lib/$multiarch/libmio.so.0"
lacks "${pkgs[0]}" "/usr/lib/$multiarch/libmio.so$"
lacks "${pkgs[0]}" "/usr/include/"
for f in /usr/include/mio/mio.h "/usr/lib/$multiarch/libmio.so" "/usr/lib/$multiarch/libmio.a" \
         "/usr/lib/$multiarch/pkgconfig/mio.pc" /usr/share/man/man3/mio_poll_new.3.gz \
         /usr/share/man/man3/MIO_PRIORITY.3.gz /usr/share/man/man7/libmio.7.gz; do
    has "${pkgs[1]}" "$f"
done
lacks "${pkgs[1]}" '\.la$'
programs=$(contents "${pkgs[2]}" | sed -n 's|^/usr/bin/\(.\)|\1|p')
for p in mio-echo mio-echo-threaded mio-drop mio-drop-threaded mio-udp-echo mio-http mio-proxy \
         mio-chat mio-load; do
    grep -qx "$p" <<< "$programs" || die "mio-tools lacks /usr/bin/$p"
done
for u in mio-echo-threaded.socket mio-echo-threaded.service mio-http.socket mio-http.service; do
    has "${pkgs[2]}" "/lib/systemd/system/$u"
done

root="$tmp/root"
for f in "${pkgs[@]}"; do dpkg-deb -x "$f" "$root"; done

step "README example built with the packages' pkg-config file"
export PKG_CONFIG_SYSROOT_DIR="$root" PKG_CONFIG_LIBDIR="$root/usr/lib/$multiarch/pkgconfig"
unset PKG_CONFIG_PATH
flags=$(pkg-config --cflags --libs mio)
echo "  pkg-config --cflags --libs mio: $flags"
case " $flags " in *" -D"*) die "pkg-config hands users a -D flag: $flags" ;; esac
# shellcheck disable=SC2046 # as the README writes it
(cd "$tmp" && cc example.c $(pkg-config --cflags --libs mio) -o example-pkg) || die "README example did not build"
unset PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_LIBDIR
export LD_LIBRARY_PATH="$root/usr/lib/$multiarch"
grep -q "=> $root/usr/lib/$multiarch/libmio.so.0 " <<< "$(ldd "$tmp/example-pkg")" ||
    die "example-pkg does not load the packaged libmio: $(ldd "$tmp/example-pkg")"
run_example "$tmp/example-pkg"

step "mio-tools programs run"
for p in $programs; do
    "$root/usr/bin/$p" --help >/dev/null 2>&1 || die "$p --help failed"
done
"$root/usr/bin/mio-drop" --listen 127.0.0.1:0 --self-test 200 >/dev/null || die "mio-drop --self-test failed"
unset LD_LIBRARY_PATH

step "man pages of libmio-dev open (a page, a symlinked name, libmio(7))"
man_ok "$root/usr/share/man" 3 mio_poll_new
man_ok "$root/usr/share/man" 3 MIO_PRIORITY
man_ok "$root/usr/share/man" 3 mio_conn_close
man_ok "$root/usr/share/man" 7 libmio

# ---- 2. make install to a temporary prefix
tarball="$debs/${PACKAGE:?}_$version.orig.tar.gz"
[ -f "$tarball" ] || die "no $tarball (make deb keeps the dist tarball there)"
step "make install to a temporary prefix"
prefix="$tmp/prefix"
mkdir -p "$tmp/src"
tar xzf "$tarball" -C "$tmp/src"
src=$(echo "$tmp/src/"*)
(unset MAKEFLAGS MFLAGS MAKELEVEL
 cd "$src" && ./configure -q --prefix="$prefix" && make -s -j2 install) > "$tmp/install.log" 2>&1 ||
    { tail -40 "$tmp/install.log"; die "configure/make install --prefix=$prefix failed"; }

step "README example built with the non-system-prefix line (rpath)"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
flags=$(pkg-config --cflags --libs mio)
echo "  pkg-config --cflags --libs mio: $flags"
# shellcheck disable=SC2046 # as the README writes it
(cd "$tmp" && cc example.c $(pkg-config --cflags --libs mio) -Wl,-rpath,$(pkg-config --variable=libdir mio) \
    -o example-prefix) || die "README example did not build against $prefix"
unset PKG_CONFIG_PATH
grep -q "=> $prefix/lib/libmio.so.0 " <<< "$(ldd "$tmp/example-prefix")" ||
    die "example-prefix does not load $prefix/lib/libmio.so.0: $(ldd "$tmp/example-prefix")"
run_example "$tmp/example-prefix"
man_ok "$prefix/share/man" 3 MIO_READABLE

step "passed"
