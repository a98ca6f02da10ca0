//! The HL7 v2 MLLP listener (`integration.hl7_mllp_port`, 2575): reads frames from each
//! connection, hands each message (each of a batch) to the intake, and writes its original-mode
//! acknowledgement before reading the next. A broken frame or message is answered and the
//! connection goes on; only the peer closing (or 10 idle minutes) ends it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use firmware_config::Config;
use firmware_runtime::{Context, State};
use hl7v2::ack::{AckCode, Echo, acknowledge};
use hl7v2::message::{ErrorCode, Hl7Error, split_batch};
use hl7v2::mllp::{Frame, Framer, frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::accounts::now_ms;
use crate::hl7_writer::{Writer, WriterError, next_ack_id};
use crate::ingest::{OFFSET_MINUTES, Outcome};

/// Readiness name of the listener.
pub const SERVICE: &str = "hl7";

/// The most connections served at once.
const CONNECTIONS: usize = 64;

/// A connection with nothing received for this long is closed.
const IDLE: Duration = Duration::from_secs(600);

/// Why the listener stopped.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The port could not be opened.
    #[error("integration.hl7_mllp_port {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The writer that commits the messages could not start.
    #[error(transparent)]
    Writer(#[from] WriterError),
}

/// Runs the listener until shutdown, its messages committed by a [`Writer`] on a database
/// connection of its own, opened with `options`.
pub async fn run(
    config: &Config,
    ctx: &Context,
    options: sqlx::sqlite::SqliteConnectOptions,
    sealer: crate::gm::Sealer,
) -> Result<(), ListenError> {
    let addr = SocketAddr::new(
        config.listeners.bind,
        config.integration.hl7_mllp_port.get(),
    );
    let sources = config.integration.hl7_sources.clone();
    let empty = sources.is_empty();
    let writer = match Writer::start(options, sealer, sources).await {
        Ok(w) => w,
        Err(e) => {
            ctx.readiness.set(SERVICE, State::Failed(e.to_string()));
            return Err(e.into());
        }
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(source) => {
            ctx.readiness.set(
                SERVICE,
                State::Failed(format!("cannot listen on {addr}: {source}")),
            );
            return Err(ListenError::Bind { addr, source });
        }
    };
    if empty {
        tracing::warn!("integration.hl7_sources is empty: every HL7 message will be refused (AR)");
    }
    ctx.readiness.set(SERVICE, State::Ready);
    tracing::info!(%addr, "HL7 MLLP listening");
    let limit = config.integration.hl7_max_message_bytes.0 as usize;
    let permits = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    let counter = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, peer) = tokio::select! {
            () = ctx.shutdown.wait() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "HL7 accept failed");
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "HL7 connection refused: {CONNECTIONS} already open");
            continue;
        };
        let (writer, counter, shutdown) = (writer.clone(), counter.clone(), ctx.shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = shutdown.wait() => {}
                r = serve(stream, peer.ip(), &writer, limit, &counter) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "HL7 connection ended");
                    }
                }
            }
        });
    }
    ctx.readiness.set(SERVICE, State::Stopping);
    Ok(())
}

async fn serve(
    mut stream: TcpStream,
    peer: IpAddr,
    writer: &Writer,
    limit: usize,
    counter: &AtomicU64,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut framer = Framer::new(limit);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match tokio::time::timeout(IDLE, stream.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            if framer.mid_frame() {
                tracing::warn!(%peer, "an HL7 connection closed in the middle of a message: nothing stored");
            }
            return Ok(());
        }
        framer.push(&buf[..n]);
        // Everything that arrived together is answered together, its messages committed in
        // groups (one transaction each), the replies in order.
        enum Work {
            Reply(Vec<u8>),
            One(usize),
            Batch(std::ops::Range<usize>),
        }
        let mut work = Vec::new();
        let mut messages: Vec<Vec<u8>> = Vec::new();
        while let Some(f) = framer.next_frame() {
            match f {
                Frame::Problem { error, partial } => {
                    metrics::counter!("hl7_messages_total", "result" => "AR").increment(1);
                    tracing::warn!(%peer, error = %error, "HL7 framing problem");
                    let e = Hl7Error::whole(ErrorCode::SegmentSequence, error.to_string());
                    work.push(Work::Reply(acknowledge(
                        &Echo::of_raw(&partial),
                        AckCode::Reject,
                        Some(&e),
                        "",
                        &next_ack_id(counter),
                        now_ms(),
                        OFFSET_MINUTES,
                    )));
                }
                Frame::Message(bytes) => match split_batch(&bytes) {
                    None => {
                        work.push(Work::One(messages.len()));
                        messages.push(bytes);
                    }
                    Some(batch) => {
                        let start = messages.len();
                        messages.extend(batch);
                        work.push(Work::Batch(start..messages.len()));
                    }
                },
            }
        }
        if work.is_empty() {
            continue;
        }
        let started = Instant::now();
        let count = messages.len().max(1);
        let Some(answers) = writer.take_all(&messages, peer, counter).await else {
            return Err(std::io::Error::other("the HL7 writer has stopped"));
        };
        let seconds = started.elapsed().as_secs_f64() / count as f64;
        for (_, outcome) in &answers {
            let code = outcome.code().as_str();
            metrics::counter!("hl7_messages_total", "result" => code).increment(1);
            metrics::histogram!("hl7_message_seconds").record(seconds);
            if let Outcome::Refused(_, e) = outcome {
                // The error names a place and a reason, never patient data.
                tracing::info!(%peer, code, error = %e, "HL7 message refused");
            }
        }
        let mut out = Vec::new();
        for w in work {
            match w {
                Work::Reply(r) => out.extend(frame(&r)),
                Work::One(i) => out.extend(frame(&answers[i].0)),
                Work::Batch(range) => {
                    let mut reply = b"BHS|^~\\&|APPLIANCE\r".to_vec();
                    let n = range.len();
                    for i in range {
                        reply.extend_from_slice(&answers[i].0);
                    }
                    reply.extend(format!("BTS|{n}\r").into_bytes());
                    out.extend(frame(&reply));
                }
            }
        }
        stream.write_all(&out).await?;
    }
}
