//! `timestamp LAYOUT`: Go's `time.Format` over the current time in UTC,
//! as consul-template calls it. Layouts are Go's reference-time layouts
//! (`2006-01-02T15:04:05Z07:00`); every element Go knows is handled, the
//! rest of the layout is copied as Go copies it.

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A UTC instant broken down.
struct Civil {
    year: i64,
    month: usize, // 1..=12
    day: i64,
    yday: i64, // 1..=366
    weekday: usize,
    hour: i64,
    min: i64,
    sec: i64,
    nanos: u32,
}

fn civil(secs: i64, nanos: u32) -> Civil {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = shoal_catalog::clock::civil_from_days(days);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let before = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334][month as usize - 1];
    let yday = before + day + i64::from(leap && month > 2);
    Civil {
        year,
        month: month as usize,
        day,
        yday,
        weekday: (days + 4).rem_euclid(7) as usize, // 1970-01-01 was a Thursday
        hour: rem / 3600,
        min: rem / 60 % 60,
        sec: rem % 60,
        nanos,
    }
}

/// The length of a fractional-second element at `rest` (`.000`, `,999`),
/// as Go recognises it: a run of one digit kind not followed by a digit.
fn fraction_len(rest: &[u8]) -> Option<usize> {
    if rest.len() < 2 || !matches!(rest[0], b'.' | b',') || !matches!(rest[1], b'0' | b'9') {
        return None;
    }
    let digit = rest[1];
    let mut j = 1;
    while j < rest.len() && rest[j] == digit {
        j += 1;
    }
    if j < rest.len() && rest[j].is_ascii_digit() {
        return None;
    }
    Some(j)
}

/// Go's `t.Format(layout)` for a UTC time `secs.nanos` after the epoch.
pub fn format(secs: i64, nanos: u32, layout: &str) -> String {
    let t = civil(secs, nanos);
    let b = layout.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let starts = |i: usize, s: &str| b[i..].starts_with(s.as_bytes());
    while i < b.len() {
        let (text, len): (String, usize) = match b[i] {
            b'J' if starts(i, "January") => (MONTHS[t.month - 1].into(), 7),
            b'J' if starts(i, "Jan") => (MONTHS[t.month - 1][..3].into(), 3),
            b'M' if starts(i, "Monday") => (DAYS[t.weekday].into(), 6),
            b'M' if starts(i, "Mon") => (DAYS[t.weekday][..3].into(), 3),
            b'M' if starts(i, "MST") => ("UTC".into(), 3),
            b'0' if starts(i, "002") => (format!("{:03}", t.yday), 3),
            b'0' if starts(i, "01") => (format!("{:02}", t.month), 2),
            b'0' if starts(i, "02") => (format!("{:02}", t.day), 2),
            b'0' if starts(i, "03") => (format!("{:02}", hour12(t.hour)), 2),
            b'0' if starts(i, "04") => (format!("{:02}", t.min), 2),
            b'0' if starts(i, "05") => (format!("{:02}", t.sec), 2),
            b'0' if starts(i, "06") => (format!("{:02}", t.year.rem_euclid(100)), 2),
            b'1' if starts(i, "15") => (format!("{:02}", t.hour), 2),
            b'1' => (t.month.to_string(), 1),
            b'2' if starts(i, "2006") => (year(t.year), 4),
            b'2' => (t.day.to_string(), 1),
            b'_' if starts(i, "_2006") => ("_".into(), 1), // `_` then the year
            b'_' if starts(i, "__2") => (format!("{:>3}", t.yday), 3),
            b'_' if starts(i, "_2") => (format!("{:>2}", t.day), 2),
            b'3' => (hour12(t.hour).to_string(), 1),
            b'4' => (t.min.to_string(), 1),
            b'5' => (t.sec.to_string(), 1),
            b'P' if starts(i, "PM") => (if t.hour >= 12 { "PM" } else { "AM" }.into(), 2),
            b'p' if starts(i, "pm") => (if t.hour >= 12 { "pm" } else { "am" }.into(), 2),
            b'-' | b'Z' => match ["070000", "07:00:00", "0700", "07:00", "07"]
                .iter()
                .find(|z| starts(i + 1, z))
            {
                Some(z) if b[i] == b'Z' => ("Z".into(), z.len() + 1),
                Some(z) => (zero_offset(z), z.len() + 1),
                None => ((b[i] as char).to_string(), 1),
            },
            b'.' | b',' => match fraction_len(&b[i..]) {
                Some(n) => (fraction(t.nanos, b[i], b[i + 1], n - 1), n),
                None => ((b[i] as char).to_string(), 1),
            },
            _ => {
                // Copy one UTF-8 character.
                let ch = layout[i..].chars().next().unwrap_or('?');
                (ch.to_string(), ch.len_utf8())
            }
        };
        out.push_str(&text);
        i += len;
    }
    out
}

fn hour12(h: i64) -> i64 {
    match h % 12 {
        0 => 12,
        x => x,
    }
}

fn year(y: i64) -> String {
    if (0..10_000).contains(&y) {
        format!("{y:04}")
    } else {
        y.to_string()
    }
}

/// `+0000`-style offset of UTC in the shape of the layout element.
fn zero_offset(shape: &str) -> String {
    format!("+{}", shape.replace('7', "0"))
}

/// `.000` keeps n digits; `.999` trims trailing zeros (and the separator
/// when nothing is left), as Go does.
fn fraction(nanos: u32, sep: u8, digit: u8, n: usize) -> String {
    let digits = format!("{nanos:09}");
    let mut kept = digits[..n.min(9)].to_string();
    if digit == b'9' {
        kept = kept.trim_end_matches('0').to_string();
        if kept.is_empty() {
            return String::new();
        }
    }
    format!("{}{kept}", sep as char)
}

#[cfg(test)]
mod tests {
    use super::format;

    /// Expected strings printed by Go 1.19's `time.Unix(s, ns).UTC().Format`.
    #[test]
    fn layouts_format_as_go_does() {
        // 2009-11-10 23:04:05.012300 UTC, a Tuesday, day 314.
        let (s, ns) = (1_257_894_245, 12_300_000);
        for (layout, want) in [
            ("2006-01-02T15:04:05Z07:00", "2009-11-10T23:04:05Z"),
            (
                "Mon Jan _2 15:04:05 MST 2006",
                "Tue Nov 10 23:04:05 UTC 2009",
            ),
            (
                "Monday, 02-Jan-06 15:04:05 MST",
                "Tuesday, 10-Nov-09 23:04:05 UTC",
            ),
            (
                "January 2, 2006 3:04:05 PM",
                "November 10, 2009 11:04:05 PM",
            ),
            ("02 Jan 06 15:04 -0700", "10 Nov 09 23:04 +0000"),
            (
                "-07:00 -07 -070000 -07:00:00",
                "+00:00 +00 +000000 +00:00:00",
            ),
            ("Z0700 Z07", "Z Z"),
            ("15:04:05.000", "23:04:05.012"),
            ("15:04:05.999999999", "23:04:05.0123"),
            ("15:04:05,000000", "23:04:05,012300"),
            ("05.0001", "05.0011"),
            ("3:4:5 pm", "11:4:5 pm"),
            ("002 __2", "314 314"),
            ("1/2/06", "11/10/09"),
            ("_2006", "_2009"),
            ("unixé", "unixé"),
        ] {
            assert_eq!(format(s, ns, layout), want, "layout {layout:?}");
        }
        // Midnight, the first day of a leap year's March.
        let (s, ns) = (951_868_800, 0);
        assert_eq!(
            format(s, ns, "2006-01-02 03PM 002 .999|"),
            "2000-03-01 12AM 061 |"
        );
    }
}
