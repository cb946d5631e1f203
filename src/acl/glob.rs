//! Redis's glob matching (`stringmatchlen` in util.c), so `~pattern` and `&pattern` rules
//! match exactly the keys and channels Redis would match: `*`, `?`, `[abc]`, `[^a-z]`,
//! `\` escapes, case-sensitive.
//!
//! Hand-ported rather than taken from a crate: the glob crates follow shell or path
//! conventions (`/` special, `[!...]`, different escape rules), and an ACL that matches a
//! slightly different set of keys than the operator's Redis would is a security bug.
//! Patterns are compiled once: the common shapes (`prefix:*`, an exact name, `*`) become
//! a prefix or equality test, so the per-key check on the hot path is a `starts_with`.

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `*`: every non-empty string (Redis's matcher never matches an empty one with
    /// `*`; `~*` itself is the `allkeys` flag, which does).
    Any,
    /// `literal*` with no other special character.
    Prefix(Box<[u8]>),
    /// No special character at all.
    Exact(Box<[u8]>),
    /// Anything else, matched by the Redis algorithm.
    Glob(Box<[u8]>),
}

impl Pattern {
    pub fn new(pattern: &[u8]) -> Pattern {
        let special = |b: &u8| matches!(b, b'*' | b'?' | b'[' | b'\\');
        if pattern.iter().all(|b| *b == b'*') && !pattern.is_empty() {
            return Pattern::Any;
        }
        match pattern.iter().position(special) {
            None => Pattern::Exact(pattern.into()),
            Some(i) if i == pattern.len() - 1 && pattern[i] == b'*' => {
                Pattern::Prefix(pattern[..i].into())
            }
            Some(_) => Pattern::Glob(pattern.into()),
        }
    }

    /// The pattern in Redis's glob syntax (for SCAN's MATCH).
    pub fn glob_text(&self) -> Vec<u8> {
        match self {
            Pattern::Any => b"*".to_vec(),
            Pattern::Prefix(p) => [&p[..], b"*"].concat(),
            Pattern::Exact(p) | Pattern::Glob(p) => p.to_vec(),
        }
    }

    #[inline]
    pub fn matches(&self, s: &[u8]) -> bool {
        match self {
            Pattern::Any => !s.is_empty(),
            Pattern::Prefix(p) => s.starts_with(p),
            Pattern::Exact(p) => **p == *s,
            Pattern::Glob(p) => string_match(p, s),
        }
    }
}

/// Redis's `stringmatchlen(pattern, string, nocase = 0)`.
pub fn string_match(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    match_impl(pattern, string, &mut skip_longer)
}

fn match_impl(mut p: &[u8], mut s: &[u8], skip_longer: &mut bool) -> bool {
    // `at(p, i)` reads like the C code reading a NUL-terminated string.
    let at = |p: &[u8], i: usize| p.get(i).copied().unwrap_or(0);
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if match_impl(&p[1..], s, skip_longer) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s = &s[1..];
                }
                *skip_longer = true;
                return false;
            }
            b'?' => s = &s[1..],
            b'[' => {
                p = &p[1..];
                let not = at(p, 0) == b'^';
                if not {
                    p = &p[1..];
                }
                let mut matched = false;
                loop {
                    if at(p, 0) == b'\\' && p.len() >= 2 {
                        p = &p[1..];
                        if p[0] == s[0] {
                            matched = true;
                        }
                    } else if at(p, 0) == b']' {
                        break;
                    } else if p.is_empty() {
                        // Unterminated class: Redis steps back so the loop's final
                        // advance leaves the pattern empty.
                        break;
                    } else if p.len() >= 3 && p[1] == b'-' {
                        let (mut start, mut end) = (p[0], p[2]);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        p = &p[2..];
                        if (start..=end).contains(&s[0]) {
                            matched = true;
                        }
                    } else if p[0] == s[0] {
                        matched = true;
                    }
                    p = &p[1..];
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s = &s[1..];
                if p.is_empty() {
                    // The unterminated-class case: nothing left to advance past.
                    if s.is_empty() {
                        return true;
                    }
                    return false;
                }
            }
            b'\\' if p.len() >= 2 => {
                p = &p[1..];
                if p[0] != s[0] {
                    return false;
                }
                s = &s[1..];
            }
            c => {
                if c != s[0] {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
        if s.is_empty() {
            while at(p, 0) == b'*' {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        let compiled = Pattern::new(p.as_bytes()).matches(s.as_bytes());
        assert_eq!(
            compiled,
            string_match(p.as_bytes(), s.as_bytes()),
            "{p} vs {s}"
        );
        compiled
    }

    #[test]
    fn redis_glob_semantics() {
        assert!(!m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("session:*", "session:42"));
        assert!(m("session:*", "session:"));
        assert!(!m("session:*", "sessions"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exactly"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("*:foo:*", "x:foo:y"));
        assert!(!m("*:foo:*", "x:fo:y"));
        assert!(m("a*b*c", "aXbYc"));
        assert!(!m("a*b*c", "aXbY"));
        assert!(m("a**", "a"));
        assert!(m("rl:*:*", "rl:1.2.3.4:17"));
        assert!(!m("", "x"));
        assert!(m("", ""));
    }
}
