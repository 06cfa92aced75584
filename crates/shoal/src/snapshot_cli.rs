//! `shoal snapshot save FILE` / `shoal snapshot restore FILE`: the whole
//! catalog and KV through `/v1/snapshot`, from any store to any store
//! (embedded ↔ etcd), Create/ModifyIndex kept.

use anyhow::{bail, Context};
use std::path::PathBuf;

/// `shoal snapshot ...`
#[derive(clap::Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Save the server's whole catalog and KV to FILE.
    Save {
        file: PathBuf,
        #[command(flatten)]
        registry: crate::client::Registry,
    },
    /// Replace the server's whole catalog and KV by FILE's.
    Restore {
        file: PathBuf,
        #[command(flatten)]
        registry: crate::client::Registry,
    },
}

pub async fn run(cmd: SnapshotCommand) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Save { file, registry } => {
            let http = registry.http_client()?;
            let url = format!("{}/v1/snapshot", registry.url());
            let resp = registry
                .authorize(http.get(&url))
                .send()
                .await
                .with_context(|| format!("GET {url}"))?;
            let status = resp.status();
            let body = resp.bytes().await.context("reading the snapshot")?;
            if !status.is_success() {
                bail!("{url}: {status}: {}", String::from_utf8_lossy(&body).trim());
            }
            // Written beside and renamed: a failed save leaves no half file.
            let tmp = file.with_extension("partial");
            std::fs::write(&tmp, &body)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, &file)
                .with_context(|| format!("cannot write {}", file.display()))?;
            println!(
                "Saved snapshot to {} ({} bytes)",
                file.display(),
                body.len()
            );
        }
        SnapshotCommand::Restore { file, registry } => {
            let http = registry.http_client()?;
            let body =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let url = format!("{}/v1/snapshot", registry.url());
            let resp = registry
                .authorize(http.put(&url).body(body))
                .send()
                .await
                .with_context(|| format!("PUT {url}"))?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                bail!("{url}: {status}: {}", text.trim());
            }
            println!("Restored snapshot from {}", file.display());
        }
    }
    Ok(())
}
