//! Go-style durations ("10s", "1m30s", "250ms") as Consul writes and reads
//! them, plus serde helpers that accept either such a string or an integer
//! count of nanoseconds, as Consul's decoder does.

use std::time::Duration;

/// Parses a Go duration string such as `"1h2m3.5s"`, `"300ms"` or `"0"`.
pub fn parse(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err(format!("invalid duration {input:?}"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err(format!("invalid duration {input:?}: negative"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration {input:?}: missing unit"))?;
        if num_len == 0 {
            return Err(format!("invalid duration {input:?}"));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration {input:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            unit => return Err(format!("invalid duration {input:?}: unknown unit {unit:?}")),
        };
        total += value * nanos_per;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(format!("invalid duration {input:?}: out of range"));
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// Formats a duration the way Go's `time.Duration.String` does.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos as f64 / 1e3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos as f64 / 1e6));
    }
    let secs_total = d.as_secs();
    let hours = secs_total / 3600;
    let minutes = (secs_total % 3600) / 60;
    let secs = (secs_total % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{}s", trim_fraction(secs)));
    out
}

fn trim_fraction(v: f64) -> String {
    let s = format!("{v:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// serde helpers for `Option<Duration>` fields carried as Go durations;
/// a zero duration and an absent one are the same thing.
pub mod opt_serde {
    use super::{format, parse};
    use serde::{de, Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes the duration as a Go duration string; unset is `"0s"`, as
    /// Consul renders a zero duration.
    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(v.unwrap_or_default()))
    }

    /// Accepts a Go duration string, an integer of nanoseconds, `""` or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Nanos(u64),
            Float(f64),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Text(t)) if t.is_empty() => Ok(None),
            Some(Raw::Text(t)) => parse(&t)
                .map(|d| (!d.is_zero()).then_some(d))
                .map_err(de::Error::custom),
            Some(Raw::Nanos(n)) => Ok(if n == 0 {
                None
            } else {
                Some(Duration::from_nanos(n))
            }),
            Some(Raw::Float(f)) => Err(de::Error::custom(format!(
                "invalid duration {f}: use a string like \"10s\" or an integer of nanoseconds"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("10s", Duration::from_secs(10)),
            ("1m30s", Duration::from_secs(90)),
            ("250ms", Duration::from_millis(250)),
            ("1.5s", Duration::from_millis(1500)),
            ("2h", Duration::from_secs(7200)),
            ("0", Duration::ZERO),
            ("100us", Duration::from_micros(100)),
            ("7ns", Duration::from_nanos(7)),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for input in ["", "10", "abc", "-1s", "1x", "s", "1..2s"] {
            assert!(parse(input).is_err(), "{input} should be rejected");
        }
    }

    #[test]
    fn formats_like_go() {
        let cases = [
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::ZERO, "0s"),
        ];
        for (d, want) in cases {
            assert_eq!(format(d), want);
        }
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            // proptest's default: 256 cases, or $PROPTEST_CASES (bench/fuzz.sh).
            /// Any text (and text made of duration-ish pieces): an answer,
            /// never a panic.
            #[test]
            fn fuzz_duration_parse(s in "\\PC{0,24}|[+\\-]?([0-9.]{0,22}(ns|us|µs|ms|s|m|h|x)?){0,4}") {
                let _ = parse(&s);
            }

            /// What Go's formatting writes parses back to the same duration
            /// (exactly, up to 2^53 ns: ~104 days, beyond any check interval).
            #[test]
            fn fuzz_duration_round_trip(nanos in 0u64..(1 << 53)) {
                let d = Duration::from_nanos(nanos);
                let text = format(d);
                prop_assert_eq!(parse(&text), Ok(d), "{}", text);
            }
        }
    }
}
