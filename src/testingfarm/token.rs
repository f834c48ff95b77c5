//! The API token: kept out of `Debug`, logs and error messages.

use std::fmt;
use std::sync::Arc;

/// A Testing Farm API token.
///
/// Its [`Debug`](fmt::Debug) output is `Token(<redacted>)`; it has no `Display`. The client
/// sends it only in an `Authorization` header marked sensitive, never in a URL, and scrubs it
/// from any reply text it puts into an error.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl Token {
    /// Wraps a token (surrounding white space is dropped, as from a file or variable).
    pub fn new(token: impl AsRef<str>) -> Self {
        Self(Arc::from(token.as_ref().trim()))
    }

    /// Whether the token is empty (an empty variable means "no token").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The secret itself, for the `Authorization` header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the token replaced by `<redacted>`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_string();
        }
        text.replace(&*self.0, "<redacted>")
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_scrub_hide_the_secret() {
        let t = Token::new(" s3cr3t-token\n");
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert_eq!(t.expose(), "s3cr3t-token");
        assert_eq!(
            t.scrub("Bearer s3cr3t-token was bad"),
            "Bearer <redacted> was bad"
        );
        assert!(Token::new("  ").is_empty());
    }
}
