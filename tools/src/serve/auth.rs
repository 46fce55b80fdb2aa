//! The optional bearer token (`--auth-token-file`): every HTTP request must carry
//! `Authorization: Bearer <token>` and every gRPC call the same in its `authorization`
//! metadata, else 401 / UNAUTHENTICATED.

use std::path::Path;

use super::ServeError;

/// The token every request must present.
#[derive(Clone)]
pub(crate) struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Reads the token from a file; surrounding whitespace (a trailing newline) is not
    /// part of it.
    pub(crate) fn read(path: &Path) -> Result<Token, ServeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServeError::Token { path: path.to_path_buf(), reason: e.to_string() })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(ServeError::Token { path: path.to_path_buf(), reason: "the file holds no token".into() });
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ServeError::Token {
                path: path.to_path_buf(),
                reason: "the token must be one word without spaces or control characters".into(),
            });
        }
        Ok(Token(token.as_bytes().to_vec()))
    }

    /// Whether an `Authorization` header value presents this token. The comparison
    /// takes the same time wherever the first difference is.
    pub(crate) fn admits(&self, header: Option<&[u8]>) -> bool {
        let Some(value) = header else { return false };
        let Some(presented) = strip_bearer(value) else { return false };
        constant_time_eq(presented, &self.0)
    }
}

/// The credentials after the `Bearer` scheme (case-insensitive, as RFC 7235 says of
/// schemes), or `None` for another scheme.
fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let rest = value.get(7..)?;
    let start = rest.iter().position(|b| *b != b' ')?;
    let rest = rest.get(start..)?;
    let end = rest.iter().rposition(|b| *b != b' ').map_or(0, |i| i + 1);
    rest.get(..end)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_compared_whole() {
        let token = Token(b"s3cret".to_vec());
        assert!(token.admits(Some(b"Bearer s3cret")));
        assert!(token.admits(Some(b"bearer  s3cret ")));
        assert!(!token.admits(Some(b"Bearer s3cre")));
        assert!(!token.admits(Some(b"Bearer s3cret2")));
        assert!(!token.admits(Some(b"Basic s3cret")));
        assert!(!token.admits(Some(b"Bearer ")));
        assert!(!token.admits(Some(b"s3cret")));
        assert!(!token.admits(None));
    }

    #[test]
    fn token_files_are_trimmed_and_must_hold_one_word() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc123\n").unwrap();
        assert!(Token::read(&path).unwrap().admits(Some(b"Bearer abc123")));
        std::fs::write(&path, "  \n").unwrap();
        assert!(Token::read(&path).unwrap_err().to_string().contains("holds no token"));
        std::fs::write(&path, "two words").unwrap();
        assert!(Token::read(&path).unwrap_err().to_string().contains("one word"));
        let missing = dir.path().join("missing");
        assert!(Token::read(&missing).unwrap_err().to_string().starts_with("--auth-token-file "));
    }
}
