//! consul-template's configuration: the `-template "src:dst[:command]"`
//! and `-wait min[:max]` flag syntaxes, its HCL files (see [`hcl`]), and
//! how they merge (files in order, flags last; templates accumulate).

mod hcl;

pub use self::hcl::parse_hcl;

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// consul-template's default `command_timeout`.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A quiescence window: render once nothing changed for `min`, or at the
/// latest `max` after the first change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Wait {
    /// Quiet time needed before rendering.
    pub min: Duration,
    /// Longest delay after the first change.
    pub max: Duration,
}

impl Wait {
    /// Parses `min[:max]`; `max` defaults to 4 × `min`, as in consul-template.
    pub fn parse(s: &str) -> Result<Wait> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::config("wait: empty value"));
        }
        let dur = |p: &str| {
            shoal_catalog::duration::parse(p.trim())
                .map_err(|e| Error::config(format!("wait {s:?}: {e}")))
        };
        let (min, max) = match s.split(':').collect::<Vec<_>>().as_slice() {
            [min] => {
                let min = dur(min)?;
                (min, min * 4)
            }
            [min, max] => (dur(min)?, dur(max)?),
            _ => {
                return Err(Error::config(format!(
                    "wait {s:?}: expected MIN or MIN:MAX"
                )))
            }
        };
        if max < min {
            return Err(Error::config(format!(
                "wait {s:?}: max must be at least min"
            )));
        }
        Ok(Wait { min, max })
    }

    /// Whether rendering waits at all.
    pub fn is_zero(&self) -> bool {
        self.min.is_zero() && self.max.is_zero()
    }
}

/// One `template { ... }` block or `-template` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateConfig {
    /// The template file (its path names the template in errors).
    pub source: Option<PathBuf>,
    /// Where the rendering goes.
    pub destination: Option<PathBuf>,
    /// Inline template text instead of `source`.
    pub contents: Option<String>,
    /// Run after the file changed (through `sh -c` when it has spaces).
    pub command: Vec<String>,
    /// Longest time the command may run.
    pub command_timeout: Duration,
    /// File mode of the destination; `None` keeps the existing file's, or 0644.
    pub perms: Option<u32>,
    /// Keep the previous destination as `DEST.bak`.
    pub backup: bool,
    /// Left action delimiter (empty: `{{`).
    pub left_delimiter: String,
    /// Right action delimiter (empty: `}}`).
    pub right_delimiter: String,
    /// This template's quiescence (overrides the global one).
    pub wait: Option<Wait>,
    /// A missing map key is an error instead of `<no value>`.
    pub error_on_missing_key: bool,
    /// Create the destination's directories.
    pub create_dest_dirs: bool,
}

impl Default for TemplateConfig {
    fn default() -> Self {
        TemplateConfig {
            source: None,
            destination: None,
            contents: None,
            command: Vec::new(),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            perms: None,
            backup: false,
            left_delimiter: String::new(),
            right_delimiter: String::new(),
            wait: None,
            error_on_missing_key: false,
            create_dest_dirs: true,
        }
    }
}

impl TemplateConfig {
    /// Parses the flag form `source[:destination[:command]]`. Parts are
    /// split at `:` (a Windows drive letter stays with its path), and a
    /// command may itself contain colons.
    pub fn parse_flag(s: &str) -> Result<TemplateConfig> {
        if s.trim().is_empty() {
            return Err(Error::config("template: empty value"));
        }
        let parts = split_template_flag(s);
        let mut t = TemplateConfig::default();
        let mut it = parts.into_iter();
        t.source = it.next().filter(|p| !p.is_empty()).map(PathBuf::from);
        t.destination = it.next().filter(|p| !p.is_empty()).map(PathBuf::from);
        let command: Vec<String> = it.collect();
        if !command.is_empty() {
            t.command = vec![command.join(":")];
        }
        Ok(t)
    }

    /// A name for logs: the destination, else the source.
    pub fn display_name(&self) -> String {
        self.destination
            .as_ref()
            .or(self.source.as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(inline)".into())
    }

    /// Checks what consul-template checks: a source or contents (not
    /// both), and a destination.
    pub fn validate(&self) -> Result<()> {
        match (&self.source, &self.contents) {
            (None, None) => Err(Error::config(format!(
                "template {}: needs a source or contents",
                self.display_name()
            ))),
            (Some(_), Some(_)) => Err(Error::config(format!(
                "template {}: source and contents are mutually exclusive",
                self.display_name()
            ))),
            _ if self.destination.is_none() => Err(Error::config(format!(
                "template {}: needs a destination",
                self.display_name()
            ))),
            _ => Ok(()),
        }
    }
}

/// consul-template's `([a-zA-Z]:)?([^:]+)` split, written out.
fn split_template_flag(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b':' {
            i += 1;
            continue;
        }
        let start = i;
        // A drive letter `C:` followed by more path.
        if i + 2 < b.len() && b[i].is_ascii_alphabetic() && b[i + 1] == b':' && b[i + 2] != b':' {
            i += 2;
        }
        while i < b.len() && b[i] != b':' {
            i += 1;
        }
        parts.push(s[start..i].to_string());
    }
    parts
}

/// The `exec { ... }` block or `-exec` flag: a child to supervise.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ExecConfig {
    /// The command (through `sh -c` when it is one string with spaces).
    pub command: Vec<String>,
    /// Sent to the child when a template changed (none: restart it).
    pub reload_signal: Option<String>,
    /// Sent to stop the child (default SIGTERM).
    pub kill_signal: Option<String>,
    /// How long the child may take to stop before SIGKILL.
    pub kill_timeout: Option<Duration>,
}

/// The `consul { ... }` block.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConsulConfig {
    /// The registry's address.
    pub address: Option<String>,
    /// ACL token.
    pub token: Option<String>,
}

/// Everything `shoal render` runs with.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Config {
    /// Where the registry is.
    pub consul: ConsulConfig,
    /// The templates, in order.
    pub templates: Vec<TemplateConfig>,
    /// The global quiescence (a template's own `wait` wins).
    pub wait: Option<Wait>,
    /// A child to supervise.
    pub exec: Option<ExecConfig>,
    /// Signal that stops `shoal render` (default SIGINT; SIGTERM always stops).
    pub kill_signal: Option<String>,
    /// Signal that reloads the configuration (default SIGHUP).
    pub reload_signal: Option<String>,
    /// Accepted for compatibility: shoal's reads are always consistent.
    pub max_stale: Option<Duration>,
    /// Log level.
    pub log_level: Option<String>,
    /// File to write the process ID to.
    pub pid_file: Option<PathBuf>,
}

impl Config {
    /// Lays `other` over `self`: set values win, templates are appended.
    pub fn merge(&mut self, other: Config) {
        if other.consul.address.is_some() {
            self.consul.address = other.consul.address;
        }
        if other.consul.token.is_some() {
            self.consul.token = other.consul.token;
        }
        self.templates.extend(other.templates);
        macro_rules! over {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        over!(
            wait,
            exec,
            kill_signal,
            reload_signal,
            max_stale,
            log_level,
            pid_file
        );
    }

    /// Reads `-config` paths: a file, or every file of a directory in
    /// name order, merged in turn.
    pub fn load_paths(paths: &[PathBuf]) -> Result<Config> {
        let mut config = Config::default();
        for path in paths {
            for file in config_files(path)? {
                let text = std::fs::read_to_string(&file).map_err(Error::io(&file))?;
                config.merge(parse_hcl(&text, &file)?);
            }
        }
        Ok(config)
    }

    /// Every error of the configuration at once.
    pub fn validate(&self) -> Result<()> {
        let errors: Vec<String> = self
            .templates
            .iter()
            .filter_map(|t| t.validate().err().map(|e| e.to_string()))
            .collect();
        if self.templates.is_empty() {
            return Err(Error::config(
                "no templates given (-template or a template block)",
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::config(errors.join("; ")))
        }
    }
}

fn config_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(Error::io(path))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(Error::io(path))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_flags_split_like_consul_template() {
        // (flag, source, destination, command)
        let cases = [
            ("in.tmpl", "in.tmpl", "", ""),
            ("in.tmpl:out.conf", "in.tmpl", "out.conf", ""),
            ("in:out:nginx -s reload", "in", "out", "nginx -s reload"),
            ("in:out:echo x:y", "in", "out", "echo x:y"),
            // Go's `([a-zA-Z]:)?([^:]+)` takes a one-letter source for a drive.
            ("a:b:c", "a:b", "c", ""),
            ("C:\\t.tmpl:D:\\o.conf", "C:\\t.tmpl", "D:\\o.conf", ""),
        ];
        for (flag, src, dst, cmd) in cases {
            let t = TemplateConfig::parse_flag(flag).unwrap();
            let s = |p: &Option<PathBuf>| {
                p.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            };
            assert_eq!(
                (
                    s(&t.source).as_str(),
                    s(&t.destination).as_str(),
                    t.command.join(" ").as_str()
                ),
                (src, dst, cmd),
                "{flag}"
            );
        }
        assert!(TemplateConfig::parse_flag(" ").is_err());
    }

    #[test]
    fn waits() {
        let ms = Duration::from_millis;
        let cases = [
            ("5s", Some((ms(5000), ms(20000)))),
            ("100ms:1s", Some((ms(100), ms(1000)))),
            ("0", Some((ms(0), ms(0)))),
            ("2s:1s", None),
            ("x", None),
            ("1s:2s:3s", None),
        ];
        for (s, want) in cases {
            assert_eq!(Wait::parse(s).ok().map(|w| (w.min, w.max)), want, "{s}");
        }
    }
}
