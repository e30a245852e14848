//! Ctrl-C and SIGTERM: remembered in a flag that every wait loop checks,
//! so the owner of a QEMU process or a work directory unwinds normally
//! (QEMU killed and reaped, temporary directories removed) before the
//! runner exits with 130. Should the runner die anyway, its QEMU children
//! die with it (parent-death signal).

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
