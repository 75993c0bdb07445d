#!/bin/sh
# Build latchkey's Debian packages into OUT (default build-deb/) and check
# them with lintian. The source is copied to OUT/src first (the files git
# knows, with their uncommitted changes), because dpkg-buildpackage writes
# into the tree and puts the packages in its parent directory.
#
#   sh scripts/build-deb.sh [OUT]
# LK_TEST_SCHEMA_BUMP=1 and LK_DEB_VERSION=V: the package test's "next
# release" (debian/rules).
set -eu

OUT=${1:-build-deb}
top=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT/src"
mkdir -p "$OUT/src"
cd "$top"
git ls-files -z --cached --others --exclude-standard | \
    (cd "$top" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) | \
    tar --null -T - -cf - | tar -xf - -C "$OUT/src"
cd "$OUT/src"
if [ -n "${LK_DEB_VERSION:-}" ]; then
    # A changelog entry of its own for a rebuilt package (the upgrade test).
    { printf 'latchkey (%s) bookworm; urgency=medium\n\n  * Rebuilt for the package test.\n\n' "$LK_DEB_VERSION"
      printf ' -- latchkey developers <dev@latchkey.invalid>  %s\n\n' "$(date -R)"
      cat debian/changelog; } > debian/changelog.new
    mv debian/changelog.new debian/changelog
fi
rm -f "$OUT"/*.deb "$OUT"/*.changes "$OUT"/*.buildinfo
echo "latchkey: building the Debian packages in $OUT (log: $OUT/build.log)"
if ! DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" dpkg-buildpackage -b -us -uc >"$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log"
    echo "latchkey: the package build failed: $OUT/build.log" >&2
    exit 1
fi
cd "$OUT"
ls -1 *.deb
# lintian: errors fail the build; warnings are printed (accepted ones carry their reason in
# debian/*.lintian-overrides).
lintian --fail-on error *.changes
echo "latchkey: packages in $OUT, lintian clean"
