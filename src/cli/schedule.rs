//! `sapora schedule add|list|edit|rm`: the meeting planner, and the
//! column-aligned table `list` prints.

use std::process::ExitCode;

use clap::Subcommand;

use super::CmdResult;
use crate::schedule::{Meeting, MeetingEdit, Store, parse_start};

/// Titles longer than this are shortened in the table only.
const TABLE_TITLE_CHARS: usize = 40;

/// A human-readable, column-aligned table for `sapora schedule list`, without
/// a trailing newline (print it with `println!`).
pub fn format_table(meetings: &[Meeting]) -> String {
    if meetings.is_empty() {
        return "No scheduled meetings. Add one with: \
                sapora schedule add --id ID --title T --start 2026-11-21T14:30"
            .to_string();
    }
    let header = ["ID", "TITLE", "START", "DURATION", "HOST"].map(str::to_string);
    let rows: Vec<[String; 5]> = meetings
        .iter()
        .map(|m| {
            [
                m.id.clone(),
                shorten(&m.title, TABLE_TITLE_CHARS),
                display_start(&m.start),
                display_duration(m.duration_min),
                m.host.clone().unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();

    // Widths in chars: good enough for the usual scripts; East Asian wide
    // characters may misalign slightly.
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }

    let mut lines = Vec::with_capacity(rows.len() + 1);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            // No padding after the last column: no trailing spaces.
            if i + 1 < row.len() {
                line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
            }
        }
        lines.push(line);
    }
    lines.join("\n")
}

/// `2026-11-21 10:00 +01:00`: easier to read than RFC 3339 but keeps the
/// offset. Falls back to the raw string if it somehow doesn't parse.
fn display_start(start: &str) -> String {
    match parse_start(start) {
        Ok(z) if z.second() == 0 => z.strftime("%Y-%m-%d %H:%M %:z").to_string(),
        Ok(z) => z.strftime("%Y-%m-%d %H:%M:%S %:z").to_string(),
        Err(_) => start.to_string(),
    }
}

/// `45m`, `1h`, `1h 30m`.
fn display_duration(min: u32) -> String {
    match (min / 60, min % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h {m}m"),
    }
}

/// Cuts `s` to at most `max` chars, marking the cut with an ellipsis.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[derive(Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Schedule a meeting (its id is also its room)
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        title: String,
        /// ISO 8601, e.g. 2026-11-21T14:30 (local time) or 2026-11-21T14:30:00+01:00
        #[arg(long)]
        start: String,
        /// Minutes
        #[arg(long, default_value_t = 60)]
        duration: u32,
        /// Host address (ip or ip:port)
        #[arg(long)]
        host: Option<String>,
    },
    /// List scheduled meetings
    List {
        #[arg(long)]
        json: bool,
    },
    /// Change a scheduled meeting
    Edit {
        id: String,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        duration: Option<u32>,
        /// New host address; an empty string removes it
        #[arg(long)]
        host: Option<String>,
    },
    /// Delete a scheduled meeting
    Rm { id: String },
}

pub(crate) fn run(cmd: ScheduleCommand) -> CmdResult {
    let store = Store::open_default().map_err(|e| e.to_string())?;
    let err = |e: crate::schedule::ScheduleError| e.to_string();
    match cmd {
        ScheduleCommand::Add { id, title, start, duration, host } => {
            let mut m = Meeting::new(id, title, start);
            m.duration_min = duration;
            m.host = host;
            let m = store.add(m).map_err(err)?;
            println!(
                "Scheduled \"{}\" ({}) at {}. Join it with: sapora join --meeting {}",
                m.title, m.id, m.start, m.id
            );
        }
        ScheduleCommand::List { json } => {
            let list = store.list().map_err(err)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?);
            } else {
                println!("{}", format_table(&list));
            }
        }
        ScheduleCommand::Edit { id, title, start, duration, host } => {
            let edit = MeetingEdit {
                title,
                start,
                duration_min: duration,
                host: host.map(|h| Some(h).filter(|h| !h.trim().is_empty())),
            };
            let m = store.edit(&id, edit).map_err(err)?;
            println!(
                "Updated \"{}\" ({}): starts {}, {} min, host {}",
                m.title,
                m.id,
                m.start,
                m.duration_min,
                m.host.as_deref().unwrap_or("-")
            );
        }
        ScheduleCommand::Rm { id } => {
            let m = store.remove(&id).map_err(err)?;
            println!("Removed \"{}\" ({}).", m.title, m.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meeting(id: &str, start: &str) -> Meeting {
        Meeting::new(id, format!("Title of {id}"), start)
    }

    #[test]
    fn table_formatting() {
        let empty = format_table(&[]);
        assert!(empty.contains("No scheduled meetings"), "{empty}");
        assert!(
            empty.contains("sapora schedule add --id ID --title T --start 2026-11-21T14:30"),
            "{empty}"
        );

        let mut a = meeting("standup", "2026-11-21T10:00:00+01:00");
        a.title = "Daily standup".to_string();
        a.duration_min = 90;
        a.host = Some("192.168.1.20:7000".to_string());
        let mut b = meeting("retro-long-id", "2026-11-22T16:30:15Z");
        b.title = "x".repeat(60);
        b.duration_min = 45;
        let table = format_table(&[a, b]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("ID"), "{table}");
        // Columns line up: each header starts where its values start.
        for (col, value_in_a, value_in_b) in [
            ("TITLE", "Daily standup", "xxx"),
            ("START", "2026-11-21 10:00 +01:00", "2026-11-22 16:30:15 +00:00"),
            ("DURATION", "1h 30m", "45m"),
            ("HOST", "192.168.1.20:7000", "-"),
        ] {
            // Compare in chars, not bytes: the ellipsis is multi-byte.
            let at = lines[0].find(col).unwrap();
            let from_col = |line: &str| line.chars().skip(at).collect::<String>();
            let before_col = |line: &str| line.chars().nth(at - 1);
            for (line, value) in [(lines[1], value_in_a), (lines[2], value_in_b)] {
                assert!(from_col(line).starts_with(value), "{col}\n{table}");
                assert_eq!(before_col(line), Some(' '), "{col}\n{table}");
            }
        }
        // Long titles are shortened; no trailing whitespace anywhere.
        assert!(lines[2].contains('…'), "{table}");
        assert!(!lines[2].contains(&"x".repeat(41)), "{table}");
        assert!(lines.iter().all(|l| l == &l.trim_end()), "{table:?}");
    }

    #[test]
    fn duration_display() {
        assert_eq!(display_duration(1), "1m");
        assert_eq!(display_duration(60), "1h");
        assert_eq!(display_duration(61), "1h 1m");
        assert_eq!(display_duration(1440), "24h");
    }
}
