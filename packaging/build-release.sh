#!/bin/bash
# Builds the static release binary and the Debian package, then runs lintian.
#
#   bash packaging/build-release.sh        (from anywhere; needs root or sudo only to
#                                           install musl-tools when musl-gcc is missing)
#
# Output: target/x86_64-unknown-linux-musl/release/genesys2influx
#         target/debian/genesys2influx_<version>-<revision>_amd64.deb
#
# The .deb is assembled with plain dpkg-deb from a staged tree rather than cargo-deb:
# nothing extra to install from crates.io, and conffiles, the statoverride for the
# env file and the maintainer scripts stay plain files in packaging/debian/ that can
# be read and reviewed as they ship.
#
# Environment: DEB_REVISION (default 1), DEB_MAINTAINER, SKIP_LINTIAN=1, SOURCE_DATE_EPOCH
# (default: last commit time, for reproducible timestamps).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="$ROOT/packaging"
TARGET=x86_64-unknown-linux-musl
NAME=genesys2influx
cd "$ROOT"

say() { printf '==> %s\n' "$*"; }
die() { printf 'build-release: %s\n' "$*" >&2; exit 1; }

VERSION="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)"
[ -n "$VERSION" ] || die "no version in Cargo.toml"
DEB_VERSION="$VERSION-${DEB_REVISION:-1}"
DEB_MAINTAINER="${DEB_MAINTAINER:-genesys2influx maintainers <genesys2influx@example.com>}"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"

# --- toolchain -------------------------------------------------------------------
if ! rustup target list --installed | grep -qx "$TARGET"; then
    say "rustup target add $TARGET"
    rustup target add "$TARGET"
fi
if ! command -v musl-gcc >/dev/null; then
    # ring compiles C and needs a musl C compiler.
    say "installing musl-tools"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get install -y musl-tools
fi
export CC_x86_64_unknown_linux_musl=musl-gcc

# --- binary ----------------------------------------------------------------------
say "cargo build --release --target $TARGET"
cargo build --release --locked --target "$TARGET"
BIN="$ROOT/target/$TARGET/release/$NAME"
[ -x "$BIN" ] || die "$BIN was not built"

FILE_OUT="$(file -b "$BIN")"
case "$FILE_OUT" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) die "not a static binary: $FILE_OUT" ;;
esac
if LDD_OUT="$(ldd "$BIN" 2>&1)"; then
    case "$LDD_OUT" in
        *"statically linked"*) ;;
        *) die "ldd finds dynamic dependencies: $LDD_OUT" ;;
    esac
else
    case "$LDD_OUT" in
        *"not a dynamic executable"*) ;;
        *) die "ldd failed: $LDD_OUT" ;;
    esac
fi
say "static binary: $FILE_OUT"
say "size: $(stat -c %s "$BIN") bytes ($(du -h "$BIN" | cut -f1))"

# --- staged tree -----------------------------------------------------------------
STAGE="$ROOT/target/debian/stage"
DEB="$ROOT/target/debian/${NAME}_${DEB_VERSION}_amd64.deb"
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN"

# install MODE SOURCE DEST: directories 0755, as dpkg-deb --root-owner-group makes
# everything root:root; the env file's group is set by postinst via dpkg-statoverride.
put() { install -D -m "$1" "$2" "$STAGE/$3"; }
gz() { gzip -9n <"$1" >"$1.gz.tmp" && install -D -m 0644 "$1.gz.tmp" "$STAGE/$2" && rm -f "$1.gz.tmp"; }

DOC=usr/share/doc/$NAME
put 0755 "$BIN" usr/bin/$NAME
put 0644 "$PKG/systemd/$NAME.service" lib/systemd/system/$NAME.service
put 0644 "$PKG/systemd/$NAME@.service" lib/systemd/system/$NAME@.service
put 0640 "$PKG/$NAME.env" etc/$NAME/$NAME.env
put 0644 "$PKG/debian/copyright" $DOC/copyright
put 0644 "$PKG/examples/org-example.env" $DOC/examples/org-example.env
put 0644 "$PKG/debian/lintian-overrides" usr/share/lintian/overrides/$NAME
sed -e "s/@DEB_VERSION@/$DEB_VERSION/" \
    -e "s/@MAINTAINER@/$DEB_MAINTAINER/" \
    -e "s/@DATE@/$(date -u -R -d "@$SOURCE_DATE_EPOCH")/" \
    "$PKG/debian/changelog" >"$ROOT/target/debian/changelog"
gz "$ROOT/target/debian/changelog" $DOC/changelog.Debian.gz
gz "$PKG/man/$NAME.1" usr/share/man/man1/$NAME.1.gz
(cd "$PKG/grafana" && find . -type f | sort | while read -r f; do
    put 0644 "$PKG/grafana/$f" "usr/share/$NAME/grafana/${f#./}"
done)

for script in postinst prerm postrm; do
    install -m 0755 "$PKG/debian/$script" "$STAGE/DEBIAN/$script"
done
install -m 0644 "$PKG/debian/conffiles" "$STAGE/DEBIAN/conffiles"
INSTALLED_SIZE="$(du -k -s --exclude=DEBIAN "$STAGE" | cut -f1)"
sed -e "s/@DEB_VERSION@/$DEB_VERSION/" \
    -e "s/@MAINTAINER@/$DEB_MAINTAINER/" \
    -e "s/@INSTALLED_SIZE@/$INSTALLED_SIZE/" \
    "$PKG/debian/control" >"$STAGE/DEBIAN/control"
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | sort \
    | xargs md5sum >DEBIAN/md5sums)
chmod 0644 "$STAGE/DEBIAN/md5sums"
find "$STAGE" -type d -exec chmod 0755 {} +
find "$STAGE" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

say "dpkg-deb --build $DEB"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
say "package: $DEB ($(stat -c %s "$DEB") bytes)"

# --- lintian ---------------------------------------------------------------------
if [ "${SKIP_LINTIAN:-0}" = 1 ]; then
    say "lintian skipped (SKIP_LINTIAN=1)"
elif ! command -v lintian >/dev/null; then
    say "lintian skipped: not installed (apt-get install lintian)"
else
    say "lintian"
    # --fail-on error: warnings are reported, errors fail the build.
    if ! lintian --display-info --fail-on error "$DEB"; then
        die "lintian reported errors"
    fi
    say "lintian: no errors"
fi
