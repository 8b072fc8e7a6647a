#!/bin/sh
# Every public header compiles alone with -std=c11 -Wall -Wextra -Wpedantic -Werror, and in C++.
inc="${top_srcdir:-.}/include"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
cc=${CC:-cc}
rc=0
for h in "$inc"/mio/*.h; do
    name=mio/$(basename "$h")
    printf '#include <%s>\n#include <%s>\nint main(void) { return 0; }\n' "$name" "$name" > "$tmp/t.c"
    if ! $cc -std=c11 -Wall -Wextra -Wpedantic -Werror -I"$inc" -c "$tmp/t.c" -o "$tmp/t.o"; then
        echo "FAIL C: $name"; rc=1
    fi
    if command -v g++ >/dev/null 2>&1; then
        cp "$tmp/t.c" "$tmp/t.cc"
        if ! g++ -std=c++11 -Wall -Wextra -Wpedantic -Werror -I"$inc" -c "$tmp/t.cc" -o "$tmp/t.o"; then
            echo "FAIL C++: $name"; rc=1
        fi
    fi
done
[ $rc = 0 ] && echo "headers ok"
exit $rc
