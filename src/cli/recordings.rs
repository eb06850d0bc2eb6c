//! `sapora recordings`: the recorded meetings in a folder.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{CmdResult, uptime};

#[derive(Args)]
pub(crate) struct RecordingsArgs {
    /// Folder to look in (default: where `sapora host` records, ~/.local/share/sapora/recordings)
    #[arg(value_name = "DIR")]
    pub(crate) dir: Option<std::path::PathBuf>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn run(args: RecordingsArgs) -> CmdResult {
    let dir = args.dir.unwrap_or_else(crate::server::record::default_dir);
    let list = match crate::server::record::list(&dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("No recordings in {}.", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!("Recordings in {}:", dir.display());
    for r in list {
        let name = r.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let secs = r.seconds.map_or("?".to_string(), |s| uptime(Duration::from_secs_f64(s)));
        println!("  {name}  {secs}  {} KiB  {} chat line(s)", r.bytes / 1024, r.chat_lines);
    }
    Ok(ExitCode::SUCCESS)
}
