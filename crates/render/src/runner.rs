//! The render loop. Every template is rendered against the last value of
//! each dependency it reads; a render with a dependency not read yet is
//! discarded (so nothing is written before all data arrived once). A
//! change schedules the templates reading it after their quiescence
//! `wait` (min after the last change, at most max after the first), so a
//! burst causes one render. Changed files are written atomically; the
//! commands of every template changed in one pass run once each, however
//! many templates share them. The `exec` child starts after the first
//! complete render and is signalled after each change.

use crate::command::{self, parse_signal, Child};
use crate::config::{Config, TemplateConfig, Wait};
use crate::error::{Error, Result};
use crate::funcs::{self, Brain, Context};
use crate::source::Source;
use crate::template::{MissingKey, Template, Value};
use crate::watch::{Update, Watcher};
use crate::write::{write_if_changed, WriteOptions, Written};
use nix::sys::signal::Signal;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How `shoal render` runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Render every template once (when all its data is there) and exit.
    pub once: bool,
    /// Print renders to stdout instead of writing; run no command.
    pub dry: bool,
}

/// Why the runner returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// The kill signal (SIGINT by default), or SIGTERM with no child.
    Stopped,
    /// The reload signal: read the configuration again and restart.
    Reload,
    /// `-once` finished.
    Done,
    /// The `exec` child exited with this code.
    Child(i32),
}

struct Tmpl {
    cfg: TemplateConfig,
    parsed: Template,
    used: BTreeSet<Dependency>,
    due: Option<Instant>,
    first_change: Option<Instant>,
    complete: bool,
}

use crate::deps::Dependency;

/// Reads and parses one template (its source path names it in errors).
fn load(cfg: &TemplateConfig) -> Result<Tmpl> {
    let (name, text) = match (&cfg.source, &cfg.contents) {
        (Some(src), _) => (
            src.display().to_string(),
            std::fs::read_to_string(src).map_err(Error::io(src))?,
        ),
        (None, Some(c)) => ("contents".to_string(), c.clone()),
        (None, None) => return Err(Error::config("template without source or contents")),
    };
    let missing = if cfg.error_on_missing_key {
        MissingKey::Error
    } else {
        MissingKey::Default
    };
    let parsed = Template::new(&name)
        .delims(&cfg.left_delimiter, &cfg.right_delimiter)
        .funcs(funcs::names())
        .missing_key(missing)
        .parse(&text)?;
    Ok(Tmpl {
        cfg: cfg.clone(),
        parsed,
        used: BTreeSet::new(),
        due: Some(Instant::now()),
        first_change: None,
        complete: false,
    })
}

/// The render loop over one configuration.
pub struct Runner {
    config: Config,
    templates: Vec<Tmpl>,
    brain: Arc<Brain>,
    watcher: Watcher,
    rx: mpsc::UnboundedReceiver<Update>,
    opts: Options,
    child: Option<Child>,
}

impl Runner {
    /// Parses every template (all errors at once) and prepares the watches.
    pub fn new(config: Config, source: Arc<dyn Source>, opts: Options) -> Result<Runner> {
        config.validate()?;
        let mut templates = Vec::new();
        let mut errors = Vec::new();
        for t in &config.templates {
            match load(t) {
                Ok(t) => templates.push(t),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(Error::Templates(errors.join("\n")));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Runner {
            config,
            templates,
            brain: Arc::new(Brain::new()),
            watcher: Watcher::new(source, tx),
            rx,
            opts,
            child: None,
        })
    }

    fn wait_of(&self, t: &TemplateConfig) -> Wait {
        t.wait.or(self.config.wait).unwrap_or_default()
    }

    /// Marks the templates reading any of `changed` as due after their wait.
    fn schedule(&mut self, changed: &BTreeSet<Dependency>) {
        let now = Instant::now();
        for i in 0..self.templates.len() {
            if self.templates[i].used.is_disjoint(changed) {
                continue;
            }
            let wait = if self.opts.once {
                Wait::default()
            } else {
                self.wait_of(&self.templates[i].cfg)
            };
            let t = &mut self.templates[i];
            let first = *t.first_change.get_or_insert(now);
            t.due = Some((now + wait.min).min(first + wait.max));
        }
    }

    /// Renders one template; `Ok(true)` when its destination changed.
    fn render(&mut self, i: usize) -> Result<bool> {
        let ctx = Rc::new(Context::new(self.brain.clone(), Vec::new()));
        let result = {
            let funcs = funcs::for_render(ctx.clone());
            self.templates[i].parsed.execute_with(&Value::Nil, &funcs)
        };
        let touched = ctx.touched();
        let t = &mut self.templates[i];
        t.used = touched.used;
        for dep in &t.used {
            self.watcher.ensure(dep);
        }
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                // The destination is left as it was.
                return Err(Error::Template(e));
            }
        };
        if !touched.missing.is_empty() {
            tracing::debug!(template = %t.cfg.display_name(), missing = touched.missing.len(), "render: waiting for data");
            return Ok(false);
        }
        t.complete = true;
        let dest = t.cfg.destination.clone().unwrap_or_default();
        let opts = WriteOptions {
            perms: t.cfg.perms,
            backup: t.cfg.backup,
            create_dest_dirs: t.cfg.create_dest_dirs,
        };
        let mut stdout = std::io::stdout();
        let dry: Option<&mut dyn std::io::Write> = if self.opts.dry {
            Some(&mut stdout)
        } else {
            None
        };
        let written = write_if_changed(&dest, out.as_bytes(), opts, dry)?;
        if written == Written::Changed {
            tracing::info!(destination = %dest.display(), "render: rendered");
        }
        Ok(written == Written::Changed)
    }

    /// Renders every due template, then runs the commands of the changed
    /// ones once each. Returns whether any destination changed.
    async fn render_due(&mut self) -> Result<bool> {
        let now = Instant::now();
        let mut commands: Vec<(Vec<String>, Duration)> = Vec::new();
        let mut any = false;
        for i in 0..self.templates.len() {
            if self.templates[i].due.is_none_or(|d| d > now) {
                continue;
            }
            self.templates[i].due = None;
            self.templates[i].first_change = None;
            match self.render(i) {
                Ok(true) => {
                    any = true;
                    let t = &self.templates[i].cfg;
                    if !t.command.is_empty() && !commands.iter().any(|(c, _)| *c == t.command) {
                        commands.push((t.command.clone(), t.command_timeout));
                    }
                }
                Ok(false) => {}
                Err(e) if self.opts.once => return Err(e),
                Err(e) => {
                    tracing::error!(template = %self.templates[i].cfg.display_name(), "render: {e}")
                }
            }
        }
        let used: BTreeSet<Dependency> = self
            .templates
            .iter()
            .flat_map(|t| t.used.iter().cloned())
            .collect();
        self.watcher.retain(|d| used.contains(d));
        if !self.opts.dry {
            for (cmd, timeout) in commands {
                if let Err(e) = command::run(&cmd, timeout).await {
                    tracing::error!("render: {e}");
                }
            }
        }
        Ok(any)
    }

    fn all_complete(&self) -> bool {
        self.templates.iter().all(|t| t.complete)
    }

    /// After a pass: start the child once everything rendered, signal it
    /// after later changes.
    async fn supervise(&mut self, changed: bool) -> Result<()> {
        let Some(exec) = self.config.exec.clone() else {
            return Ok(());
        };
        if self.opts.dry || !self.all_complete() {
            return Ok(());
        }
        let kill = parse_signal(exec.kill_signal.as_deref().unwrap_or("SIGTERM"))?;
        let timeout = exec.kill_timeout.unwrap_or(Duration::from_secs(30));
        match &self.child {
            None => self.child = Some(Child::start(&exec.command, kill, timeout)?),
            Some(child) if changed => match &exec.reload_signal {
                Some(sig) => child.signal(parse_signal(sig)?),
                None => {
                    // No reload signal: consul-template restarts the child,
                    // stopping the old one first (kill signal, then SIGKILL
                    // after the kill timeout).
                    if let Some(mut old) = self.child.take() {
                        let code = old.stop().await;
                        tracing::info!(code, "render: child stopped for a restart");
                    }
                    self.child = Some(Child::start(&exec.command, kill, timeout)?);
                }
            },
            Some(_) => {}
        }
        Ok(())
    }

    /// Runs until a signal, the end of `-once`, or the child's exit.
    ///
    /// Signals as consul-template treats them: the reload signal (SIGHUP)
    /// reloads, the kill signal (SIGINT) stops the child and returns
    /// [`Exit::Stopped`], every other watched signal goes to the `exec`
    /// child. SIGTERM with no child to forward it to stops too (consul-
    /// template would ignore it, which no service manager expects).
    pub async fn run(mut self) -> Result<Exit> {
        let reload = parse_signal(self.config.reload_signal.as_deref().unwrap_or("SIGHUP"))?;
        let kill = parse_signal(self.config.kill_signal.as_deref().unwrap_or("SIGINT"))?;
        let mut signals = Signals::new()?;
        loop {
            let next_due = self.templates.iter().filter_map(|t| t.due).min();
            let sleep = async {
                match next_due {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let child_exit = async {
                match self.child.as_mut() {
                    Some(c) => c.wait().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(first) = self.rx.recv() => {
                    let mut changed = BTreeSet::new();
                    let mut next = Some(first);
                    while let Some((dep, data)) = next {
                        Arc::make_mut(&mut self.brain).insert(dep.clone(), data);
                        changed.insert(dep);
                        next = self.rx.try_recv().ok();
                    }
                    self.schedule(&changed);
                }
                _ = sleep => {
                    let changed = self.render_due().await?;
                    if self.opts.once && self.all_complete() {
                        return Ok(Exit::Done);
                    }
                    self.supervise(changed).await?;
                }
                code = child_exit => {
                    tracing::info!(code, "render: child exited");
                    return Ok(Exit::Child(code));
                }
                sig = signals.next() => {
                    if sig == reload {
                        return Ok(self.stop(Exit::Reload).await);
                    }
                    if sig == kill || (sig == Signal::SIGTERM && self.child.is_none()) {
                        return Ok(self.stop(Exit::Stopped).await);
                    }
                    self.forward(sig);
                }
            }
        }
    }

    fn forward(&self, sig: Signal) {
        match &self.child {
            Some(c) => c.signal(sig),
            None => tracing::debug!(?sig, "render: signal ignored (no exec child)"),
        }
    }

    async fn stop(&mut self, why: Exit) -> Exit {
        if let Some(mut c) = self.child.take() {
            let code = c.stop().await;
            tracing::info!(code, "render: child stopped");
        }
        why
    }
}

/// The signals `shoal render` watches: reload, kill, and those it
/// forwards to the `exec` child.
struct Signals(Vec<(Signal, tokio::signal::unix::Signal)>);

impl Signals {
    fn new() -> Result<Signals> {
        let watched = [
            Signal::SIGHUP,
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
            Signal::SIGWINCH,
        ];
        let mut all = Vec::new();
        for sig in watched {
            let stream = signal(SignalKind::from_raw(sig as i32))
                .map_err(|e| Error::Command(format!("cannot watch {sig}: {e}")))?;
            all.push((sig, stream));
        }
        Ok(Signals(all))
    }

    /// The next signal received.
    async fn next(&mut self) -> Signal {
        let waits = self.0.iter_mut().map(|(sig, s)| {
            let sig = *sig;
            Box::pin(async move {
                s.recv().await;
                sig
            })
        });
        futures_select_all(waits).await
    }
}

/// The first of several futures to finish (tiny `select_all`).
async fn futures_select_all<F: std::future::Future<Output = Signal> + Unpin>(
    futs: impl IntoIterator<Item = F>,
) -> Signal {
    let mut futs: Vec<F> = futs.into_iter().collect();
    std::future::poll_fn(move |cx| {
        for f in futs.iter_mut() {
            if let std::task::Poll::Ready(s) = std::future::Future::poll(std::pin::Pin::new(f), cx)
            {
                return std::task::Poll::Ready(s);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
