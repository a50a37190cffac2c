#!/bin/bash
# Checks the built packages, the release artefacts and the packaging sources:
#   bash packaging/build-release.sh && bash packaging/test-package.sh [ARCH...]
#
# For each Debian architecture (default: amd64 arm64 armhf, every one must be built):
# asserts the .deb's paths, modes, owners, conffiles and control fields (Architecture
# included); that its binary is static, for that machine, and reports its target (ARM
# binaries run under qemu-user); that the env file and man page name every configuration
# variable; runs systemd-analyze verify and security on both units (exposure must be
# <= 2.0). Then checks target/dist: SHA256SUMS, and each tarball's contents and modes.
# Once: validates the Grafana JSON (tests/dashboard.rs runs its queries against a real
# influxd).
# Exits non-zero on any failure; every skipped check says why.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="$ROOT/packaging"
NAME=genesys2influx
MAX_EXPOSURE=2.0
cd "$ROOT"

FAILURES=0
# Each line names the package's architecture while one is checked (ARCH).
ARCH=""
pass() { printf 'ok    %s%s\n' "${ARCH:+$ARCH: }" "$*"; }
fail() { printf 'FAIL  %s%s\n' "${ARCH:+$ARCH: }" "$*"; FAILURES=$((FAILURES + 1)); }
skip() { printf 'skip  %s%s\n' "${ARCH:+$ARCH: }" "$*"; }

VERSION="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)"
ARCHES=("$@")
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(amd64 arm64 armhf)
# Debian architecture → Rust target, file(1)'s machine, and the runner on this host.
target_of() {
    case "$1" in
        amd64) echo x86_64-unknown-linux-musl ;;
        arm64) echo aarch64-unknown-linux-musl ;;
        armhf) echo armv7-unknown-linux-musleabihf ;;
        *) echo "unknown architecture '$1' (amd64, arm64, armhf)" >&2; exit 1 ;;
    esac
}
machine_of() {
    case "$1" in amd64) echo "x86-64" ;; arm64) echo "ARM aarch64" ;; armhf) echo "ARM, EABI5" ;; esac
}
runner_of() {
    case "$1" in amd64) echo "" ;; arm64) echo qemu-aarch64-static ;; armhf) echo qemu-arm-static ;; esac
}
for arch in "${ARCHES[@]}"; do target_of "$arch" >/dev/null; done
WORK_ROOT="$(mktemp -d)"
trap 'rm -rf "$WORK_ROOT"' EXIT

# Every variable of the contract's configuration table, plus the two config.rs reads
# beyond it (GENESYS_REQUESTS_PER_MINUTE, INSTANCE).
VARIABLES="GENESYS_CLIENT_ID GENESYS_CLIENT_SECRET GENESYS_CLIENT_SECRET_FILE GENESYS_REGION
GENESYS_API_URL GENESYS_LOGIN_URL GENESYS_QUEUES GENESYS_QUEUES_FILE QUEUE_SHARD QUEUE_REFRESH
POLL_INTERVAL WINDOW INFLUXDB_URL INFLUXDB_TOKEN INFLUXDB_ORG INFLUXDB_BUCKET INFLUXDB_DATABASE
INFLUXDB_RETENTION_POLICY INFLUXDB_USERNAME INFLUXDB_PASSWORD INFLUXDB_TAGS TLS_CA_FILE
HTTPS_PROXY NO_PROXY HTTP_TIMEOUT SPOOL_DIR SPOOL_MAX_BYTES SHUTDOWN_TIMEOUT KPIS KPI_BUCKET
KPI_POLL KPI_LOOKBACK RUST_LOG GENESYS_REQUESTS_PER_MINUTE INSTANCE"
# ... and whatever else src/config/ reads, so a new variable cannot go undocumented
# (CREDENTIALS_DIRECTORY is systemd's; "INFLUXDB" is a name prefix urls.rs tests; "ON"
# and "SECRET" are values the unit tests of switch.rs and proxy.rs use).
[ -d src/config ] || { echo "no src/config/: where are the variables read now?" >&2; exit 1; }
for v in $(grep -rho '"[A-Z][A-Z0-9_]*"' src/config/ | tr -d '"' | sort -u); do
    case " $(echo $VARIABLES) CREDENTIALS_DIRECTORY INFLUXDB ON SECRET " in
        *" $v "*) ;;
        *) VARIABLES="$VARIABLES $v" ;;
    esac
done

# --- one package ---------------------------------------------------------------------
# check_deb ARCH: every check of target/debian/NAME_VERSION-*_ARCH.deb.
check_deb() {
    ARCH="$1"
    DEB="$(ls -t target/debian/${NAME}_"${VERSION}"-*_"$ARCH".deb 2>/dev/null | head -n1)"
    if [ -z "$DEB" ]; then
        fail "no target/debian/${NAME}_${VERSION}-*_$ARCH.deb: run bash packaging/build-release.sh first"
        return
    fi
    echo "testing $DEB"
    WORK="$WORK_ROOT/$ARCH"
    mkdir -p "$WORK"

    # --- contents ------------------------------------------------------------------------
    dpkg-deb --contents "$DEB" >"$WORK/contents"
    expect_entry() { # MODE PATH
        if awk -v m="$1" -v p="./$2" '$1 == m && $2 == "root/root" && $6 == p { f = 1 } END { exit !f }' "$WORK/contents"; then
            pass "$1 root/root /$2"
        else
            fail "/$2 missing or not $1 root/root: $(grep -F " ./$2" "$WORK/contents" || echo absent)"
        fi
    }
    expect_entry -rwxr-xr-x usr/bin/$NAME
    expect_entry -rw-r--r-- lib/systemd/system/$NAME.service
    expect_entry -rw-r--r-- lib/systemd/system/$NAME@.service
    expect_entry -rw-r----- etc/$NAME/$NAME.env
    expect_entry -rw-r--r-- usr/share/man/man1/$NAME.1.gz
    expect_entry -rw-r--r-- usr/share/doc/$NAME/copyright
    expect_entry -rw-r--r-- usr/share/doc/$NAME/changelog.Debian.gz
    expect_entry -rw-r--r-- usr/share/doc/$NAME/examples/org-example.env
    expect_entry -rw-r--r-- usr/share/$NAME/grafana/genesys-queues.json
    expect_entry -rw-r--r-- usr/share/$NAME/grafana/provisioning/datasources/influxdb.yaml
    expect_entry -rw-r--r-- usr/share/$NAME/grafana/provisioning/dashboards/genesys2influx.yaml
    if awk '$2 != "root/root" { bad = 1 } END { exit bad }' "$WORK/contents"; then
        pass "every file is owned by root/root"
    else
        fail "files not owned by root/root: $(awk '$2 != "root/root"' "$WORK/contents")"
    fi
    if grep -q ' \./var/' "$WORK/contents"; then
        fail "/var is shipped; the state directory belongs to systemd (StateDirectory=)"
    else
        pass "no /var in the package (StateDirectory= creates it)"
    fi

    # --- control -------------------------------------------------------------------------
    field() { dpkg-deb --field "$DEB" "$1"; }
    [ "$(field Package)" = "$NAME" ] && pass "Package: $NAME" || fail "Package is '$(field Package)'"
    case "$(field Version)" in
        "$VERSION"-*) pass "Version $(field Version) matches Cargo.toml $VERSION" ;;
        *) fail "Version $(field Version) does not match Cargo.toml $VERSION" ;;
    esac
    [ "$(field Architecture)" = "$ARCH" ] && pass "Architecture: $ARCH" || fail "Architecture is '$(field Architecture)'"
    case "$(field Depends)" in
        *adduser*) pass "Depends on adduser (postinst creates the user)" ;;
        *) fail "Depends lacks adduser: $(field Depends)" ;;
    esac
    mkdir -p "$WORK/control" && dpkg-deb --ctrl-tarfile "$DEB" | tar -x -C "$WORK/control"
    CONFFILES="$(grep -v '^$' "$WORK/control/conffiles" 2>/dev/null)"
    [ "$CONFFILES" = "/etc/$NAME/$NAME.env" ] && pass "conffiles: $CONFFILES" \
        || fail "conffiles should list only /etc/$NAME/$NAME.env, got: ${CONFFILES:-nothing}"
    grep -q "dpkg-statoverride --update --add root \"\$USER\" 0640 \"\$ENV_FILE\"" "$WORK/control/postinst" \
        && pass "postinst sets root:genesys2influx 0640 on the env file" \
        || fail "postinst does not set the env file to root:genesys2influx 0640"
    grep -q 'adduser --system --group' "$WORK/control/postinst" \
        && pass "postinst creates the system user" || fail "postinst does not create the system user"
    for script in postinst prerm postrm; do
        if sh -n "$WORK/control/$script"; then pass "$script parses"; else fail "$script has a syntax error"; fi
    done
    # postinst against stub commands (nothing on this host changes): a fresh install
    # creates the user and the statoverride; a reconfigure with both present adds neither.
    mkdir -p "$WORK/stubs"
    for cmd in adduser dpkg-statoverride getent deb-systemd-invoke systemctl; do
        printf '#!/bin/sh\necho "%s $*" >>"$STUB_LOG"\ncase "%s $1" in "getent passwd"|"dpkg-statoverride --list") exit "$STUB_ABSENT";; esac\nexit 0\n' \
            "$cmd" "$cmd" >"$WORK/stubs/$cmd"
        chmod +x "$WORK/stubs/$cmd"
    done
    STUB_LOG="$WORK/fresh.log" STUB_ABSENT=2 PATH="$WORK/stubs:$PATH" sh "$WORK/control/postinst" configure "" \
        && grep -q '^adduser --system --group .* genesys2influx$' "$WORK/fresh.log" \
        && grep -q "^dpkg-statoverride --update --add root genesys2influx 0640 /etc/$NAME/$NAME.env\$" "$WORK/fresh.log" \
        && pass "postinst configure (fresh, stubbed): adds user and statoverride" \
        || fail "postinst configure (fresh, stubbed): $(cat "$WORK/fresh.log" 2>/dev/null)"
    STUB_LOG="$WORK/again.log" STUB_ABSENT=0 PATH="$WORK/stubs:$PATH" sh "$WORK/control/postinst" configure 0.0.9-1 \
        && ! grep -Eq '^(adduser|dpkg-statoverride --update)' "$WORK/again.log" \
        && pass "postinst configure (upgrade, stubbed): leaves an existing user and statoverride alone" \
        || fail "postinst configure (upgrade, stubbed): $(cat "$WORK/again.log" 2>/dev/null)"
    if grep -Eq 'deb-systemd-invoke (start|restart) |systemctl (start|enable)' "$WORK/control/postinst"; then
        fail "postinst starts or enables the service before it has credentials"
    else
        pass "postinst neither enables nor starts the service (only try-restart on upgrade)"
    fi

    # --- files -----------------------------------------------------------------------
    dpkg-deb --extract "$DEB" "$WORK/root"
    BINARY_FILE="$(file -b "$WORK/root/usr/bin/$NAME")"
    case "$BINARY_FILE" in
        *"static-pie linked"* | *"statically linked"*) pass "binary is static" ;;
        *) fail "binary is not static: $BINARY_FILE" ;;
    esac
    case "$BINARY_FILE" in
        *"$(machine_of "$ARCH")"*) pass "binary is for $(machine_of "$ARCH")" ;;
        *) fail "binary is not for $(machine_of "$ARCH"): $BINARY_FILE" ;;
    esac
    RUNNER="$(runner_of "$ARCH")"
    EXPECTED="$NAME $VERSION ($(target_of "$ARCH"))"
    if ! command -v "${RUNNER:-true}" >/dev/null; then
        skip "$RUNNER not installed (qemu-user-static): the binary's --version not run"
    elif [ "$($RUNNER "$WORK/root/usr/bin/$NAME" --version 2>&1)" = "$EXPECTED" ]; then
        pass "${RUNNER:+$RUNNER }$NAME --version: $EXPECTED"
    else
        fail "${RUNNER:+$RUNNER }$NAME --version says '$($RUNNER "$WORK/root/usr/bin/$NAME" --version 2>&1)', not '$EXPECTED'"
    fi
    zcat "$WORK/root/usr/share/man/man1/$NAME.1.gz" >"$WORK/man.1"
    if command -v groff >/dev/null; then
        WARN="$(groff -man -ww -z "$WORK/man.1" 2>&1)"
        [ -z "$WARN" ] && pass "man page renders without groff warnings" || fail "groff: $WARN"
    else
        skip "groff not installed: man page not rendered"
    fi
    for v in $VARIABLES; do
        grep -Eq "^#?$v=" "$WORK/root/etc/$NAME/$NAME.env" || fail "env file does not list $v"
        grep -qw -- "$v" "$WORK/man.1" || fail "man page does not mention $v"
    done
    pass "env file and man page cover $(echo $VARIABLES | wc -w) variables"
    if grep -Eq '^[A-Z_]+=.+' "$WORK/root/etc/$NAME/$NAME.env"; then
        fail "env file sets values (only required variables may be present, empty): $(grep -E '^[A-Z_]+=.+' "$WORK/root/etc/$NAME/$NAME.env")"
    else
        pass "env file changes no default"
    fi
    for code in 64 69 77 78; do
        grep -q "^\.B $code\$" "$WORK/man.1" || fail "man page lacks exit status $code"
    done
    for sig in SIGTERM SIGINT SIGHUP; do grep -q "$sig" "$WORK/man.1" || fail "man page lacks $sig"; done

    # --- systemd -------------------------------------------------------------------------
    if ! command -v systemd-analyze >/dev/null; then
        skip "systemd-analyze not installed: units not verified"
    else
        # verify wants ExecStart= to exist and Documentation=man: to resolve: point them
        # at the extracted package instead of touching /usr.
        mkdir -p "$WORK/units"
        for unit in "$NAME.service" "$NAME@.service"; do
            sed "s#/usr/bin/$NAME#$WORK/root/usr/bin/$NAME#" "$WORK/root/lib/systemd/system/$unit" \
                >"$WORK/units/$unit"
        done
        cp "$WORK/units/$NAME@.service" "$WORK/units/$NAME@verify.service"
        for unit in "$NAME.service" "$NAME@verify.service"; do
            if OUT="$(MANPATH="$WORK/root/usr/share/man" systemd-analyze verify "$WORK/units/$unit" 2>&1)" && [ -z "$OUT" ]; then
                pass "systemd-analyze verify $unit"
            else
                fail "systemd-analyze verify $unit: $OUT"
            fi
            LINE="$(systemd-analyze security --offline=true "$WORK/units/$unit" 2>&1 | grep 'Overall exposure level')"
            SCORE="$(echo "$LINE" | sed -n 's/.*: \([0-9.]*\) .*/\1/p')"
            if [ -z "$SCORE" ]; then
                fail "systemd-analyze security $unit: no exposure level in its output"
            elif awk -v s="$SCORE" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
                pass "systemd-analyze security $unit: $SCORE <= $MAX_EXPOSURE"
            else
                fail "systemd-analyze security $unit: $SCORE > $MAX_EXPOSURE"
            fi
        done
    fi
    UNIT="$WORK/root/lib/systemd/system/$NAME.service"
    for line in Type=notify NotifyAccess=main "ExecStart=/usr/bin/$NAME run" 'ExecReload=/bin/kill -HUP $MAINPID' \
        "EnvironmentFile=/etc/$NAME/$NAME.env" "StateDirectory=$NAME" "Environment=SPOOL_DIR=/var/lib/$NAME" \
        Restart=on-failure "RestartPreventExitStatus=64 77 78" TimeoutStopSec=30 WatchdogSec=60 \
        "User=$NAME" "LoadCredential=genesys_client_secret:$NAME.client_secret"; do
        grep -qxF "$line" "$UNIT" || fail "$NAME.service lacks '$line'"
    done
    TEMPLATE="$WORK/root/lib/systemd/system/$NAME@.service"
    for line in "EnvironmentFile=/etc/$NAME/%i.env" "StateDirectory=$NAME/%i" \
        "Environment=SPOOL_DIR=/var/lib/$NAME/%i" "Environment=INSTANCE=%H-%i" \
        "LoadCredential=genesys_client_secret:$NAME.%i.client_secret" \
        "Description=Genesys Cloud queue metrics to InfluxDB (%i)"; do
        grep -qxF "$line" "$TEMPLATE" || fail "$NAME@.service lacks '$line'"
    done
    # The template is the main unit made per-instance: every other setting (notify, watchdog,
    # restart policy, user, hardening) must be the same, so no instance runs less confined.
    settings() { grep -Ev '^[[:space:]]*(#|$)' "$1" | sort -u; }
    DROPPED="$(comm -23 <(settings "$UNIT") <(settings "$TEMPLATE") | grep -Ev \
        '^(Description=|Environment=SPOOL_DIR=|EnvironmentFile=|LoadCredential=|StateDirectory=)')"
    if [ -z "$DROPPED" ]; then
        pass "$NAME@.service has every setting of $NAME.service except the per-instance ones"
    else
        fail "$NAME@.service lacks settings of $NAME.service: $(echo $DROPPED)"
    fi
    pass "unit settings required by the contract are present"
}
for arch in "${ARCHES[@]}"; do check_deb "$arch"; echo; done
ARCH=""

# --- release artefacts -----------------------------------------------------------------
# target/dist: SHA256SUMS matches every file; each tarball holds the binary (0755), man
# page and env file (0644) in NAME-VERSION-TARGET/, owned by root, dated SOURCE_DATE_EPOCH
# like the packages; the .debs there are the ones checked above.
DIST="$ROOT/target/dist"
if [ ! -f "$DIST/SHA256SUMS" ]; then
    fail "no $DIST/SHA256SUMS: run bash packaging/build-release.sh first"
elif OUT="$(cd "$DIST" && sha256sum --check --strict SHA256SUMS 2>&1)"; then
    pass "SHA256SUMS: $(echo "$OUT" | wc -l) files verified"
else
    fail "sha256sum --check SHA256SUMS: $OUT"
fi
for arch in "${ARCHES[@]}"; do
    base="$NAME-$VERSION-$(target_of "$arch")"
    tarball="$DIST/$base.tar.gz"
    grep -q " $base.tar.gz\$" "$DIST/SHA256SUMS" 2>/dev/null || fail "SHA256SUMS does not list $base.tar.gz"
    if ! tar -tvzf "$tarball" >"$WORK_ROOT/$arch.tar.list" 2>&1; then
        fail "$tarball unreadable: $(cat "$WORK_ROOT/$arch.tar.list")"
        continue
    fi
    LISTING="$(awk '{ print $1, $2, $6 }' "$WORK_ROOT/$arch.tar.list")"
    WANT="drwxr-xr-x 0/0 $base/
-rwxr-xr-x 0/0 $base/$NAME
-rw-r--r-- 0/0 $base/$NAME.1
-rw-r--r-- 0/0 $base/$NAME.env"
    [ "$LISTING" = "$WANT" ] && pass "$base.tar.gz: binary 0755, man page and env file 0644, root" \
        || fail "$base.tar.gz holds $(echo $LISTING), expected $(echo $WANT)"
    deb="$(ls target/debian/${NAME}_"${VERSION}"-*_"$arch".deb 2>/dev/null | head -n1)"
    if [ -n "$deb" ] && cmp -s "$deb" "$DIST/$(basename "$deb")"; then
        pass "$DIST/$(basename "$deb") is the package checked above"
    else
        fail "$DIST has no copy of ${deb:-the $arch package}"
    fi
done

# --- Grafana -------------------------------------------------------------------------
for json in $(find "$PKG/grafana" -name '*.json'); do
    if python3 -m json.tool "$json" >/dev/null 2>"$WORK/json.err"; then
        pass "valid JSON: ${json#$ROOT/}"
    else
        fail "invalid JSON ${json#$ROOT/}: $(cat "$WORK/json.err")"
    fi
done
if python3 -c 'import yaml' 2>/dev/null; then
    for y in $(find "$PKG/grafana" -name '*.yaml'); do
        python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$y" \
            && pass "valid YAML: ${y#$ROOT/}" || fail "invalid YAML: ${y#$ROOT/}"
    done
else
    skip "python3 yaml module missing: provisioning YAML not parsed"
fi
# Every panel and variable query runs against a real influxd holding data the binary
# wrote, with the org tag and without: `cargo test --test main dashboard` (tests/dashboard.rs).

echo
if [ "$FAILURES" -gt 0 ]; then
    echo "$FAILURES check(s) failed"
    exit 1
fi
echo "all package checks passed"
