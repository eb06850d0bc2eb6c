//! Driving the desktop app without a window, for tests/ui.rs and
//! tests/ui_trust.rs.

use std::time::{Duration, Instant};

use sapora::ui::{App, Message};

thread_local! {
    /// Where the tasks `drive` runs send their messages. One per test thread
    /// and kept across calls, as iced keeps running a task: a task still
    /// busy when one `drive` returns (a settings save slower than the engine
    /// restart it waits for) delivers to the next call, not into a closed
    /// channel.
    static BUS: (smol::channel::Sender<Message>, smol::channel::Receiver<Message>) =
        smol::channel::unbounded();
}

/// Runs the app as iced would: every task on the executor, every message it
/// produces back into `update`, until `done` (at most `within`; past that it
/// panics with the app's notices, launcher error and call state).
///
/// The app's subscriptions do not run here; the loop stands in for the two
/// that matter: the video wake-up (`Message::Frames`, at most every 33 ms,
/// like the real one) and the session's events (members, chat, files).
#[track_caller]
pub fn drive(
    app: &mut App,
    first: iced::Task<Message>,
    within: Duration,
    done: impl Fn(&App) -> bool,
) {
    use iced_test::runtime::{Action, task::into_stream};
    use smol::stream::StreamExt;
    let (tx, rx) = BUS.with(|bus| bus.clone());
    let spawn = |task: iced::Task<Message>| {
        if let Some(mut stream) = into_stream(task) {
            let tx = tx.clone();
            smol::spawn(async move {
                while let Some(action) = stream.next().await {
                    if let Action::Output(m) = action {
                        let _ = tx.send(m).await;
                    }
                }
            })
            .detach();
        }
    };
    spawn(first);
    let deadline = Instant::now() + within;
    while !done(app) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "app did not get there within {within:?}; notices: {:?}; error: {:?}; in call: {}",
            app.notices,
            app.launcher.error,
            app.in_call()
        );
        let wake = left.min(Duration::from_millis(33));
        let m = smol::block_on(async {
            use smol::future::FutureExt;
            async { rx.recv().await.ok() }
                .or(async {
                    smol::Timer::after(wake).await;
                    None
                })
                .await
        });
        match (m, app.session_id()) {
            (Some(m), _) => spawn(app.update(m)),
            (None, Some(id)) => spawn(app.update(Message::Frames(id, Vec::new()))),
            (None, None) => {}
        }
        if let Some((id, events)) = app.session_events() {
            while let Ok(e) = events.try_recv() {
                spawn(app.update(Message::Session(id, e)));
            }
        }
    }
}
