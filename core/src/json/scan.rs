//! A validating one-pass JSON reader for the hot paths: it accepts what serde_json accepts
//! (RFC 8259, UTF-8, escapes, numbers within f64 range), holds the payload to its limits,
//! and hands out members and values as slices of the input — no tree, no allocation.
//!
//! On a syntax error it asks serde_json for the message, so that errors read the same
//! whichever path found them.

use super::Limits;
use crate::error::{Error, Result};

/// A string as written between its quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Str<'a> {
    raw: &'a [u8],
    escaped: bool,
}

impl<'a> Str<'a> {
    /// The bytes between the quotes, escapes as written.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Appends the string's text, escapes decoded.
    #[inline(always)]
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if !self.escaped {
            out.extend_from_slice(self.raw);
            return;
        }
        let mut at = 0;
        while at < self.raw.len() {
            let byte = self.raw[at];
            if byte != b'\\' {
                out.push(byte);
                at += 1;
                continue;
            }
            let code = self.raw[at + 1];
            at += 2;
            let decoded = match code {
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let high = hex4(&self.raw[at..]).unwrap_or(0);
                    at += 4;
                    let point = if (0xD800..0xDC00).contains(&high) {
                        // The reader checked that a low surrogate follows.
                        let low = hex4(&self.raw[at + 2..]).unwrap_or(0);
                        at += 6;
                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        high
                    };
                    char::from_u32(point).unwrap_or('\u{FFFD}')
                }
                other => char::from(other),
            };
            let mut utf8 = [0u8; 4];
            out.extend_from_slice(decoded.encode_utf8(&mut utf8).as_bytes());
        }
    }

    /// Whether the string's text is `text`.
    pub fn is(&self, text: &str) -> bool {
        if !self.escaped {
            return self.raw == text.as_bytes();
        }
        let mut decoded = Vec::with_capacity(self.raw.len());
        self.write_to(&mut decoded);
        decoded == text.as_bytes()
    }
}

/// A value met by [`Reader::item`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// An object, now open: read its members with [`Reader::member`].
    Object,
    /// An array's text as written (validated).
    Array(&'a [u8]),
    String(Str<'a>),
    /// A number as written.
    Number(&'a [u8]),
    Bool(bool),
    Null,
}

impl Item<'_> {
    /// Appends the value as text for a hash or stream field: strings decoded, numbers as
    /// written, arrays as compact JSON. Null and open objects write nothing.
    #[inline(always)]
    pub fn write_text(&self, out: &mut Vec<u8>) {
        match self {
            Item::String(text) => text.write_to(out),
            Item::Number(number) => out.extend_from_slice(number),
            Item::Bool(true) => out.extend_from_slice(b"true"),
            Item::Bool(false) => out.extend_from_slice(b"false"),
            Item::Array(text) => compact(text, out),
            Item::Object | Item::Null => {}
        }
    }
}

/// Appends a value given as written (by [`Reader::raw_item`]) as text for a field, like
/// [`Item::write_text`], objects as compact JSON; `false` for null, which writes nothing.
pub fn write_raw_text(raw: &[u8], out: &mut Vec<u8>) -> bool {
    match raw.first() {
        Some(b'n') => return false,
        Some(b'"') => Str {
            raw: &raw[1..raw.len() - 1],
            escaped: raw.contains(&b'\\'),
        }
        .write_to(out),
        Some(b'{' | b'[') => compact(raw, out),
        _ => out.extend_from_slice(raw),
    }
    true
}

/// Appends valid JSON `text` without the whitespace between tokens.
pub fn compact(text: &[u8], out: &mut Vec<u8>) {
    let (mut in_string, mut escape) = (false, false);
    for &byte in text {
        if in_string {
            out.push(byte);
            match byte {
                _ if escape => escape = false,
                b'\\' => escape = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            out.push(byte);
            in_string = byte == b'"';
        }
    }
}

/// Why reading stopped: small, so that the hot path moves little; [`Reader::error`]
/// makes the user's error of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Not JSON: serde_json gives the message.
    Syntax,
    /// Nested deeper than the limit.
    TooDeep,
    /// Valid JSON, but not an object: what it is.
    NotAnObject(&'static str),
}

pub type Step<T> = std::result::Result<T, Stop>;

/// Reads one JSON object from bytes, member by member.
pub struct Reader<'a> {
    text: &'a [u8],
    at: usize,
    depth: usize,
    fields: usize,
    /// Bit d: the object open at depth d has had a member (so a comma comes next).
    has_members: u128,
    limits: Limits,
}

impl<'a> Reader<'a> {
    /// Checks the size and the encoding, and opens the top-level object; anything but an
    /// object is refused as such.
    pub fn object(text: &'a [u8], limits: &Limits) -> Result<Reader<'a>> {
        if text.len() > limits.max_bytes {
            return Err(Error::PayloadTooLarge {
                size: text.len(),
                limit: limits.max_bytes,
            });
        }
        let mut reader = Reader {
            text,
            at: 0,
            depth: 0,
            fields: 0,
            has_members: 0,
            limits: Limits {
                max_depth: limits.max_depth.min(super::MAX_SUPPORTED_DEPTH),
                ..*limits
            },
        };
        // ASCII is checked eight bytes a step; the full UTF-8 check only past it.
        if !text.is_ascii() && std::str::from_utf8(text).is_err() {
            return Err(reader.error(Stop::Syntax));
        }
        reader.space();
        let kind = match reader.peek() {
            Some(b'{') => None,
            Some(b'[') => Some("an array"),
            Some(b'"') => Some("a string"),
            Some(b'-' | b'0'..=b'9') => Some("a number"),
            Some(b't' | b'f') => Some("a boolean"),
            Some(b'n') => Some("null"),
            _ => return Err(reader.error(Stop::Syntax)),
        };
        let opened = match kind {
            None => reader.open(),
            Some(kind) => match reader.skip_value().and_then(|()| reader.end_of_text()) {
                Ok(()) => Err(Stop::NotAnObject(kind)),
                Err(stop) => Err(stop),
            },
        };
        opened.map_err(|stop| reader.error(stop))?;
        Ok(reader)
    }

    /// The next member's name of the innermost open object, or `None` at its end (which
    /// closes it).
    #[inline(always)]
    pub fn member(&mut self) -> Step<Option<Str<'a>>> {
        self.next_member()
    }

    /// The value after a member's name. An object is opened, not read.
    #[inline(always)]
    pub fn item(&mut self) -> Step<Item<'a>> {
        self.next_item()
    }

    /// The value after a member's name, skipped (validated) and given as written.
    pub fn raw_item(&mut self) -> Step<&'a [u8]> {
        self.space();
        let start = self.at;
        self.skip_value()?;
        Ok(&self.text[start..self.at])
    }

    /// Skips the rest of the innermost open object, validating it.
    pub fn skip_object(&mut self) -> Step<()> {
        self.skip_members()
    }

    /// After the top-level object: only whitespace may follow, and the field count is
    /// checked against its limit.
    pub fn finish(mut self) -> Result<()> {
        let step = self.end_of_text();
        step.map_err(|stop| self.error(stop))?;
        if self.fields > self.limits.max_fields {
            return Err(Error::TooManyFields {
                count: self.fields,
                limit: self.limits.max_fields,
            });
        }
        Ok(())
    }

    /// The user's error for `stop`: a limit's own, or serde_json's message for the text.
    pub fn error(&self, stop: Stop) -> Error {
        match stop {
            Stop::TooDeep => Error::TooDeep {
                limit: self.limits.max_depth,
            },
            Stop::NotAnObject(kind) => Error::NotAnObject(kind),
            Stop::Syntax => match serde_json::from_slice::<serde_json::Value>(self.text) {
                Err(error) if error.to_string().starts_with("recursion limit exceeded") => {
                    Error::TooDeep {
                        limit: self.limits.max_depth,
                    }
                }
                Err(error) => Error::InvalidJson(error.to_string()),
                Ok(_) => Error::InvalidJson(format!("unsupported JSON at byte {}", self.at)),
            },
        }
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    #[inline(always)]
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    #[inline(always)]
    fn expect(&mut self, byte: u8) -> Step<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(Stop::Syntax)
        }
    }

    fn end_of_text(&mut self) -> Step<()> {
        self.space();
        if self.at == self.text.len() {
            Ok(())
        } else {
            Err(Stop::Syntax)
        }
    }

    /// Steps into an object or array at `{` or `[`.
    fn deeper(&mut self) -> Step<()> {
        self.at += 1;
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(Stop::TooDeep);
        }
        Ok(())
    }

    fn open(&mut self) -> Step<()> {
        self.deeper()?;
        self.has_members &= !(1u128 << self.depth);
        Ok(())
    }

    #[inline(always)]
    fn next_member(&mut self) -> Step<Option<Str<'a>>> {
        self.space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            self.depth -= 1;
            return Ok(None);
        }
        let bit = 1u128 << self.depth;
        if self.has_members & bit != 0 {
            self.expect(b',')?;
            self.space();
        }
        self.has_members |= bit;
        if self.peek() != Some(b'"') {
            return Err(Stop::Syntax);
        }
        let name = self.string()?;
        self.space();
        self.expect(b':')?;
        self.fields += 1;
        Ok(Some(name))
    }

    #[inline(always)]
    fn next_item(&mut self) -> Step<Item<'a>> {
        self.space();
        Ok(match self.peek() {
            Some(b'{') => {
                self.open()?;
                Item::Object
            }
            Some(b'[') => {
                let start = self.at;
                self.skip_array()?;
                Item::Array(&self.text[start..self.at])
            }
            Some(b'"') => Item::String(self.string()?),
            Some(b'-' | b'0'..=b'9') => Item::Number(self.number()?),
            Some(b't') => self.literal(b"true", Item::Bool(true))?,
            Some(b'f') => self.literal(b"false", Item::Bool(false))?,
            Some(b'n') => self.literal(b"null", Item::Null)?,
            _ => return Err(Stop::Syntax),
        })
    }

    fn skip_members(&mut self) -> Step<()> {
        while self.next_member()?.is_some() {
            if self.next_item()? == Item::Object {
                self.skip_members()?;
            }
        }
        Ok(())
    }

    /// Any value, validated. Recursion is bounded by the depth limit.
    fn skip_value(&mut self) -> Step<()> {
        if self.next_item()? == Item::Object {
            self.skip_members()?;
        }
        Ok(())
    }

    fn skip_array(&mut self) -> Step<()> {
        self.deeper()?;
        self.space();
        if self.peek() == Some(b']') {
            self.at += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.fields += 1;
            self.skip_value()?;
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(Stop::Syntax),
            }
        }
    }

    #[inline(always)]
    fn literal(&mut self, word: &[u8], item: Item<'a>) -> Step<Item<'a>> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(item)
        } else {
            Err(Stop::Syntax)
        }
    }

    /// At `"`: the string, its escapes checked.
    #[inline(always)]
    fn string(&mut self) -> Step<Str<'a>> {
        self.at += 1;
        let start = self.at;
        let mut escaped = false;
        loop {
            // Plain bytes up to the next quote or backslash in one search; none of them
            // may be a control character.
            self.at += plain_len(&self.text[self.at..]);
            match self.peek() {
                None => return Err(Stop::Syntax),
                Some(b'"') => {
                    let raw = &self.text[start..self.at];
                    self.at += 1;
                    return Ok(Str { raw, escaped });
                }
                Some(b'\\') => {
                    escaped = true;
                    self.at += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.at += 1
                        }
                        Some(b'u') => self.unicode_escape()?,
                        _ => return Err(Stop::Syntax),
                    }
                }
                Some(byte) if byte < 0x20 => return Err(Stop::Syntax),
                Some(_) => self.at += 1,
            }
        }
    }

    /// At the `u` of `\uXXXX`: one code point, a surrogate pair written as two escapes.
    fn unicode_escape(&mut self) -> Step<()> {
        let unit = hex4(&self.text[self.at + 1..]).ok_or(Stop::Syntax)?;
        self.at += 5;
        match unit {
            0xD800..=0xDBFF => {
                let rest = &self.text[self.at..];
                let low = rest
                    .strip_prefix(b"\\u")
                    .and_then(hex4)
                    .filter(|low| (0xDC00..=0xDFFF).contains(low))
                    .ok_or(Stop::Syntax)?;
                let _ = low;
                self.at += 6;
                Ok(())
            }
            0xDC00..=0xDFFF => Err(Stop::Syntax),
            _ => Ok(()),
        }
    }

    /// A number by JSON's grammar, within f64's range as serde_json requires.
    #[inline(always)]
    fn number(&mut self) -> Step<&'a [u8]> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Stop::Syntax),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.required_digits()?;
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.peek() {
            exponent = true;
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.required_digits()?;
        }
        let number = &self.text[start..self.at];
        if exponent || number.len() > 300 {
            let finite = std::str::from_utf8(number)
                .ok()
                .and_then(|text| text.parse::<f64>().ok())
                .is_some_and(f64::is_finite);
            if !finite {
                return Err(Stop::Syntax);
            }
        }
        Ok(number)
    }

    #[inline(always)]
    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn required_digits(&mut self) -> Step<()> {
        let start = self.at;
        self.digits();
        if self.at == start {
            Err(Stop::Syntax)
        } else {
            Ok(())
        }
    }
}

/// How many bytes at the start of `text` a string holds as they are: up to the first
/// quote, backslash or control character. Eight bytes a step (SWAR).
#[inline(always)]
fn plain_len(text: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(chunk) = text.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        // The high bit of each byte that is a quote, a backslash or below 0x20; bytes
        // past the first such one may be marked wrongly (a borrow), never before it.
        let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        let found = zero(word ^ (ONES * u64::from(b'"')))
            | zero(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGH);
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + text[at..]
        .iter()
        .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)
        .unwrap_or(text.len() - at)
}

/// Four hex digits at the start of `bytes`.
fn hex4(bytes: &[u8]) -> Option<u32> {
    let digits = bytes.get(..4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    /// Every member at the top level as (name, kind, text).
    fn members(text: &str) -> Result<Vec<(String, String)>> {
        let mut reader = Reader::object(text.as_bytes(), &limits())?;
        let mut found = Vec::new();
        let mut read = |reader: &mut Reader| -> Step<()> {
            while let Some(name) = reader.member()? {
                let mut name_text = Vec::new();
                name.write_to(&mut name_text);
                let item = reader.item()?;
                let mut value = Vec::new();
                if item == Item::Object {
                    reader.skip_object()?;
                    value.extend_from_slice(b"{object}");
                } else {
                    item.write_text(&mut value);
                }
                found.push((
                    String::from_utf8(name_text).unwrap(),
                    String::from_utf8(value).unwrap(),
                ));
            }
            Ok(())
        };
        let step = read(&mut reader);
        step.map_err(|stop| reader.error(stop))?;
        reader.finish()?;
        Ok(found)
    }

    #[test]
    fn members_and_values_as_written() {
        let found = members(
            r#" { "a" : "x\"y\u00e9\ud83d\ude80" , "n":-1.50e+2,"t":true,"f":false,"z":null,
               "arr":[ 1, "two words", {"k":[]} ],"o":{"p":{"q":1}}, "e":{} } "#,
        )
        .unwrap();
        let expect = [
            ("a", "x\"yé🚀"),
            ("n", "-1.50e+2"),
            ("t", "true"),
            ("f", "false"),
            ("z", ""),
            ("arr", r#"[1,"two words",{"k":[]}]"#),
            ("o", "{object}"),
            ("e", "{object}"),
        ];
        let expect: Vec<(String, String)> = expect
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(found, expect);
    }

    #[test]
    fn what_serde_refuses_is_refused_with_its_message() {
        for bad in [
            "{",
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{,"a":1}"#,
            r#"{"a" 1}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":tru}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":1e999}"#,
            "{\"a\":\"\n\"}",
            r#"{"a":1} x"#,
            r#"{"a":[1,]}"#,
            r#"{1:2}"#,
        ] {
            let err = members(bad).unwrap_err();
            let serde = serde_json::from_str::<serde_json::Value>(bad).unwrap_err();
            assert_eq!(err, Error::InvalidJson(serde.to_string()), "{bad}");
        }
        assert_eq!(members("[1]").unwrap_err(), Error::NotAnObject("an array"));
        assert_eq!(members("7").unwrap_err(), Error::NotAnObject("a number"));
        assert!(matches!(
            Reader::object(b"{\"a\":\"\xff\"}", &limits()),
            Err(Error::InvalidJson(_))
        ));
    }

    #[test]
    fn limits_hold() {
        let tight = Limits {
            max_bytes: 40,
            max_depth: 2,
            max_fields: 3,
        };
        let read_all = |text: &str| -> Result<()> {
            let mut reader = Reader::object(text.as_bytes(), &tight)?;
            let step = reader.skip_object();
            step.map_err(|stop| reader.error(stop))?;
            reader.finish()
        };
        assert!(read_all(r#"{"a":[1]}"#).is_ok());
        assert_eq!(read_all(r#"{"a":[[1]]}"#), Err(Error::TooDeep { limit: 2 }));
        assert_eq!(
            read_all(r#"{"a":[1,2,3]}"#),
            Err(Error::TooManyFields { count: 4, limit: 3 })
        );
        assert_eq!(
            read_all(&" ".repeat(41)),
            Err(Error::PayloadTooLarge {
                size: 41,
                limit: 40
            })
        );
        let deep = "[".repeat(100_000);
        let wide = Limits {
            max_bytes: 1 << 20,
            max_depth: 1000,
            max_fields: 1 << 20,
        };
        assert!(matches!(
            Reader::object(format!("{{\"a\":{deep}").as_bytes(), &wide).and_then(|mut r| {
                let step = r.skip_object();
                step.map_err(|stop| r.error(stop))?;
                r.finish()
            }),
            Err(Error::TooDeep { .. })
        ));
    }

    #[test]
    fn plain_len_stops_where_a_byte_by_byte_search_does() {
        let naive = |text: &[u8]| {
            text.iter()
                .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)
                .unwrap_or(text.len())
        };
        // Every stop byte (and bytes next to the stop values) at every place of texts
        // of 0 to 24 bytes, on plain, high-bit and stop-byte backgrounds.
        let probes = [
            0x00, 0x1f, 0x20, 0x21, b'"', 0x23, 0x5b, b'\\', 0x5d, 0x7f, 0x80, 0xff,
        ];
        for len in 0..=24 {
            for background in [b'a', 0xc3, 0x1f, b'"'] {
                for at in 0..len {
                    for probe in probes {
                        let mut text = vec![background; len];
                        text[at] = probe;
                        assert_eq!(plain_len(&text), naive(&text), "{text:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn compact_keeps_strings_whole() {
        let mut out = Vec::new();
        compact(br#"[ 1 , "a \" b" , { "k" : [ ] } ]"#, &mut out);
        assert_eq!(out, br#"[1,"a \" b",{"k":[]}]"#);
    }
}
