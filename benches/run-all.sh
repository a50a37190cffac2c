#!/bin/sh
# Runs every benchmark and prints one table. Usage: benches/run-all.sh
# Environment: BENCH_SECONDS (aggregation, default 3), BENCH_E2E_SECONDS (default 30),
# BENCH_E2E_QUEUES (default 100,1000,5000), BENCH_E2E_KPIS (default off), and
# BENCH_E2E_PRODUCTION=0 to skip the row at production cadence (1,000 queues, poll 10 s,
# window 60 s, KPIs on, 180 s: about five minutes); BENCH_FRESHNESS=0 to skip the freshness
# rows (100 and 1,000 queues, live updates off and on, production cadence: about 20 minutes;
# BENCH_FRESHNESS_QUEUES, BENCH_FRESHNESS_LIVE and BENCH_FRESHNESS_SECONDS choose) and the
# notifications rows (100 and 1,000 queues, 1, 10 and 50 changes a second, notifications off
# and on: about 2 minutes a row, 25 minutes; BENCH_FRESHNESS_ROWS=live or =notifications runs
# one set only, BENCH_FRESHNESS_RATES and BENCH_FRESHNESS_NOTIFICATIONS choose).
set -eu
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo bench --bench aggregate 2>/dev/null | grep '^RESULT' >>"$out"
cargo bench --bench e2e 2>/dev/null | grep '^RESULT' >>"$out"
if [ "${BENCH_E2E_PRODUCTION:-1}" != 0 ]; then
    BENCH_E2E_QUEUES=1000 BENCH_E2E_POLL=10 BENCH_E2E_WINDOW=60 BENCH_E2E_SECONDS=180 BENCH_E2E_KPIS=on \
        cargo bench --bench e2e 2>/dev/null | grep '^RESULT' >>"$out"
fi
if [ "${BENCH_FRESHNESS:-1}" != 0 ]; then
    cargo bench --bench freshness 2>/dev/null | grep '^RESULT' >>"$out"
fi
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load average before/after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-10s %8s %14s %14s\n' bench queues "readings/s cpu" "ns/reading"
grep '^RESULT aggregate' "$out" | while read -r _ _ rest; do
    eval "$(echo "$rest" | tr ' ' '\n' | grep = | sed 's/^/local_/')"
    printf '%-10s %8s %14s %14s\n' aggregate "$local_queues" "$local_readings_per_s_cpu" "$local_cpu_ns_per_reading"
done
echo
printf '%-6s %-9s %6s %8s %10s %14s %12s %12s %12s %6s %8s %8s\n' queues "poll/win" polls peakRSS "cpu ms/poll" "ms/poll/1000q" "faults/poll" "wire B/win" "raw B/win" gzip "lat p50" "lat max"
grep '^RESULT e2e' "$out" | while read -r _ _ rest; do
    eval "$(echo "$rest" | tr ' ' '\n' | grep = | sed 's/^/local_/')"
    printf '%-6s %-9s %6s %6sKB %10s %14s %12s %12s %12s %5sx %6sms %6sms\n' "$local_queues" \
        "${local_poll_s}s/${local_window_s}s" "$local_polls" "$local_peak_rss_kb" \
        "$local_cpu_ms_per_poll" "$local_cpu_ms_per_poll_per_1000_queues" "$local_minor_faults_per_poll" "$local_wire_bytes_per_window" \
        "$local_raw_bytes_per_window" "$local_gzip_ratio" "$local_latency_ms_p50" "$local_latency_ms_max"
done
echo
printf '%-6s %-5s %-9s %7s %10s %10s %10s %16s %16s %16s\n' queues live "poll/win" changes "fresh p50" "fresh p95" "fresh max" "cpu ms/min/1000q" "lines/min/1000q" "wire B/min/1000q"
grep '^RESULT freshness ' "$out" | while read -r _ _ rest; do
    eval "$(echo "$rest" | tr ' ' '\n' | grep = | sed 's/^/local_/')"
    printf '%-6s %-5s %-9s %7s %8sms %8sms %8sms %16s %16s %16s\n' "$local_queues" "$local_live" \
        "${local_poll_s}s/${local_window_s}s" "$local_changes" "$local_freshness_ms_p50" "$local_freshness_ms_p95" \
        "$local_freshness_ms_max" "$local_cpu_ms_per_min_per_1000_queues" "$local_lines_per_min_per_1000_queues" \
        "$local_wire_bytes_per_min_per_1000_queues"
done
echo
printf '%-6s %9s %-6s %7s %10s %10s %10s %9s %11s %12s %13s %s\n' queues "changes/s" notify changes "fresh p50" "fresh p95" "fresh max" "req/min" "cpu ms/min" "early polls" "early skipped" "load 1 min"
grep '^RESULT freshness_notifications ' "$out" | while read -r _ _ rest; do
    eval "$(echo "$rest" | tr ' ' '\n' | grep = | sed 's/^/local_/')"
    printf '%-6s %9s %-6s %7s %8sms %8sms %8sms %9s %11s %12s %13s %s\n' "$local_queues" "$local_changes_per_s" \
        "$local_notifications" "$local_changes" "$local_freshness_ms_p50" "$local_freshness_ms_p95" \
        "$local_freshness_ms_max" "$local_requests_per_min" "$local_cpu_ms_per_min" "$local_early_polls" \
        "$local_early_polls_skipped" "$local_load1_before -> $local_load1_after"
done
