//! L2's RAM inside L1: one file on hugetlbfs that every L2 of this L1
//! maps shared, and that outlives each of them so the next one maps the
//! very same pages, as they are.
//!
//! Why, measured under TCG, where L0's QEMU translates L2's code too
//! (nested KVM or not) and remembers which of L1's pages hold code it
//! translated: a write to such a page goes through a slow path, byte by
//! byte, until every translation in it is gone.
//! - Fresh huge pages for each L2 (QEMU's `-mem-path` on a directory: a
//!   file created and unlinked per L2): L1's kernel zeroes the pages the
//!   previous L2 left, and the zeroing paid the slow path: 3.2 s for
//!   128 MiB (0.4 s on pages no L2 had used), inside the next L2's
//!   `device_add`, where VFIO pins L2's RAM. Every guest scenario after
//!   the first on a shared L1 cost about 8 s.
//! - The same pages, wiped between two L2s from a device (a read from the
//!   9p share, written by L0 with one invalidation per range): 0.75 s for
//!   the wipe, and L2's kernel then booted 1–2 s slower, its translations
//!   gone. Wiped by L1's CPU: 5 s.
//! - The same pages, not wiped (this module): the next L2's `device_add`
//!   0.05 s, its kernel as fast as the first L2's; a guest scenario on a
//!   shared L1 about 5 s.
//!
//! Not wiping means an L2 powers on with what the previous L2 left in RAM,
//! as a real machine does after a warm reset. Every L2 boots the same
//! kernel and initramfs, reports over its serial port into a log of its
//! own, and neither firmware nor kernel read RAM they did not write.
//! Another kind of VM (libvirt's L2) does not get the file: `give_back`
//! wipes it and returns its pages first.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where L1's init mounts hugetlbfs.
const HUGEPAGES: &str = "/dev/hugepages";
/// The file that holds L2's RAM, kept for the next L2.
const RAM_FILE: &str = "/dev/hugepages/l2-ram";

/// L2's RAM file for an L2 of `memory_mib`: huge pages set aside on first
/// use (QEMU creates the file, `share=on` keeps its pages after QEMU
/// exits). `None` when hugetlbfs or the pages are not there: L2 then gets
/// ordinary memory (and the slow path above).
pub fn prepare(memory_mib: u32) -> Option<PathBuf> {
    set_pages_aside(u64::from(memory_mib) << 20)?;
    Some(PathBuf::from(RAM_FILE))
}

/// Before another kind of VM (libvirt's L2) runs in this L1: wipes the RAM
/// file from a device and gives its pages back. Measured: with the file
/// left as it was, about one libvirt L2 in five that followed an mflab L2
/// died before printing a byte (none in 20 without the file). Our reading:
/// L0 still held valid translations of the previous L2's code in those
/// pages, and a guest running the same kernel at the same addresses from
/// other pages could meet them. A device write (a read from the 9p work
/// share into the mapped pages) makes L0 drop them in one pass per range:
/// 0.75 s, against 3 s for L1's CPU. `scratch` is a directory on that share.
/// The file is not the whole story: a libvirt L2 on a fresh L1 can die the
/// same way, which is the lab's fault `L2 silent` (or `L2 reset`) and run
/// again (`lab::lab_fault::of_libvirt_l2`).
pub fn give_back(scratch: &Path) {
    let path = Path::new(RAM_FILE);
    if !path.exists() {
        return;
    }
    if let Err(e) = wipe_from_device(path, scratch) {
        tracing::warn!("wiping L2's RAM file: {e}");
    }
    std::fs::remove_file(path).ok();
}

const WIPE_CHUNK: usize = 4 << 20;

fn wipe_from_device(ram: &Path, scratch: &Path) -> std::io::Result<()> {
    let file = OpenOptions::new().read(true).write(true).open(ram)?;
    let len = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
    if len == 0 {
        return Ok(());
    }
    let zeros_path = scratch.join("l2-ram-zeros");
    let result = (|| {
        File::create(&zeros_path)?.set_len(len as u64)?; // sparse: the host reads holes
        let mut map = SharedMap::new(&file, len)?;
        let mut zeros = File::open(&zeros_path)?;
        for chunk in map.as_mut_slice().chunks_mut(WIPE_CHUNK) {
            zeros.read_exact(chunk)?;
        }
        Ok(())
    })();
    std::fs::remove_file(&zeros_path).ok();
    result
}

/// A shared read-write mapping of a file, unmapped on drop.
struct SharedMap {
    addr: *mut libc::c_void,
    len: usize,
}

impl SharedMap {
    fn new(file: &File, len: usize) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        // SAFETY: a new mapping of `len` bytes of an open file; nothing
        // else in this process refers to that address range.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SharedMap { addr, len })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable, and
        // lives as long as `self`, which the slice borrows mutably.
        unsafe { std::slice::from_raw_parts_mut(self.addr.cast::<u8>(), self.len) }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: `addr` and `len` are the mapping made in `new`.
        unsafe {
            libc::munmap(self.addr, self.len);
        }
    }
}

fn meminfo_field(name: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Enough huge pages for the RAM file, counting those it already holds.
/// Setting them aside at L1's boot cost 0.7 s of every boot, plan-depth
/// ones included: done here, once, when the first L2 needs them.
fn set_pages_aside(bytes: u64) -> Option<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(HUGEPAGES) && l.contains("hugetlbfs"))
        .then_some(())?;
    let page = meminfo_field("Hugepagesize:")? * 1024;
    let needed = bytes.div_ceil(page);
    let held = std::fs::metadata(RAM_FILE)
        .map(|m| m.len().div_ceil(page))
        .unwrap_or(0);
    let free = meminfo_field("HugePages_Free:")?;
    if free + held < needed {
        let total = meminfo_field("HugePages_Total:")? + needed - free - held;
        std::fs::write("/proc/sys/vm/nr_hugepages", total.to_string()).ok()?;
    }
    (meminfo_field("HugePages_Free:")? + held >= needed).then_some(())
}
