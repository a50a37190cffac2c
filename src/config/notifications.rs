//! `NOTIFICATIONS`: whether Genesys Cloud's Notifications API is used as a change signal
//! (docs/CONTRACT.md). Its own file so the notifications thread can read the setting
//! without the rest of the configuration.

use super::error::{ConfigError, Result};

/// `NOTIFICATIONS=auto|on|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Notifications {
    /// Used when channels can be created; otherwise polling alone, said once.
    #[default]
    Auto,
    /// Used; while it cannot be, every failed attempt is a warning. Never fatal.
    On,
    /// Polling alone.
    Off,
}

impl Notifications {
    /// The setting's value as written.
    pub fn name(self) -> &'static str {
        match self {
            Notifications::Auto => "auto",
            Notifications::On => "on",
            Notifications::Off => "off",
        }
    }
}

/// Parses `NOTIFICATIONS`.
pub(crate) fn parse(text: &str) -> Result<Notifications> {
    match text.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(Notifications::Auto),
        "on" => Ok(Notifications::On),
        "off" => Ok(Notifications::Off),
        _ => Err(ConfigError::new(
            "NOTIFICATIONS",
            format!("\"{text}\" is not auto, on or off"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_values_parse_and_others_name_the_variable() {
        assert_eq!(parse("auto"), Ok(Notifications::Auto));
        assert_eq!(parse("ON"), Ok(Notifications::On));
        assert_eq!(parse(" off "), Ok(Notifications::Off));
        let err = parse("yes").unwrap_err().to_string();
        assert!(
            err.contains("NOTIFICATIONS") && err.contains("auto, on or off"),
            "{err}"
        );
    }
}
