//! One long-lived `virsh` for all of a daemon's calls: virsh reads
//! commands on its stdin (its interactive shell), so a call costs a round
//! trip to libvirtd instead of a process start inside L1, where starting
//! a dynamically linked binary over 9p under emulation takes a good part
//! of a second and competes with L2 for L1's vCPUs.
//!
//! Each call is the command, then `echo` of a marker unique to the call;
//! virsh's stdout and stderr share one pipe, so its "error: …" lines
//! arrive in order before the marker. A call that does not answer by its
//! deadline kills the session (the next call starts a new one) and says
//! it timed out, as coreutils' `timeout` did for a virsh process.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// What one virsh call said.
#[derive(Clone, Debug, Default)]
pub struct VirshOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    /// The call did not return in time and its session was killed.
    pub timed_out: bool,
}

impl VirshOutput {
    /// libvirt's own words, without virsh's "error: " prefixes and blank lines.
    pub fn error_text(&self) -> String {
        self.stderr
            .lines()
            .map(|l| l.trim().trim_start_matches("error: "))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" / ")
    }
}

pub struct VirshSession {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    calls: u64,
}

/// How often a waiting call asks whether the daemon is still there.
const GONE_CHECK: Duration = Duration::from_millis(250);

impl VirshSession {
    /// Starts `virsh -c uri` reading commands from a pipe.
    pub fn start(
        virsh: &Path,
        env: &[(String, String)],
        uri: &str,
    ) -> std::io::Result<VirshSession> {
        let (read, write) = std::io::pipe()?;
        let mut command = Command::new(virsh);
        command
            .args(["-c", uri])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(write.try_clone()?)
            .stderr(write);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        // The parent's copies of the write end go with `command`.
        drop(command);
        let stdin = child.stdin.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(read).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(VirshSession {
            child,
            stdin,
            lines,
            calls: 0,
        })
    }

    /// Runs one virsh command; `Err` when the session no longer answers
    /// (its output so far, and whether the deadline passed). `gone` says
    /// why waiting on is pointless (the daemon died): then the call ends
    /// at once with that reason instead of at the deadline.
    pub fn call(
        &mut self,
        args: &[&str],
        deadline: Duration,
        gone: &dyn Fn() -> Option<String>,
    ) -> Result<VirshOutput, VirshOutput> {
        self.calls += 1;
        let marker = format!("MFLAB-VIRSH-DONE-{}", self.calls);
        let line = format!("{}\necho {marker}\n", command_line(args));
        if let Err(e) = self
            .stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
        {
            return Err(VirshOutput {
                stderr: format!("error: virsh: {e}\n"),
                ..Default::default()
            });
        }
        let start = Instant::now();
        let mut out = VirshOutput::default();
        loop {
            let left = deadline.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left.min(GONE_CHECK)) {
                Ok(line) if line.trim_end() == marker => break,
                Ok(line) => take_line(&mut out, &line),
                Err(RecvTimeoutError::Timeout) if !left.is_zero() => {
                    if let Some(why) = gone() {
                        out.stderr.push_str(&format!("error: {why}\n"));
                        return Err(out);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    out.timed_out = true;
                    out.stderr.push_str(&format!(
                        "error: virsh {} did not return within {deadline:?}\n",
                        args.first().unwrap_or(&"")
                    ));
                    return Err(out);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    out.stderr.push_str("error: virsh exited\n");
                    return Err(out);
                }
            }
        }
        out.ok = out.stderr.is_empty();
        Ok(out)
    }
}

impl Drop for VirshSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sorts one line of virsh's output: its prompt echoes and banner go,
/// "error: …" is stderr, the rest stdout.
fn take_line(out: &mut VirshOutput, line: &str) {
    let text = line.trim_end_matches('\r');
    if text.starts_with("virsh # ")
        || text == "virsh # "
        || text.starts_with("Welcome to virsh")
        || text.starts_with("Type:  'help'")
        || text.starts_with("       'quit'")
    {
        return;
    }
    let target = if text.starts_with("error: ") {
        &mut out.stderr
    } else {
        &mut out.stdout
    };
    target.push_str(text);
    target.push('\n');
}

/// One command line for virsh's shell: each argument in single quotes
/// (double quotes when it holds a single quote), as its parser reads them.
pub fn command_line(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if !a.contains('\'') {
                format!("'{a}'")
            } else {
                format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\""))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> VirshSession {
        // libvirt's test driver needs no daemon: the same virsh, the same shell.
        VirshSession::start(Path::new("/usr/bin/virsh"), &[], "test:///default")
            .expect("virsh is installed (libvirt-clients)")
    }

    #[test]
    fn calls_in_one_session_keep_stdout_and_errors_apart() {
        let mut s = session();
        let list = s
            .call(
                &["list", "--all", "--name"],
                Duration::from_secs(30),
                &|| None,
            )
            .unwrap();
        assert!(list.ok, "{list:?}");
        assert_eq!(list.stdout.trim(), "test");
        let missing = s
            .call(&["domstate", "nosuch"], Duration::from_secs(30), &|| None)
            .unwrap();
        assert!(!missing.ok);
        assert_eq!(missing.error_text(), "failed to get domain 'nosuch'");
        assert!(missing.stdout.trim().is_empty(), "{missing:?}");
        let state = s
            .call(&["domstate", "test"], Duration::from_secs(30), &|| None)
            .unwrap();
        assert_eq!((state.ok, state.stdout.trim()), (true, "running"));
    }

    #[test]
    fn json_arguments_survive_the_shells_quoting() {
        assert_eq!(
            command_line(&["qemu-monitor-command", "d", r#"{"execute":"query-pci"}"#]),
            r#"'qemu-monitor-command' 'd' '{"execute":"query-pci"}'"#
        );
        assert_eq!(
            command_line(&["echo", "it's"]),
            r#""it's""#.replace("\"it", "'echo' \"it")
        );
        let mut s = session();
        let echoed = s
            .call(
                &["echo", r#"{"a": "b c"}"#],
                Duration::from_secs(30),
                &|| None,
            )
            .unwrap();
        assert_eq!(echoed.stdout.trim(), r#"{"a": "b c"}"#);
        let quoted = s
            .call(&["echo", "it's"], Duration::from_secs(30), &|| None)
            .unwrap();
        assert_eq!(quoted.stdout.trim(), "it's");
    }
}
