//! A captured table as the configuration names it, `schema.table`: each part taken as it
//! is (case, spaces, quotes, keywords and all), split at the first dot, as wal2json and
//! pgoutput name the tables whose changes they send. This module says it in SQL and in
//! wal2json's table filter.

/// The table as an SQL name: each part a quoted identifier (`"My Schema"."Order"`); a
/// name without a dot is one quoted identifier (it then names no table).
pub fn sql_name(table: &str) -> String {
    match table.split_once('.') {
        Some((schema, name)) => format!("{}.{}", quoted(schema), quoted(name)),
        None => quoted(table),
    }
}

/// `name` as a quoted SQL identifier.
pub fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The table in wal2json's `add-tables` list: its special characters (white space,
/// quote, comma, dot, asterisk, backslash) escaped with a backslash within each part.
pub fn wal2json_name(table: &str) -> String {
    let escape = |part: &str| -> String {
        part.chars()
            .flat_map(|c| {
                let special = c.is_whitespace() || matches!(c, '\'' | ',' | '.' | '*' | '\\');
                special.then_some('\\').into_iter().chain([c])
            })
            .collect()
    };
    match table.split_once('.') {
        Some((schema, name)) => format!("{}.{}", escape(schema), escape(name)),
        None => escape(table),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_as_they_are() {
        assert_eq!(sql_name("public.invoice"), r#""public"."invoice""#);
        assert_eq!(
            sql_name(r#"My Schema.Order "Items" t.v2"#),
            r#""My Schema"."Order ""Items"" t.v2""#
        );
        assert_eq!(sql_name("select"), r#""select""#);
    }

    #[test]
    fn wal2json_names_escape_what_it_splits_on() {
        assert_eq!(wal2json_name("public.invoice"), "public.invoice");
        assert_eq!(
            wal2json_name("My Schema.it's a,b.c*"),
            r"My\ Schema.it\'s\ a\,b\.c\*"
        );
    }
}
