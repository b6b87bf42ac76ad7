//! A small, strict JSON reader for the plugin configuration (RFC 8259). The filter reads one
//! document per configuration, so this trades speed for size: serde's generic machinery was
//! two thirds of the module. Numbers are checked for syntax but never converted: no config
//! field is a number, so a number anywhere is a type error reported by the decoder.

/// A parsed JSON value. Object members keep their order; duplicates are kept so the decoder
/// can refuse them by name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number,
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The kind of value, in the words of a type error.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

/// A syntax error and where it is (1-based line and column, in bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub message: &'static str,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at line {} column {}", self.message, self.line, self.column)
    }
}

/// Deeper nesting than this is refused rather than risking the stack (serde_json's limit).
const MAX_DEPTH: usize = 128;

/// Parses one JSON document; only whitespace may follow it.
pub(crate) fn parse(input: &[u8]) -> Result<Json, SyntaxError> {
    let mut reader = Reader { input, at: 0 };
    let value = reader.value(0)?;
    reader.skip_whitespace();
    if reader.at < input.len() {
        return Err(reader.error("trailing characters"));
    }
    Ok(value)
}

struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn error(&self, message: &'static str) -> SyntaxError {
        let before = &self.input[..self.at.min(self.input.len())];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let column = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
        SyntaxError { message, line, column }
    }

    fn eof(&self) -> SyntaxError {
        self.error("EOF while parsing a value")
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &'static [u8], value: Json) -> Result<Json, SyntaxError> {
        match self.input.get(self.at..self.at + word.len()) {
            Some(found) if found == word => {
                self.at += word.len();
                Ok(value)
            }
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.eof()),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, SyntaxError> {
        self.skip_whitespace();
        match self.peek() {
            None => Err(self.eof()),
            Some(b'n') => self.literal(b"null", Json::Null),
            Some(b't') => self.literal(b"true", Json::Bool(true)),
            Some(b'f') => self.literal(b"false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') if depth < MAX_DEPTH => self.array(depth + 1),
            Some(b'{') if depth < MAX_DEPTH => self.object(depth + 1),
            Some(b'[' | b'{') => Err(self.error("recursion limit exceeded")),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<Json, SyntaxError> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            None => return Err(self.eof()),
            Some(_) => return Err(self.error("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        Ok(Json::Number)
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let digits = self.input.get(self.at..self.at + 4).ok_or_else(|| self.eof())?;
        let mut value = 0;
        for &d in digits {
            let nibble = (d as char).to_digit(16).ok_or_else(|| self.error("invalid escape"))?;
            value = value * 16 + nibble;
        }
        self.at += 4;
        Ok(value)
    }

    /// A `\u` escape, joining a surrogate pair; a lone surrogate is refused.
    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.input.get(self.at..self.at + 2) != Some(b"\\u") {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                self.at += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("lone trailing surrogate in hex escape")),
            _ => first,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid escape"))
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.at += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let run = self.at;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.at += 1;
            }
            out.extend_from_slice(&self.input[run..self.at]);
            match self.peek() {
                None => return Err(self.eof()),
                Some(b'"') => {
                    self.at += 1;
                    return String::from_utf8(out).map_err(|_| self.error("invalid UTF-8 in string"));
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escaped = self.peek().ok_or_else(|| self.eof())?;
                    self.at += 1;
                    let byte = match escaped {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let c = self.unicode_escape()?;
                            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                            continue;
                        }
                        _ => {
                            self.at -= 1;
                            return Err(self.error("invalid escape"));
                        }
                    };
                    out.push(byte);
                }
                Some(_) => return Err(self.error("control character in string")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, SyntaxError> {
        self.at += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                None => return Err(self.eof()),
                Some(_) => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, SyntaxError> {
        self.at += 1;
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.eof()),
                Some(_) => return Err(self.error("key must be a string")),
            }
            let key = self.string()?;
            self.skip_whitespace();
            match self.peek() {
                Some(b':') => self.at += 1,
                None => return Err(self.eof()),
                Some(_) => return Err(self.error("expected `:`")),
            }
            members.push((key, self.value(depth)?));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Json::Object(members));
                }
                None => return Err(self.eof()),
                Some(_) => return Err(self.error("expected `,` or `}`")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Json {
        Json::String(text.to_string())
    }

    #[test]
    fn documents_parse_to_their_values() {
        let doc = br#" {"a": [1, -2.5e+3, true, false, null], "b": {"c": "d"}, "a": "again"} "#;
        let expected = Json::Object(vec![
            (
                "a".into(),
                Json::Array(vec![Json::Number, Json::Number, Json::Bool(true), Json::Bool(false), Json::Null]),
            ),
            ("b".into(), Json::Object(vec![("c".into(), s("d"))])),
            ("a".into(), s("again")),
        ]);
        assert_eq!(parse(doc), Ok(expected));
        assert_eq!(parse(b"[]"), Ok(Json::Array(vec![])));
        assert_eq!(parse(b"{ }"), Ok(Json::Object(vec![])));
    }

    #[test]
    fn escapes_decode_to_the_characters_they_name() {
        assert_eq!(parse(br#""a\"b\\c\/d\b\f\n\r\t""#), Ok(s("a\"b\\c/d\u{8}\u{c}\n\r\t")));
        assert_eq!(parse(br#""\u00e9\u4e2d\ud83d\ude00""#), Ok(s("é中😀")));
        assert_eq!(parse("\"é中😀\"".as_bytes()), Ok(s("é中😀")));
    }

    #[test]
    fn malformed_documents_are_refused_with_their_position() {
        let cases: &[(&[u8], &str, usize, usize)] = &[
            (b"", "EOF", 1, 1),
            (b"{\"policies\": [", "EOF", 1, 15),
            (b"{\n  \"a\": tru}", "expected a value", 2, 8),
            (b"[1,]", "expected a value", 1, 4),
            (b"{\"a\" 1}", "expected `:`", 1, 6),
            (b"{a: 1}", "key must be a string", 1, 2),
            (b"[1 2]", "expected `,` or `]`", 1, 4),
            (b"{} x", "trailing characters", 1, 4),
            (b"01", "trailing characters", 1, 2),
            (b"1.", "invalid number", 1, 3),
            (b"-", "EOF", 1, 2),
            (b"1e", "invalid number", 1, 3),
            (b"\"a\tb\"", "control character", 1, 3),
            (b"\"\\x\"", "invalid escape", 1, 3),
            (b"\"\\u12g4\"", "invalid escape", 1, 4),
            (b"\"\\ud800\"", "lone leading surrogate", 1, 8),
            (b"\"\\udc00\"", "lone trailing surrogate", 1, 8),
            (b"\"\xff\"", "invalid UTF-8", 1, 4),
            (b"NaN", "expected a value", 1, 1),
        ];
        for (doc, message, line, column) in cases {
            let e = parse(doc).expect_err(&String::from_utf8_lossy(doc));
            assert!(e.message.contains(message), "{:?}: {e}", String::from_utf8_lossy(doc));
            assert_eq!((e.line, e.column), (*line, *column), "{:?}: {e}", String::from_utf8_lossy(doc));
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |n: usize| [vec![b'['; n], vec![b']'; n]].concat();
        assert!(parse(&deep(MAX_DEPTH)).is_ok());
        let e = parse(&deep(MAX_DEPTH + 1)).expect_err("too deep");
        assert!(e.message.contains("recursion limit"), "{e}");
    }
}
