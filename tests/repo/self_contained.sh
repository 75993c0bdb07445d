#!/bin/sh
# The repository needs nothing beside it (ctest repo/self_contained, run by
# `make test`): a user's clone has no sibling folders, so a reference to one
# would make a test skip, fail or read something the user cannot see.
#
#   sh tests/repo/self_contained.sh SOURCE_DIR
#
#  1. the test vectors are all present and unchanged (tests/vectors/SHA256SUMS,
#     tests/vectors/SOURCE.md), and every file there is listed;
#  2. no tracked file refers to the sibling folder the vectors and the IoT
#     Core notes used to be read from (by its relative path, its variable or
#     its subfolders), except documents about the project's history.
set -eu
SRC=${1:?usage: self_contained.sh SOURCE_DIR}
cd "$SRC"
failed=0

# 1. The vectors.
if ! (cd tests/vectors && sha256sum --quiet --strict -c SHA256SUMS); then
    echo "self_contained: tests/vectors/ does not match tests/vectors/SHA256SUMS" >&2
    failed=1
fi
unlisted=$(cd tests/vectors && find . -type f ! -name SHA256SUMS ! -name SOURCE.md | sed 's|^\./||' |
           sort | while read -r f; do grep -q "  $f\$" SHA256SUMS || echo "$f"; done)
if [ -n "$unlisted" ]; then
    echo "self_contained: in tests/vectors/ but not in SHA256SUMS (and SOURCE.md): $unlisted" >&2
    failed=1
fi

# 2. References outside the repository. The tracked files when this is a git
# checkout; otherwise (an unpacked archive) every file but build trees.
list_files() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files
    else
        find . -type f ! -path './.git/*' ! -path './build*' ! -path '*/__pycache__/*' | sed 's|^\./||'
    fi
}
# Documents about the history may name the old layout. The folder's name is
# put together here, so that this script does not name it itself.
allowed='^(docs/history[^/]*\.md|CHANGELOG[^/]*|NEWS[^/]*)$'
sib=sha; sib=${sib}red
pattern="\\.\\./$sib|LK_$(echo "$sib" | tr a-z A-Z)_DIR|$sib/(spec|vectors)|\\.parent */ *[\"']$sib[\"']"
hits=$(list_files | grep -Ev "$allowed" | while read -r f; do
           if [ -f "$f" ]; then grep -IHnE "$pattern" "$f" || true; fi
       done)
if [ -n "$hits" ]; then
    echo "self_contained: these refer to a folder outside the repository:" >&2
    echo "$hits" >&2
    failed=1
fi

if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "self_contained: the vectors are complete and nothing refers outside the repository"
