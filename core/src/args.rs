//! Parsing of command arguments: keywords, integers and choices, with errors that name
//! the option and the accepted range.

use std::borrow::Cow;

use crate::error::{Error, Result};

/// Reads a command's arguments (already split by Redis) from left to right. What it
/// returns borrows from the arguments themselves (`'a`), not from the list (`'s`).
pub struct Args<'s, 'a> {
    args: &'s [&'a [u8]],
    pos: usize,
}

impl<'s, 'a> Args<'s, 'a> {
    pub fn new(args: &'s [&'a [u8]]) -> Self {
        Args { args, pos: 0 }
    }

    /// The next argument, or the arity error when there is none.
    pub fn next_arg(&mut self) -> Result<&'a [u8]> {
        let arg = *self.args.get(self.pos).ok_or(Error::WrongArity)?;
        self.pos += 1;
        Ok(arg)
    }

    /// The next argument as UTF-8 text.
    pub fn next_str(&mut self, name: &'static str) -> Result<&'a str> {
        to_str(self.next_arg()?, name)
    }

    /// The next option keyword, upper-cased (printable ASCII, see [`quote`]), or `None`
    /// at the end.
    pub fn next_keyword(&mut self) -> Option<Cow<'a, str>> {
        let arg: &'a [u8] = self.args.get(self.pos)?;
        self.pos += 1;
        let printable = arg.len() <= 64 && arg.iter().all(|b| (b' '..=b'~').contains(b));
        if printable && !arg.iter().any(u8::is_ascii_lowercase) {
            // Written in capitals already, as clients send keywords: no copy.
            return std::str::from_utf8(arg).ok().map(Cow::Borrowed);
        }
        let upper = arg.to_ascii_uppercase();
        if printable {
            // Printable ASCII is its own quote.
            return String::from_utf8(upper).ok().map(Cow::Owned);
        }
        Some(Cow::Owned(quote(&upper)))
    }

    /// The value that follows option `name`.
    pub fn value(&mut self, name: &'static str) -> Result<&'a [u8]> {
        self.next_arg().map_err(|_| Error::MissingValue(name))
    }

    /// The value that follows option `name`, as an integer in `min..=max`.
    pub fn int_value(&mut self, name: &'static str, min: i64, max: i64) -> Result<i64> {
        let value = self.value(name)?;
        parse_int(value, name, min, max)
    }

    /// The value that follows option `name`, as non-empty UTF-8 text.
    pub fn text_value(&mut self, name: &'static str) -> Result<&'a str> {
        let text = to_str(self.value(name)?, name)?;
        if text.is_empty() {
            return Err(Error::Empty(name));
        }
        Ok(text)
    }

    /// How many arguments were read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next argument without taking it.
    pub fn peek(&self) -> Option<&'a [u8]> {
        self.args.get(self.pos).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.args.len()
    }

    /// Fails with the arity error unless every argument was read.
    pub fn finish(&self) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::WrongArity)
        }
    }
}

/// A decimal integer in `min..=max`.
pub fn parse_int(value: &[u8], name: &'static str, min: i64, max: i64) -> Result<i64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| Error::BadInteger {
            name,
            min,
            max,
            got: quote(value),
        })
}

/// A command's options, each named once: parsing, telling options from values and error
/// messages all read the names from here.
pub struct Options<T: 'static>(pub &'static [(&'static str, T)]);

impl<T: Copy + PartialEq> Options<T> {
    /// The option `arg` names (case-insensitive), with its name as written here.
    pub fn named(&self, arg: &[u8]) -> Option<(&'static str, T)> {
        self.0
            .iter()
            .find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(arg))
            .copied()
    }

    /// The name of `option`.
    pub fn name(&self, option: T) -> &'static str {
        self.0
            .iter()
            .find(|(_, known)| *known == option)
            .map_or("", |(name, _)| name)
    }
}

/// One of `choices` (case-insensitive), returned as its index.
pub fn parse_choice(
    value: &[u8],
    name: &'static str,
    choices: &[&'static str],
    described: &'static str,
) -> Result<usize> {
    choices
        .iter()
        .position(|choice| choice.as_bytes().eq_ignore_ascii_case(value))
        .ok_or_else(|| Error::BadChoice {
            name,
            choices: described,
            got: quote(value),
        })
}

/// User input as it may appear inside an error message: printable ASCII, other bytes as
/// `\xNN`, cut after 64 bytes. (A reply must not carry raw bytes a client cannot read.)
pub fn quote(value: &[u8]) -> String {
    const SHOWN: usize = 64;
    let mut text = String::with_capacity(value.len().min(SHOWN) + 3);
    for &b in value.iter().take(SHOWN) {
        match b {
            b' '..=b'~' => text.push(char::from(b)),
            _ => text.push_str(&format!("\\x{b:02x}")),
        }
    }
    if value.len() > SHOWN {
        text.push_str("...");
    }
    text
}

/// `message` with every character outside printable ASCII escaped, for error replies:
/// redis-module cuts each character of an error reply down to one byte, which would turn
/// any other text into bytes that are not UTF-8.
pub fn printable(message: String) -> String {
    if message.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return message;
    }
    message
        .chars()
        .map(|c| match c {
            ' '..='~' => c.to_string(),
            _ => c.escape_unicode().to_string(),
        })
        .collect()
}

pub fn to_str<'a>(value: &'a [u8], name: &'static str) -> Result<&'a str> {
    std::str::from_utf8(value).map_err(|_| Error::NotUtf8(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keywords_and_values() {
        let raw: Vec<&[u8]> = vec![b"ttl", b"30", b"Timestamp", b"ts"];
        let mut args = Args::new(&raw);
        assert_eq!(args.next_keyword().as_deref(), Some("TTL"));
        assert_eq!(args.int_value("TTL", 0, 100), Ok(30));
        assert_eq!(args.next_keyword().as_deref(), Some("TIMESTAMP"));
        assert_eq!(args.text_value("TIMESTAMP"), Ok("ts"));
        assert!(args.finish().is_ok());
        assert_eq!(args.next_keyword(), None);
    }

    #[test]
    fn integers_are_checked() {
        assert_eq!(parse_int(b"-5", "N", -10, 10), Ok(-5));
        for bad in [
            &b"abc"[..],
            b"",
            b"1.5",
            b"11",
            b" 1",
            b"99999999999999999999",
        ] {
            let err = parse_int(bad, "N", -10, 10).unwrap_err();
            assert!(err
                .to_string()
                .starts_with("N must be an integer from -10 to 10"));
        }
    }

    #[test]
    fn missing_values_and_choices() {
        let raw: Vec<&[u8]> = vec![b"TTL"];
        let mut args = Args::new(&raw);
        args.next_keyword();
        assert_eq!(args.int_value("TTL", 0, 1), Err(Error::MissingValue("TTL")));
        assert_eq!(
            parse_choice(b"merge", "ONUPDATE", &["REPLACE", "MERGE"], ""),
            Ok(1)
        );
        assert!(parse_choice(b"x", "ONUPDATE", &["REPLACE"], "REPLACE").is_err());
        let raw: Vec<&[u8]> = vec![b"TEXT", b""];
        let mut args = Args::new(&raw);
        args.next_keyword();
        assert_eq!(args.text_value("TEXT"), Err(Error::Empty("TEXT")));
    }

    #[test]
    fn quoted_input_is_printable_ascii() {
        assert_eq!(quote(b"TTL"), "TTL");
        assert_eq!(quote(b"a\r\n\xff\x00"), "a\\x0d\\x0a\\xff\\x00");
        assert_eq!(quote("é".as_bytes()), "\\xc3\\xa9");
        let long = quote(&[b'x'; 100]);
        assert_eq!(long.len(), 67);
        assert!(long.ends_with("..."));
        let raw: Vec<&[u8]> = vec![b"\xffbogus"];
        assert_eq!(Args::new(&raw).next_keyword().unwrap(), "\\xffBOGUS");
    }

    #[test]
    fn error_messages_are_printable_ascii() {
        assert_eq!(printable("ERR plain".into()), "ERR plain");
        assert_eq!(
            printable("ERR device 'é'\n".into()),
            "ERR device '\\u{e9}'\\u{a}"
        );
    }

    #[test]
    fn leftover_arguments_are_an_arity_error() {
        let raw: Vec<&[u8]> = vec![b"a", b"b"];
        let mut args = Args::new(&raw);
        args.next_arg().unwrap();
        assert_eq!(args.finish(), Err(Error::WrongArity));
    }
}
