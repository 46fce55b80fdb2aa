//! The SpanQL lexer: text to tokens, each with its line, column and byte offset.
//!
//! Words are identifiers, keywords and dotted attribute names alike (`http.route` is
//! one word); the parser tells them apart. A word may end in `.` only right before a
//! backquoted name (`` span.`odd-name` ``). Numbers keep their text so the parser can
//! read them exactly; a number with a unit suffix (`250ms`, `1.5s`) is a duration,
//! converted to nanoseconds here. `--` starts a comment to the end of the line.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::error::QueryError;

/// A place in the query text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Position {
    /// Byte offset.
    pub offset: usize,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

/// What a token is.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenKind {
    /// An identifier, keyword or dotted name, as written.
    Word(String),
    /// A backquoted name, with ` `` ` unescaped to `` ` ``.
    Quoted(String),
    /// A single-quoted string, with `''` unescaped to `'`.
    String(String),
    /// An unsigned number, as written: digits, an optional fraction, an optional exponent.
    Number(String),
    /// A number with a unit suffix, in nanoseconds.
    Duration(u64),
    /// `,`
    Comma,
    /// `(`
    LeftParen,
    /// `)`
    RightParen,
    /// `*`
    Star,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `/`
    Slash,
    /// `=`
    Eq,
    /// `!=` or `<>`
    NotEq,
    /// `<`
    Less,
    /// `<=`
    LessEq,
    /// `>`
    Greater,
    /// `>=`
    GreaterEq,
    /// `;`
    Semicolon,
    /// The end of the text; always the last token.
    End,
}

/// A token and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Where it starts.
    pub start: Position,
    /// Byte offset just past its end.
    pub end: usize,
}

/// Duration suffixes and their length in nanoseconds.
pub(crate) const DURATION_UNITS: [(&str, u64); 9] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Splits query text into tokens, ending with [`TokenKind::End`].
pub fn tokenize(text: &str) -> Result<Vec<Token>, QueryError> {
    let mut lexer = Lexer { text, offset: 0, line: 1, column: 1 };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_blanks();
        let start = lexer.position();
        let Some(c) = lexer.peek() else {
            tokens.push(Token { kind: TokenKind::End, start, end: start.offset });
            return Ok(tokens);
        };
        let kind = match c {
            'a'..='z' | 'A'..='Z' | '_' => lexer.word(start)?,
            '0'..='9' => lexer.number(start)?,
            '\'' => TokenKind::String(lexer.quoted('\'', start, "string")?),
            '`' => TokenKind::Quoted(lexer.quoted('`', start, "backquoted name")?),
            _ => lexer.punctuation(c, start)?,
        };
        tokens.push(Token { kind, start, end: lexer.offset });
    }
}

struct Lexer<'a> {
    text: &'a str,
    offset: usize,
    line: u32,
    column: u32,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Lexer<'_> {
    fn position(&self) -> Position {
        Position { offset: self.offset, line: self.line, column: self.column }
    }

    fn rest(&self) -> &str {
        self.text.get(self.offset..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_nth(&self, n: usize) -> Option<char> {
        self.rest().chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.offset += c.len_utf8();
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.column = 1;
        } else {
            self.column = self.column.saturating_add(1);
        }
        Some(c)
    }

    fn bump_while(&mut self, accept: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&accept) {
            self.bump();
        }
    }

    fn slice_from(&self, start: Position) -> &str {
        self.text.get(start.offset..self.offset).unwrap_or("")
    }

    fn skip_blanks(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('-') if self.peek_nth(1) == Some('-') => self.bump_while(|c| c != '\n'),
                _ => return,
            }
        }
    }

    fn word(&mut self, start: Position) -> Result<TokenKind, QueryError> {
        self.bump_while(is_word_char);
        while self.peek() == Some('.') {
            match self.peek_nth(1) {
                Some(c) if is_word_char(c) => {
                    self.bump();
                    self.bump_while(is_word_char);
                }
                Some('`') => {
                    // `span.` or `resource.` before a backquoted name; the parser checks which.
                    self.bump();
                    break;
                }
                _ => {
                    let so_far = self.slice_from(start).to_string();
                    return Err(QueryError::syntax(self.position(), format!("expected a name after '{so_far}.'")));
                }
            }
        }
        Ok(TokenKind::Word(self.slice_from(start).to_string()))
    }

    fn number(&mut self, start: Position) -> Result<TokenKind, QueryError> {
        self.bump_while(|c| c.is_ascii_digit());
        if self.peek() == Some('.') && self.peek_nth(1).is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
            self.bump_while(|c| c.is_ascii_digit());
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let has_exponent = match self.peek_nth(1) {
                Some(c) if c.is_ascii_digit() => true,
                Some('+' | '-') => self.peek_nth(2).is_some_and(|c| c.is_ascii_digit()),
                _ => false,
            };
            if has_exponent {
                self.bump();
                if matches!(self.peek(), Some('+' | '-')) {
                    self.bump();
                }
                self.bump_while(|c| c.is_ascii_digit());
            }
        }
        let number = self.slice_from(start).to_string();
        let is_suffix_char = |c: char| is_word_char(c) || c == '\u{b5}' || c == '\u{3bc}';
        if !self.peek().is_some_and(is_suffix_char) {
            return Ok(TokenKind::Number(number));
        }
        let suffix_start = self.offset;
        self.bump_while(is_suffix_char);
        let suffix = self.text.get(suffix_start..self.offset).unwrap_or("");
        let whole = self.slice_from(start);
        let Some(&(_, unit_nanos)) = DURATION_UNITS.iter().find(|(unit, _)| *unit == suffix) else {
            let hint = if whole.bytes().all(|b| b.is_ascii_hexdigit()) {
                format!("quote ids and strings: '{}'", truncate(whole))
            } else {
                "duration units are ns, us, ms, s, m, h and d; quote ids and strings".to_string()
            };
            return Err(QueryError::syntax(start, format!("invalid number '{}' ({hint})", truncate(whole))));
        };
        match decimal_to_nanos(&number, unit_nanos) {
            Ok(nanos) => Ok(TokenKind::Duration(nanos)),
            Err(problem) => {
                Err(QueryError::syntax(start, format!("duration {} {}", truncate(whole), problem.describe())))
            }
        }
    }

    fn quoted(&mut self, quote: char, start: Position, what: &str) -> Result<String, QueryError> {
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(QueryError::syntax(start, format!("unterminated {what} (expected a closing {quote})")))
                }
                Some(c) if c == quote => {
                    if self.peek() == Some(quote) {
                        self.bump();
                        value.push(quote);
                    } else {
                        return Ok(value);
                    }
                }
                Some(c) => value.push(c),
            }
        }
    }

    fn punctuation(&mut self, c: char, start: Position) -> Result<TokenKind, QueryError> {
        let next = self.peek_nth(1);
        let (kind, length) = match (c, next) {
            (',', _) => (TokenKind::Comma, 1),
            ('(', _) => (TokenKind::LeftParen, 1),
            (')', _) => (TokenKind::RightParen, 1),
            ('*', _) => (TokenKind::Star, 1),
            ('+', _) => (TokenKind::Plus, 1),
            ('-', _) => (TokenKind::Minus, 1),
            ('/', _) => (TokenKind::Slash, 1),
            (';', _) => (TokenKind::Semicolon, 1),
            ('!', Some('=')) => (TokenKind::NotEq, 2),
            ('<', Some('>')) => (TokenKind::NotEq, 2),
            ('<', Some('=')) => (TokenKind::LessEq, 2),
            ('<', _) => (TokenKind::Less, 1),
            ('>', Some('=')) => (TokenKind::GreaterEq, 2),
            ('>', _) => (TokenKind::Greater, 1),
            ('=', Some('=')) => return Err(QueryError::syntax(start, "unexpected '==' (did you mean '='?)")),
            ('=', _) => (TokenKind::Eq, 1),
            ('!', _) => return Err(QueryError::syntax(start, "unexpected '!' (did you mean '!=' or NOT?)")),
            ('&', Some('&')) => return Err(QueryError::syntax(start, "unexpected '&&' (did you mean AND?)")),
            ('|', Some('|')) => return Err(QueryError::syntax(start, "unexpected '||' (did you mean OR?)")),
            ('"', _) => return Err(self.double_quote(start)),
            ('.', Some('0'..='9')) => {
                return Err(QueryError::syntax(
                    start,
                    "a number needs a digit before its decimal point (did you mean 0.5?)",
                ))
            }
            _ => {
                let shown: String = c.escape_debug().collect();
                return Err(QueryError::syntax(start, format!("unexpected character '{shown}'")));
            }
        };
        for _ in 0..length {
            self.bump();
        }
        Ok(kind)
    }

    fn double_quote(&self, start: Position) -> QueryError {
        let body = self.rest().get(1..).unwrap_or("");
        let suggestion = match body.find('"') {
            Some(end) => {
                let content = truncate(body.get(..end).unwrap_or(""));
                format!("write '{content}' for a string or `{content}` for a name")
            }
            None => "quote strings with ' and names with `".to_string(),
        };
        QueryError::syntax(start, format!("unexpected '\"' ({suggestion})"))
    }
}

/// Shortens text quoted in an error message, keeping a closing quote so the message
/// still reads as quoted: `'a long string…'`.
pub(crate) fn truncate(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    if text.chars().count() <= MAX_CHARS {
        return text.to_string();
    }
    let head: String = text.chars().take(MAX_CHARS - 2).collect();
    let mut ends = text.chars();
    match (ends.next(), ends.next_back()) {
        (Some(first), Some(last)) if first == last && (first == '\'' || first == '`') => {
            format!("{head}\u{2026}{last}")
        }
        _ => format!("{head}\u{2026}"),
    }
}

/// Why a decimal number times a unit isn't a whole count of nanoseconds in `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecimalProblem {
    /// More than `u64::MAX` nanoseconds (about 584 years).
    TooLarge,
    /// A fraction of a nanosecond.
    Fractional,
    /// Not a number at all (the lexer never produces this).
    Malformed,
}

impl DecimalProblem {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            DecimalProblem::TooLarge => "is too long (at most about 584 years)",
            DecimalProblem::Fractional => "is not a whole number of nanoseconds",
            DecimalProblem::Malformed => "is not a number",
        }
    }
}

/// `number * unit_nanos` computed exactly, for decimal text such as `1.5` or `2e3`.
pub(crate) fn decimal_to_nanos(number: &str, unit_nanos: u64) -> Result<u64, DecimalProblem> {
    let (mantissa, exponent) = match number.find(['e', 'E']) {
        Some(at) => (number.get(..at).unwrap_or(""), number.get(at + 1..).unwrap_or("")),
        None => (number, "0"),
    };
    let exponent: i64 = match exponent.parse::<i64>() {
        Ok(value) => value,
        // Enormous exponents: only zero survives either way.
        Err(_) if exponent.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b'+') && !exponent.is_empty() => {
            if exponent.starts_with('-') {
                i64::MIN / 2
            } else {
                i64::MAX / 2
            }
        }
        Err(_) => return Err(DecimalProblem::Malformed),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(DecimalProblem::Malformed);
    }
    let digits: String = whole.chars().chain(fraction.chars()).collect();
    let fraction_len = i64::try_from(fraction.len()).map_err(|_| DecimalProblem::TooLarge)?;
    let mut scale = exponent.saturating_sub(fraction_len);
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0);
    }
    let trimmed = digits.trim_end_matches('0');
    let trailing_zeros = i64::try_from(digits.len() - trimmed.len()).map_err(|_| DecimalProblem::TooLarge)?;
    scale = scale.saturating_add(trailing_zeros);
    if trimmed.len() > 30 {
        return Err(if scale >= 0 { DecimalProblem::TooLarge } else { DecimalProblem::Fractional });
    }
    let mantissa: u128 = trimmed.parse().map_err(|_| DecimalProblem::Malformed)?;
    let mut value = mantissa.checked_mul(u128::from(unit_nanos)).ok_or(DecimalProblem::TooLarge)?;
    if scale >= 0 {
        let power = u32::try_from(scale).map_err(|_| DecimalProblem::TooLarge)?;
        let factor = 10u128.checked_pow(power).ok_or(DecimalProblem::TooLarge)?;
        value = value.checked_mul(factor).ok_or(DecimalProblem::TooLarge)?;
    } else {
        let power = u32::try_from(scale.unsigned_abs()).map_err(|_| DecimalProblem::Fractional)?;
        let divisor = 10u128.checked_pow(power).ok_or(DecimalProblem::Fractional)?;
        if value % divisor != 0 {
            return Err(DecimalProblem::Fractional);
        }
        value /= divisor;
    }
    u64::try_from(value).map_err(|_| DecimalProblem::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        match tokenize(text) {
            Ok(tokens) => tokens.into_iter().map(|token| token.kind).collect(),
            Err(error) => panic!("{text}: {error}"),
        }
    }

    fn error(text: &str) -> String {
        match tokenize(text) {
            Ok(tokens) => panic!("{text} lexed as {tokens:?}"),
            Err(error) => error.to_string(),
        }
    }

    fn word(text: &str) -> TokenKind {
        TokenKind::Word(text.to_string())
    }

    #[test]
    fn words_numbers_strings_and_punctuation() {
        use TokenKind::*;
        assert_eq!(
            kinds("SELECT count(*), x FROM spans WHERE a.b_c >= -1.5e3 AND s != 'it''s';"),
            vec![
                word("SELECT"),
                word("count"),
                LeftParen,
                Star,
                RightParen,
                Comma,
                word("x"),
                word("FROM"),
                word("spans"),
                word("WHERE"),
                word("a.b_c"),
                GreaterEq,
                Minus,
                Number("1.5e3".into()),
                word("AND"),
                word("s"),
                NotEq,
                String("it's".into()),
                Semicolon,
                End,
            ]
        );
        assert_eq!(
            kinds("= <> < <= > >= + / 1E+2 7e-1 08"),
            vec![
                Eq,
                NotEq,
                Less,
                LessEq,
                Greater,
                GreaterEq,
                Plus,
                Slash,
                Number("1E+2".into()),
                Number("7e-1".into()),
                Number("08".into()),
                End
            ]
        );
    }

    #[test]
    fn dotted_and_backquoted_names() {
        assert_eq!(
            kinds("http.route k8s.pod.2nd span.`my-attr` `a``b`"),
            vec![
                word("http.route"),
                word("k8s.pod.2nd"),
                word("span."),
                TokenKind::Quoted("my-attr".into()),
                TokenKind::Quoted("a`b".into()),
                TokenKind::End
            ]
        );
    }

    #[test]
    fn durations() {
        use TokenKind::Duration;
        assert_eq!(
            kinds("250ms 1.5s 2m 3h 1d 7ns 5us 5\u{b5}s 5\u{3bc}s 1e3ms 0.5ms"),
            vec![
                Duration(250_000_000),
                Duration(1_500_000_000),
                Duration(120_000_000_000),
                Duration(10_800_000_000_000),
                Duration(86_400_000_000_000),
                Duration(7),
                Duration(5_000),
                Duration(5_000),
                Duration(5_000),
                Duration(1_000_000_000),
                Duration(500_000),
                TokenKind::End
            ]
        );
    }

    #[test]
    fn positions_count_lines_and_characters() {
        let tokens = match tokenize("SELECT\n  \u{b5}x, `\u{e9}`  -- comment\n\tb") {
            Err(error) => error.to_string(),
            Ok(tokens) => format!("{tokens:?}"),
        };
        assert_eq!(tokens, "line 2, column 3: unexpected character '\u{b5}'");
        let tokens = tokenize("SELECT\n  `\u{e9}\u{e9}`, x -- comment\n\tb").unwrap_or_default();
        let starts: Vec<(u32, u32, usize)> =
            tokens.iter().map(|token| (token.start.line, token.start.column, token.start.offset)).collect();
        assert_eq!(starts, vec![(1, 1, 0), (2, 3, 9), (2, 7, 15), (2, 9, 17), (3, 2, 31), (3, 3, 32)]);
        let ends: Vec<usize> = tokens.iter().map(|token| token.end).collect();
        assert_eq!(ends, vec![6, 15, 16, 18, 32, 32]);
    }

    #[test]
    fn comments_run_to_the_end_of_the_line() {
        assert_eq!(kinds("a -- b\n-- c\nd--e"), vec![word("a"), word("d"), TokenKind::End]);
        assert_eq!(
            kinds("1 - -2"),
            vec![
                TokenKind::Number("1".into()),
                TokenKind::Minus,
                TokenKind::Minus,
                TokenKind::Number("2".into()),
                TokenKind::End
            ]
        );
    }

    #[test]
    fn every_error() {
        let cases = [
            ("a == b", "line 1, column 3: unexpected '==' (did you mean '='?)"),
            ("a ! b", "line 1, column 3: unexpected '!' (did you mean '!=' or NOT?)"),
            ("a && b", "line 1, column 3: unexpected '&&' (did you mean AND?)"),
            ("a || b", "line 1, column 3: unexpected '||' (did you mean OR?)"),
            ("a & b", "line 1, column 3: unexpected character '&'"),
            ("a = \"error\"", "line 1, column 5: unexpected '\"' (write 'error' for a string or `error` for a name)"),
            ("a = \"error", "line 1, column 5: unexpected '\"' (quote strings with ' and names with `)"),
            ("x = .5", "line 1, column 5: a number needs a digit before its decimal point (did you mean 0.5?)"),
            ("x = 1.", "line 1, column 6: unexpected character '.'"),
            ("http. x", "line 1, column 5: expected a name after 'http.'"),
            ("a.b..c", "line 1, column 4: expected a name after 'a.b.'"),
            ("x = 'abc", "line 1, column 5: unterminated string (expected a closing ')"),
            ("`abc", "line 1, column 1: unterminated backquoted name (expected a closing `)"),
            ("x = 5x", "line 1, column 5: invalid number '5x' (duration units are ns, us, ms, s, m, h and d; quote ids and strings)"),
            ("x = 5minutes", "line 1, column 5: invalid number '5minutes' (duration units are ns, us, ms, s, m, h and d; quote ids and strings)"),
            ("x = 0.5ns", "line 1, column 5: duration 0.5ns is not a whole number of nanoseconds"),
            ("x = 300000d", "line 1, column 5: duration 300000d is too long (at most about 584 years)"),
            ("x = \u{2603}", "line 1, column 5: unexpected character '\u{2603}'"),
            ("x = \0", "line 1, column 5: unexpected character '\\0'"),
        ];
        for (text, expected) in cases {
            assert_eq!(error(text), expected, "{text}");
        }
    }

    #[test]
    fn exact_decimal_scaling() {
        assert_eq!(decimal_to_nanos("1.5", 1_000_000_000), Ok(1_500_000_000));
        assert_eq!(decimal_to_nanos("0.000000001", 1_000_000_000), Ok(1));
        assert_eq!(decimal_to_nanos("0.0000000001", 1_000_000_000), Err(DecimalProblem::Fractional));
        assert_eq!(decimal_to_nanos("1e-9", 1_000_000_000), Ok(1));
        assert_eq!(decimal_to_nanos("100e-2", 1), Ok(1));
        assert_eq!(decimal_to_nanos("0e99999999999999999999", 1), Ok(0));
        assert_eq!(decimal_to_nanos("1e99999999999999999999", 1), Err(DecimalProblem::TooLarge));
        assert_eq!(decimal_to_nanos("1e-99999999999999999999", 1), Err(DecimalProblem::Fractional));
        assert_eq!(decimal_to_nanos("18446744073709551615", 1), Ok(u64::MAX));
        assert_eq!(decimal_to_nanos("18446744073709551616", 1), Err(DecimalProblem::TooLarge));
        assert_eq!(decimal_to_nanos("1000000000000000000000000000000000000000e-30", 1), Ok(1_000_000_000));
        assert_eq!(decimal_to_nanos("x", 1), Err(DecimalProblem::Malformed));
        assert_eq!(decimal_to_nanos("1ex", 1), Err(DecimalProblem::Malformed));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,60}") {
            let _ = tokenize(&text);
        }

        #[test]
        fn tokens_cover_the_text_in_order(text in "[a-z0-9_.`' ,()*+/=<>!;-]{0,40}") {
            if let Ok(tokens) = tokenize(&text) {
                let mut previous_end = 0;
                for token in &tokens {
                    proptest::prop_assert!(token.start.offset >= previous_end);
                    proptest::prop_assert!(token.end >= token.start.offset);
                    proptest::prop_assert!(text.is_char_boundary(token.end));
                    previous_end = token.end;
                }
                proptest::prop_assert_eq!(tokens.last().map(|token| &token.kind), Some(&TokenKind::End));
            }
        }
    }
}
