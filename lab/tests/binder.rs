//! The binder's sequence and its undo, against a simulated kernel that
//! behaves like the PCI core: driver_override wins at probe time, unbind
//! leaves no driver, bind attaches the named driver. Failures can be
//! injected. (On a real kernel the binder runs inside the lab VM.)

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::Path;

use lab::assign::bind::{detach, restore_with, BindError, DriverControl};
use lab::assign::plan::Plan;
use lab::PciAddress;

#[derive(Clone, Default)]
struct Function {
    driver: Option<String>,
    override_: Option<String>,
    /// What the kernel binds on probe without an override.
    native: Option<String>,
}

#[derive(Default)]
struct SimulatedKernel {
    functions: RefCell<HashMap<PciAddress, Function>>,
    vfio_loaded: bool,
    /// vfio-pci refuses this function at probe (as for a device it cannot handle).
    refuse: Option<PciAddress>,
    /// Called before the first change, to look at the world at that moment.
    on_first_change: RefCell<Option<Box<dyn FnOnce()>>>,
}

fn a(s: &str) -> PciAddress {
    s.parse().unwrap()
}

impl SimulatedKernel {
    fn with(functions: &[(&str, Option<&str>)]) -> Self {
        let map = functions
            .iter()
            .map(|(bdf, d)| {
                let d = d.map(str::to_string);
                (
                    a(bdf),
                    Function {
                        driver: d.clone(),
                        override_: None,
                        native: d,
                    },
                )
            })
            .collect();
        SimulatedKernel {
            functions: RefCell::new(map),
            vfio_loaded: true,
            ..Default::default()
        }
    }
    fn changing(&self) {
        if let Some(f) = self.on_first_change.borrow_mut().take() {
            f();
        }
    }
    fn state(&self, f: &str) -> (Option<String>, Option<String>) {
        let m = self.functions.borrow();
        let s = &m[&a(f)];
        (s.driver.clone(), s.override_.clone())
    }
}

impl DriverControl for SimulatedKernel {
    fn driver(&self, f: PciAddress) -> Option<String> {
        self.functions.borrow()[&f].driver.clone()
    }
    fn set_override(&self, f: PciAddress, driver: Option<&str>) -> io::Result<()> {
        self.changing();
        self.functions.borrow_mut().get_mut(&f).unwrap().override_ = driver.map(str::to_string);
        Ok(())
    }
    fn unbind(&self, f: PciAddress) -> io::Result<()> {
        self.changing();
        self.functions.borrow_mut().get_mut(&f).unwrap().driver = None;
        Ok(())
    }
    fn probe(&self, f: PciAddress) -> io::Result<()> {
        self.changing();
        let mut m = self.functions.borrow_mut();
        let s = m.get_mut(&f).unwrap();
        if s.driver.is_some() {
            return Ok(());
        }
        let want = s.override_.clone().or_else(|| s.native.clone());
        if want.as_deref() == Some("vfio-pci") && (!self.vfio_loaded || self.refuse == Some(f)) {
            return Ok(()); // the kernel just leaves it without a driver
        }
        s.driver = want;
        Ok(())
    }
    fn bind(&self, f: PciAddress, driver: &str) -> io::Result<()> {
        self.changing();
        let mut m = self.functions.borrow_mut();
        let s = m.get_mut(&f).unwrap();
        if s.override_.as_deref().is_some_and(|o| o != driver) {
            return Err(io::Error::from_raw_os_error(19));
        }
        s.driver = Some(driver.to_string());
        Ok(())
    }
    fn has_driver(&self, driver: &str) -> bool {
        driver != "vfio-pci" || self.vfio_loaded
    }
}

/// The binder reads only `detach`; the journal records the drivers itself.
fn plan_detaching(functions: &[&str]) -> Plan {
    Plan::detach_only(functions.iter().map(|f| a(f)).collect())
}

#[test]
fn detach_then_reattach_gives_back_exactly_the_original_drivers() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.json");
    let k = SimulatedKernel::with(&[
        ("0000:00:06.0", Some("bochs-drm")),
        ("0000:00:06.1", Some("snd_hda_intel")),
        ("0000:00:06.2", None),
    ]);
    let plan = plan_detaching(&["0000:00:06.0", "0000:00:06.1", "0000:00:06.2"]);
    let detached = detach(&plan, &k, Path::new("/sys"), &journal).unwrap();
    for f in ["0000:00:06.0", "0000:00:06.1", "0000:00:06.2"] {
        assert_eq!(
            k.state(f),
            (Some("vfio-pci".into()), Some("vfio-pci".into())),
            "{f} during"
        );
    }
    assert!(
        journal.exists(),
        "the journal stays while functions are detached"
    );
    detached.reattach(&k).unwrap();
    assert_eq!(k.state("0000:00:06.0"), (Some("bochs-drm".into()), None));
    assert_eq!(
        k.state("0000:00:06.1"),
        (Some("snd_hda_intel".into()), None)
    );
    assert_eq!(
        k.state("0000:00:06.2"),
        (None, None),
        "a function that had no driver gets none back"
    );
    assert!(!journal.exists(), "a clean teardown removes the journal");
}

#[test]
fn the_journal_is_on_disk_before_the_first_change() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.json");
    let k = SimulatedKernel::with(&[("0000:00:06.0", Some("bochs-drm"))]);
    let seen = std::rc::Rc::new(RefCell::new(None));
    let (seen2, path2) = (seen.clone(), journal.clone());
    *k.on_first_change.borrow_mut() = Some(Box::new(move || {
        *seen2.borrow_mut() = Some(std::fs::read_to_string(&path2).ok());
    }));
    let plan = plan_detaching(&["0000:00:06.0"]);
    let detached = detach(&plan, &k, Path::new("/sys"), &journal).unwrap();
    let text = seen
        .borrow()
        .clone()
        .flatten()
        .expect("journal existed at the first change");
    assert!(
        text.contains("bochs-drm") && text.contains("0000:00:06.0"),
        "{text}"
    );
    detached.reattach(&k).unwrap();
}

#[test]
fn a_failure_midway_rolls_back_what_was_changed() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.json");
    let mut k = SimulatedKernel::with(&[
        ("0000:00:06.0", Some("bochs-drm")),
        ("0000:00:06.1", Some("snd_hda_intel")),
        ("0000:00:06.2", Some("e1000e")),
    ]);
    k.refuse = Some(a("0000:00:06.1"));
    let plan = plan_detaching(&["0000:00:06.0", "0000:00:06.1", "0000:00:06.2"]);
    let err = detach(&plan, &k, Path::new("/sys"), &journal)
        .err()
        .expect("detach must fail");
    assert!(matches!(err, BindError::WrongDriver { .. }), "{err}");
    assert!(err.to_string().contains("0000:00:06.1"), "{err}");
    assert_eq!(k.state("0000:00:06.0"), (Some("bochs-drm".into()), None));
    assert_eq!(
        k.state("0000:00:06.1"),
        (Some("snd_hda_intel".into()), None)
    );
    assert_eq!(
        k.state("0000:00:06.2"),
        (Some("e1000e".into()), None),
        "never touched"
    );
    assert!(!journal.exists());
}

#[test]
fn without_vfio_pci_nothing_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.json");
    let mut k = SimulatedKernel::with(&[("0000:00:06.0", Some("bochs-drm"))]);
    k.vfio_loaded = false;
    let plan = plan_detaching(&["0000:00:06.0"]);
    let err = detach(&plan, &k, Path::new("/sys"), &journal)
        .err()
        .unwrap();
    assert!(matches!(err, BindError::DriverMissing(..)), "{err}");
    assert_eq!(k.state("0000:00:06.0"), (Some("bochs-drm".into()), None));
    assert!(!journal.exists());
}

#[test]
fn a_killed_run_is_restored_from_its_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.json");
    let k = SimulatedKernel::with(&[
        ("0000:00:06.0", Some("bochs-drm")),
        ("0000:00:06.1", Some("snd_hda_intel")),
    ]);
    let plan = plan_detaching(&["0000:00:06.0", "0000:00:06.1"]);
    let detached = detach(&plan, &k, Path::new("/sys"), &journal).unwrap();
    std::mem::forget(detached); // the run is killed: no teardown
    assert_eq!(k.state("0000:00:06.1").0.as_deref(), Some("vfio-pci"));
    let restored = restore_with(&k, &journal).unwrap();
    assert_eq!(restored.len(), 2);
    assert_eq!(k.state("0000:00:06.0"), (Some("bochs-drm".into()), None));
    assert_eq!(
        k.state("0000:00:06.1"),
        (Some("snd_hda_intel".into()), None)
    );
    assert!(!journal.exists());
}

#[test]
fn a_hot_unplug_gives_back_only_its_functions_and_the_journal_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.json");
    let k = SimulatedKernel::with(&[
        ("0000:00:06.0", Some("bochs-drm")),
        ("0000:00:06.1", Some("snd_hda_intel")),
    ]);
    let plan = plan_detaching(&["0000:00:06.0", "0000:00:06.1"]);
    let mut detached = detach(&plan, &k, Path::new("/sys"), &journal).unwrap();
    detached.reattach_only(&k, &[a("0000:00:06.0")]).unwrap();
    assert_eq!(k.state("0000:00:06.0"), (Some("bochs-drm".into()), None));
    assert_eq!(
        k.state("0000:00:06.1"),
        (Some("vfio-pci".into()), Some("vfio-pci".into())),
        "the sibling stays held"
    );
    let kept = lab::assign::bind::Journal::load(&journal).unwrap();
    assert_eq!(kept.entries.len(), 1);
    assert_eq!(kept.entries[0].host, a("0000:00:06.1"));
    assert_eq!(detached.functions().count(), 1);
    detached.reattach(&k).unwrap();
    assert_eq!(
        k.state("0000:00:06.1"),
        (Some("snd_hda_intel".into()), None)
    );
    assert!(!journal.exists());
}
