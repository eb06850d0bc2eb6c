//! `sapora send`, `sapora files` and `sapora fetch`: one-off file commands
//! that join a meeting, do one thing, and leave.

use std::process::ExitCode;

use clap::Args;

use super::args::{NetArgs, PasscodeArg};
use super::{CmdResult, EXIT_PASSCODE, parse_host, ports, user_name};
use crate::client::files_cli;

#[derive(Args)]
pub(crate) struct VisitArgs {
    /// Host address: ip or ip:port
    #[arg(value_name = "HOST")]
    pub(crate) host: String,
    /// Meeting (room); blank = "default"
    #[arg(long, value_name = "NAME", default_value = "")]
    pub(crate) room: String,
    /// Your name in the meeting (default: your login name)
    #[arg(long = "as", value_name = "NAME")]
    pub(crate) as_name: Option<String>,
    #[command(flatten)]
    pub(crate) net: NetArgs,
    #[command(flatten)]
    pub(crate) passcode: PasscodeArg,
}

#[derive(Args)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    pub(crate) visit: VisitArgs,
    /// The file to share
    #[arg(value_name = "FILE")]
    pub(crate) file: std::path::PathBuf,
    /// Share privately with this member only
    #[arg(long, value_name = "NAME")]
    pub(crate) to: Option<String>,
    /// The name others see (default: the file's name)
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
}

#[derive(Args)]
pub(crate) struct FilesArgs {
    #[command(flatten)]
    pub(crate) visit: VisitArgs,
}

#[derive(Args)]
pub(crate) struct FetchArgs {
    #[command(flatten)]
    pub(crate) visit: VisitArgs,
    /// The file's id (from `sapora files` or the offer)
    #[arg(value_name = "ID")]
    pub(crate) id: u64,
    /// Where to save it: a file, or a folder (default: here, under its name)
    #[arg(short, long, value_name = "PATH")]
    pub(crate) output: Option<std::path::PathBuf>,
}

pub(crate) fn visit(v: VisitArgs) -> Result<files_cli::Visit, String> {
    let host = parse_host(&v.host, ports(&v.net)?.control)?;
    Ok(files_cli::Visit {
        host,
        name: v.as_name.unwrap_or_else(user_name),
        room: v.room,
        passcode: v.passcode.get()?,
        passcode_refused: Default::default(),
    })
}

/// A one-off file command's outcome: its line, or its error with the
/// passcode refusal's own exit code.
pub(crate) fn visit_done(
    r: Result<String, String>,
    refused: &std::sync::atomic::AtomicBool,
) -> CmdResult {
    match r {
        Err(e) if refused.load(std::sync::atomic::Ordering::Relaxed) => {
            eprintln!("sapora: {e}");
            Ok(ExitCode::from(EXIT_PASSCODE))
        }
        r => print_line(r),
    }
}

pub(crate) fn print_line(r: Result<String, String>) -> CmdResult {
    println!("{}", r?);
    Ok(ExitCode::SUCCESS)
}

/// `sapora send`: shares a file with the meeting or one member.
pub(crate) fn send(a: SendArgs) -> CmdResult {
    visit(a.visit).and_then(|v| {
        let refused = v.passcode_refused.clone();
        visit_done(files_cli::send(v, a.file, a.to, a.name), &refused)
    })
}

/// `sapora files`: lists the files the visitor may fetch.
pub(crate) fn list(a: FilesArgs) -> CmdResult {
    visit(a.visit).and_then(|v| {
        let refused = v.passcode_refused.clone();
        visit_done(files_cli::list(v), &refused)
    })
}

/// `sapora fetch`: downloads one shared file.
pub(crate) fn fetch(a: FetchArgs) -> CmdResult {
    visit(a.visit).and_then(|v| {
        let refused = v.passcode_refused.clone();
        visit_done(files_cli::fetch(v, a.id, a.output), &refused)
    })
}
