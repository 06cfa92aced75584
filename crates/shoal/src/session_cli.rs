//! `shoal session list|destroy`: the sessions a registry holds.

use crate::client::Registry;
use crate::table;

/// `shoal session ...`
#[derive(clap::Subcommand, Debug)]
pub enum SessionCommand {
    /// List every session.
    List {
        #[command(flatten)]
        registry: Registry,
    },
    /// Destroy (invalidate) a session: its locks are released.
    Destroy {
        /// Session ID.
        id: String,
        #[command(flatten)]
        registry: Registry,
    },
}

/// Runs a `session` subcommand.
pub async fn run(cmd: SessionCommand) -> anyhow::Result<()> {
    match cmd {
        SessionCommand::List { registry } => {
            let sessions = registry.coord()?.session_list().await?;
            if registry.json() {
                println!("{}", serde_json::to_string_pretty(&sessions)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = sessions
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.name.clone(),
                        s.node.clone(),
                        if s.ttl.is_empty() {
                            "-".into()
                        } else {
                            s.ttl.clone()
                        },
                        format!("{:?}", s.behavior).to_lowercase(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(&["ID", "NAME", "NODE", "TTL", "BEHAVIOR"], &rows)
            );
        }
        SessionCommand::Destroy { id, registry } => {
            registry.coord()?.session_destroy(&id).await?;
            println!("destroyed {id}");
        }
    }
    Ok(())
}
