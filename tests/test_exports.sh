#!/bin/sh
# Only mio_ symbols may be exported from the shared library, and debian/libmio0.symbols lists
# exactly those (make deb refuses a symbols file that differs; this says so in make check).
so="${top_builddir:-.}/lib/.libs/libmio.so"
[ -f "$so" ] || { echo "no $so (static-only build?)"; exit 77; }
bad=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^mio_' | grep -v '^_init$' | grep -v '^_fini$' | grep -v '^$')
if [ -n "$bad" ]; then echo "non-mio symbols exported:"; echo "$bad"; exit 1; fi
internal=$(nm -D --defined-only "$so" | awk '{print $3}' | grep '^mio__')
if [ -n "$internal" ]; then echo "internal mio__ symbols exported:"; echo "$internal"; exit 1; fi
n=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -c '^mio_')
echo "exports ok: $n mio_ symbols"
[ "$n" -gt 0 ] || exit 1
symfile="${top_srcdir:-.}/debian/libmio0.symbols"
if [ -f "$symfile" ]; then
    nm -D --defined-only "$so" | awk '$3 ~ /^mio_/ {print $3}' | sort > exports.now.tmp
    sed -n 's/^ \([A-Za-z0-9_]*\)@Base .*/\1/p' "$symfile" | sort > exports.deb.tmp
    diff=$(comm -3 exports.now.tmp exports.deb.tmp)
    rm -f exports.now.tmp exports.deb.tmp
    if [ -n "$diff" ]; then
        echo "debian/libmio0.symbols differs from the exports (left: exported only, right: listed only):"
        echo "$diff"
        exit 1
    fi
    echo "debian/libmio0.symbols lists every export"
fi
