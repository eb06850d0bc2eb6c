//! What the command line prints for people and scripts: tables and JSON
//! built from the library's types. The argument parsing and the commands
//! themselves are in `main.rs`; nothing below `cli` formats for a terminal.

pub mod discover;
pub mod schedule;
