//! libvirt as the system under test, inside L1: a private libvirtd (no
//! systemd, no D-Bus, state on tmpfs, a qemu.conf fit for a lab), driven
//! with `virsh`, whose errors are kept word for word.
//!
//! What Debian's libvirt needs to start this way (docs/libvirt.md):
//! writable /var and /etc/libvirt, a `libvirt-qemu` user in /etc/passwd,
//! and qemu.conf with root, no security driver, no cgroups, no namespaces
//! and `stdio_handler = "file"` (else it needs virtlogd).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lab::machine::libvirt_binaries::LibvirtBinaries;
use lab::protocol::paths::LIBVIRTD_LOG;

pub use super::virsh_session::VirshOutput;
use super::virsh_session::VirshSession;
use super::L1Error;

const URI: &str = "qemu:///system";
const SOCKET: &str = "/run/libvirt/libvirt-sock";
pub const DOMAIN_NAME: &str = "mflab-l2";

const QEMU_CONF: &str = r#"# Written by mflab for a lab VM: no confinement, no cgroups, no virtlogd.
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
stdio_handler = "file"
cgroup_controllers = [ ]
namespaces = [ ]
"#;

/// The lab defines no libvirt networks: libvirt 10.4+ would otherwise
/// refuse to start its network driver (and so the whole daemon) on a root
/// without nft or iptables ("could not find a usable firewall backend").
/// Older libvirt has no network.conf and never reads it.
const NETWORK_CONF: &str =
    "# Written by mflab: no virtual networks in the lab.\nfirewall_backend = \"none\"\n";

/// A libvirtd started for one run; killed when dropped. Its virsh calls
/// go through one long-lived virsh ([`VirshSession`]).
/// A `virsh qemu-monitor-event` process, ended when dropped.
pub struct EventWatch(Child);

impl Drop for EventWatch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Why L2's QEMU ended, from `virsh qemu-monitor-event`'s output ("event
/// SHUTDOWN at 1.2 for domain 'l2': {\"guest\":true,\"reason\":\"guest-reset\"}"):
/// the first SHUTDOWN event's reason. A guest reset under `on_reboot` =
/// destroy is followed by libvirt's own SIGTERM, whose event says
/// `host-signal`; that one names libvirt's doing, not L2's.
pub fn shutdown_reason(events: &str) -> Option<String> {
    events
        .lines()
        .filter(|l| l.starts_with("event SHUTDOWN"))
        .find_map(|l| {
            let data: serde_json::Value = serde_json::from_str(&l[l.find('{')?..]).ok()?;
            data["reason"].as_str().map(str::to_string)
        })
}

pub struct Libvirtd {
    child: Mutex<Child>,
    log: PathBuf,
    binaries: LibvirtBinaries,
    session: Mutex<Option<VirshSession>>,
}

/// The longest one virsh call may take. Seen under TCG: `virsh start`
/// never returning (L2's QEMU stuck in L1's kernel before its monitor
/// answered), and `destroy` waiting on a QEMU that SIGKILL could not end.
/// A call takes well under 10 s here otherwise.
pub const VIRSH_TIMEOUT: Duration = Duration::from_secs(60);

fn sh(cmd: &str, args: &[&str]) -> Result<(), L1Error> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|source| L1Error::Spawn {
            command: cmd.to_string(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(L1Error::Command {
            command: format!("{cmd} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

impl Libvirtd {
    /// Prepares L1's writable places and starts `libvirtd` from `bin_dir`
    /// (default: /usr/sbin and /usr/bin of the shared host root; a meson
    /// build directory runs from its tree, see [`LibvirtBinaries`]).
    pub fn start(work: &Path, bin_dir: Option<&Path>) -> Result<Libvirtd, L1Error> {
        let binaries = LibvirtBinaries::resolve(bin_dir)?;
        if !binaries.libvirtd.exists() {
            return Err(L1Error::NoLibvirtd {
                path: binaries.libvirtd,
            });
        }
        super::kvm::ready_for_l2()?;
        // A shared L1 prepares once; the daemon itself is new for every run.
        if !Path::new(PREPARED).exists() {
            prepare_l1_for_libvirt()?;
        }
        let _ = std::fs::remove_file(SOCKET);

        let log_path = work.join(LIBVIRTD_LOG);
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&binaries.libvirtd)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(binaries.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|source| L1Error::Spawn {
                command: binaries.libvirtd.display().to_string(),
                source,
            })?;
        let daemon = Libvirtd {
            child: Mutex::new(child),
            log: log_path,
            binaries,
            session: Mutex::new(None),
        };
        let start = Instant::now();
        while !Path::new(SOCKET).exists() {
            if let Some(gone) = daemon.exited() {
                return Err(gone);
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(L1Error::NoSocket);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(daemon)
    }

    /// One virsh call, word for word what virsh said; [`VIRSH_TIMEOUT`] at most.
    pub fn virsh(&self, args: &[&str]) -> VirshOutput {
        let mut session = self.session.lock().expect("virsh session");
        if session.is_none() {
            match VirshSession::start(&self.binaries.virsh, &self.binaries.env, URI) {
                Ok(s) => *session = Some(s),
                Err(e) => {
                    return VirshOutput {
                        stderr: format!("error: {}: {e}\n", self.binaries.virsh.display()),
                        ..Default::default()
                    }
                }
            }
        }
        let live = session.as_mut().expect("started above");
        match live.call(args, VIRSH_TIMEOUT, &|| {
            self.exited().map(|gone| gone.to_string())
        }) {
            Ok(out) => out,
            Err(out) => {
                // A session that missed its deadline or died is not reused.
                *session = None;
                out
            }
        }
    }

    /// `virsh qemu-monitor-event` on the domain's SHUTDOWN events, written
    /// to `out` until the watch drops: QEMU's reason for ending (a
    /// power-off, or a guest reset under -no-reboot), which libvirt's own
    /// domain state does not keep.
    pub fn watch_shutdown(&self, out: &Path) -> Option<EventWatch> {
        let file = std::fs::File::create(out).ok()?;
        std::process::Command::new(&self.binaries.virsh)
            .envs(self.binaries.env.iter().map(|(k, v)| (k, v)))
            .args(["-c", URI, "qemu-monitor-event", "--domain", DOMAIN_NAME])
            .args(["--event", "SHUTDOWN", "--loop"])
            .stdin(std::process::Stdio::null())
            .stdout(file)
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()
            .map(EventWatch)
    }

    /// Why the daemon is gone, when it is: its exit status and the first
    /// error it logged (the cause; what follows are its consequences).
    /// libvirtd opens its socket before its drivers start, and quits when
    /// one fails to, so a call may find it gone.
    fn exited(&self) -> Option<L1Error> {
        let status = self.child.lock().expect("libvirtd").try_wait().ok()??;
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        Some(L1Error::LibvirtdExited {
            status,
            first_error: first_logged_error(&log).map(str::to_string),
        })
    }

    /// The domain's state word (`running`, `paused`, `shut off`).
    pub fn domstate(&self) -> String {
        self.virsh(&["domstate", DOMAIN_NAME])
            .stdout
            .trim()
            .to_string()
    }

    /// Waits until the domain is shut off, until the deadline, or until
    /// `give_up` says why waiting on is pointless.
    pub fn wait_shut_off(
        &self,
        timeout: Duration,
        give_up: &dyn Fn() -> Option<String>,
    ) -> ShutOffWait {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.domstate() == "shut off" {
                return ShutOffWait::ShutOff;
            }
            if let Some(why) = give_up() {
                tracing::warn!("{why}");
                return ShutOffWait::GaveUp(why);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        ShutOffWait::Deadline
    }
}

/// How [`Libvirtd::wait_shut_off`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ShutOffWait {
    ShutOff,
    /// `give_up` said why, and this is what it said.
    GaveUp(String),
    Deadline,
}

impl Libvirtd {
    /// Whether this daemon can serve another scenario: it runs, and it
    /// holds no domain (every scenario undefines its own).
    pub fn healthy(&mut self) -> Result<(), L1Error> {
        if let Some(gone) = self.exited() {
            return Err(gone);
        }
        let list = self.virsh(&["list", "--all", "--name"]);
        if !list.ok {
            return Err(L1Error::LibvirtdUnanswered(list.error_text()));
        }
        match list.stdout.trim() {
            "" => Ok(()),
            left => Err(L1Error::DomainsLeft(left.to_string())),
        }
    }
}

/// The libvirtd of one L1: started for its first libvirt scenario and
/// kept for the next ones (its QEMU capabilities probed once), unless a
/// scenario asks for another build's binaries.
pub struct DaemonSlot {
    log_dir: PathBuf,
    daemon: Option<(Option<PathBuf>, Libvirtd)>,
}

impl DaemonSlot {
    /// Its daemon logs into `log_dir`.
    pub fn new(log_dir: &Path) -> Self {
        DaemonSlot {
            log_dir: log_dir.to_path_buf(),
            daemon: None,
        }
    }

    /// The daemon for `bin_dir`, started if there is none (or another build's).
    pub fn get(&mut self, bin_dir: Option<&Path>) -> Result<&Libvirtd, L1Error> {
        let same = |held: &Option<PathBuf>| held.as_deref() == bin_dir;
        if !self.daemon.as_ref().is_some_and(|(held, _)| same(held)) {
            // The old daemon goes first: one libvirtd per L1.
            self.daemon = None;
            let started = Libvirtd::start(&self.log_dir, bin_dir)?;
            self.daemon = Some((bin_dir.map(Path::to_path_buf), started));
        }
        Ok(&self.daemon.as_ref().expect("started above").1)
    }

    /// Health between two scenarios: fine without a daemon.
    pub fn healthy(&mut self) -> Result<(), L1Error> {
        match &mut self.daemon {
            Some((_, daemon)) => daemon.healthy(),
            None => Ok(()),
        }
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let child = self.child.get_mut().expect("libvirtd");
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The words of libvirtd's first logged error: from "…: 177: error :
/// virNetworkLoadDriverConfig:155 : internal error: could not find a
/// usable firewall backend", the part after the function.
fn first_logged_error(log: &str) -> Option<&str> {
    log.lines().find_map(|line| {
        let (_, rest) = line.split_once(": error : ")?;
        Some(
            rest.split_once(" : ")
                .map_or(rest, |(_, words)| words)
                .trim(),
        )
    })
}

const PREPARED: &str = "/run/mflab-libvirt-prepared";

/// L1's /var and /etc are the host's, read-only: tmpfs where libvirt writes,
/// its configuration, and the user it looks up.
fn prepare_l1_for_libvirt() -> Result<(), L1Error> {
    sh("mount", &["-t", "tmpfs", "tmpfs", "/var"])?;
    std::os::unix::fs::symlink("/run", "/var/run")?;
    std::os::unix::fs::symlink("/run/lock", "/var/lock")?;
    for d in [
        "/var/lib/libvirt/qemu",
        "/var/cache/libvirt",
        "/var/log/libvirt",
        "/run/libvirt",
    ] {
        std::fs::create_dir_all(d).map_err(|source| L1Error::File {
            path: d.into(),
            source,
        })?;
    }
    sh("mount", &["-t", "tmpfs", "tmpfs", "/etc/libvirt"])?;
    std::fs::create_dir_all("/etc/libvirt/qemu")?;
    std::fs::write("/etc/libvirt/qemu.conf", QEMU_CONF)?;
    std::fs::write("/etc/libvirt/network.conf", NETWORK_CONF)?;
    std::fs::write("/etc/libvirt/libvirtd.conf", "log_outputs = \"3:stderr\"\n")?;
    // libvirt looks the qemu user up even when told to run QEMU as root.
    add_line(
        "/etc/passwd",
        "libvirt-qemu:",
        "libvirt-qemu:x:64055:64055:libvirt qemu:/var/lib/libvirt:/usr/sbin/nologin",
    )?;
    add_line("/etc/group", "libvirt-qemu:", "libvirt-qemu:x:64055:")?;
    add_line("/etc/group", "kvm:", "kvm:x:64056:")?;

    Ok(std::fs::write(PREPARED, "")?)
}

/// Appends `line` to a read-only file of the shared root by binding a copy over it.
fn add_line(file: &str, prefix: &str, line: &str) -> Result<(), L1Error> {
    let text = std::fs::read_to_string(file).map_err(|source| L1Error::File {
        path: file.into(),
        source,
    })?;
    if text.lines().any(|l| l.starts_with(prefix)) {
        return Ok(());
    }
    let copy = format!(
        "/run/mflab-{}",
        file.trim_start_matches('/').replace('/', "-")
    );
    std::fs::write(&copy, format!("{text}{line}\n")).map_err(|source| L1Error::File {
        path: copy.clone().into(),
        source,
    })?;
    sh("mount", &["--bind", &copy, file])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_s_reason_for_ending_is_read_from_virsh_s_events() {
        let events = "event SHUTDOWN at 1764700000.123456 for domain 'l2': {\"guest\":true,\"reason\":\"guest-reset\"}\n";
        assert_eq!(shutdown_reason(events).as_deref(), Some("guest-reset"));
        let poweroff = "event SHUTDOWN at 1.000001 for domain 'l2': {\"guest\":true,\"reason\":\"guest-shutdown\"}\n";
        assert_eq!(shutdown_reason(poweroff).as_deref(), Some("guest-shutdown"));
        assert_eq!(shutdown_reason(""), None);
        // Seen (2026-12-03): a triple fault, then libvirt ending L2's QEMU.
        let destroyed = format!(
            "{events}event SHUTDOWN at 1764700000.132 for domain 'l2': {{\"guest\":false,\"reason\":\"host-signal\"}}\n"
        );
        assert_eq!(shutdown_reason(&destroyed).as_deref(), Some("guest-reset"));
        assert_eq!(
            shutdown_reason("event SHUTDOWN at 1.0 for domain 'l2': <null>\n"),
            None
        );
    }

    #[test]
    fn a_dead_daemon_is_named_by_its_first_error() {
        let log = "2026-12-01 13:35:06.985+0000: 177: info : libvirt version: 11.3.0
2026-12-01 13:35:06.985+0000: 177: error : virNetworkLoadDriverConfig:155 : internal error: could not find a usable firewall backend
2026-12-01 13:35:06.991+0000: 177: error : daemonRunStateInit:586 : Driver state initialization failed
";
        assert_eq!(
            first_logged_error(log),
            Some("internal error: could not find a usable firewall backend")
        );
        assert_eq!(first_logged_error("…: 1: info : fine\n"), None);
    }

    #[test]
    fn virsh_errors_lose_only_their_prefixes() {
        let out = VirshOutput {
            ok: false,
            stdout: String::new(),
            stderr: "error: Failed to start domain 'mflab-l2'\nerror: internal error: qemu unexpectedly closed the monitor: vfio 0000:00:06.0: group 3 is not viable\n\n".into(),
            timed_out: false,
        };
        assert_eq!(out.error_text(), "Failed to start domain 'mflab-l2' / internal error: qemu unexpectedly closed the monitor: vfio 0000:00:06.0: group 3 is not viable");
    }
}
