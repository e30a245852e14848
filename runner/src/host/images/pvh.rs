//! The kernel's uncompressed ELF image, booted through QEMU's PVH entry:
//! decompressing a bzImage under emulation costs about 2 s (docs/performance.md).
//! The xz stream inside the bzImage (Debian 12) is found by its magic
//! bytes and unpacked once with `xz`; a zstd frame (Debian 13 builds with
//! KERNEL_ZSTD) the same way, in-process; the result is used only if it is
//! an x86-64 ELF with a PVH entry note (Xen note type 18,
//! XEN_ELFNOTE_PHYS32_ENTRY).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::elf_compact::compact;
use super::elf_fields::{u16_at, u32_at, u64_at};
use super::{cache_dir, io_err, ImageError, KernelSource};

const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// The cached ELF for `kernel`, extracting it on first use; `None` when the
/// kernel is not xz-compressed or has no PVH entry (boot the bzImage then).
pub fn pvh_vmlinux(kernel: &KernelSource) -> Result<Option<PathBuf>, ImageError> {
    let meta = std::fs::metadata(&kernel.vmlinuz).map_err(io_err(&kernel.vmlinuz))?;
    let dir = cache_dir().join("vmlinux");
    let stamp = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    // "compact": the layout of `elf_compact`, so older caches are not reused.
    let out = dir.join(format!(
        "{}-{}-{stamp}.compact.elf",
        kernel.version,
        meta.len()
    ));
    let no_pvh = out.with_extension("no-pvh");
    if out.exists() {
        return Ok(Some(out));
    }
    if no_pvh.exists() {
        return Ok(None);
    }
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let bz = std::fs::read(&kernel.vmlinuz).map_err(io_err(&kernel.vmlinuz))?;
    let elf = payload_elf(&bz);
    match elf {
        Some(elf) if has_pvh_entry(&elf) => {
            let elf = match compact(&elf) {
                Some(small) if has_pvh_entry(&small) => small,
                _ => elf,
            };
            let tmp = out.with_extension(format!("tmp.{}", std::process::id()));
            std::fs::write(&tmp, &elf).map_err(io_err(&tmp))?;
            std::fs::rename(&tmp, &out).map_err(io_err(&out))?;
            Ok(Some(out))
        }
        _ => {
            tracing::info!(
                "{} has no xz- or zstd-compressed ELF with a PVH entry; booting the bzImage",
                kernel.vmlinuz.display()
            );
            std::fs::write(&no_pvh, b"").map_err(io_err(&no_pvh))?;
            Ok(None)
        }
    }
}

/// The ELF inside a bzImage: the first xz stream or zstd frame that
/// unpacks to one.
fn payload_elf(bz: &[u8]) -> Option<Vec<u8>> {
    let find = |magic: &[u8]| bz.windows(magic.len()).position(|w| w == magic);
    find(XZ_MAGIC)
        .and_then(|at| unxz(&bz[at..]))
        .or_else(|| find(ZSTD_MAGIC).and_then(|at| unzstd(&bz[at..])))
}

/// One zstd frame (what follows it is ignored).
fn unzstd(frame: &[u8]) -> Option<Vec<u8>> {
    let mut input = frame;
    let mut decoder = ruzstd::decoding::StreamingDecoder::new(&mut input).ok()?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut decoder, &mut out).ok()?;
    out.starts_with(b"\x7fELF").then_some(out)
}

fn unxz(stream: &[u8]) -> Option<Vec<u8>> {
    // --single-stream: stop at the end of the first stream, ignore what follows.
    let mut child = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let input = stream.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().ok()?;
    let _ = writer.join();
    (out.status.success() && out.stdout.starts_with(b"\x7fELF")).then_some(out.stdout)
}

/// Whether a 64-bit little-endian ELF carries a "Xen" note of type 18 in
/// one of its PT_NOTE segments.
pub fn has_pvh_entry(elf: &[u8]) -> bool {
    pvh_note(elf).unwrap_or(false)
}

fn pvh_note(elf: &[u8]) -> Option<bool> {
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Some(false); // not ELF64 little-endian
    }
    let phoff = u64_at(elf, 0x20)? as usize;
    let phentsize = u16_at(elf, 0x36)? as usize;
    let phnum = u16_at(elf, 0x38)? as usize;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(elf, ph)? != 4 {
            continue; // PT_NOTE only
        }
        let (mut at, end) = (
            u64_at(elf, ph + 8)? as usize,
            (u64_at(elf, ph + 8)? + u64_at(elf, ph + 32)?) as usize,
        );
        while at + 12 <= end {
            let namesz = u32_at(elf, at)? as usize;
            let descsz = u32_at(elf, at + 4)? as usize;
            let kind = u32_at(elf, at + 8)?;
            let name = elf.get(at + 12..at + 12 + namesz)?;
            if name.starts_with(b"Xen") && kind == XEN_ELFNOTE_PHYS32_ENTRY {
                return Some(true);
            }
            at += 12 + namesz.div_ceil(4) * 4 + descsz.div_ceil(4) * 4;
        }
    }
    Some(false)
}

/// The file QEMU's `-kernel` gets: the PVH ELF when there is one.
pub fn boot_image(kernel: &KernelSource) -> Result<PathBuf, ImageError> {
    Ok(pvh_vmlinux(kernel)?.unwrap_or_else(|| kernel.vmlinuz.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with one PT_NOTE segment holding one note.
    fn elf_with_note(name: &[u8], kind: u32) -> Vec<u8> {
        let mut e = vec![0u8; 0x40 + 0x38];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let note_at = e.len() as u64;
        let mut note = Vec::new();
        note.extend((name.len() as u32).to_le_bytes());
        note.extend(8u32.to_le_bytes());
        note.extend(kind.to_le_bytes());
        note.extend(name);
        while note.len() % 4 != 0 {
            note.push(0);
        }
        note.extend([0u8; 8]);
        let ph = 0x40;
        e[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes());
        e[ph + 8..ph + 16].copy_from_slice(&note_at.to_le_bytes());
        e[ph + 32..ph + 40].copy_from_slice(&(note.len() as u64).to_le_bytes());
        e.extend(note);
        e
    }

    #[test]
    fn the_pvh_note_is_found() {
        assert!(has_pvh_entry(&elf_with_note(b"Xen\0", 18)));
        assert!(!has_pvh_entry(&elf_with_note(b"Xen\0", 17)));
        assert!(!has_pvh_entry(&elf_with_note(b"GNU\0", 18)));
        assert!(!has_pvh_entry(b"\x7fELF garbage"));
    }

    #[test]
    fn a_zstd_payload_after_the_setup_code_is_unpacked() {
        let elf = elf_with_note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY);
        let frame = ruzstd::encoding::compress_to_vec(
            &elf[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let mut bz = vec![0x90u8; 512];
        bz.extend(&frame);
        bz.extend([0u8; 16]);
        let got = payload_elf(&bz).expect("the ELF");
        assert_eq!(got, elf);
        assert!(has_pvh_entry(&got));
        assert!(payload_elf(&[0u8; 64]).is_none());
    }
}
