//! Settings that are set but have no effect with the others (a v1-only variable with a
//! v2 target, `SPOOL_MAX_BYTES` without `SPOOL_DIR`, …): reported, not refused, so a
//! shared env file keeps working for every command.

use super::influx::InfluxTarget;
use super::mode::Mode;
use super::vars::Vars;

/// Variables that are set but that nothing reads with the rest of the configuration.
pub(super) fn ineffective_settings(
    vars: &Vars,
    influx: &InfluxTarget,
    kpis: bool,
    mode: Mode,
) -> Vec<String> {
    const V1_ONLY: [&str; 4] = [
        "INFLUXDB_RETENTION_POLICY",
        "INFLUXDB_USERNAME",
        "INFLUXDB_PASSWORD",
        "INFLUXDB_PASSWORD_FILE",
    ];
    let mut unused: Vec<(&str, &str)> = Vec::new();
    match influx {
        InfluxTarget::V2 { .. } => unused.extend(V1_ONLY.map(|name| {
            (
                name,
                "with INFLUXDB_BUCKET (v2 write API); it belongs to the v1 API (INFLUXDB_DATABASE)",
            )
        })),
        InfluxTarget::V1 { .. } => unused.push((
            "INFLUXDB_ORG",
            "with INFLUXDB_DATABASE (v1 write API); it belongs to the v2 API (INFLUXDB_BUCKET)",
        )),
        // `top` writes nothing: the InfluxDB settings of a shared env file are not its business.
        InfluxTarget::Stdout if mode == Mode::Top => {}
        InfluxTarget::Stdout if mode != (Mode::Run { dry_run: true }) => unused.extend(
            [
                "INFLUXDB_TOKEN",
                "INFLUXDB_ORG",
                "INFLUXDB_BUCKET",
                "INFLUXDB_DATABASE",
            ]
            .into_iter()
            .chain(V1_ONLY)
            .map(|name| {
                (
                    name,
                    "while line protocol goes to stdout (INFLUXDB_URL is - or unset)",
                )
            }),
        ),
        InfluxTarget::Stdout => {}
    }
    if !vars.is_set("SPOOL_DIR") {
        unused.push(("SPOOL_MAX_BYTES", "without SPOOL_DIR"));
    }
    if !kpis {
        unused
            .extend(["KPI_BUCKET", "KPI_POLL", "KPI_LOOKBACK"].map(|name| (name, "with KPIS=off")));
    }
    if vars.is_set("GENESYS_API_URL") && vars.is_set("GENESYS_LOGIN_URL") {
        unused.push((
            "GENESYS_REGION",
            "when GENESYS_API_URL and GENESYS_LOGIN_URL are both set",
        ));
    }
    for (file, value) in [
        ("GENESYS_CLIENT_SECRET_FILE", "GENESYS_CLIENT_SECRET"),
        ("INFLUXDB_PASSWORD_FILE", "INFLUXDB_PASSWORD"),
        ("INFLUXDB_TOKEN_FILE", "INFLUXDB_TOKEN"),
    ] {
        if vars.is_set(value) {
            unused.push((
                file,
                "while the variable it stands for is set too (that one wins)",
            ));
        }
    }
    let mut warnings: Vec<String> = unused
        .into_iter()
        .filter(|(name, _)| vars.is_set(name))
        .map(|(name, why)| format!("{name} has no effect {why}"))
        .collect();
    warnings.dedup();
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_lookup;
    use crate::config::tests::{config, run};
    use std::collections::HashMap;

    #[test]
    fn settings_without_effect_are_reported() {
        let v2 = run(&[
            ("INFLUXDB_DATABASE", ""),
            ("INFLUXDB_BUCKET", "b"),
            ("INFLUXDB_TOKEN", "t0ken"),
            ("INFLUXDB_RETENTION_POLICY", "rp"),
            ("INFLUXDB_USERNAME", "u"),
            ("SPOOL_MAX_BYTES", "1048576"),
            ("KPIS", "off"),
            ("KPI_POLL", "30s"),
        ])
        .unwrap();
        assert_eq!(
            v2.warnings,
            vec![
                "INFLUXDB_RETENTION_POLICY has no effect with INFLUXDB_BUCKET (v2 write API); it belongs to the v1 API (INFLUXDB_DATABASE)",
                "INFLUXDB_USERNAME has no effect with INFLUXDB_BUCKET (v2 write API); it belongs to the v1 API (INFLUXDB_DATABASE)",
                "SPOOL_MAX_BYTES has no effect without SPOOL_DIR",
                "KPI_POLL has no effect with KPIS=off",
            ]
        );
        let v1 = run(&[
            ("INFLUXDB_ORG", "o"),
            ("GENESYS_API_URL", "http://127.0.0.1:1"),
            ("GENESYS_LOGIN_URL", "http://127.0.0.1:2"),
            ("GENESYS_REGION", "eu-west-1"),
            ("GENESYS_CLIENT_SECRET_FILE", "/nonexistent"),
        ])
        .unwrap();
        assert_eq!(
            v1.warnings,
            vec![
                "INFLUXDB_ORG has no effect with INFLUXDB_DATABASE (v1 write API); it belongs to the v2 API (INFLUXDB_BUCKET)",
                "GENESYS_REGION has no effect when GENESYS_API_URL and GENESYS_LOGIN_URL are both set",
                "GENESYS_CLIENT_SECRET_FILE has no effect while the variable it stands for is set too (that one wins)",
            ]
        );
        let stdout = run(&[("INFLUXDB_URL", "-")]).unwrap();
        assert_eq!(
            stdout.warnings,
            vec!["INFLUXDB_DATABASE has no effect while line protocol goes to stdout (INFLUXDB_URL is - or unset)"]
        );
        assert!(config(&[], Mode::Run { dry_run: true })
            .unwrap()
            .warnings
            .is_empty());
        assert!(run(&[]).unwrap().warnings.is_empty());
    }

    #[test]
    fn top_needs_no_influxdb_and_does_not_warn_about_its_settings() {
        let env: HashMap<&str, &str> = [
            ("GENESYS_CLIENT_ID", "id"),
            ("GENESYS_CLIENT_SECRET", "s3cret"),
            ("INFLUXDB_BUCKET", "shared env file"),
            (
                "INFLUXDB_DATABASE",
                "both set: an error for run, unread by top",
            ),
        ]
        .into();
        let top = from_lookup(&|name| env.get(name).map(|v| v.to_string()), Mode::Top).unwrap();
        assert_eq!(top.influx, InfluxTarget::Stdout);
        assert!(top.warnings.is_empty(), "{:?}", top.warnings);
        let without_id = from_lookup(&|_| None, Mode::Top).unwrap_err();
        assert!(without_id.to_string().contains("GENESYS_CLIENT_ID"));
    }
}
