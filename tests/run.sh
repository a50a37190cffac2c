#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need
# (Debian's real InfluxDB 1.x server, VictoriaMetrics, packaging tools), then checks
# formatting and lints, runs the unit and black-box tests, checks that the benchmarks
# still build, and builds and checks the Debian package. Fails loudly if anything could
# not run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
command -v influxd >/dev/null || need_packages+=(influxdb)
command -v victoria-metrics >/dev/null || need_packages+=(victoria-metrics)
command -v musl-gcc >/dev/null || need_packages+=(musl-tools)
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

echo "==> release build, Debian package and its checks"
bash packaging/build-release.sh
bash packaging/test-package.sh
