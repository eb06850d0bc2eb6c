//! A simulated LAN for integration tests: `scripts/lan.sh --hold` builds N
//! machines (network namespaces m1..mN, 10.77.0.K/24 on a bridge) inside one
//! private `unshare --net --mount`; [`Lan::command`] runs a program on one of
//! them with `nsenter` + `ip netns exec`. Dropping the [`Lan`] ends the
//! holder, and with it every namespace and mount it made. Nothing is ever
//! sent outside those namespaces.
//!
//! Where namespaces cannot be made (no root, no iproute2/nftables),
//! [`Lan::new`] returns `None` after printing why, and the test skips.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the LAN looks like (see `scripts/lan.sh` for each option).
#[derive(Debug, Clone, Default)]
pub struct LanOptions {
    pub machines: usize,
    /// A default route via a router address; `false` = no default route.
    pub gateway: bool,
    /// A dummy `vpn0` holds the default route on every machine.
    pub vpn: bool,
    /// A second bridge and subnet (10.78.0.K/24 on eth1).
    pub second: bool,
    /// `(machine, "5000")`: nftables drops incoming UDP to those ports.
    pub drop_udp: Vec<(usize, String)>,
}

impl LanOptions {
    pub fn machines(n: usize) -> LanOptions {
        LanOptions { machines: n, ..LanOptions::default() }
    }
}

pub struct Lan {
    holder: Child,
    pid: u32,
    /// Programs started on machines; killed when the LAN goes.
    children: Vec<Child>,
}

/// The address machine `k` has on the first subnet.
pub fn addr(k: usize) -> String {
    format!("10.77.0.{k}")
}

impl Lan {
    /// Builds the LAN, or says why it cannot and returns `None`.
    pub fn new(opts: &LanOptions) -> Option<Lan> {
        super::isolate();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lan.sh");
        for tool in ["unshare", "nsenter", "ip"] {
            if !on_path(tool) {
                eprintln!("SKIP: `{tool}` not found: run scripts/setup.sh (util-linux, iproute2)");
                return None;
            }
        }
        if !opts.drop_udp.is_empty() && !on_path("nft") {
            eprintln!("SKIP: `nft` not found: run scripts/setup.sh (nftables)");
            return None;
        }
        let mut cmd = Command::new("bash");
        cmd.arg(script).args(["-n", &opts.machines.to_string(), "--hold"]);
        if opts.gateway {
            cmd.arg("--gateway");
        }
        if opts.vpn {
            cmd.arg("--vpn");
        }
        if opts.second {
            cmd.arg("--second");
        }
        for (k, ports) in &opts.drop_udp {
            cmd.args(["--drop-udp", &format!("{k}:{ports}")]);
        }
        let mut holder = match cmd
            .env_remove("SAPORA_LAN_INSIDE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("SKIP: cannot run {script}: {e}");
                return None;
            }
        };
        let stdout = holder.stdout.take().expect("piped");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let Some(pid) = line.trim().strip_prefix("READY ").and_then(|p| p.parse::<u32>().ok())
        else {
            let _ = holder.kill();
            let out = holder.wait_with_output().ok();
            let err = out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned());
            eprintln!(
                "SKIP: cannot build a LAN of network namespaces here (needs root or CAP_SYS_ADMIN): {}",
                err.unwrap_or_default().trim()
            );
            return None;
        };
        Some(Lan { holder, pid, children: Vec::new() })
    }

    /// `program args…` on machine `k` (1-based), with a clean environment for
    /// discovery (no test-wide `SAPORA_DISCOVERY_ADDR`, no display).
    pub fn command(&self, k: usize, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.pid.to_string(), "-m", "-n", "--", "ip", "netns", "exec"])
            .arg(format!("m{k}"))
            .arg(program)
            .env_remove("SAPORA_DISCOVERY_ADDR")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
        c
    }

    /// Runs a shell command in the LAN's outer namespace (where the bridge is).
    pub fn outer(&self, script: &str) -> std::process::Output {
        Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-n", "--", "sh", "-c", script])
            .output()
            .expect("nsenter runs")
    }

    /// Starts `cmd` and keeps it until the LAN is dropped.
    pub fn spawn(&mut self, mut cmd: Command) -> &mut Child {
        let child = cmd.spawn().expect("starts on the LAN");
        self.children.push(child);
        self.children.last_mut().expect("just pushed")
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Closing its stdin lets the holder exit; the namespaces go with it.
        drop(self.holder.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.holder.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Reads `child`'s stdout lines on a thread; the receiver yields them.
pub fn lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    match child.stdout.take() {
        Some(out) => lines_of(out),
        None => std::sync::mpsc::channel().1,
    }
}

/// Reads lines from `r` (a child's stdout or stderr) on a thread.
pub fn lines_of(r: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line matching `pick` until `within` passes; returns it, or
/// panics with everything seen (no test hangs).
pub fn expect_line(
    rx: &std::sync::mpsc::Receiver<String>,
    within: Duration,
    what: &str,
    pick: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if pick(&l) => return l,
            Ok(l) => seen.push(l),
            Err(_) => panic!("no line with {what} within {within:?}; saw:\n{}", seen.join("\n")),
        }
    }
}
