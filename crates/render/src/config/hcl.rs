//! consul-template's HCL configuration files, read with `hcl-rs`: the
//! keys shoal acts on are mapped; every unknown key and every wrong value
//! is reported at once with the file it is in. Strings are taken
//! literally (HCL1 has no `${}` interpolation, and templates in
//! `contents` are full of braces).

use super::{Config, ExecConfig, TemplateConfig, Wait};
use crate::error::{Error, Result};
use hcl::{Block, Body, Expression, Structure, TemplateExpr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Collects errors while walking one file.
struct Walk<'a> {
    file: &'a Path,
    errors: Vec<String>,
}

impl Walk<'_> {
    fn err(&mut self, msg: String) {
        self.errors.push(format!("{}: {msg}", self.file.display()));
    }

    fn string(&mut self, key: &str, e: &Expression) -> Option<String> {
        match e {
            Expression::String(s) => Some(s.clone()),
            Expression::TemplateExpr(t) => Some(match &**t {
                TemplateExpr::QuotedString(s) => s.clone(),
                TemplateExpr::Heredoc(h) => h.template.clone(),
            }),
            Expression::Number(n) => Some(n.to_string()),
            Expression::Bool(b) => Some(b.to_string()),
            _ => {
                self.err(format!("{key}: expected a string"));
                None
            }
        }
    }

    fn bool(&mut self, key: &str, e: &Expression) -> Option<bool> {
        match e {
            Expression::Bool(b) => Some(*b),
            other => match self.string(key, other).as_deref() {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => {
                    self.err(format!("{key}: expected true or false"));
                    None
                }
            },
        }
    }

    fn duration(&mut self, key: &str, e: &Expression) -> Option<Duration> {
        let s = self.string(key, e)?;
        match shoal_catalog::duration::parse(&s) {
            Ok(d) => Some(d),
            Err(err) => {
                self.err(format!("{key}: {err}"));
                None
            }
        }
    }

    fn strings(&mut self, key: &str, e: &Expression) -> Vec<String> {
        match e {
            Expression::Array(items) => items.iter().filter_map(|i| self.string(key, i)).collect(),
            other => self.string(key, other).into_iter().collect(),
        }
    }

    /// `perms = 0644` or `"0644"`: octal, as users write file modes.
    fn perms(&mut self, e: &Expression) -> Option<u32> {
        let s = self.string("perms", e)?;
        match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
            Ok(p) if p <= 0o7777 => Some(p),
            _ => {
                self.err(format!("perms: {s:?} is not an octal file mode"));
                None
            }
        }
    }

    fn wait(&mut self, e: &Expression) -> Option<Wait> {
        let s = self.string("wait", e)?;
        match Wait::parse(&s) {
            Ok(w) => Some(w),
            Err(err) => {
                self.err(err.to_string());
                None
            }
        }
    }

    fn wait_block(&mut self, body: &Body) -> Option<Wait> {
        let (mut min, mut max) = (None, None);
        for a in body.attributes() {
            match a.key.as_str() {
                "min" => min = self.duration("wait.min", &a.expr),
                "max" => max = self.duration("wait.max", &a.expr),
                "enabled" => {}
                other => self.err(format!("wait: unknown key {other:?}")),
            }
        }
        let min = min.unwrap_or_default();
        Some(Wait {
            min,
            max: max.unwrap_or(min * 4),
        })
    }

    fn template(&mut self, body: &Body) -> TemplateConfig {
        let mut t = TemplateConfig::default();
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => {
                    let e = &a.expr;
                    match a.key.as_str() {
                        "source" => t.source = self.string("source", e).map(PathBuf::from),
                        "destination" => {
                            t.destination = self.string("destination", e).map(PathBuf::from)
                        }
                        "contents" => t.contents = self.string("contents", e),
                        "command" => t.command = self.strings("command", e),
                        "command_timeout" => {
                            if let Some(d) = self.duration("command_timeout", e) {
                                t.command_timeout = d;
                            }
                        }
                        "perms" => t.perms = self.perms(e),
                        "backup" => t.backup = self.bool("backup", e).unwrap_or(false),
                        "left_delimiter" => {
                            t.left_delimiter = self.string("left_delimiter", e).unwrap_or_default()
                        }
                        "right_delimiter" => {
                            t.right_delimiter =
                                self.string("right_delimiter", e).unwrap_or_default()
                        }
                        "wait" => t.wait = self.wait(e),
                        "error_on_missing_key" => {
                            t.error_on_missing_key =
                                self.bool("error_on_missing_key", e).unwrap_or(false)
                        }
                        "create_dest_dirs" => {
                            t.create_dest_dirs = self.bool("create_dest_dirs", e).unwrap_or(true)
                        }
                        // Accepted and without effect here (documented in the help).
                        "error_fatal" | "user" | "group" | "uid" | "gid" | "sandbox_path"
                        | "function_denylist" => {}
                        other => self.err(format!("template: unknown key {other:?}")),
                    }
                }
                Structure::Block(b) if b.identifier.as_str() == "wait" => {
                    t.wait = self.wait_block(&b.body)
                }
                Structure::Block(b) => self.err(format!(
                    "template: unknown block {:?}",
                    b.identifier.as_str()
                )),
            }
        }
        t
    }

    fn exec(&mut self, body: &Body) -> ExecConfig {
        let mut x = ExecConfig::default();
        for a in body.attributes() {
            let e = &a.expr;
            match a.key.as_str() {
                "command" => x.command = self.strings("exec.command", e),
                "reload_signal" => x.reload_signal = self.string("exec.reload_signal", e),
                "kill_signal" => x.kill_signal = self.string("exec.kill_signal", e),
                "kill_timeout" => x.kill_timeout = self.duration("exec.kill_timeout", e),
                "splay" | "enabled" | "env" | "timeout" => {}
                other => self.err(format!("exec: unknown key {other:?}")),
            }
        }
        x
    }

    fn block(&mut self, config: &mut Config, b: &Block) {
        match b.identifier.as_str() {
            "template" => config.templates.push(self.template(&b.body)),
            "exec" => config.exec = Some(self.exec(&b.body)),
            "wait" => config.wait = self.wait_block(&b.body),
            "consul" => {
                for a in b.body.attributes() {
                    match a.key.as_str() {
                        "address" => config.consul.address = self.string("consul.address", &a.expr),
                        "token" => config.consul.token = self.string("consul.token", &a.expr),
                        "retry" | "ssl" | "auth" | "transport" | "namespace" => {}
                        other => self.err(format!("consul: unknown key {other:?}")),
                    }
                }
            }
            // Blocks of features shoal has no use for.
            "syslog" | "deduplicate" | "log_file" | "retry" | "transport" | "ssl" | "auth" => {}
            "vault" | "nomad" => self.err(format!(
                "{}: not supported by shoal render",
                b.identifier.as_str()
            )),
            other => self.err(format!("unknown block {other:?}")),
        }
    }
}

/// Parses one consul-template HCL file (`file` names it in errors).
pub fn parse_hcl(text: &str, file: &Path) -> Result<Config> {
    let body: Body =
        hcl::parse(text).map_err(|e| Error::config(format!("{}: {e}", file.display())))?;
    let mut w = Walk {
        file,
        errors: Vec::new(),
    };
    let mut config = Config::default();
    for s in body.iter() {
        match s {
            Structure::Block(b) => w.block(&mut config, b),
            Structure::Attribute(a) => {
                let e = &a.expr;
                match a.key.as_str() {
                    "wait" => config.wait = w.wait(e),
                    "kill_signal" => config.kill_signal = w.string("kill_signal", e),
                    "reload_signal" => config.reload_signal = w.string("reload_signal", e),
                    "max_stale" => config.max_stale = w.duration("max_stale", e),
                    "log_level" => config.log_level = w.string("log_level", e),
                    "pid_file" => config.pid_file = w.string("pid_file", e).map(PathBuf::from),
                    "consul" => config.consul.address = w.string("consul", e),
                    "token" => config.consul.token = w.string("token", e),
                    "syslog" | "deduplicate" | "template_error_fatal" | "block_query_wait" => {}
                    other => w.err(format!("unknown key {other:?}")),
                }
            }
        }
    }
    if w.errors.is_empty() {
        Ok(config)
    } else {
        Err(Error::config(w.errors.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_consul_template_config() {
        let text = r#"
consul {
  address = "127.0.0.1:8500"
  token   = "abc"
}
wait {
  min = "2s"
  max = "10s"
}
reload_signal = "SIGHUP"
kill_signal   = "SIGINT"
max_stale     = "10m"
log_level     = "warn"
pid_file      = "/tmp/ct.pid"

template {
  source          = "/etc/ct/nginx.ctmpl"
  destination     = "/etc/nginx/conf.d/app.conf"
  command         = "nginx -s reload"
  command_timeout = "60s"
  perms           = 0640
  backup          = true
  wait            = "1s:3s"
  left_delimiter  = "[["
  right_delimiter = "]]"
}

template {
  contents    = "{{ key \"a\" }} ${x}"
  destination = "/tmp/b"
  create_dest_dirs = false
  error_on_missing_key = true
  wait {
    min = "500ms"
  }
}

exec {
  command       = ["/bin/app", "-x"]
  reload_signal = "SIGUSR1"
  kill_signal   = "SIGTERM"
  kill_timeout  = "5s"
}
"#;
        let c = parse_hcl(text, Path::new("t.hcl")).unwrap();
        assert_eq!(c.consul.address.as_deref(), Some("127.0.0.1:8500"));
        assert_eq!(c.consul.token.as_deref(), Some("abc"));
        assert_eq!(
            c.wait,
            Some(Wait {
                min: Duration::from_secs(2),
                max: Duration::from_secs(10)
            })
        );
        assert_eq!(c.templates.len(), 2);
        let t = &c.templates[0];
        assert_eq!(t.command, ["nginx -s reload"]);
        assert_eq!(t.perms, Some(0o640));
        assert!(t.backup);
        assert_eq!(t.command_timeout, Duration::from_secs(60));
        assert_eq!(t.left_delimiter, "[[");
        assert_eq!(
            t.wait,
            Some(Wait {
                min: Duration::from_secs(1),
                max: Duration::from_secs(3)
            })
        );
        let t2 = &c.templates[1];
        assert_eq!(t2.contents.as_deref(), Some("{{ key \"a\" }} ${x}"));
        assert!(!t2.create_dest_dirs && t2.error_on_missing_key);
        assert_eq!(
            t2.wait,
            Some(Wait {
                min: Duration::from_millis(500),
                max: Duration::from_secs(2)
            })
        );
        let x = c.exec.unwrap();
        assert_eq!(x.command, ["/bin/app", "-x"]);
        assert_eq!(x.reload_signal.as_deref(), Some("SIGUSR1"));
    }

    #[test]
    fn every_error_is_reported_with_the_file() {
        let text = "bogus = 1\ntemplate {\n  perms = \"999\"\n  nope = true\n}\nvault {}\n";
        let err = parse_hcl(text, Path::new("c.hcl")).unwrap_err().to_string();
        for part in [
            "c.hcl: unknown key \"bogus\"",
            "perms",
            "unknown key \"nope\"",
            "vault: not supported",
        ] {
            assert!(err.contains(part), "{err} lacks {part}");
        }
        assert!(parse_hcl("template {", Path::new("x.hcl"))
            .unwrap_err()
            .to_string()
            .starts_with("x.hcl:"));
    }
}
