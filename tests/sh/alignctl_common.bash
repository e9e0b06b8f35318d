# alignctl_common.bash — sourced by the tests/sh/alignctl*.sh scripts (it is not
# a test itself: make check-sh runs tests/sh/*.sh only). Source it before any
# cd: it sets
#   A     the alignctl binary under $BUILD (absolute; the test stops if it is not built),
#   T     a fresh folder under $BUILD/tmp (absolute), removed on exit, and cds into it,
# and defines fail MSG, ok MSG and expect CODE PATTERN cmd... .
BUILD=${BUILD:-build}
_test=$(basename "$0" .sh)
A="$(cd "$BUILD" && pwd)/bin/alignctl"
[ -x "$A" ] || { echo "$_test.sh: $A is not built (make examples)" >&2; exit 1; }
mkdir -p "$BUILD/tmp"
T=$(cd "$(mktemp -d "$BUILD/tmp/$_test.XXXXXX")" && pwd)
trap 'rm -rf "$T"' EXIT
cd "$T"

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

# expect CODE PATTERN cmd...: exit status CODE and PATTERN (grep -E) in stderr
# (err.txt; stdout in out.txt).
expect() {
    local code=$1 pat=$2 rc=0
    shift 2
    "$@" >out.txt 2>err.txt </dev/null || rc=$?
    [ "$rc" = "$code" ] || { cat err.txt >&2; fail "'$*' exited $rc, expected $code"; }
    grep -Eq -- "$pat" err.txt || { cat err.txt >&2; fail "'$*': stderr lacks /$pat/"; }
    # under make asan a sanitizer report also exits 1: it must not pass as an expected error
    ! grep -Eq 'Sanitizer|runtime error:' err.txt || { cat err.txt >&2; fail "'$*': sanitizer"; }
}
