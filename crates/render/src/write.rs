//! Writing a destination as consul-template does: only when the content
//! differs, atomically (a temporary file in the same directory, synced,
//! then renamed over), with the requested mode (else the existing file's,
//! else 0644), an optional `DEST.bak` of the previous file, and `-dry`
//! printing `> DEST` and the content instead.

use crate::error::{Error, Result};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// How to write one destination.
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions {
    /// File mode; `None` keeps the existing file's (0644 for a new one).
    pub perms: Option<u32>,
    /// Keep the previous file as `DEST.bak`.
    pub backup: bool,
    /// Create missing parent directories.
    pub create_dest_dirs: bool,
}

/// Mode of a new file when no `perms` are given.
const DEFAULT_PERMS: u32 = 0o644;

/// What happened to the destination.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// It already held exactly this content.
    Unchanged,
    /// It was (or, with `-dry`, would have been) replaced.
    Changed,
}

/// Writes `contents` to `path` if it differs; with `dry`, prints instead.
pub fn write_if_changed(
    path: &Path,
    contents: &[u8],
    opts: WriteOptions,
    dry: Option<&mut dyn Write>,
) -> Result<Written> {
    let existing = match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(path)(e)),
    };
    if existing.as_deref() == Some(contents) {
        return Ok(Written::Unchanged);
    }
    if let Some(out) = dry {
        let mut text = format!("> {}\n", path.display()).into_bytes();
        text.extend_from_slice(contents);
        out.write_all(&text).map_err(Error::io("stdout"))?;
        out.flush().map_err(Error::io("stdout"))?;
        return Ok(Written::Changed);
    }
    atomic_write(path, contents, opts, existing.is_some())?;
    Ok(Written::Changed)
}

fn atomic_write(path: &Path, contents: &[u8], opts: WriteOptions, exists: bool) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !parent.exists() {
        if !opts.create_dest_dirs {
            return Err(Error::Io {
                path: parent,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "parent directory does not exist (create_dest_dirs is false)",
                ),
            });
        }
        std::fs::create_dir_all(&parent).map_err(Error::io(&parent))?;
    }
    let mode = match (opts.perms, exists) {
        (Some(p), _) => p,
        (None, true) => std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(DEFAULT_PERMS),
        (None, false) => DEFAULT_PERMS,
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("dest");
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        if opts.backup && exists {
            let bak = append(path, ".bak");
            let _ = std::fs::remove_file(&bak);
            if let Err(e) = std::fs::hard_link(path, &bak) {
                tracing::warn!(path = %path.display(), error = %e, "render: could not back up");
            }
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(Error::io(path))
}

fn append(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    s.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_changes_atomically_with_perms_and_backup() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/out.conf");
        let opts = WriteOptions {
            perms: None,
            backup: true,
            create_dest_dirs: true,
        };
        assert_eq!(
            write_if_changed(&dest, b"one", opts, None).unwrap(),
            Written::Changed
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dest), 0o644);
        assert_eq!(
            write_if_changed(&dest, b"one", opts, None).unwrap(),
            Written::Unchanged
        );
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            write_if_changed(&dest, b"two", opts, None).unwrap(),
            Written::Changed
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"two");
        assert_eq!(mode(&dest), 0o600, "the existing mode is kept");
        assert_eq!(
            std::fs::read(dir.path().join("sub/out.conf.bak")).unwrap(),
            b"one"
        );
        let strict = WriteOptions {
            perms: Some(0o640),
            ..opts
        };
        write_if_changed(&dest, b"three", strict, None).unwrap();
        assert_eq!(mode(&dest), 0o640);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "no temporary file left: {leftovers:?}");
    }

    #[test]
    fn dry_prints_dest_then_content_and_leaves_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let mut out = Vec::new();
        let opts = WriteOptions {
            perms: None,
            backup: false,
            create_dest_dirs: false,
        };
        write_if_changed(&dest, b"x\n", opts, Some(&mut out)).unwrap();
        assert_eq!(out, format!("> {}\nx\n", dest.display()).as_bytes());
        assert!(!dest.exists());
        let missing = dir.path().join("no/such/out");
        assert!(write_if_changed(&missing, b"x", opts, None).is_err());
    }
}
