//! What the benchmarks share: what they read from `/proc` and from their environment.

/// utime + stime, in seconds, of the process whose `/proc/<pid>/stat` (or
/// `/proc/self/stat`) is at `stat_path` (clock ticks of 1/100 s); 0 when unreadable.
pub fn cpu_seconds(stat_path: &str) -> f64 {
    let fields = stat_fields(stat_path, &[14, 15]);
    (fields[0] + fields[1]) / 100.0
}

/// Minor page faults (minflt) so far of the process whose `/proc/<pid>/stat` is at
/// `stat_path`; 0 when unreadable. Unlike CPU time, this count does not depend on how
/// busy the machine is, so it compares builds measured under different loads.
#[allow(dead_code)] // used by the e2e bench only
pub fn minor_faults(stat_path: &str) -> f64 {
    stat_fields(stat_path, &[10])[0]
}

/// The numeric fields `numbers` (1-based, as in proc(5)) of a `/proc/<pid>/stat`; 0 for
/// any that cannot be read.
fn stat_fields<const N: usize>(stat_path: &str, numbers: &[usize; N]) -> [f64; N] {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the parenthesised command name start with the state, field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    numbers.map(|n| {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    })
}

/// A whole number from the environment variable `name`, or `default`.
#[allow(dead_code)] // used by the e2e and freshness benches only
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The comma-separated queue counts in the environment variable `name`, or `default`.
#[allow(dead_code)] // used by the e2e and freshness benches only
pub fn env_sizes(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

/// Under qemu-user (`GENESYS2INFLUX_RUNNER`), the resident kB of the emulated program's
/// own mappings in the process `pid`: the sum of `Rss:` in `/proc/<pid>/smaps` over the
/// mappings below 2^44. qemu 7.2 runs the aarch64 and the armv7 guest with guest_base 0,
/// so the guest's binary, heap, thread stacks and mmaps sit at the addresses it asked for
/// (aarch64: the binary at 0x200000, mmaps from 0x55_0000_0000; armv7: all below 4 GiB),
/// while qemu's own binary, malloc arenas, 128 MiB translated-code buffer and thread
/// stacks are at 0x7f…, above 2^46. (Checked by reading /proc/<pid>/maps of both.)
#[allow(dead_code)] // used by the e2e bench only
pub fn guest_rss_kb(pid: u32) -> u64 {
    const GUEST_END: u64 = 1 << 44;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut in_guest = false;
    let mut total = 0;
    for line in smaps.lines() {
        if let Some(kb) = line.strip_prefix("Rss:") {
            if in_guest {
                total += kb
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0);
            }
        } else if let Some(start) = line
            .split_once('-')
            .filter(|(start, _)| start.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|(start, _)| start)
        {
            in_guest = u64::from_str_radix(start, 16).is_ok_and(|a| a < GUEST_END);
        }
    }
    total
}
