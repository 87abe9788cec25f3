//! Redis-style glob patterns (`*`, `?`, `[abc]`, `[^a-z]`, `\x`), as `SCAN MATCH` takes.
//!
//! Matching backtracks only to the last `*`, so any pattern runs in O(pattern × text)
//! time: no user-supplied pattern can stall the server.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: pattern index after it, and text index.
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        if let Some(step) = match_one(pattern, p, text[t]) {
            match step {
                Step::Star => {
                    while pattern.get(p) == Some(&b'*') {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    resume = Some((p, t));
                    continue;
                }
                Step::Advance(next) => {
                    p = next;
                    t += 1;
                    continue;
                }
            }
        }
        match resume {
            Some((star_p, star_t)) => {
                p = star_p;
                t = star_t + 1;
                resume = Some((star_p, star_t + 1));
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

enum Step {
    Star,
    /// The character matched; the pattern continues at this index.
    Advance(usize),
}

/// Matches the pattern element at `p` against one character.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<Step> {
    match *pattern.get(p)? {
        b'*' => Some(Step::Star),
        b'?' => Some(Step::Advance(p + 1)),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(Step::Advance(p + 2)),
        b'[' => match class_end(pattern, p) {
            Some(end) => class_matches(&pattern[p + 1..end], c).then_some(Step::Advance(end + 1)),
            None => (c == b'[').then_some(Step::Advance(p + 1)),
        },
        literal => (literal == c).then_some(Step::Advance(p + 1)),
    }
}

/// The index of the `]` closing the class that opens at `open`; an unclosed `[` is literal.
fn class_end(pattern: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' => i += 2,
            b']' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn class_matches(class: &[u8], c: u8) -> bool {
    let (negate, class) = match class.first() {
        Some(b'^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut found = false;
    let mut i = 0;
    while i < class.len() {
        if class[i] == b'\\' && i + 1 < class.len() {
            found |= class[i + 1] == c;
            i += 2;
        } else if i + 2 < class.len() && class[i + 1] == b'-' {
            let (low, high) = (class[i].min(class[i + 2]), class[i].max(class[i + 2]));
            found |= (low..=high).contains(&c);
            i += 3;
        } else {
            found |= class[i] == c;
            i += 1;
        }
    }
    found != negate
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob_cases() {
        let yes: &[(&str, &str)] = &[
            ("*", ""),
            ("*", "anything"),
            ("h?llo", "hello"),
            ("h*llo", "heeeello"),
            ("h*llo", "hllo"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("h[b-a]llo", "hallo"),
            ("dev-\\*", "dev-*"),
            ("sensor:*:temp", "sensor:12:temp"),
            ("*a*b*c", "xxaxxbxxc"),
            ("a[", "a["),
            ("[\\]]", "]"),
            ("**", "x"),
        ];
        for (pattern, text) in yes {
            assert!(
                matches(pattern.as_bytes(), text.as_bytes()),
                "{pattern} ~ {text}"
            );
        }
        let no: &[(&str, &str)] = &[
            ("h?llo", "hllo"),
            ("h[ae]llo", "hillo"),
            ("h[^e]llo", "hello"),
            ("dev-\\*", "dev-x"),
            ("a", ""),
            ("abc", "ab"),
            ("ab", "abc"),
            ("*a*b*c", "xxaxxbxx"),
            ("", "x"),
        ];
        for (pattern, text) in no {
            assert!(
                !matches(pattern.as_bytes(), text.as_bytes()),
                "{pattern} !~ {text}"
            );
        }
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = "*a".repeat(5000) + "b";
        let text = "a".repeat(20_000);
        assert!(!matches(pattern.as_bytes(), text.as_bytes()));
    }
}
