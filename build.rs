//! Tells the crate which target it is compiled for, so `--version` names the exact
//! release artefact (`armv7-unknown-linux-musleabihf`, not just "arm": `cfg!` cannot tell
//! ARMv7 from ARMv6, and docs/install.md maps `uname -m` to these names).

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=GENESYS2INFLUX_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
