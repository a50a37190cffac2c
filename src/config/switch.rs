//! The `auto|on|off` settings, `LIVE_UPDATES` and `NOTIFICATIONS`: one type and one
//! parser, so both read and fail alike. It lives in `config`, and the modules that act on
//! a switch (`influx::live`, `notifications`) import it from here: `config` imports none
//! of them.

use super::error::{ConfigError, Result};

/// An `auto|on|off` setting (docs/CONTRACT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Switch {
    /// On when the other side is found to support it, otherwise off, said once:
    /// `LIVE_UPDATES` asks the backend's `/ping`, `NOTIFICATIONS` whether channels can be
    /// created.
    #[default]
    Auto,
    /// On. `NOTIFICATIONS=on` warns at every failed attempt while it cannot be used, and
    /// polls alone meanwhile: never fatal.
    On,
    /// Off.
    Off,
}

/// `LIVE_UPDATES`: whether the window in progress is also written after every poll.
pub type LiveUpdates = Switch;

/// `NOTIFICATIONS`: whether queue changes pushed by Genesys Cloud wake the poller.
pub type Notifications = Switch;

/// Parses the value of `variable`, case and surrounding blanks ignored.
pub(crate) fn parse(variable: &str, text: &str) -> Result<Switch> {
    match text.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(Switch::Auto),
        "on" => Ok(Switch::On),
        "off" => Ok(Switch::Off),
        _ => Err(ConfigError::new(
            variable,
            format!("\"{text}\" is not on, off or auto"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_values_parse_and_others_name_the_variable_and_the_choices() {
        assert_eq!(parse("LIVE_UPDATES", "auto"), Ok(Switch::Auto));
        assert_eq!(parse("LIVE_UPDATES", "ON"), Ok(Switch::On));
        assert_eq!(parse("NOTIFICATIONS", " off "), Ok(Switch::Off));
        for variable in ["LIVE_UPDATES", "NOTIFICATIONS"] {
            assert_eq!(
                parse(variable, "yes").unwrap_err().to_string(),
                format!("{variable}: \"yes\" is not on, off or auto")
            );
        }
    }
}
