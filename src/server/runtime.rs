//! The host's one explicit executor (issue 14's "Runtime"): every host task
//! (QUIC's endpoint and connection drivers, the accept loops, each link's
//! control reader and writer, its streams, the control plane, the video and
//! screen relays, the file service, discovery) runs here, on one named
//! thread per CPU (`sapora-net-N`, at most 8).
//!
//! One executor for all of them means a datagram or a control frame that
//! quinn's connection driver hands to a service wakes a task on the same
//! pool (async-executor's per-thread queues keep it on the waking thread
//! when it can), not a task on another executor's thread: fewer thread
//! hand-offs per packet, which is most of what an idle host spends.
//!
//! The executor lives as long as the process: several hosts in one process
//! (tests, a handover) share it, and a task whose `Task` handle is dropped
//! is always cancelled, because its executor never stops. Each thread runs
//! `smol::block_on`, so an idle thread drives the I/O reactor itself.
//! Blocking file-system calls never run here: they go to the blocking pool
//! (`smol::unblock`).

use std::future::Future;
use std::sync::{Arc, OnceLock};

/// Most threads the executor starts, whatever the machine has.
pub const MAX_THREADS: usize = 8;

/// The executor, started on first use with one thread per CPU
/// (`std::thread::available_parallelism`, 1 to [`MAX_THREADS`]). If no
/// thread can be started, it runs as a task on smol's global executor
/// instead (and logs a warning), so spawned tasks still run.
pub fn executor() -> &'static Arc<smol::Executor<'static>> {
    static EXECUTOR: OnceLock<Arc<smol::Executor<'static>>> = OnceLock::new();
    EXECUTOR.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        crate::transport::quic::start_executor(threads.clamp(1, MAX_THREADS), |i| {
            format!("sapora-net-{i}")
        })
    })
}

/// Spawns `future` on the host executor. Dropping the returned task cancels
/// it; `.detach()` lets it run to its end.
pub fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> smol::Task<T> {
    executor().spawn(future)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tasks_run_on_the_named_threads_and_a_dropped_task_is_cancelled() {
        let name = smol::block_on(super::spawn(async {
            std::thread::current().name().unwrap_or("").to_string()
        }));
        assert!(name.starts_with("sapora-net-"), "ran on {name:?}");

        // A dropped task's future is dropped (its executor keeps running).
        let (tx, rx) = smol::channel::bounded::<()>(1);
        let task = super::spawn(async move {
            let _tx = tx;
            smol::future::pending::<()>().await;
        });
        drop(task);
        let closed = smol::block_on(smol::future::or(async { rx.recv().await.is_err() }, async {
            smol::Timer::after(std::time::Duration::from_secs(5)).await;
            false
        }));
        assert!(closed, "the cancelled task's future was not dropped within 5 s");
    }
}
