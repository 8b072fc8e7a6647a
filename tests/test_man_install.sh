#!/bin/sh
# Installed man pages: `make install-data` into a scratch DESTDIR (the same rules and hooks that
# `make install` runs), then every page under man3/ and man7/ must open with `man -l <file>` and
# with `man -M <tree> <section> <name>`, with exit status 0 and nothing on stderr (a .so link that
# man cannot resolve outside a man tree prints "failed .so request" yet exits 0).
builddir=${top_builddir:-.}

command -v man >/dev/null 2>&1 || { echo "man not found (apt-get install man-db)"; exit 77; }
command -v "${MAKE:-make}" >/dev/null 2>&1 || { echo "no make"; exit 77; }

dest="$builddir/tests/man-install.tmp"
rm -rf "$dest"
trap 'rm -rf "$dest"' EXIT
mkdir -p "$dest" || exit 1
dest=$(cd "$dest" && pwd)

# This runs under make check: the parent's jobserver and flags are not ours to use.
if ! (unset MAKEFLAGS MFLAGS MAKELEVEL; "${MAKE:-make}" -s -C "$builddir" install-data DESTDIR="$dest") \
        > "$dest.log" 2>&1; then
    cat "$dest.log"; rm -f "$dest.log"
    echo "FAIL: make install-data DESTDIR=$dest"
    exit 1
fi
rm -f "$dest.log"

rc=0
fail() { echo "FAIL: $*"; rc=1; }
export LC_ALL=C MANWIDTH=80 MAN_KEEP_FORMATTING=
unset MANPATH MANOPT MANPAGER PAGER

# Every page is rendered once by file: one man -l run for all of a section (the cost per page is
# the groff pipeline), rerun page by page only to name a failure. By name, one man -w run checks
# that man finds each page; what man <name> then renders is the file man -l already rendered.
pages=0
# shellcheck disable=SC2044 # the scratch tree is ours: no blanks in its paths
for dir in $(find "$dest" -type d \( -name man3 -o -name man7 \)); do
    tree=$(dirname "$dir")
    sec=${dir##*/man}
    files=
    names=
    for page in "$dir"/*; do
        if [ ! -e "$page" ]; then
            [ -L "$page" ] && fail "$page: dangling symlink"
            continue
        fi
        pages=$((pages + 1))
        name=$(basename "$page"); name=${name%.gz}; name=${name%."$sec"}
        files="$files $page"
        names="$names $name"
    done
    [ -n "$files" ] || continue
    # shellcheck disable=SC2086 # the page paths hold no blanks: they are ours
    if ! err=$(man -l $files 2>&1 >/dev/null) || [ -n "$err" ]; then
        for page in $files; do
            err=$(man -l "$page" 2>&1 >/dev/null) || fail "man -l $page: exit status $?"
            [ -z "$err" ] || fail "man -l $page: $err"
        done
    fi
    # shellcheck disable=SC2086
    found=$(man -w -M "$tree" "$sec" $names 2>"$dest/err") || true
    if [ -s "$dest/err" ] || [ "$(printf '%s\n' "$found" | grep -c .)" -ne "$(echo "$names" | wc -w)" ]; then
        for name in $names; do
            found=$(man -w -M "$tree" "$sec" "$name" 2>&1) || { fail "man $sec $name: $found"; continue; }
            [ -f "$found" ] || fail "man $sec $name: found '$found', not a page"
        done
    fi
done
[ "$pages" -gt 0 ] || fail "make install-data installed no man3/man7 pages under $dest"
[ $rc = 0 ] && echo "installed man pages ok: $pages pages open with man -l and man <name>"
exit $rc
