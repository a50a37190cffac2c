#!/bin/bash
# Builds the static release binaries, their Debian packages and the release tarballs
# for every target, and checks each binary (static, at most 3 MB, `--version` names its
# target: the ARM ones run under qemu-user) and each package (lintian, no errors).
#
#   bash packaging/build-release.sh                 every target
#   bash packaging/build-release.sh TARGET...       only these (e.g. aarch64-unknown-linux-musl)
#
# Targets: Rust triple            Debian arch  C compiler for ring       runs here under
#          x86_64-unknown-linux-musl       amd64  musl-gcc                 (natively)
#          aarch64-unknown-linux-musl      arm64  aarch64-linux-gnu-gcc    qemu-aarch64-static
#          armv7-unknown-linux-musleabihf  armhf  arm-linux-gnueabihf-gcc  qemu-arm-static
#
# Output: target/TRIPLE/release/genesys2influx
#         target/debian/genesys2influx_<version>-<revision>_<arch>.deb
#         target/dist/genesys2influx-<version>-TRIPLE.tar.gz, the .debs, and SHA256SUMS
#
# Reproducible: SOURCE_DATE_EPOCH (default: the last commit's time) dates every file in
# the packages and tarballs, paths are remapped out of the binaries, and archives are
# written sorted with fixed owners: the same commit built twice gives the same bytes
# (docs/install.md says how this was checked).
#
# The .deb is assembled with plain dpkg-deb from a staged tree rather than cargo-deb:
# nothing extra to install from crates.io, and conffiles, the statoverride for the
# env file and the maintainer scripts stay plain files in packaging/debian/ that can
# be read and reviewed as they ship. One packaging tree serves every architecture.
#
# Environment: DEB_REVISION (default 1), DEB_MAINTAINER, SKIP_LINTIAN=1, SOURCE_DATE_EPOCH.
# Needs root or sudo only to install missing tools (musl-tools, the cross compilers,
# qemu-user-static) and rustup to add the Rust targets.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="$ROOT/packaging"
NAME=genesys2influx
ALL_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf)
# "3 MB", read as 3 MiB: what an edge host downloads and keeps; checked for every binary.
# With the notifications websocket the x86_64 binary is 3.06 MB at opt-level "s"; "z"
# would make it 2.89 MB at 6-24 % more CPU per poll, so the MiB reading was chosen
# (docs/benchmarks.md, "The binary's size").
MAX_BINARY_BYTES=3145728
# Rust after 1.93 ships no standard library for any 32-bit ARM musl target (their rustup
# manifests say `available = false`): armv7 is built with this release, installed with
# rustup's minimal profile when missing. The crate's rust-version is 1.85.
ARMV7_TOOLCHAIN=1.93.0
cd "$ROOT"

say() { printf '==> %s\n' "$*"; }
die() { printf 'build-release: %s\n' "$*" >&2; exit 1; }

# --- what each target needs ------------------------------------------------------
deb_arch() {
    case "$1" in
        x86_64-unknown-linux-musl) echo amd64 ;;
        aarch64-unknown-linux-musl) echo arm64 ;;
        armv7-unknown-linux-musleabihf) echo armhf ;;
        *) die "unknown target '$1' (known: ${ALL_TARGETS[*]})" ;;
    esac
}
# The C compiler for ring, and the Debian packages that bring it.
c_compiler() {
    case "$1" in
        x86_64-*) echo musl-gcc ;;
        aarch64-*) echo aarch64-linux-gnu-gcc ;;
        armv7-*) echo arm-linux-gnueabihf-gcc ;;
    esac
}
c_compiler_packages() {
    case "$1" in
        x86_64-*) echo musl-tools ;;
        aarch64-*) echo gcc-aarch64-linux-gnu libc6-dev-arm64-cross ;;
        armv7-*) echo gcc-arm-linux-gnueabihf libc6-dev-armhf-cross ;;
    esac
}
# The command that runs the target's binary on this x86-64 host (empty: natively);
# tests/run.sh passes the same as GENESYS2INFLUX_RUNNER.
runner() {
    case "$1" in
        x86_64-*) echo "" ;;
        aarch64-*) echo qemu-aarch64-static ;;
        armv7-*) echo qemu-arm-static ;;
    esac
}
# What file(1) says about the target's machine.
elf_machine() {
    case "$1" in
        x86_64-*) echo "x86-64" ;;
        aarch64-*) echo "ARM aarch64" ;;
        armv7-*) echo "ARM, EABI5" ;;
    esac
}
# The rustup toolchain to build with ("" = the default one).
toolchain() {
    case "$1" in
        armv7-*) echo "$ARMV7_TOOLCHAIN" ;;
        *) echo "" ;;
    esac
}

TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
for target in "${TARGETS[@]}"; do deb_arch "$target" >/dev/null; done

VERSION="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)"
[ -n "$VERSION" ] || die "no version in Cargo.toml"
DEB_VERSION="$VERSION-${DEB_REVISION:-1}"
DEB_MAINTAINER="${DEB_MAINTAINER:-genesys2influx maintainers <genesys2influx@example.com>}"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"

# --- toolchain -------------------------------------------------------------------
missing=()
need() { command -v "$1" >/dev/null || missing+=($2); }
for target in "${TARGETS[@]}"; do
    need "$(c_compiler "$target")" "$(c_compiler_packages "$target")"
    [ -z "$(runner "$target")" ] || need "$(runner "$target")" qemu-user-static
done
need file file
need readelf binutils
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
fi
for target in "${TARGETS[@]}"; do
    tc="$(toolchain "$target")"
    if [ -n "$tc" ] && ! rustup toolchain list | grep -q "^$tc-"; then
        say "rustup toolchain install $tc (for $target)"
        rustup toolchain install "$tc" --profile minimal --target "$target" \
            || die "rustup toolchain install $tc failed"
    fi
    if ! rustup ${tc:++$tc} target list --installed | grep -qx "$target"; then
        say "rustup target add $target${tc:+ (toolchain $tc)}"
        rustup ${tc:++$tc} target add "$target" || die "rustup target add $target failed"
    fi
    upper="$(echo "$target" | tr 'a-z-' 'A-Z_')"
    export "CC_${target//-/_}=$(c_compiler "$target")"
    # rust-lld links the cross targets: no cross binutils or musl sysroot needed.
    [ -z "$(runner "$target")" ] || export "CARGO_TARGET_${upper}_LINKER=rust-lld"
done
# Build paths out of the binaries (panic locations name source files), so a build in
# another directory or home gives the same bytes.
export RUSTFLAGS="--remap-path-prefix=$ROOT=/build --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"

# --- binaries --------------------------------------------------------------------
# One cargo run per toolchain, all of its targets at once (their dependencies build in
# parallel and each LTO link runs on its own core).
for tc in "" "$ARMV7_TOOLCHAIN"; do
    args=()
    for target in "${TARGETS[@]}"; do
        [ "$(toolchain "$target")" = "$tc" ] && args+=(--target "$target")
    done
    [ ${#args[@]} -gt 0 ] || continue
    say "cargo ${tc:++$tc }build --release ${args[*]}"
    # Without SOURCE_DATE_EPOCH: the cc crate makes it a rebuild trigger (GCC reads it
    # for __DATE__/__TIME__, which ring's C code does not use), so every commit would
    # recompile ring and relink all targets. The binaries do not depend on it.
    env -u SOURCE_DATE_EPOCH cargo ${tc:++$tc} build --release --locked "${args[@]}"
done

check_binary() { # TARGET BIN
    local target="$1" bin="$2" file_out size version expected run
    [ -x "$bin" ] || die "$bin was not built"
    file_out="$(file -b "$bin")"
    case "$file_out" in
        *"statically linked"* | *"static-pie linked"*) ;;
        *) die "$target: not a static binary: $file_out" ;;
    esac
    case "$file_out" in
        *"$(elf_machine "$target")"*) ;;
        *) die "$target: not a $(elf_machine "$target") binary: $file_out" ;;
    esac
    # No program interpreter and no shared library: nothing to find on the host.
    if readelf -lW "$bin" | grep -q 'INTERP'; then die "$target: $bin asks for a program interpreter"; fi
    if readelf -dW "$bin" | grep -q '(NEEDED)'; then die "$target: $bin needs shared libraries: $(readelf -dW "$bin" | grep NEEDED)"; fi
    size="$(stat -c %s "$bin")"
    [ "$size" -le "$MAX_BINARY_BYTES" ] || die "$target: $bin is $size bytes, over $MAX_BINARY_BYTES"
    run="$(runner "$target")"
    expected="$NAME $VERSION ($target)"
    version="$($run "$bin" --version)" || die "$target: ${run:+$run }$bin --version failed"
    [ "$version" = "$expected" ] || die "$target: --version says '$version', expected '$expected'"
    say "$target: $file_out"
    say "$target: $size bytes, static, --version${run:+ under $run}: $version"
}
for target in "${TARGETS[@]}"; do
    check_binary "$target" "$ROOT/target/$target/release/$NAME"
done

# --- Debian packages ---------------------------------------------------------------
sed -e "s/@DEB_VERSION@/$DEB_VERSION/" \
    -e "s/@MAINTAINER@/$DEB_MAINTAINER/" \
    -e "s/@DATE@/$(date -u -R -d "@$SOURCE_DATE_EPOCH")/" \
    "$PKG/debian/changelog" >"$ROOT/target/debian-changelog"

build_deb() { # TARGET: stages the tree and writes target/debian/NAME_VERSION_ARCH.deb
    local target="$1" arch stage deb doc installed_size
    arch="$(deb_arch "$target")"
    stage="$ROOT/target/debian/stage-$arch"
    deb="$ROOT/target/debian/${NAME}_${DEB_VERSION}_$arch.deb"
    rm -rf "$stage"
    mkdir -p "$stage/DEBIAN"
    # install MODE SOURCE DEST: directories 0755, as dpkg-deb --root-owner-group makes
    # everything root:root; the env file's group is set by postinst via dpkg-statoverride.
    put() { install -D -m "$1" "$2" "$stage/$3"; }
    gz() { gzip -9n <"$1" >"$stage/$2.tmp" && install -D -m 0644 "$stage/$2.tmp" "$stage/$2" && rm -f "$stage/$2.tmp"; }
    doc=usr/share/doc/$NAME
    put 0755 "$ROOT/target/$target/release/$NAME" usr/bin/$NAME
    put 0644 "$PKG/systemd/$NAME.service" lib/systemd/system/$NAME.service
    put 0644 "$PKG/systemd/$NAME@.service" lib/systemd/system/$NAME@.service
    put 0640 "$PKG/$NAME.env" etc/$NAME/$NAME.env
    put 0644 "$PKG/debian/copyright" $doc/copyright
    put 0644 "$PKG/examples/org-example.env" $doc/examples/org-example.env
    put 0644 "$PKG/debian/lintian-overrides" usr/share/lintian/overrides/$NAME
    mkdir -p "$stage/$doc" "$stage/usr/share/man/man1"
    gz "$ROOT/target/debian-changelog" $doc/changelog.Debian.gz
    gz "$PKG/man/$NAME.1" usr/share/man/man1/$NAME.1.gz
    (cd "$PKG/grafana" && find . -type f | sort | while read -r f; do
        put 0644 "$PKG/grafana/$f" "usr/share/$NAME/grafana/${f#./}"
    done)
    for script in postinst prerm postrm; do
        install -m 0755 "$PKG/debian/$script" "$stage/DEBIAN/$script"
    done
    install -m 0644 "$PKG/debian/conffiles" "$stage/DEBIAN/conffiles"
    installed_size="$(du -k -s --exclude=DEBIAN "$stage" | cut -f1)"
    sed -e "s/@DEB_VERSION@/$DEB_VERSION/" \
        -e "s/@ARCH@/$arch/" \
        -e "s/@MAINTAINER@/$DEB_MAINTAINER/" \
        -e "s/@INSTALLED_SIZE@/$installed_size/" \
        "$PKG/debian/control" >"$stage/DEBIAN/control"
    (cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | sort \
        | xargs md5sum >DEBIAN/md5sums)
    chmod 0644 "$stage/DEBIAN/md5sums"
    find "$stage" -type d -exec chmod 0755 {} +
    find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
    say "package: $deb ($(stat -c %s "$deb") bytes)"
}
for target in "${TARGETS[@]}"; do build_deb "$target"; done

# --- lintian ---------------------------------------------------------------------
if [ "${SKIP_LINTIAN:-0}" = 1 ]; then
    say "lintian skipped (SKIP_LINTIAN=1)"
elif ! command -v lintian >/dev/null; then
    say "lintian skipped: not installed (apt-get install lintian)"
else
    for target in "${TARGETS[@]}"; do
        deb="$ROOT/target/debian/${NAME}_${DEB_VERSION}_$(deb_arch "$target").deb"
        say "lintian $(basename "$deb")"
        # --fail-on error: warnings are reported, errors fail the build.
        lintian --display-info --fail-on error "$deb" || die "lintian reported errors in $deb"
    done
    say "lintian: no errors"
fi

# --- release artefacts -----------------------------------------------------------
# A tarball per binary (the binary, its man page and the commented env file in one
# directory), the packages, and SHA256SUMS over all of them.
DIST="$ROOT/target/dist"
rm -rf "$DIST"
mkdir -p "$DIST"
for target in "${TARGETS[@]}"; do
    base="$NAME-$VERSION-$target"
    tree="$ROOT/target/dist-stage/$base"
    rm -rf "$tree"
    install -D -m 0755 "$ROOT/target/$target/release/$NAME" "$tree/$NAME"
    install -m 0644 "$PKG/man/$NAME.1" "$tree/$NAME.1"
    install -m 0644 "$PKG/$NAME.env" "$tree/$NAME.env"
    chmod 0755 "$tree"
    tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
        --format=gnu -C "$(dirname "$tree")" -cf - "$base" | gzip -9n >"$DIST/$base.tar.gz"
    cp "$ROOT/target/debian/${NAME}_${DEB_VERSION}_$(deb_arch "$target").deb" "$DIST/"
done
(cd "$DIST" && sha256sum -- *.tar.gz *.deb >SHA256SUMS)
say "release artefacts in $DIST:"
sed 's/^/    /' "$DIST/SHA256SUMS"
