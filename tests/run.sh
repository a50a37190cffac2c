#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need
# (Debian's real InfluxDB 1.x server, VictoriaMetrics, packaging tools, cross compilers,
# qemu-user), then checks formatting and lints, runs the unit and black-box tests, checks
# that the benchmarks still build, builds the x86_64, aarch64 and armv7 releases with
# their Debian packages and checks them, and runs the ARM subset of the black-box tests
# against the ARM binaries under qemu-user. Fails loudly if anything could not run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
command -v influxd >/dev/null || need_packages+=(influxdb)
command -v victoria-metrics >/dev/null || need_packages+=(victoria-metrics)
command -v musl-gcc >/dev/null || need_packages+=(musl-tools)
# The ARM releases: ring's C code needs a cross compiler, and the tests run the binaries
# under qemu-user.
command -v aarch64-linux-gnu-gcc >/dev/null || need_packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v arm-linux-gnueabihf-gcc >/dev/null || need_packages+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
command -v qemu-aarch64-static >/dev/null && command -v qemu-arm-static >/dev/null || need_packages+=(qemu-user-static)
command -v readelf >/dev/null || need_packages+=(binutils)
command -v lintian >/dev/null || need_packages+=(lintian)
command -v systemd-analyze >/dev/null || need_packages+=(systemd)
command -v file >/dev/null || need_packages+=(file)
command -v script >/dev/null || need_packages+=(bsdutils)
# libfaketime steps the wall clock of the binary under test (tests/systemd_notify.rs)
compgen -G "/usr/lib/*-linux-gnu/faketime/libfaketimeMT.so.1" >/dev/null || need_packages+=(faketime)
if [ ${#need_packages[@]} -gt 0 ]; then
    echo "==> installing ${need_packages[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update
    # Keep the packages' install scripts from starting system services (port 8086):
    # the tests start their own servers on free loopback ports.
    had_policy=0
    [ -e /usr/sbin/policy-rc.d ] && had_policy=1
    [ $had_policy -eq 1 ] || printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo_cmd[@]}" chmod +x /usr/sbin/policy-rc.d
    status=0
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${need_packages[@]}" || status=$?
    [ $had_policy -eq 1 ] || "${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d
    [ $status -eq 0 ] || { echo "FATAL: apt-get install ${need_packages[*]} failed" >&2; exit 1; }
fi
command -v influxd >/dev/null || { echo "FATAL: influxd is not installed; the InfluxDB tests cannot run" >&2; exit 1; }

echo "==> cargo fmt --check and cargo clippy (warnings are errors)"
# The rustup component behind each cargo subcommand; installed when missing.
for pair in fmt:rustfmt clippy:clippy; do
    subcommand=${pair%%:*} component=${pair#*:}
    if ! cargo "$subcommand" --version >/dev/null 2>&1; then
        echo "==> installing the rustup component $component"
        rustup component add "$component" || { echo "FATAL: rustup component add $component failed" >&2; exit 1; }
    fi
    cargo "$subcommand" --version >/dev/null 2>&1 || { echo "FATAL: cargo $subcommand cannot run" >&2; exit 1; }
done
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings

echo "==> cargo test (unit tests and black-box tests against real influxd)"
# The 1,200-queue throughput tests measure what this machine can poll within a poll's
# slot: they run alone afterwards, so the load of a neighbouring test does not decide them.
alone=(
    genesys_resilience::with_429_and_500_faults_99_percent_of_1200_queue_windows_are_complete
    genesys_resilience::twelve_hundred_queues_are_polled_in_twelve_spread_requests_within_the_budget
)
skips=()
for test in "${alone[@]}"; do skips+=(--skip "$test"); done
cargo test --locked -- --test-threads=2 "${skips[@]}"
echo "==> cargo test: the throughput tests, one at a time"
cargo test --locked --test main -- --test-threads=1 --exact "${alone[@]}"

echo "==> benchmarks compile"
cargo bench --locked --no-run

echo "==> release builds (x86_64, aarch64, armv7), Debian packages, tarballs and their checks"
bash packaging/build-release.sh
bash packaging/test-package.sh
# Reproducible archives, cheaply: the packaging step once more from the same binaries
# must give the same bytes (a whole second build of the binaries is checked by hand:
# docs/install.md, "Reproducible").
echo "==> packages and tarballs made again from the same binaries: byte for byte the same"
cp target/dist/SHA256SUMS target/SHA256SUMS.first
SKIP_LINTIAN=1 bash packaging/build-release.sh >/dev/null
if ! cmp -s target/SHA256SUMS.first target/dist/SHA256SUMS; then
    echo "FATAL: a second packaging run gave other bytes:" >&2
    diff target/SHA256SUMS.first target/dist/SHA256SUMS >&2 || true
    exit 1
fi

# The same black-box tests against the ARM binaries, run under qemu-user with a real
# influxd on loopback: the subset that proves a target (README, "Tests on ARM"). Emulation
# is slower: time limits get 3 times the room, the assertions stay as they are.
arm_subset=(
    core_pipeline::writes_exact_window_aggregates_to_influxdb_v1
    no_window_lost::an_influxdb_outage_of_11_windows_loses_no_window
    no_window_lost::a_restart_in_the_same_window_completes_the_window
    kpis::buckets_grow_in_place_and_end_with_the_final_numbers
)
for pair in aarch64-unknown-linux-musl:qemu-aarch64-static armv7-unknown-linux-musleabihf:qemu-arm-static; do
    target=${pair%%:*} runner=${pair#*:}
    echo "==> cargo test: the ARM subset against target/$target/release/genesys2influx under $runner"
    GENESYS2INFLUX_BINARY="target/$target/release/genesys2influx" GENESYS2INFLUX_RUNNER="$runner" \
        GENESYS2INFLUX_TEST_SLOWNESS=3 \
        cargo test --locked --test main -- --test-threads=2 --exact "${arm_subset[@]}"
done
