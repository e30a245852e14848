//! A QMP session over a Unix socket, on tokio, with the `qapi` crate's
//! command types.
//!
//! Why not `qapi`'s own stream: it parses every event and reply into the
//! types of its schema (QEMU 9.1), and an event name or enum value newer
//! than that ends the stream with InvalidData. A lab must keep working with
//! whatever QEMU a runner has, so this layer reads each line as JSON first:
//! events are logged and kept by name, never parsed into a schema type, and
//! only the reply to our own command is deserialized into `C::Ok`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use qapi::Command;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP socket {0}: {1}")]
    Connect(PathBuf, std::io::Error),
    #[error("QMP: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP: QEMU closed the connection")]
    Closed,
    #[error("QMP: timed out waiting for {0}")]
    Timeout(String),
    #[error("QMP: {command} failed: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    #[error("QMP: reply to {0} does not fit its type: {1}")]
    Reply(String, serde_json::Error),
}

impl QmpError {
    /// QEMU did not answer: no socket, no greeting, or no reply in time
    /// (not a refusal, which is QEMU's verdict).
    pub fn unanswered(&self) -> bool {
        matches!(self, QmpError::Connect(..) | QmpError::Timeout(_))
    }
}

/// The longest QEMU may take to answer one command. It answers within
/// milliseconds, a `device_add` of a VFIO device within a second under
/// TCG; one that says nothing for this long is stuck (seen: an L2 QEMU
/// that got no further than its start and held the scenario until its
/// 240 s ran out).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

pub struct QmpSession {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
    /// Every line sent (`->`) and received (`<-`), for the work directory.
    pub transcript: Vec<String>,
    /// Names of the events seen so far, in order.
    pub events: Vec<String>,
    /// The events not yet taken by [`QmpSession::wait_event`], whole.
    unclaimed: Vec<Value>,
    /// [`ANSWER_TIMEOUT`] unless changed.
    answer_timeout: Duration,
}

impl QmpSession {
    /// Connects (retrying until the socket appears or `timeout`), reads the
    /// greeting and leaves capabilities negotiation mode.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(QmpError::Connect(path.to_path_buf(), e))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let (read, writer) = stream.into_split();
        let mut session = QmpSession {
            reader: BufReader::new(read),
            writer,
            next_id: 0,
            transcript: Vec::new(),
            events: Vec::new(),
            unclaimed: Vec::new(),
            answer_timeout: ANSWER_TIMEOUT,
        };
        let greeting = tokio::time::timeout(timeout, session.read_message())
            .await
            .map_err(|_| QmpError::Timeout("the QMP greeting".into()))??;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Timeout(format!("a QMP greeting, got {greeting}")));
        }
        session
            .execute(&qapi::qmp::qmp_capabilities { enable: None })
            .await?;
        Ok(session)
    }

    async fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(QmpError::Closed);
            }
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            self.transcript.push(format!("<- {text}"));
            match serde_json::from_str::<Value>(text) {
                Ok(v) => return Ok(v),
                Err(e) => tracing::warn!("QMP: ignoring a line that is not JSON ({e}): {text}"),
            }
        }
    }

    /// Keeps an event; false when the message is not one.
    fn record_event(&mut self, message: &Value) -> bool {
        let Some(event) = message.get("event").and_then(Value::as_str) else {
            return false;
        };
        tracing::debug!("QMP event {event}");
        self.events.push(event.to_string());
        self.unclaimed.push(message.clone());
        true
    }

    /// Waits for an event named `name` whose `data` satisfies `wanted`
    /// (one that came earlier and was not yet taken counts), until
    /// `timeout`. Returns the event's `data`.
    pub async fn wait_event(
        &mut self,
        name: &str,
        wanted: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        let matches = |e: &Value| e["event"] == name && wanted(&e["data"]);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.unclaimed.iter().position(matches) {
                return Ok(self.unclaimed.remove(i)["data"].take());
            }
            let message = tokio::time::timeout_at(deadline, self.read_message())
                .await
                .map_err(|_| QmpError::Timeout(format!("the event {name} ({timeout:?})")))??;
            self.record_event(&message);
        }
    }

    /// Runs one command and returns its typed reply. Events that arrive
    /// meanwhile are recorded, whatever their name.
    pub async fn execute<C: Command>(&mut self, command: &C) -> Result<C::Ok, QmpError> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "execute": C::NAME, "arguments": command, "id": id });
        let text = request.to_string();
        self.transcript.push(format!("-> {text}"));
        self.writer.write_all(text.as_bytes()).await?;
        self.writer.write_all(b"\n").await?;
        let deadline = self.answer_timeout;
        let reply = tokio::time::timeout(deadline, self.reply_to(id))
            .await
            .map_err(|_| {
                QmpError::Timeout(format!("the answer to {} ({deadline:?})", C::NAME))
            })??;
        if let Some(error) = reply.get("error") {
            return Err(QmpError::Command {
                command: C::NAME.to_string(),
                class: error["class"].as_str().unwrap_or("?").to_string(),
                desc: error["desc"].as_str().unwrap_or("?").to_string(),
            });
        }
        let ok = reply.get("return").cloned().unwrap_or(Value::Null);
        serde_json::from_value(ok).map_err(|e| QmpError::Reply(C::NAME.to_string(), e))
    }

    /// After QEMU exited: reads what it sent before it went (its last
    /// events, SHUTDOWN among them) until the socket's end or `timeout`.
    pub async fn drain(&mut self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while let Ok(Ok(message)) = tokio::time::timeout_at(deadline, self.read_message()).await {
            self.record_event(&message);
        }
    }

    /// The `reason` of the SHUTDOWN event, once one came: `guest-shutdown`
    /// for a power-off, `guest-reset` for a reset under `-no-reboot` (a
    /// triple fault among them), `guest-panic`, `host-signal`…
    pub fn shutdown_reason(&self) -> Option<String> {
        self.unclaimed
            .iter()
            .rev()
            .find(|e| e["event"] == "SHUTDOWN")
            .and_then(|e| e["data"]["reason"].as_str())
            .map(str::to_string)
    }

    /// Another deadline per command than [`ANSWER_TIMEOUT`].
    pub fn set_answer_timeout(&mut self, timeout: Duration) {
        self.answer_timeout = timeout;
    }

    /// The message that answers command `id`; events meanwhile are recorded.
    async fn reply_to(&mut self, id: u64) -> Result<Value, QmpError> {
        loop {
            let message = self.read_message().await?;
            if self.record_event(&message) {
                continue;
            }
            if message.get("id").and_then(Value::as_u64) == Some(id) {
                return Ok(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A QMP peer that speaks like a newer QEMU: it sends an event no
    /// schema knows, with an enum value no schema knows, before replying.
    async fn newer_qemu(listener: UnixListener) {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"major\": 99, \"minor\": 0, \"micro\": 0}, \"package\": \"\"}, \"capabilities\": [\"oob\", \"future-cap\"]}}\n").await.unwrap();
        while let Some(line) = lines.next_line().await.unwrap() {
            let req: Value = serde_json::from_str(&line).unwrap();
            let id = req["id"].clone();
            write.write_all(b"{\"event\": \"FUTURE_EVENT\", \"data\": {\"mode\": \"brand-new-enum\"}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\n").await.unwrap();
            let reply = match req["execute"].as_str().unwrap() {
                "query-pci" => {
                    json!({"return": [{"bus": 0, "devices": [{"bus": 0, "slot": 5, "function": 0, "irq_pin": 1, "qdev_id": "hostdev0", "regions": [], "class_info": {"class": 896, "desc": "Display controller"}, "id": {"vendor": 4660, "device": 4369}, "new-field": true}]}], "id": id})
                }
                "device_add" => {
                    json!({"error": {"class": "GenericError", "desc": "vfio 0000:00:06.0: group 3 is not viable"}, "id": id})
                }
                _ => json!({"return": {}, "id": id}),
            };
            write
                .write_all(format!("{reply}\n").as_bytes())
                .await
                .unwrap();
        }
    }

    /// A peer that greets and answers qmp_capabilities, then is the test's.
    async fn greeted(
        listener: UnixListener,
    ) -> (
        tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
        tokio::net::unix::OwnedWriteHalf,
    ) {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write
            .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
            .await
            .unwrap();
        let first = lines.next_line().await.unwrap().unwrap();
        let id = serde_json::from_str::<Value>(&first).unwrap()["id"].clone();
        write
            .write_all(format!("{}\n", json!({"return": {}, "id": id})).as_bytes())
            .await
            .unwrap();
        (lines, write)
    }

    /// A QEMU that greets and then answers nothing: the command ends at
    /// its deadline, as an unanswered one (a refusal would be QEMU's verdict).
    #[tokio::test]
    async fn a_command_that_gets_no_answer_ends_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            // The write half stays open (bound to the end), so the command times out.
            let (mut lines, _write) = greeted(listener).await;
            // qmp_capabilities is answered; nothing after it.
            while lines.next_line().await.unwrap().is_some() {}
        });
        let mut qmp = QmpSession::connect(&path, Duration::from_secs(5))
            .await
            .unwrap();
        qmp.set_answer_timeout(Duration::from_millis(200));
        let err = qmp.execute(&qapi::qmp::query_pci {}).await.unwrap_err();
        assert!(err.unanswered(), "{err}");
        assert!(err.to_string().contains("the answer to query-pci"), "{err}");
    }

    #[tokio::test]
    async fn the_last_events_of_a_qemu_that_went_are_read_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (_lines, mut write) = greeted(listener).await;
            // A triple fault under -no-reboot, then QEMU is gone.
            write.write_all(b"{\"event\": \"RESET\", \"data\": {\"guest\": true, \"reason\": \"guest-reset\"}}\n").await.unwrap();
            write.write_all(b"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-reset\"}}\n").await.unwrap();
        });
        let mut qmp = QmpSession::connect(&path, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(qmp.shutdown_reason(), None);
        let t = std::time::Instant::now();
        qmp.drain(Duration::from_secs(5)).await;
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "ended at the socket's end"
        );
        assert_eq!(qmp.shutdown_reason().as_deref(), Some("guest-reset"));
        assert_eq!(qmp.events, ["RESET", "SHUTDOWN"]);
    }

    #[tokio::test]
    async fn unknown_events_and_enum_values_are_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(newer_qemu(listener));
        let mut qmp = QmpSession::connect(&path, Duration::from_secs(5))
            .await
            .unwrap();
        let pci = qmp.execute(&qapi::qmp::query_pci {}).await.unwrap();
        assert_eq!(pci[0].devices[0].id.vendor, 0x1234);
        assert_eq!(pci[0].devices[0].qdev_id, "hostdev0");
        assert!(qmp.events.iter().any(|e| e == "FUTURE_EVENT"));
        let err = qmp
            .execute(&qapi::qmp::device_add {
                driver: "vfio-pci".into(),
                bus: None,
                id: Some("hostdev0".into()),
                arguments: Default::default(),
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("group 3 is not viable"), "{err}");
        qmp.execute(&qapi::qmp::cont {}).await.unwrap();
        // An event that came with a reply is still there to wait for; one
        // that never comes ends at the deadline with its name.
        let data = qmp
            .wait_event(
                "FUTURE_EVENT",
                |d| d["mode"] == "brand-new-enum",
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        assert_eq!(data["mode"], "brand-new-enum");
        let err = qmp
            .wait_event(
                "DEVICE_DELETED",
                |d| d["device"] == "hostdev0",
                Duration::from_millis(200),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("DEVICE_DELETED"), "{err}");
        assert!(qmp
            .transcript
            .iter()
            .any(|l| l.starts_with("-> ") && l.contains("query-pci")));
    }
}
