//! `sapora send`, `sapora files` and `sapora fetch`: each joins the meeting as
//! a short-lived participant, does one transfer with a progress bar on
//! stderr, and returns the final line for stdout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use smol::channel::Receiver;

use super::files::{Dest, FileClient, Progress, UploadOptions};
use super::session::{Client, ClientConfig};
use crate::proto::text::visible;
use crate::proto::{FileInfo, human_bytes, md5_hex};

/// Who the short-lived participant is.
#[derive(Debug, Clone)]
pub struct Visit {
    pub host: SocketAddr,
    pub name: String,
    pub room: String,
    /// The room's passcode (`--passcode`, `SAPORA_PASSCODE`).
    pub passcode: Option<crate::transport::pake::Passcode>,
    /// Set when the host refused the passcode (missing, wrong, too many
    /// tries): the CLI exits with its own code.
    pub passcode_refused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

async fn connect(v: &Visit) -> Result<(Client, FileClient), String> {
    let mut config = ClientConfig::new(v.host, &v.name, &v.room);
    // One short transfer: a lost link is the transfer's to retry, not the session's.
    config.reconnect = false;
    config.passcode = v.passcode.clone();
    let client = Client::connect(config).await.map_err(|e| {
        if e.is_passcode_refusal() {
            v.passcode_refused.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        e.to_string()
    })?;
    let files = FileClient::for_client(&client);
    Ok((client, files))
}

/// Draws `send [#####-----]  45%  45.0 MiB of 100.0 MiB  312.0 MiB/s` on
/// stderr with `indicatif`, at most 20 times a second; hidden when stderr is
/// not a terminal (logs and pipes get no carriage-return noise). A retry is
/// always reported on stderr, terminal or not.
async fn draw(rx: Receiver<Progress>, verb: &'static str) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}%  {msg}")
        .expect("a valid template")
        .progress_chars("#-");
    bar.set_style(style);
    bar.set_prefix(verb);
    let mut started = Instant::now();
    let mut from = 0;
    while let Ok(p) = rx.recv().await {
        let (done, total) = match p {
            Progress::Started { total, from: f } => {
                // The rate counts this connection's bytes only.
                from = f;
                started = Instant::now();
                (f, total)
            }
            Progress::Bytes { done, total } => (done, total),
            Progress::Retrying { attempt, reason } => {
                let reason = visible(&reason);
                bar.suspend(|| {
                    eprintln!("{verb}: connection lost ({reason}); resuming (attempt {attempt})…")
                });
                continue;
            }
        };
        // An empty file is complete at once: show 100 %, not 0 of 0.
        bar.set_length(total.max(1));
        bar.set_position(if total == 0 { 1 } else { done.min(total) });
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let rate = ((done - from.min(done)) as f64 / secs) as u64;
        bar.set_message(format!(
            "{} of {}  {}/s",
            human_bytes(done),
            human_bytes(total),
            human_bytes(rate)
        ));
    }
    bar.finish();
}

/// One file for people: every name in it is remote-controlled, so each is
/// shown with hidden characters made visible (a `\u{202E}` in a file name
/// cannot turn `invoice<RLO>fdp.exe` into "invoiceexe.pdf").
fn describe(f: &FileInfo) -> String {
    let to = match &f.to {
        Some(to) => format!(", privately to {}", visible(to)),
        None => String::new(),
    };
    format!(
        "{} \"{}\" ({}) from {}{to}",
        f.id,
        visible(&f.name),
        human_bytes(f.size),
        visible(&f.sender)
    )
}

/// Uploads `path`; the line to print when it is verified and offered.
pub fn send(
    v: Visit,
    path: PathBuf,
    to: Option<String>,
    name: Option<String>,
) -> Result<String, String> {
    smol::block_on(async {
        let (client, files) = connect(&v).await?;
        let (tx, rx) = smol::channel::bounded(64);
        let bar = smol::spawn(draw(rx, "sending"));
        let started = Instant::now();
        let result = files.upload_done(&path, UploadOptions { to, name }, Some(tx)).await;
        bar.await;
        client.leave().await;
        let done = result
            .map_err(|e| format!("{} was not sent: {}", path.display(), visible(&e.to_string())))?;
        let f = done.file;
        if let Some(notice) = &done.notice {
            // The recipient is gone: "offered privately" would mislead.
            return Ok(format!(
                "Sent \"{}\" ({}), MD5 {} verified by the host, as file {}; {}.",
                visible(&f.name),
                human_bytes(f.size),
                md5_hex(&f.md5),
                f.id,
                visible(notice)
            ));
        }
        let secs = started.elapsed().as_secs_f64();
        let whom = match &f.to {
            Some(to) => format!("offered privately to {}", visible(to)),
            None => format!("offered to everyone in \"{}\"", v.room_label()),
        };
        let how = match &f.to {
            // Only the recipient's own session may fetch it.
            Some(_) => format!("they fetch it with /fetch {} in their session", f.id),
            None => format!("fetch it with: sapora fetch HOST {}{}", f.id, v.room_hint()),
        };
        Ok(format!(
            "Sent \"{}\" ({}) in {secs:.1} s, MD5 {} verified by the host; {whom} as file {}; {how}",
            visible(&f.name),
            human_bytes(f.size),
            md5_hex(&f.md5),
            f.id,
        ))
    })
}

/// The files this participant may see in the room, one per line.
pub fn list(v: Visit) -> Result<String, String> {
    smol::block_on(async {
        let (client, files) = connect(&v).await?;
        let result = files.list().await;
        client.leave().await;
        let list = result.map_err(|e| visible(&e.to_string()))?;
        if list.is_empty() {
            return Ok(format!("No files shared in \"{}\".", v.room_label()));
        }
        let mut out = format!("{:>6}  {:>10}  {:<12}  NAME\n", "ID", "SIZE", "FROM");
        for f in &list {
            let private = if f.private() { "  (private)" } else { "" };
            out.push_str(&format!(
                "{:>6}  {:>10}  {:<12}  {}{private}\n",
                f.id,
                human_bytes(f.size),
                visible(&f.sender),
                visible(&f.name)
            ));
        }
        out.push_str(&format!(
            "{} file(s). Fetch one with: sapora fetch HOST ID{}",
            list.len(),
            v.room_hint()
        ));
        Ok(out)
    })
}

/// Downloads file `id` to `out` (a file or a directory; default: here).
pub fn fetch(v: Visit, id: u64, out: Option<PathBuf>) -> Result<String, String> {
    let dest = match out {
        Some(p) if p.is_dir() => Dest::Dir(p),
        Some(p) => Dest::File(p),
        None => Dest::Dir(PathBuf::from(".")),
    };
    smol::block_on(async {
        let (client, files) = connect(&v).await?;
        let (tx, rx) = smol::channel::bounded(64);
        let bar = smol::spawn(draw(rx, "fetching"));
        let result = files.download(id, dest, Some(tx)).await;
        bar.await;
        client.leave().await;
        let d = result
            .map_err(|e| format!("file {id} was not fetched: {}", visible(&e.to_string())))?;
        Ok(format!(
            "Fetched {} to {} in {:.1} s; MD5 {} verified.",
            describe(&d.info),
            visible(&d.path.display().to_string()),
            d.seconds,
            md5_hex(&d.info.md5)
        ))
    })
}

impl Visit {
    fn room_hint(&self) -> String {
        match self.room.trim() {
            "" => String::new(),
            r => format!(" --room {r}"),
        }
    }

    fn room_label(&self) -> &str {
        match self.room.trim() {
            "" => "default",
            r => r,
        }
    }
}

/// `/fetch ID` in `sapora join`: downloads into the current folder in the
/// background, as this session (so private files sent to it work too), and
/// prints one line when done.
pub fn fetch_in_background(client: &Client, id: u64) {
    let files = FileClient::for_client(client);
    println!("* fetching file {id}…");
    smol::spawn(async move {
        match files.download(id, Dest::Dir(PathBuf::from(".")), None).await {
            Ok(d) => println!(
                "* fetched {} to {} ({:.1} s, MD5 verified)",
                describe(&d.info),
                visible(&d.path.display().to_string()),
                d.seconds
            ),
            Err(e) => println!("! file {id} was not fetched: {}", visible(&e.to_string())),
        }
    })
    .detach();
}
