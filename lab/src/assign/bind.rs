//! The binder: carries out a plan's detach list on a sysfs, and gives every
//! function back at teardown.
//!
//! Like libvirt's virhostdev.c, preparing is a sequence of steps with a
//! journal, and undo is driven by the journal, not by guessing:
//! 1. write the journal (each function's original driver) before touching anything;
//! 2. detach each function: driver_override = vfio-pci, unbind, drivers_probe,
//!    read the driver link back;
//! 3. on any failure, reattach what was touched, in reverse, and fail.
//!
//! Teardown walks the same list backwards: clear driver_override, unbind
//! from vfio-pci, bind the original driver, read the link back.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::assign::plan::{Plan, Restore};
use crate::pci::address::PciAddress;
use crate::pci::view::sysfs::link_name;
use crate::pci::view::VFIO_DRIVER;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("{function}: {action}: {source}")]
    Sysfs {
        function: PciAddress,
        action: String,
        source: io::Error,
    },
    #[error("{function}: expected driver {expected}, found {found} after {action}")]
    WrongDriver {
        function: PciAddress,
        expected: String,
        found: String,
        action: String,
    },
    #[error("the {0} driver is not loaded (no {1}); load it first, e.g. modprobe vfio-pci")]
    DriverMissing(String, PathBuf),
    #[error("journal {path}: {source}")]
    Journal { path: PathBuf, source: io::Error },
    #[error("journal {path} is not a journal mflab wrote: {source}")]
    BadJournal {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{first}; rolling back also failed: {rollback}")]
    RollbackFailed {
        first: Box<BindError>,
        rollback: String,
    },
}

/// The kernel's driver-binding interface, so that the sequence and its undo
/// can be tested against a simulated kernel as well as a real sysfs.
pub trait DriverControl {
    fn driver(&self, f: PciAddress) -> Option<String>;
    fn set_override(&self, f: PciAddress, driver: Option<&str>) -> io::Result<()>;
    fn unbind(&self, f: PciAddress) -> io::Result<()>;
    /// Writes to `drivers_probe`: the kernel binds the matching (or overriding) driver.
    fn probe(&self, f: PciAddress) -> io::Result<()>;
    fn bind(&self, f: PciAddress, driver: &str) -> io::Result<()>;
    fn has_driver(&self, driver: &str) -> bool;
}

/// The real thing: files under a sysfs root.
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    fn device(&self, f: PciAddress) -> PathBuf {
        self.root.join("bus/pci/devices").join(f.to_string())
    }
}

fn write_file(path: &Path, text: &str) -> io::Result<()> {
    // One write call: sysfs attributes take their value in a single write.
    let mut file = fs::OpenOptions::new().write(true).open(path)?;
    file.write_all(text.as_bytes())
}

impl DriverControl for Sysfs {
    fn driver(&self, f: PciAddress) -> Option<String> {
        link_name(&self.device(f).join("driver"))
    }

    fn set_override(&self, f: PciAddress, driver: Option<&str>) -> io::Result<()> {
        // Writing a lone newline clears the override.
        write_file(
            &self.device(f).join("driver_override"),
            &format!("{}\n", driver.unwrap_or("")),
        )
    }

    fn unbind(&self, f: PciAddress) -> io::Result<()> {
        write_file(&self.device(f).join("driver/unbind"), &f.to_string())
    }

    fn probe(&self, f: PciAddress) -> io::Result<()> {
        write_file(&self.root.join("bus/pci/drivers_probe"), &f.to_string())
    }

    fn bind(&self, f: PciAddress, driver: &str) -> io::Result<()> {
        write_file(
            &self.root.join("bus/pci/drivers").join(driver).join("bind"),
            &f.to_string(),
        )
    }

    fn has_driver(&self, driver: &str) -> bool {
        self.root.join("bus/pci/drivers").join(driver).is_dir()
    }
}

/// What the binder changed, on disk before the first change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The sysfs root the functions live under.
    pub sysfs: PathBuf,
    /// In detach order; undo walks it backwards.
    pub entries: Vec<Restore>,
}

impl Journal {
    pub fn load(path: &Path) -> Result<Journal, BindError> {
        let text = fs::read_to_string(path).map_err(|source| BindError::Journal {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| BindError::BadJournal {
            path: path.to_path_buf(),
            source,
        })
    }

    fn store(&self, path: &Path) -> Result<(), BindError> {
        let err = |source| BindError::Journal {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let mut file = fs::File::create(&tmp).map_err(err)?;
        file.write_all(
            serde_json::to_string_pretty(self)
                .expect("journal serializes")
                .as_bytes(),
        )
        .map_err(err)?;
        file.sync_all().map_err(err)?;
        fs::rename(&tmp, path).map_err(err)
    }
}

/// Functions detached by [`detach`]; give them back with [`Detached::reattach`].
#[must_use = "detached functions must be reattached"]
pub struct Detached {
    journal: Journal,
    journal_path: PathBuf,
}

impl Detached {
    pub fn functions(&self) -> impl Iterator<Item = PciAddress> + '_ {
        self.journal.entries.iter().map(|e| e.host)
    }

    /// Gives back only `functions` (a hot-unplug), each to its original
    /// driver, in reverse journal order; the journal keeps the others and
    /// is rewritten before returning. Tries every one even if one fails.
    pub fn reattach_only(
        &mut self,
        kernel: &dyn DriverControl,
        functions: &[PciAddress],
    ) -> Result<(), BindError> {
        let (going, staying): (Vec<Restore>, Vec<Restore>) = self
            .journal
            .entries
            .iter()
            .cloned()
            .partition(|e| functions.contains(&e.host));
        if going.is_empty() {
            return Ok(());
        }
        let result = reattach_all(kernel, &going);
        self.journal.entries = staying;
        self.journal.store(&self.journal_path)?;
        result
    }

    /// Teardown: every function back to its original driver, in reverse.
    /// Tries every function even if one fails; the journal is removed only
    /// when all came back.
    pub fn reattach(self, kernel: &dyn DriverControl) -> Result<(), BindError> {
        reattach_all(kernel, &self.journal.entries)?;
        let _ = fs::remove_file(&self.journal_path);
        Ok(())
    }
}

/// Detaches `plan.detach` to vfio-pci. On failure nothing stays changed.
pub fn detach(
    plan: &Plan,
    kernel: &dyn DriverControl,
    sysfs: &Path,
    journal_path: &Path,
) -> Result<Detached, BindError> {
    // Step 1: everything checked and written down before any change.
    if !plan.detach.is_empty() && !kernel.has_driver(VFIO_DRIVER) {
        return Err(BindError::DriverMissing(
            VFIO_DRIVER.into(),
            sysfs.join("bus/pci/drivers/vfio-pci"),
        ));
    }
    let journal = Journal {
        sysfs: sysfs.to_path_buf(),
        entries: plan
            .detach
            .iter()
            .map(|&f| Restore {
                host: f,
                driver: kernel.driver(f),
            })
            .collect(),
    };
    journal.store(journal_path)?;

    // Step 2: one function at a time; on failure undo this one and those before.
    for (i, entry) in journal.entries.iter().enumerate() {
        if let Err(first) = detach_one(kernel, entry.host) {
            tracing::warn!("detach of {} failed: {first}; rolling back", entry.host);
            return match reattach_all(kernel, &journal.entries[..=i]) {
                Ok(()) => {
                    let _ = fs::remove_file(journal_path);
                    Err(first)
                }
                Err(rollback) => Err(BindError::RollbackFailed {
                    first: Box::new(first),
                    rollback: rollback.to_string(),
                }),
            };
        }
    }
    Ok(Detached {
        journal,
        journal_path: journal_path.to_path_buf(),
    })
}

/// `mflab restore JOURNAL`: give back what a killed run left detached.
pub fn restore_from_journal(journal_path: &Path) -> Result<Vec<Restore>, BindError> {
    let journal = Journal::load(journal_path)?;
    restore_with(&Sysfs::new(&journal.sysfs), journal_path)
}

/// [`restore_from_journal`] against any kernel interface.
pub fn restore_with(
    kernel: &dyn DriverControl,
    journal_path: &Path,
) -> Result<Vec<Restore>, BindError> {
    let journal = Journal::load(journal_path)?;
    reattach_all(kernel, &journal.entries)?;
    let _ = fs::remove_file(journal_path);
    Ok(journal.entries)
}

fn detach_one(kernel: &dyn DriverControl, f: PciAddress) -> Result<(), BindError> {
    let step = |action: &str, r: io::Result<()>| {
        r.map_err(|source| BindError::Sysfs {
            function: f,
            action: action.to_string(),
            source,
        })
    };
    step(
        "set driver_override to vfio-pci",
        kernel.set_override(f, Some(VFIO_DRIVER)),
    )?;
    if kernel.driver(f).is_some() {
        step("unbind from its driver", kernel.unbind(f))?;
    }
    step("write drivers_probe", kernel.probe(f))?;
    expect_driver(kernel, f, Some(VFIO_DRIVER), "detach")
}

fn reattach_one(kernel: &dyn DriverControl, entry: &Restore) -> Result<(), BindError> {
    let f = entry.host;
    let step = |action: &str, r: io::Result<()>| {
        r.map_err(|source| BindError::Sysfs {
            function: f,
            action: action.to_string(),
            source,
        })
    };
    step("clear driver_override", kernel.set_override(f, None))?;
    if kernel.driver(f).is_some() && kernel.driver(f) != entry.driver {
        step("unbind from vfio-pci", kernel.unbind(f))?;
    }
    if let Some(original) = &entry.driver {
        if kernel.driver(f).as_deref() != Some(original) {
            // Bind the exact driver it had; drivers_probe may pick another.
            if kernel.bind(f, original).is_err() {
                step("write drivers_probe", kernel.probe(f))?;
            }
        }
    }
    expect_driver(kernel, f, entry.driver.as_deref(), "reattach")
}

fn reattach_all(kernel: &dyn DriverControl, entries: &[Restore]) -> Result<(), BindError> {
    let mut failures = Vec::new();
    for entry in entries.iter().rev() {
        if let Err(e) = reattach_one(kernel, entry) {
            failures.push(e.to_string());
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(BindError::Sysfs {
        function: entries[0].host,
        action: "reattach".into(),
        source: io::Error::other(failures.join("; ")),
    })
}

fn expect_driver(
    kernel: &dyn DriverControl,
    f: PciAddress,
    expected: Option<&str>,
    action: &str,
) -> Result<(), BindError> {
    let found = kernel.driver(f);
    if found.as_deref() == expected {
        return Ok(());
    }
    Err(BindError::WrongDriver {
        function: f,
        expected: expected.unwrap_or("no driver").to_string(),
        found: found.unwrap_or_else(|| "no driver".into()),
        action: action.to_string(),
    })
}
