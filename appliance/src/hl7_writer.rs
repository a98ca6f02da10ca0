//! The HL7 intake's writer: a thread of its own, kept on one CPU with a database connection of
//! its own, that commits what the MLLP connections hand it. The connections read, check and
//! seal the messages and write the acknowledgements on their own tasks; the thread only stores.
//! Every statement of a group is a round trip between this thread and its connection's SQLite
//! worker thread (sqlx runs each connection on a thread); both on one CPU, each round trip is a
//! switch on that CPU instead of waking the other one, which on the build VM costs more than the
//! statement itself (docs/PERFORMANCE.md, the clinical record).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use firmware_config::Hl7Source;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tokio::sync::{mpsc, oneshot};

use crate::gm::Sealer;
use crate::ingest::{Admitted, Intake, Outcome, admit};

/// Groups waiting for the writer; an MLLP connection waits for its own answer, so this bounds
/// only how many connections are queued at once.
const QUEUE: usize = 64;

/// Why the writer could not start.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The thread could not be created.
    #[error("the HL7 writer thread could not start: {0}")]
    Thread(#[source] std::io::Error),
    /// Its runtime could not be built.
    #[error("the HL7 writer's runtime could not start: {0}")]
    Runtime(#[source] std::io::Error),
    /// Its database connection could not be opened.
    #[error("the HL7 writer could not open the database: {0}")]
    Database(#[source] sqlx::Error),
    /// The thread ended before saying whether it started.
    #[error("the HL7 writer thread ended while starting")]
    Gone,
}

/// Messages that arrived together on one connection, and where they go back once stored.
struct Job {
    admitted: Admitted,
    reply: oneshot::Sender<Admitted>,
}

/// The handle the MLLP connections share; the thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    sealer: Sealer,
    sources: Arc<Vec<Hl7Source>>,
}

impl Writer {
    /// Starts the thread, keeps it on the last CPU this process may use, and opens its
    /// connection there (sqlx's worker thread for it inherits the CPU).
    pub async fn start(
        options: SqliteConnectOptions,
        sealer: Sealer,
        sources: Vec<Hl7Source>,
    ) -> Result<Self, WriterError> {
        let (jobs, mut queue) = mpsc::channel::<Job>(QUEUE);
        let shared = (sealer.clone(), Arc::new(sources.clone()));
        let (started, ready) = oneshot::channel::<Result<(), WriterError>>();
        std::thread::Builder::new()
            .name("hl7-writer".into())
            .spawn(move || {
                pin_to_last_cpu();
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = started.send(Err(WriterError::Runtime(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let pool = match SqlitePoolOptions::new()
                        .max_connections(1)
                        .min_connections(1)
                        .connect_with(options)
                        .await
                    {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = started.send(Err(WriterError::Database(e)));
                            return;
                        }
                    };
                    let _ = started.send(Ok(()));
                    let intake = Intake {
                        pool: pool.clone(),
                        sealer,
                        sources,
                    };
                    while let Some(mut job) = queue.recv().await {
                        intake.commit(&mut job.admitted).await;
                        // The connection may have closed meanwhile: what was committed stays.
                        let _ = job.reply.send(job.admitted);
                    }
                    pool.close().await;
                });
            })
            .map_err(WriterError::Thread)?;
        ready.await.map_err(|_| WriterError::Gone)??;
        let (sealer, sources) = shared;
        Ok(Self {
            jobs,
            sealer,
            sources,
        })
    }

    /// Reads messages that arrived together on this task, has the thread store them, and
    /// returns each one's acknowledgement (ids from `counter`) and outcome, in order; None
    /// when the writer has stopped.
    pub async fn take_all(
        &self,
        messages: &[Vec<u8>],
        peer: IpAddr,
        counter: &AtomicU64,
    ) -> Option<Vec<(Vec<u8>, Outcome)>> {
        let admitted = admit(&self.sealer, &self.sources, messages, peer);
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { admitted, reply }).await.ok()?;
        let admitted = answer.await.ok()?;
        Some(admitted.answer(&mut || next_ack_id(counter)))
    }
}

/// The next acknowledgement's control id (MSH-10) from the listener's counter.
pub fn next_ack_id(counter: &AtomicU64) -> String {
    format!("ACK{}", counter.fetch_add(1, Ordering::Relaxed) + 1)
}

/// Keeps the calling thread on the last CPU it may run on; where that fails it runs anywhere.
fn pin_to_last_cpu() {
    use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
    let allowed = match sched_getaffinity(None) {
        Ok(set) => set,
        Err(e) => {
            tracing::warn!(error = %e, "the HL7 writer's CPUs could not be read: not pinned");
            return;
        }
    };
    let Some(cpu) = (0..CpuSet::MAX_CPU).rev().find(|&c| allowed.is_set(c)) else {
        return;
    };
    let mut one = CpuSet::new();
    one.set(cpu);
    match sched_setaffinity(None, &one) {
        Ok(()) => tracing::debug!(cpu, "the HL7 writer runs on one CPU"),
        Err(e) => tracing::warn!(error = %e, "the HL7 writer could not be pinned to a CPU"),
    }
}

#[cfg(test)]
mod tests {
    use rustix::thread::{CpuSet, sched_getaffinity};

    #[test]
    fn the_writer_thread_is_kept_on_the_last_allowed_cpu() {
        let allowed = sched_getaffinity(None).unwrap();
        let last = (0..CpuSet::MAX_CPU)
            .rev()
            .find(|&c| allowed.is_set(c))
            .unwrap();
        let after = std::thread::spawn(|| {
            super::pin_to_last_cpu();
            sched_getaffinity(None).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(after.count(), 1);
        assert!(after.is_set(last));
        // The calling thread is left as it was.
        assert_eq!(sched_getaffinity(None).unwrap().count(), allowed.count());
    }
}
