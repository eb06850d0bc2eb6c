//! `sapora`: the one binary. Sets up logging (`SAPORA_LOG`, default `warn`,
//! on standard error) and hands the parsed command line to
//! [`sapora::cli::run`], which runs the subcommand and picks the exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SAPORA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    sapora::cli::run(sapora::cli::Cli::parse())
}
