//! Rates as written in `[guards]` (`10/s`, `1/min`) and the wait a refusal names.

use std::time::Duration;

/// A rate as written (`10/s`): count, period, and the unit's name for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
    pub text: String,
}

/// Parses `N/s`, `N/sec`, `N/min`, `N/h`, `N/hour`, `N/d`, `N/day`.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || format!("{s:?} is not a rate like \"10/s\", \"1/min\", \"100/h\" or \"1000/d\"");
    let (n, unit) = s.split_once('/').ok_or_else(bad)?;
    let count: u32 = n.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!("{s:?}: the count must be at least 1"));
    }
    let secs = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86_400,
        _ => return Err(bad()),
    };
    Ok(Rate {
        count,
        period: Duration::from_secs(secs),
        text: s.trim().replace(' ', ""),
    })
}

/// `42s`, or `0.3s` under a second (never `0s`).
pub fn retry_text(wait: Duration) -> String {
    if wait >= Duration::from_secs(1) {
        format!("{}s", wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    } else {
        format!("{:.1}s", (wait.as_secs_f64()).max(0.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        let r = parse_rate("1/min").unwrap();
        assert_eq!((r.count, r.period), (1, Duration::from_secs(60)));
        assert_eq!(parse_rate("10/s").unwrap().count, 10);
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5/week").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn retry_texts() {
        assert_eq!(retry_text(Duration::from_millis(41_200)), "42s");
        assert_eq!(retry_text(Duration::from_secs(60)), "60s");
        assert_eq!(retry_text(Duration::from_millis(10)), "0.1s");
    }
}
