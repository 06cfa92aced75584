//! Structured logs on stderr through `tracing`, as text or JSON lines,
//! for every role: the one place that reads `--log-level` and decides
//! whether logs are coloured.

use anyhow::Context;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The levels a directive may end with.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// What `--log-level` accepts, for its error message.
const ACCEPTED: &str = "accepted: off, error, warn, info, debug, trace, or comma-separated \
                        TARGET=LEVEL directives (e.g. info,shoal_proxy=debug)";

/// Checks a `--log-level` value. tracing's own parser takes almost any
/// text as a target name (`bogus!!` is "trace for target `bogus!!`",
/// which silences every real log), so each directive must be a level or
/// `TARGET[SPAN]=LEVEL` with a Rust path as the target.
pub fn check_level(spec: &str) -> Result<(), String> {
    let is_level = |s: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s));
    let is_path = |s: &str| {
        !s.is_empty()
            && s.split("::").all(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
    };
    if spec.trim().is_empty() {
        return Err(format!("empty log level ({ACCEPTED})"));
    }
    for directive in spec.split(',').map(str::trim) {
        let ok = match directive.rsplit_once('=') {
            None => is_level(directive),
            Some((target, level)) => {
                let target = target.split_once('[').map_or(target, |(t, _)| t);
                is_level(level) && is_path(target)
            }
        };
        if !ok {
            return Err(format!("{directive:?} is not a log level ({ACCEPTED})"));
        }
    }
    Ok(())
}

/// Whether to colour the logs: only on a terminal, and never when
/// `NO_COLOR` is set to anything but an empty string (no-color.org).
pub fn colour(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber.
pub fn init(level: &str, format: Format) -> anyhow::Result<()> {
    check_level(level).map_err(|e| anyhow::anyhow!("invalid --log-level {level:?}: {e}"))?;
    let filter =
        EnvFilter::try_new(level).with_context(|| format!("invalid --log-level {level:?}"))?;
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        Format::Text => builder.try_init(),
        Format::Json => builder.json().try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn log_levels_are_checked() {
        let cases = [
            ("info", true),
            ("DEBUG", true),
            ("off", true),
            ("warn,shoal_proxy=debug", true),
            ("shoal::access=info", true),
            ("shoal_api[request{path}]=trace", true),
            ("bogus!!", false),
            ("", false),
            ("loud", false),
            ("loud=[", false),
            ("info,", false),
            ("=debug", false),
            ("shoal=verbose", false),
            ("bad target=info", false),
        ];
        for (spec, ok) in cases {
            let got = check_level(spec);
            assert_eq!(got.is_ok(), ok, "{spec:?}: {got:?}");
            if let Err(e) = got {
                assert!(e.contains("accepted: off, error, warn"), "{e}");
            }
            if ok {
                assert!(EnvFilter::try_new(spec).is_ok(), "tracing takes {spec:?}");
            }
        }
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let cases = [
            (true, None, true),
            (true, Some(""), true),
            (true, Some("1"), false),
            (false, None, false),
            (false, Some("1"), false),
        ];
        for (terminal, no_color, want) in cases {
            assert_eq!(
                colour(terminal, no_color.map(OsStr::new)),
                want,
                "{terminal} {no_color:?}"
            );
        }
    }

    mod fuzz {
        use super::super::check_level;
        use proptest::prelude::*;
        use tracing_subscriber::EnvFilter;

        proptest! {
            // proptest's default: 256 cases, or $PROPTEST_CASES (bench/fuzz.sh).
            /// Whatever `--log-level` accepts, tracing accepts too; nothing panics.
            #[test]
            fn fuzz_log_level(s in "\\PC{0,30}|([a-z_:]{0,10}=?(info|debug|warn|bogus)?,?){1,3}") {
                if check_level(&s).is_ok() {
                    prop_assert!(EnvFilter::try_new(&s).is_ok(), "{:?}", s);
                }
            }
        }
    }
}
