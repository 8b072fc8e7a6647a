#!/bin/sh
# Man pages: every page renders without a groff warning, every .so link points at a page, every
# exported symbol (nm -D) and every public function or function-like macro in the headers has a
# page man/<name>.3 whose NAME section and SYNOPSIS name it, and every page is installed (listed in
# Makefile.am). Fails on the first kind of gap it finds, after reporting all of them.
srcdir=${top_srcdir:-.}
builddir=${top_builddir:-.}
man="$srcdir/man"
so="$builddir/lib/.libs/libmio.so"

command -v groff >/dev/null 2>&1 || { echo "groff not found: cannot render the pages"; exit 77; }
[ -d "$man" ] || { echo "no $man"; exit 1; }
man=$(cd "$man" && pwd) # absolute: pages are rendered from another directory

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
# man(1) resolves ".so man3/x.3" from the root of the man tree; build such a root.
ln -s "$man" "$tmp/man3"
ln -s "$man" "$tmp/man7"

rc=0
fail() { echo "FAIL: $*"; rc=1; }

# The page that really holds the text for a name (follows one .so link).
resolve() {
    first=$(head -n 1 "$man/$1.3")
    case "$first" in
    ".so "*) echo "$tmp/${first#.so }" ;;
    *) echo "$man/$1.3" ;;
    esac
}

# Every word of Makefile.am, one per line: the page lists are searched in it.
installed=$(tr -s ' \t\\' '\n\n\n' < "$srcdir/Makefile.am")

# 1. Rendering and links.
pages=0
for page in "$man"/*.3 "$man"/*.7; do
    [ -f "$page" ] || continue
    pages=$((pages + 1))
    first=$(head -n 1 "$page")
    case "$first" in
    ".so "*)
        target=${first#.so }
        [ -f "$tmp/$target" ] || fail "$page links to missing $target"
        [ "$(wc -l < "$page")" -eq 1 ] || fail "$page: a link page holds only its .so line"
        ;;
    *)
        grep -q '^\.TH ' "$page" || fail "$page has no .TH"
        for sec in NAME SYNOPSIS DESCRIPTION; do
            grep -q "^\.SH $sec" "$page" || fail "$page has no $sec section"
        done
        case "$page" in
        *.3) for sec in "RETURN VALUE" "THREAD SAFETY" EXAMPLE "SEE ALSO"; do
                 grep -q "^\.SH \"\{0,1\}$sec" "$page" || fail "$page has no $sec section"
             done ;;
        esac
        ;;
    esac
    out=$(cd "$tmp" && groff -ww -z -man "$page" 2>&1)
    [ -z "$out" ] || fail "$page renders with warnings: $out"
    base=$(basename "$page")
    printf '%s\n' "$installed" | grep -qxF "man/$base" ||
        fail "$base is not listed in Makefile.am (make install would not install it)"
done
[ "$pages" -gt 0 ] || fail "no pages in $man"

# 2. Names that need a page.
names=$(sed -n 's/^MIO_EXTERN[^(]*[ *]\(mio_[a-z0-9_]*\)(.*/\1/p' "$srcdir"/include/mio/*.h)
macros=$(sed -n 's/^#define \(MIO_[A-Z0-9][A-Z0-9_]*\)(.*/\1/p' "$srcdir"/include/mio/*.h)
if [ -f "$so" ]; then
    exported=$(nm -D --defined-only "$so" | awk '$3 ~ /^mio_/ {print $3}')
    [ -n "$exported" ] || fail "no mio_ symbol exported by $so"
else
    echo "note: no $so (static-only build); checking the header declarations only"
    exported=
fi
checked=0
for name in $(printf '%s\n' $exported $names $macros | sort -u); do
    checked=$((checked + 1))
    if [ ! -f "$man/$name.3" ]; then
        fail "$name has no man page (man/$name.3)"
        continue
    fi
    text=$(resolve "$name")
    # The NAME section (from .SH NAME to the next .SH) must list it, and the SYNOPSIS show it.
    sed -n '/^\.SH NAME/,/^\.SH SYNOPSIS/p' "$text" | grep -q "\\b$name\\b" ||
        fail "$name: not in the NAME section of $(basename "$text")"
    sed -n '/^\.SH SYNOPSIS/,/^\.SH DESCRIPTION/p' "$text" | grep -q "$name\\b" ||
        fail "$name: not in the SYNOPSIS of $(basename "$text")"
done
[ "$checked" -gt 0 ] || fail "found no public names to check"

[ $rc = 0 ] && echo "man pages ok: $pages pages, $checked names documented"
exit $rc
