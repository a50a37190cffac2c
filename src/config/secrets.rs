//! Secrets: a type that never prints its value, and where a secret may come from.
//!
//! A secret is read from its variable, else from the file named by `<variable>_FILE`,
//! else from a systemd credential (`LoadCredential=`, found in `$CREDENTIALS_DIRECTORY`),
//! so it need not sit in the environment. A value that looks like a paste accident is
//! refused without being echoed.

use std::fmt;
use std::path::PathBuf;

use super::error::{ConfigError, Result};
use super::vars::Vars;

/// Name of the systemd credential (`LoadCredential=`) holding the client secret.
pub(super) const SECRET_CREDENTIAL_NAME: &str = "genesys_client_secret";

/// A value that must never be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Vars<'_> {
    /// The value of `name`, else the contents of the file `name_FILE`, else of the systemd
    /// credential `credential` when `$CREDENTIALS_DIRECTORY` holds it.
    pub(super) fn secret(&self, name: &str, credential: &str) -> Result<Option<Secret>> {
        if let Some(value) = (self.0)(name).filter(|v| !v.is_empty()) {
            return checked_secret(name, value).map(Some);
        }
        let file_var = format!("{name}_FILE");
        let path = match self.optional(&file_var) {
            Some(path) => (file_var, PathBuf::from(path)),
            None => match self.optional("CREDENTIALS_DIRECTORY") {
                Some(dir) if PathBuf::from(&dir).join(credential).exists() => (
                    "CREDENTIALS_DIRECTORY".to_string(),
                    PathBuf::from(dir).join(credential),
                ),
                _ => return Ok(None),
            },
        };
        let (variable, path) = path;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::new(
                &variable,
                format!("cannot read secret file {}: {e}", path.display()),
            )
        })?;
        let text = text.trim_end_matches(['\n', '\r']).to_string();
        if text.trim().is_empty() {
            return Err(ConfigError::new(
                &variable,
                format!("secret file {} is empty", path.display()),
            ));
        }
        checked_secret(&variable, text).map(Some)
    }
}

/// A secret made only of blanks, or holding a line break or another control character,
/// is a copy-and-paste accident; it is refused without being echoed.
fn checked_secret(name: &str, value: String) -> Result<Secret> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(
            name,
            "is blank (only spaces); set the real value",
        ));
    }
    if value.contains(char::is_control) {
        return Err(ConfigError::new(
            name,
            "contains a line break or another control character; copy the value again",
        ));
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{error, run};
    use crate::testing::TempDir;

    #[test]
    fn secret_comes_from_a_file_or_a_systemd_credential() {
        let temp = TempDir::new("config-secret");
        let dir = &temp.0;
        std::fs::write(dir.join("secret"), "from-file\n").unwrap();
        std::fs::write(dir.join(SECRET_CREDENTIAL_NAME), "from-credential").unwrap();
        let file = dir.join("secret").display().to_string();
        let c = run(&[
            ("GENESYS_CLIENT_SECRET", ""),
            ("GENESYS_CLIENT_SECRET_FILE", &file),
        ])
        .unwrap();
        assert_eq!(c.genesys.client_secret.expose(), "from-file");
        let creds = dir.display().to_string();
        let c = run(&[
            ("GENESYS_CLIENT_SECRET", ""),
            ("CREDENTIALS_DIRECTORY", &creds),
        ])
        .unwrap();
        assert_eq!(c.genesys.client_secret.expose(), "from-credential");
        let err = run(&[
            ("GENESYS_CLIENT_SECRET", ""),
            ("GENESYS_CLIENT_SECRET_FILE", "/nonexistent/x"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "GENESYS_CLIENT_SECRET_FILE");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = run(&[
            ("INFLUXDB_USERNAME", "u"),
            ("INFLUXDB_PASSWORD", "pw-value"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("pw-value"),
            "{debug}"
        );
    }

    #[test]
    fn blank_secrets_are_refused_without_echoing_them() {
        for variable in ["GENESYS_CLIENT_SECRET", "INFLUXDB_TOKEN"] {
            assert_eq!(
                error(&[(variable, "   ")]),
                format!("{variable}: is blank (only spaces); set the real value")
            );
            let err = error(&[(variable, "abc\ndef")]);
            assert!(
                err.starts_with(&format!("{variable}: contains a line break")),
                "{err}"
            );
            assert!(!err.contains("abc"), "{err}");
        }
    }
}
