//! `sapora discover`: the search, and its output: the table people read and
//! the `--json` array scripts read.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::args::NetArgs;
use super::{CmdResult, ports};
use crate::client::discover::{DiscoverOptions, DiscoveredHost, discover};
use crate::proto::PROTOCOL_VERSION;
use crate::proto::text::visible;

/// One host as `sapora discover --json` prints it. `host_id` is a hex
/// string because JSON readers often hold numbers as doubles, which cannot
/// represent every u64.
pub fn host_to_json(h: &DiscoveredHost) -> serde_json::Value {
    serde_json::json!({
        "host_id": format!("{:016x}", h.host_id),
        "name": h.host_name,
        "address": h.addr.to_string(),
        "ip": h.addr.ip().to_string(),
        "port": h.addr.port(),
        "rooms": h.rooms.iter().map(|r| serde_json::json!({
            "name": r.name,
            "members": r.members,
        })).collect::<Vec<_>>(),
        "version": h.version,
        "compatible": h.is_compatible(),
        "owner": h.owner,
        "people": h.people(),
        "label": h.label(),
        "auto": h.auto,
    })
}

/// `hosts` as a JSON array (the output of `sapora discover --json`).
pub fn hosts_to_json(hosts: &[DiscoveredHost]) -> serde_json::Value {
    serde_json::Value::Array(hosts.iter().map(host_to_json).collect())
}

/// A human-readable table of `hosts`, or advice when there are none.
pub fn format_hosts(hosts: &[DiscoveredHost]) -> String {
    if hosts.is_empty() {
        return concat!(
            "No Sapora hosts found on the LAN.\n",
            "- Is a host running? Start one with `sapora host`.\n",
            "- A firewall may be blocking discovery: allow UDP port 5001 on the host.\n",
            "- You can always join by address: `sapora join <IP>`.\n",
        )
        .to_string();
    }
    let header = ["MEETING", "HOST", "ADDRESS", "ROOMS", "VERSION"].map(String::from);
    let rows: Vec<[String; 5]> = hosts
        .iter()
        .map(|h| {
            let rooms = if h.rooms.is_empty() {
                "-".to_string()
            } else {
                h.rooms
                    .iter()
                    .map(|r| format!("{} ({})", visible(&r.name), r.members))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let version = if h.is_compatible() {
                h.version.to_string()
            } else {
                format!("{} (incompatible: this build speaks {PROTOCOL_VERSION})", h.version)
            };
            [h.label(), visible(&h.host_name), h.addr.to_string(), rooms, version]
        })
        .collect();
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!(
        "Found {} Sapora host{}:\n\n",
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" }
    );
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
        }
        out.push_str("  ");
        // The last column needs no padding.
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[derive(Args)]
pub(crate) struct DiscoverArgs {
    /// Seconds to listen for answers
    #[arg(long, value_name = "SECS", default_value_t = 0.8)]
    pub(crate) timeout: f64,
    /// Print JSON instead of a table
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) net: NetArgs,
}

pub(crate) fn run(args: DiscoverArgs) -> CmdResult {
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 600.0) {
        return Err(format!("--timeout {} must be between 0 and 600 seconds", args.timeout));
    }
    let ports = ports(&args.net)?;
    let opts = DiscoverOptions {
        target: args.net.discovery_addr,
        port: ports.discovery,
        timeout: Duration::from_secs_f64(args.timeout),
    };
    let hosts = smol::block_on(discover(&opts))
        .map_err(|e| format!("cannot search the LAN (UDP port {}): {e}", ports.discovery))?;
    if args.json {
        println!("{}", hosts_to_json(&hosts));
    } else {
        print!("{}", format_hosts(&hosts));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::client::discover::HostTable;
    use crate::client::discover::core::tests::{beacon, src};

    #[test]
    fn format_lists_hosts_or_gives_advice() {
        let t0 = Instant::now();
        let mut table = HostTable::new();
        table.observe(
            t0,
            src("192.168.1.20:5001"),
            beacon(1, "lab-pc", "0.0.0.0", &[("default", 3), ("lab", 1)]),
        );
        let mut old = beacon(2, "evil\u{1b}[2Jname", "192.168.1.21", &[]);
        old.version = PROTOCOL_VERSION + 1;
        table.observe(t0, src("192.168.1.21:5001"), old);
        let text = format_hosts(&table.hosts());
        assert!(text.starts_with("Found 2 Sapora hosts:"), "{text}");
        assert!(text.contains("lab-pc"), "{text}");
        assert!(text.contains("192.168.1.20:5000"), "{text}");
        assert!(text.contains("default (3), lab (1)"), "{text}");
        assert!(text.contains("incompatible"), "{text}");
        assert!(text.contains("meeting on lab-pc · 4 people"), "{text}");
        assert!(!text.contains('\u{1b}'), "no escape sequence reaches the terminal: {text}");

        let none = format_hosts(&[]);
        assert!(none.contains("UDP port 5001"), "{none}");
        assert!(none.contains("sapora join"), "{none}");
    }

    #[test]
    fn json_view() {
        let mut table = HostTable::new();
        let mut b = beacon(0xAB, "h", "0.0.0.0", &[("default", 3)]);
        b.owner = Some("ana".into());
        table.observe(Instant::now(), src("10.1.2.3:5001"), b);
        let v = hosts_to_json(&table.hosts());
        assert_eq!(
            v,
            serde_json::json!([{
                "host_id": "00000000000000ab",
                "name": "h",
                "address": "10.1.2.3:5000",
                "ip": "10.1.2.3",
                "port": 5000,
                "rooms": [{"name": "default", "members": 3}],
                "version": PROTOCOL_VERSION,
                "compatible": true,
                "owner": "ana",
                "people": 3,
                "label": "ana's meeting · 3 people",
                "auto": false,
            }])
        );
    }
}
