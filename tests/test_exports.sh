#!/bin/sh
# Only mio_ symbols may be exported from the shared library.
so="${top_builddir:-.}/lib/.libs/libmio.so"
[ -f "$so" ] || { echo "no $so (static-only build?)"; exit 77; }
bad=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^mio_' | grep -v '^_init$' | grep -v '^_fini$' | grep -v '^$')
if [ -n "$bad" ]; then echo "non-mio symbols exported:"; echo "$bad"; exit 1; fi
internal=$(nm -D --defined-only "$so" | awk '{print $3}' | grep '^mio__')
if [ -n "$internal" ]; then echo "internal mio__ symbols exported:"; echo "$internal"; exit 1; fi
n=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -c '^mio_')
echo "exports ok: $n mio_ symbols"
[ "$n" -gt 0 ] || exit 1
