//! MLLP framing, HL7 v2's way over TCP: each message is `0x0B`, its bytes, `0x1C 0x0D`. The
//! framer takes bytes as they arrive and gives back whole messages, or a framing problem (with
//! what was received of the broken frame, so its MSH-10 can still be acknowledged).

/// Start block.
pub const START: u8 = 0x0b;
/// End block, followed by a carriage return.
pub const END: u8 = 0x1c;
/// The carriage return after the end block.
pub const CR: u8 = 0x0d;

/// What the framer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole message's bytes, without the blocks.
    Message(Vec<u8>),
    /// A framing problem: acknowledge it and go on reading.
    Problem {
        /// What went wrong.
        error: FrameError,
        /// The start of the broken frame (up to 4 KiB), to read its MSH from.
        partial: Vec<u8>,
    },
}

/// A framing problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame grew past the limit before its end block; the rest of it is skipped.
    #[error("the message is larger than {limit} bytes (integration.hl7_max_message_bytes)")]
    Oversized {
        /// The limit in bytes.
        limit: usize,
    },
    /// A start block came before the previous frame's end block.
    #[error("truncated MLLP frame: a new start block (0x0B) came before the end block (0x1C 0x0D)")]
    Truncated,
    /// Bytes outside any frame.
    #[error("{bytes} bytes outside an MLLP frame (each message starts with 0x0B)")]
    Outside {
        /// How many.
        bytes: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Outside,
    Inside,
    Skipping,
}

/// Turns a byte stream into frames.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// How far `buf` was searched for an end block.
    scanned: usize,
    limit: usize,
    state: State,
    partial: Vec<u8>,
}

const PARTIAL: usize = 4096;

impl Framer {
    /// A framer refusing messages over `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            scanned: 0,
            limit,
            state: State::Outside,
            partial: Vec::new(),
        }
    }

    /// Bytes received.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Whether the framer is in the middle of a frame (a connection closing now cut it).
    pub fn mid_frame(&self) -> bool {
        self.state != State::Outside || self.buf.iter().any(|b| !b.is_ascii_whitespace())
    }

    /// The next frame or problem, if the bytes so far hold one.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            match self.state {
                State::Outside => {
                    let start = self.buf.iter().position(|&b| b == START);
                    let before = start.unwrap_or(self.buf.len());
                    let stray = self.buf[..before]
                        .iter()
                        .filter(|b| !b.is_ascii_whitespace())
                        .count();
                    let partial = self.buf[..before.min(PARTIAL)].to_vec();
                    self.buf.drain(..before);
                    if start.is_some() {
                        self.buf.remove(0);
                        self.state = State::Inside;
                        self.scanned = 0;
                    }
                    if stray > 0 {
                        return Some(Frame::Problem {
                            error: FrameError::Outside { bytes: stray },
                            partial,
                        });
                    }
                    start?;
                }
                State::Inside => {
                    let found = self.buf[self.scanned..]
                        .iter()
                        .position(|&b| b == END || b == START)
                        .map(|p| p + self.scanned);
                    match found {
                        Some(p) if self.buf[p] == START => {
                            let partial = self.buf[..p.min(PARTIAL)].to_vec();
                            self.buf.drain(..=p);
                            self.scanned = 0;
                            return Some(Frame::Problem {
                                error: FrameError::Truncated,
                                partial,
                            });
                        }
                        Some(p) => {
                            if p + 1 >= self.buf.len() {
                                // Wait for the byte after the end block.
                                self.scanned = p;
                                return None;
                            }
                            let skip = if self.buf[p + 1] == CR { p + 2 } else { p + 1 };
                            let frame = if p > self.limit {
                                Frame::Problem {
                                    error: FrameError::Oversized { limit: self.limit },
                                    partial: self.buf[..PARTIAL.min(p)].to_vec(),
                                }
                            } else {
                                Frame::Message(self.buf[..p].to_vec())
                            };
                            self.buf.drain(..skip);
                            self.scanned = 0;
                            self.state = State::Outside;
                            return Some(frame);
                        }
                        None => {
                            self.scanned = self.buf.len();
                            if self.buf.len() > self.limit {
                                self.partial = self.buf[..PARTIAL.min(self.buf.len())].to_vec();
                                self.buf.clear();
                                self.scanned = 0;
                                self.state = State::Skipping;
                                return Some(Frame::Problem {
                                    error: FrameError::Oversized { limit: self.limit },
                                    partial: std::mem::take(&mut self.partial),
                                });
                            }
                            return None;
                        }
                    }
                }
                State::Skipping => match self.buf.iter().position(|&b| b == END) {
                    Some(p) => {
                        let skip = if self.buf.get(p + 1) == Some(&CR) {
                            p + 2
                        } else {
                            p + 1
                        };
                        self.buf.drain(..skip.min(self.buf.len()));
                        self.state = State::Outside;
                    }
                    None => {
                        self.buf.clear();
                        return None;
                    }
                },
            }
        }
    }
}

/// `message` framed for sending.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message);
    out.extend_from_slice(&[END, CR]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(f: &mut Framer) -> Vec<Frame> {
        std::iter::from_fn(|| f.next_frame()).collect()
    }

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let stream = [frame(b"MSH|one"), frame(b"MSH|two")].concat();
        for cut in 0..stream.len() {
            let mut f = Framer::new(100);
            f.push(&stream[..cut]);
            let mut got = all(&mut f);
            f.push(&stream[cut..]);
            got.extend(all(&mut f));
            assert_eq!(
                got,
                vec![
                    Frame::Message(b"MSH|one".to_vec()),
                    Frame::Message(b"MSH|two".to_vec())
                ],
                "cut at {cut}"
            );
            assert!(!f.mid_frame());
        }
    }

    #[test]
    fn a_truncated_frame_is_reported_and_the_next_one_read() {
        let mut f = Framer::new(100);
        f.push(&[&[START][..], b"MSH|half", &frame(b"MSH|whole")].concat());
        let got = all(&mut f);
        assert_eq!(
            got,
            vec![
                Frame::Problem {
                    error: FrameError::Truncated,
                    partial: b"MSH|half".to_vec()
                },
                Frame::Message(b"MSH|whole".to_vec())
            ]
        );
    }

    #[test]
    fn an_oversized_frame_is_skipped_to_its_end() {
        let mut f = Framer::new(10);
        f.push(&[START]);
        f.push(&[b'x'; 11]);
        assert!(matches!(
            f.next_frame(),
            Some(Frame::Problem {
                error: FrameError::Oversized { limit: 10 },
                ..
            })
        ));
        f.push(&[b'y'; 50]);
        assert_eq!(f.next_frame(), None);
        f.push(&[&[END, CR][..], &frame(b"MSH|ok")].concat());
        assert_eq!(f.next_frame(), Some(Frame::Message(b"MSH|ok".to_vec())));
        // Arriving whole, with its end block, it is refused all the same.
        f.push(&frame(&[b'z'; 11]));
        f.push(&frame(b"MSH|next"));
        assert!(matches!(
            f.next_frame(),
            Some(Frame::Problem {
                error: FrameError::Oversized { .. },
                ..
            })
        ));
        assert_eq!(f.next_frame(), Some(Frame::Message(b"MSH|next".to_vec())));
    }

    #[test]
    fn bytes_outside_frames_are_reported_once() {
        let mut f = Framer::new(100);
        f.push(b"\r\nhello");
        f.push(&frame(b"MSH|x"));
        assert_eq!(
            all(&mut f),
            vec![
                Frame::Problem {
                    error: FrameError::Outside { bytes: 5 },
                    partial: b"\r\nhello".to_vec()
                },
                Frame::Message(b"MSH|x".to_vec())
            ]
        );
    }
}
