#!/bin/sh
# The guide cannot drift from the code that make check compiles and runs: every ```c block in
# docs/guide.md is tagged with the program it belongs to (a line "<!-- file: guide/NAME.c -->"
# right above the fence), and for every docs/guide/*.c the blocks tagged with it, concatenated in
# order, are byte-identical to the file. Every tagged file must exist and every program must be
# shown.
srcdir=${top_srcdir:-.}
guide="$srcdir/docs/guide.md"
[ -f "$guide" ] || { echo "no $guide"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/blocks"

awk -v out="$tmp/blocks" -v errs="$tmp/errors" '
    function err(msg) { print "docs/guide.md:" NR ": " msg > errs; bad = 1 }
    inblock && /^```[ \t]*$/ { inblock = 0; tag = ""; next }
    inblock { print > (out "/" tag); next }
    /^<!-- file: guide\/[A-Za-z0-9_.-]+\.c -->$/ {
        tag = $3; sub(/^guide\//, "", tag); tagline = NR; next
    }
    /^```c[ \t]*$/ {
        if (tag == "" || tagline != NR - 1) err("a ```c block without a <!-- file: guide/NAME.c --> tag right above it")
        else { inblock = 1; seen[tag] = 1 }
        if (tag == "") tag = "untagged"
        inblock = 1; next
    }
    { tag = "" }
    END {
        if (inblock) err("unterminated code block")
        for (t in seen) print t > (out "/.list")
    }
' "$guide"

rc=0
if [ -s "$tmp/errors" ]; then cat "$tmp/errors"; rc=1; fi
n=0
for f in "$srcdir"/docs/guide/*.c; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    b=$(basename "$f")
    if [ ! -f "$tmp/blocks/$b" ]; then
        echo "FAIL: docs/guide/$b is not shown in docs/guide.md"; rc=1; continue
    fi
    if ! cmp -s "$f" "$tmp/blocks/$b"; then
        echo "FAIL: docs/guide.md's blocks for $b differ from docs/guide/$b:"
        diff -u "$f" "$tmp/blocks/$b" | head -40
        rc=1
    fi
done
if [ -f "$tmp/blocks/.list" ]; then
    while read -r b; do
        [ -f "$srcdir/docs/guide/$b" ] || { echo "FAIL: docs/guide.md shows guide/$b, which does not exist"; rc=1; }
    done < "$tmp/blocks/.list"
fi
[ "$n" -gt 0 ] || { echo "FAIL: no docs/guide/*.c"; rc=1; }
[ $rc = 0 ] && echo "guide ok: $n programs, identical to their code blocks"
exit $rc
