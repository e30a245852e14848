//! L2's control port: its second serial port (ttyS1), a Unix socket in
//! L1 (QEMU's chardev for the mflab backend, libvirt's `<serial
//! type='unix'>` for the other). The agent writes `rescan TAG` / `done`
//! to it; L2's init answers on the same port, never on its console: the
//! console also carries the kernel's messages (a hot-plug prints pciehp
//! and BAR lines), and reports read there were seen with bytes cut out
//! of their lines (`MFLAB-L2STEP-DONE`, `0000:00:f.3`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab::protocol::guest_report::{parse_step_report, rescan_command, DONE_COMMAND, STEP_DONE};
use lab::protocol::GuestFunction;

/// How long L2's init may take to rescan and report after a step, all
/// asks together (a rescan of libvirt's q35 L2 took about 8 s under load).
pub const STEP_REPORT_TIMEOUT: Duration = Duration::from_secs(64);

/// How long one ask waits for its report's end line before asking again.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times one step may ask: a report that came back incomplete
/// (fewer lines than init counted) is asked for again under a new tag.
pub const ASKS: u32 = 4;

/// Why talking to L2's init over its control port failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The port's socket would not connect.
    #[error("L2's control port {}: {source}", .socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The ask for step `step`'s report could not be written.
    #[error("asking L2 to report after step {step}: {source}")]
    Ask {
        step: usize,
        #[source]
        source: std::io::Error,
    },
    /// The power-off command could not be written.
    #[error("telling L2 to power off: {0}")]
    PowerOff(#[source] std::io::Error),
    /// The other end closed.
    #[error("L2's control port closed (L2's QEMU is gone)")]
    Closed,
    /// Reading the port failed (not a read timeout).
    #[error("reading L2's control port: {0}")]
    Read(#[source] std::io::Error),
    /// Every ask for step `step` went unanswered, or came back
    /// incomplete; `transcript` holds what L2 sent.
    #[error("L2's init sent no complete report on its control port after step {step} within {:?} (asked up to {} times; what it sent is in {})", STEP_REPORT_TIMEOUT, ASKS, .transcript.display())]
    NoReport { step: usize, transcript: PathBuf },
}

/// The connected port, what L2 sent on it, and where that is kept for
/// the work directory.
pub struct ControlPort {
    stream: UnixStream,
    received: String,
    transcript: PathBuf,
}

impl ControlPort {
    /// Connects once L2's init has said it listens (bytes sent before
    /// are lost: opening the port clears its FIFO). What L2 answers is
    /// copied to `transcript`.
    pub fn connect(socket: &Path, transcript: &Path) -> Result<Self, ControlError> {
        let stream = UnixStream::connect(socket).map_err(|source| ControlError::Connect {
            socket: socket.to_path_buf(),
            source,
        })?;
        Ok(Self::from_stream(stream, transcript))
    }

    fn from_stream(stream: UnixStream, transcript: &Path) -> Self {
        // Short reads, so that every wait above checks its own deadline.
        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
        Self {
            stream,
            received: String::new(),
            transcript: transcript.to_path_buf(),
        }
    }

    /// Asks L2's init to rescan and report for step `n`, and reads its
    /// report; each ask has its own tag (`N.1`, `N.2`, …).
    pub fn ask_report(&mut self, n: usize) -> Result<Vec<GuestFunction>, ControlError> {
        let asked = Instant::now();
        for ask in 1..=ASKS {
            if asked.elapsed() > STEP_REPORT_TIMEOUT {
                break;
            }
            let tag = format!("{n}.{ask}");
            self.send(&rescan_command(&tag))
                .map_err(|source| ControlError::Ask { step: n, source })?;
            let start = Instant::now();
            // Bytes come in pieces: a report is read once its end line
            // has come in whole, and asked for again if it then lacks a
            // line init counted.
            while !end_line_complete(&self.received, &tag) {
                if start.elapsed() > ASK_TIMEOUT || asked.elapsed() > STEP_REPORT_TIMEOUT {
                    break;
                }
                self.receive()?;
            }
            if let Some(view) = parse_step_report(&self.received, &tag) {
                return Ok(view);
            }
        }
        Err(ControlError::NoReport {
            step: n,
            transcript: self.transcript.clone(),
        })
    }

    /// Tells L2's init to power off.
    pub fn power_off(&mut self) -> Result<(), ControlError> {
        self.send(DONE_COMMAND).map_err(ControlError::PowerOff)
    }

    fn send(&mut self, command: &str) -> std::io::Result<()> {
        self.stream.write_all(command.as_bytes())
    }

    /// Whatever arrived within the read timeout, kept and appended to
    /// the transcript.
    fn receive(&mut self) -> Result<(), ControlError> {
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => Err(ControlError::Closed),
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                self.received.push_str(&text);
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.transcript)
                {
                    let _ = f.write_all(text.as_bytes());
                }
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(ControlError::Read(e)),
        }
    }
}

/// Whether the end line of the report tagged `tag` has come in up to its
/// newline.
fn end_line_complete(received: &str, tag: &str) -> bool {
    let done = format!("{STEP_DONE} {tag} ");
    received
        .find(done.as_str())
        .is_some_and(|at| received[at..].contains('\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for L2's init on the other end of a socket pair: it
    /// answers the first ask incompletely (one of two counted lines), the
    /// second in full.
    #[test]
    fn an_incomplete_report_is_asked_for_again_and_the_transcript_kept() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let transcript = dir.path().join("l2-control.log");
        let mut port = ControlPort::from_stream(ours, &transcript);
        let l2 = std::thread::spawn(move || {
            let mut asks = Vec::new();
            let mut buf = [0u8; 256];
            for answer in [
                "MFLAB-L2-STEP-PCI 2.1 0000:00:05.0 0x1234 0x1111 0x038000 -\r\nMFLAB-L2-STEP-DONE 2.1 3.0 2\r\n",
                "MFLAB-L2-STEP-PCI 2.2 0000:00:00.0 0x8086 0x1237 0x060000 -\r\nMFLAB-L2-STEP-PCI 2.2 0000:00:05.0 0x1234 0x1111 0x038000 -\r\nMFLAB-L2-STEP-DONE 2.2 3.5 2\r\n",
            ] {
                let answer = lab::protocol::guest_report::with_lengths(answer);
                let n = theirs.read(&mut buf).unwrap();
                asks.push(String::from_utf8_lossy(&buf[..n]).to_string());
                // In two pieces, cut inside the end line, as a serial
                // port delivers them.
                let (head, tail) = answer.split_at(answer.len() - 4);
                theirs.write_all(head.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                theirs.write_all(tail.as_bytes()).unwrap();
            }
            asks
        });
        let view = port.ask_report(2).unwrap();
        assert_eq!(view.len(), 2);
        assert_eq!(view[1].bdf, "0000:00:05.0".parse().unwrap());
        assert_eq!(l2.join().unwrap(), ["rescan 2.1\n", "rescan 2.2\n"]);
        let kept = std::fs::read_to_string(&transcript).unwrap();
        assert!(kept.contains("MFLAB-L2-STEP-DONE 2.2 3.5 2"), "{kept}");
    }

    #[test]
    fn a_closed_port_is_an_error_at_once_not_a_wait() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let dir = tempfile::tempdir().unwrap();
        let mut port = ControlPort::from_stream(ours, &dir.path().join("t.log"));
        let start = Instant::now();
        let e = port.ask_report(1).unwrap_err().to_string();
        assert!(
            e.contains("L2") && start.elapsed() < Duration::from_secs(5),
            "{e}"
        );
    }
}
