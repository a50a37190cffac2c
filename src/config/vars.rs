//! Typed access to the variables: each value trimmed, parsed and range-checked, and
//! each error naming its variable.

use std::time::Duration;

use super::error::{ConfigError, Result};
use crate::duration;

/// The variables as `from_lookup` reads them (environment merged with the env file).
pub(super) struct Vars<'a>(pub(super) &'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    /// The value, or `None` when unset or blank.
    pub(super) fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn required(&self, name: &str, hint: &str) -> Result<String> {
        self.optional(name)
            .ok_or_else(|| ConfigError::new(name, format!("is required; {hint}")))
    }

    pub(super) fn duration(&self, name: &str, default: Duration) -> Result<Duration> {
        match self.optional(name) {
            None => Ok(default),
            Some(text) => duration::parse(&text).map_err(|why| ConfigError::new(name, why)),
        }
    }

    pub(super) fn is_set(&self, name: &str) -> bool {
        self.optional(name).is_some()
    }

    pub(super) fn duration_within(
        &self,
        name: &str,
        default: Duration,
        (min, max): (Duration, Duration),
    ) -> Result<Duration> {
        let value = self.duration(name, default)?;
        if value < min || value > max {
            return Err(ConfigError::new(
                name,
                format!(
                    "{} is out of range; use {} to {}",
                    duration::format(value),
                    duration::format(min),
                    duration::format(max)
                ),
            ));
        }
        Ok(value)
    }

    pub(super) fn number_within(
        &self,
        name: &str,
        default: u64,
        (min, max): (u64, u64),
    ) -> Result<u64> {
        let Some(text) = self.optional(name) else {
            return Ok(default);
        };
        text.parse()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                ConfigError::new(
                    name,
                    format!("'{text}' is not a whole number from {min} to {max}"),
                )
            })
    }
}
