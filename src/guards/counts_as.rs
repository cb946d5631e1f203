//! Requests that count as another command for the guards: a rule naming that command
//! applies to them too.
//!
//! **Why.** Some commands do another command's damage through an option. `FUNCTION
//! RESTORE <dump> FLUSH` deletes every library first, exactly as `FUNCTION FLUSH` does,
//! and `... REPLACE` overwrites libraries of the same name; a rule that denies FUNCTION
//! FLUSH but let these through would be a rule in name only. The table is tiny and only
//! read when rules are compiled (which commands a rule names) or when a rule already
//! names the request's command, so ordinary requests never reach it.
//!
//! **Must not.** Make a request count as something milder: only ever add rules.

use crate::protocol::Args;

/// The command `name` may count as (depending on its arguments), if any.
pub fn may_count_as(name: &str) -> Option<&'static str> {
    match name {
        "function|restore" => Some("function|flush"),
        _ => None,
    }
}

/// The command this request counts as, with the argument that makes it so
/// (`FUNCTION RESTORE <dump> FLUSH` and `... REPLACE`: FUNCTION FLUSH).
pub fn counts_as<'a>(name: &str, args: Args<'a>) -> Option<(&'static str, &'a [u8])> {
    match name {
        "function|restore" => {
            let policy = args.try_get(3)?;
            (policy.eq_ignore_ascii_case(b"flush") || policy.eq_ignore_ascii_case(b"replace"))
                .then_some(("function|flush", policy))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::args::OwnedArgs;

    fn with_args<T>(words: &[&str], f: impl FnOnce(Args<'_>) -> T) -> T {
        f(OwnedArgs::new(words).args())
    }

    #[test]
    fn function_restore_with_flush_or_replace_counts_as_function_flush() {
        for policy in ["FLUSH", "flush", "REPLACE", "Replace"] {
            let got = with_args(&["FUNCTION", "RESTORE", "dump", policy], |a| {
                counts_as("function|restore", a).map(|(c, p)| (c, p.to_vec()))
            });
            assert_eq!(got, Some(("function|flush", policy.as_bytes().to_vec())));
        }
        for words in [
            &["FUNCTION", "RESTORE", "dump"][..],
            &["FUNCTION", "RESTORE", "dump", "APPEND"],
        ] {
            assert!(with_args(words, |a| counts_as("function|restore", a).is_none()));
        }
        assert!(with_args(&["FUNCTION", "FLUSH"], |a| counts_as(
            "function|flush",
            a
        )
        .is_none()));
        assert_eq!(may_count_as("function|restore"), Some("function|flush"));
        assert_eq!(may_count_as("get"), None);
    }
}
