//! Secrets blanked out of everything the service logs or prints.
//!
//! Error bodies are logged because they carry the reason for a failure, but a proxy or a
//! misbehaving server may echo the request in them: the `Authorization` header, the
//! password, the token. So every secret is registered here as soon as it is known (the
//! configured ones at start-up, each access token when it arrives) and every log record
//! and every line `check` prints passes through [`apply`], which replaces each form the
//! secret could take on the wire or in a message with `***`: as is, URL-encoded,
//! JSON- or Rust-escaped, base64, and inside the base64 of HTTP Basic credentials. A
//! secret cut short where a message was truncated (`…`) is blanked too.

use std::collections::VecDeque;
use std::sync::RwLock;

/// What a secret is replaced with, as [`crate::config::Secret`] prints itself.
pub const MASK: &str = "***";
/// Shorter values are not redacted: they would blank ordinary words out of every line
/// (a one-letter test token), and guessing them takes no log anyway.
pub const MIN_SECRET_CHARS: usize = 4;
/// The newest access tokens whose forms are kept; older tokens have expired.
const KEPT_TOKENS: usize = 4;
/// A truncated secret is blanked when at least this many of its first characters remain.
const MIN_CUT_CHARS: usize = 4;

static REGISTRY: RwLock<Redactor> = RwLock::new(Redactor::new());

/// Registers a secret for the life of the process (configured secrets).
pub fn register(secret: &str) {
    write_registry(|r| r.add(secret));
}

/// Registers HTTP Basic credentials: the secret and `base64(user:secret)`.
pub fn register_credentials(user: &str, secret: &str) {
    write_registry(|r| r.add_credentials(user, secret));
}

/// Registers an access token received at login; only the newest few are kept.
pub fn register_token(token: &str) {
    write_registry(|r| r.add_token(token));
}

/// `text` with every form of every registered secret replaced by [`MASK`].
pub fn apply(text: &str) -> String {
    match REGISTRY.read() {
        Ok(registry) => registry.apply(text),
        Err(poisoned) => poisoned.into_inner().apply(text),
    }
}

fn write_registry(change: impl FnOnce(&mut Redactor)) {
    let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    change(&mut registry);
}

/// The forms to blank out, longest first so that a longer form is never left half
/// replaced because a shorter one inside it went first.
#[derive(Debug, Default)]
pub struct Redactor {
    kept: Vec<String>,
    tokens: VecDeque<Vec<String>>,
    needles: Vec<String>,
}

impl Redactor {
    pub const fn new() -> Self {
        Redactor {
            kept: Vec::new(),
            tokens: VecDeque::new(),
            needles: Vec::new(),
        }
    }

    pub fn add(&mut self, secret: &str) {
        self.kept.extend(forms(secret));
        self.rebuild();
    }

    pub fn add_credentials(&mut self, user: &str, secret: &str) {
        self.kept.extend(forms(secret));
        if secret.chars().count() >= MIN_SECRET_CHARS {
            self.kept
                .push(crate::http::base64(format!("{user}:{secret}").as_bytes()));
        }
        self.rebuild();
    }

    pub fn add_token(&mut self, token: &str) {
        self.tokens.push_back(forms(token));
        while self.tokens.len() > KEPT_TOKENS {
            self.tokens.pop_front();
        }
        self.rebuild();
    }

    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), MASK);
            }
        }
        self.blank_cut_secrets(out)
    }

    fn rebuild(&mut self) {
        let mut needles: Vec<String> = self
            .kept
            .iter()
            .chain(self.tokens.iter().flatten())
            .cloned()
            .collect();
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        self.needles = needles;
    }

    /// Where a message was cut (its end, or a `…`), the start of a secret may remain.
    /// Checks each piece of `text` that ends at a `…` or at the end (a piece starts at
    /// the previous `…`, included).
    fn blank_cut_secrets(&self, text: String) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        // Each round takes at least one character: the loop ends.
        while !rest.is_empty() {
            let cut = rest
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == '…')
                .map_or(rest.len(), |(at, _)| at);
            // `cut` comes from `char_indices`: a char boundary, the split cannot panic.
            let (piece, tail) = rest.split_at(cut);
            match piece.strip_suffix(self.cut_secret(piece)) {
                Some(kept) if kept.len() < piece.len() => {
                    out.push_str(kept);
                    out.push_str(MASK);
                }
                _ => out.push_str(piece),
            }
            rest = tail;
        }
        out
    }

    /// The longest start of a needle that `piece` ends with (`""` if none).
    fn cut_secret<'n>(&'n self, piece: &str) -> &'n str {
        self.needles
            .iter()
            .flat_map(|needle| {
                needle
                    .char_indices()
                    .skip(MIN_CUT_CHARS)
                    .filter_map(|(end, _)| needle.get(..end))
                    .filter(|start| piece.ends_with(start))
                    .max_by_key(|start| start.len())
            })
            .max_by_key(|start| start.len())
            .unwrap_or_default()
    }
}

/// Every way `secret` may be written: as is, percent-encoded (upper and lower case hex,
/// `+` for a space as forms do), JSON- and Rust-escaped, and base64.
fn forms(secret: &str) -> Vec<String> {
    if secret.trim().chars().count() < MIN_SECRET_CHARS {
        return Vec::new();
    }
    let upper = percent_encode(secret, true);
    let mut forms = vec![
        secret.to_string(),
        upper.replace("%20", "+"),
        percent_encode(secret, false),
        serde_json::to_string(secret)
            .ok()
            .and_then(|quoted| Some(quoted.strip_prefix('"')?.strip_suffix('"')?.to_string()))
            .unwrap_or_default(),
        secret.escape_debug().to_string(),
        crate::http::base64(secret.as_bytes()),
        upper,
    ];
    forms.retain(|form| !form.is_empty());
    forms.sort();
    forms.dedup();
    forms
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(text: &str, upper_hex: bool) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else if upper_hex {
            out.push_str(&format!("%{byte:02X}"));
        } else {
            out.push_str(&format!("%{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::base64;

    fn redactor(secrets: &[&str]) -> Redactor {
        let mut r = Redactor::new();
        for s in secrets {
            r.add(s);
        }
        r
    }

    #[test]
    fn every_form_of_a_secret_is_blanked() {
        let secret = "pw+LEAK/9 3=ab&\"q\u{e9}";
        let r = redactor(&[secret]);
        for form in [
            secret.to_string(),
            percent_encode(secret, true),
            percent_encode(secret, false),
            percent_encode(secret, true).replace("%20", "+"),
            serde_json::to_string(secret)
                .unwrap()
                .trim_matches('"')
                .to_string(),
            format!("{secret:?}").trim_matches('"').to_string(),
            base64(secret.as_bytes()),
        ] {
            let line = format!("before {form} after");
            assert_eq!(r.apply(&line), "before *** after", "{form}");
        }
    }

    #[test]
    fn basic_credentials_are_blanked() {
        let mut r = Redactor::new();
        r.add_credentials("admin", "s3cret-pw");
        let header = format!("Authorization: Basic {}", base64(b"admin:s3cret-pw"));
        assert_eq!(r.apply(&header), "Authorization: Basic ***");
    }

    #[test]
    fn a_secret_cut_short_by_truncation_is_blanked() {
        let r = redactor(&["tok-LEAKCHECK-55c0de"]);
        assert_eq!(r.apply("Token tok-LEAK…"), "Token ***…");
        assert_eq!(r.apply("Token tok-LEAKCH"), "Token ***");
        assert_eq!(r.apply("to…k tok"), "to…k tok");
    }

    #[test]
    fn short_values_and_ordinary_text_are_left_alone() {
        let r = redactor(&["t", "pw", ""]);
        assert_eq!(r.apply("token: obtained"), "token: obtained");
        let r = redactor(&["s3cret-value"]);
        assert_eq!(r.apply("nothing here"), "nothing here");
    }

    #[test]
    fn only_the_newest_tokens_are_kept() {
        let mut r = Redactor::new();
        for i in 0..=KEPT_TOKENS {
            r.add_token(&format!("token-number-{i}"));
        }
        assert_eq!(r.apply("token-number-0"), "token-number-0");
        assert_eq!(r.apply(&format!("token-number-{KEPT_TOKENS}")), "***");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever surrounds it, no form of a registered secret survives.
        #[test]
        fn no_form_of_a_secret_survives(
            secret in "[^*]{4,24}",
            user in "[a-z]{1,8}",
            before in "\\PC{0,30}",
            after in "\\PC{0,30}",
            cut in 0usize..24,
        ) {
            let mut r = Redactor::new();
            r.add_credentials(&user, &secret);
            let mut all = forms(&secret);
            all.push(base64(format!("{user}:{secret}").as_bytes()));
            for form in &all {
                let out = r.apply(&format!("{before}{form}{after}"));
                for needle in &all {
                    proptest::prop_assert!(!out.contains(needle.as_str()), "{needle:?} in {out:?}");
                }
                let start: String = form.chars().take(cut.max(MIN_CUT_CHARS)).collect();
                let out = r.apply(&format!("{before}{start}…"));
                proptest::prop_assert!(!out.contains(&format!("{start}…")), "{out:?}");
            }
        }
    }
}
