//! Which command a configuration is for; the readers in `config/` check different
//! variables for each.

/// Which command the configuration is for: they need different variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run { dry_run: bool },
    Check,
    Demo,
    Top,
}
