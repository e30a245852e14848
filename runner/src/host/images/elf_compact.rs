//! A smaller file for the same kernel image: the vmlinux inside a bzImage
//! stores `.bss`, `.brk` and the init scratch area as zeros, and pads every
//! segment to a 2 MiB file offset, so half of its 66 MB are zeros. Every
//! byte of the file is copied at least twice under emulation when QEMU
//! loads it (into QEMU, then into guest RAM), so we drop what a loader
//! would fill with zeros anyway.
//!
//! The result has the same program headers with each PT_LOAD's trailing
//! zeros moved from `p_filesz` into `p_memsz − p_filesz` (the loader's zero
//! fill), segments packed at page-aligned offsets, and no section headers
//! (loaders read program headers only). What lands in guest memory is
//! byte for byte the same.

use super::elf_fields::{u16_at, u32_at, u64_at};

const PT_LOAD: u32 = 1;
const PAGE: u64 = 4096;
const EHDR_SIZE: usize = 0x40;

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// One program header, the fields we move.
#[derive(Clone, Copy, Debug)]
struct Phdr {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn phdrs(elf: &[u8]) -> Option<(usize, usize, Vec<Phdr>)> {
    if !elf.starts_with(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return None; // ELF64 little-endian only
    }
    let phoff = u64_at(elf, 0x20)? as usize;
    let phentsize = u16_at(elf, 0x36)? as usize;
    let phnum = u16_at(elf, 0x38)? as usize;
    if phentsize < 0x38 {
        return None;
    }
    let mut out = Vec::with_capacity(phnum);
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let p = Phdr {
            kind: u32_at(elf, ph)?,
            offset: u64_at(elf, ph + 8)?,
            vaddr: u64_at(elf, ph + 16)?,
            filesz: u64_at(elf, ph + 32)?,
        };
        if p.offset.checked_add(p.filesz)? > elf.len() as u64 {
            return None;
        }
        out.push(p);
    }
    Some((phoff, phentsize, out))
}

/// The compacted image, or `None` when `elf` is not a layout we know how to
/// move (then the caller keeps the original).
pub fn compact(elf: &[u8]) -> Option<Vec<u8>> {
    let (phoff, phentsize, headers) = phdrs(elf)?;
    let headers_end = phoff + headers.len() * phentsize;
    let mut out = elf.get(..headers_end.max(EHDR_SIZE))?.to_vec();
    // No section headers: their offsets would be stale.
    put_u64(&mut out, 0x28, 0); // e_shoff
    out[0x3a..0x40].fill(0); // e_shentsize, e_shnum, e_shstrndx

    // Where each PT_LOAD's bytes go, so that other headers inside it follow.
    let mut moved: Vec<(Phdr, u64, u64)> = Vec::new(); // (old, new offset, kept bytes)
    for (i, p) in headers.iter().enumerate() {
        if p.kind != PT_LOAD {
            continue;
        }
        let bytes = &elf[p.offset as usize..(p.offset + p.filesz) as usize];
        let kept = bytes
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |last| last + 1);
        // Keep offset ≡ vaddr (mod page), as the ELF spec asks of loaders' inputs.
        let mut at = out.len() as u64;
        at += (p.vaddr % PAGE + PAGE - at % PAGE) % PAGE;
        out.resize(at as usize, 0);
        out.extend_from_slice(&bytes[..kept]);
        let ph = phoff + i * phentsize;
        put_u64(&mut out, ph + 8, at);
        put_u64(&mut out, ph + 32, kept as u64);
        put_u64(&mut out, ph + 48, PAGE); // p_align
        moved.push((*p, at, kept as u64));
    }
    // Notes (the PVH entry among them) live inside a PT_LOAD's bytes.
    for (i, p) in headers.iter().enumerate() {
        if p.kind == PT_LOAD || p.filesz == 0 {
            continue;
        }
        let (load, new_at, _) = moved
            .iter()
            .find(|(l, _, kept)| p.offset >= l.offset && p.offset + p.filesz <= l.offset + kept)?;
        let ph = phoff + i * phentsize;
        put_u64(&mut out, ph + 8, new_at + (p.offset - load.offset));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guest memory as a loader would fill it: (paddr = vaddr here, bytes).
    fn loaded(elf: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let (phoff, phentsize, headers) = phdrs(elf).unwrap();
        headers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.kind == PT_LOAD)
            .map(|(i, p)| {
                let memsz = u64_at(elf, phoff + i * phentsize + 40).unwrap();
                let mut mem = elf[p.offset as usize..(p.offset + p.filesz) as usize].to_vec();
                mem.resize(memsz as usize, 0);
                (p.vaddr, mem)
            })
            .collect()
    }

    /// An ELF64 with two PT_LOADs at 2 MiB file offsets, the first holding
    /// a note, the second ending in a long run of zeros (its ".bss").
    fn sample() -> Vec<u8> {
        let mut e = vec![0u8; 0x20_0000 * 3];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        put_u64(&mut e, 0x20, 0x40);
        put_u64(&mut e, 0x28, 0x5000); // section headers somewhere
        e[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes());
        let ph = |e: &mut Vec<u8>, i: usize, kind: u32, off: u64, vaddr: u64, size: u64| {
            let at = 0x40 + i * 0x38;
            e[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            put_u64(e, at + 8, off);
            put_u64(e, at + 16, vaddr);
            put_u64(e, at + 32, size);
            put_u64(e, at + 40, size);
            put_u64(e, at + 48, 0x20_0000);
        };
        ph(&mut e, 0, PT_LOAD, 0x20_0000, 0x100_0000, 0x1000);
        ph(&mut e, 1, PT_LOAD, 0x40_0000, 0x200_0123, 0x20_0000);
        ph(&mut e, 2, 4, 0x20_0800, 0x100_0800, 0x10);
        e[0x20_0000..0x20_0010].copy_from_slice(b"text of segment0");
        e[0x20_0800..0x20_0810].copy_from_slice(b"Xen\0note-bytes!!");
        e[0x40_0000..0x40_0004].copy_from_slice(b"data");
        e
    }

    #[test]
    fn compaction_keeps_what_lands_in_memory_and_drops_the_zeros() {
        let original = sample();
        let small = compact(&original).unwrap();
        assert!(small.len() < 0x3000, "{} bytes", small.len());
        assert_eq!(loaded(&small), loaded(&original));
        // The note follows its segment.
        let (_, _, headers) = phdrs(&small).unwrap();
        let note = headers[2];
        assert_eq!(
            &small[note.offset as usize..(note.offset + note.filesz) as usize],
            b"Xen\0note-bytes!!"
        );
        // Offsets stay congruent to addresses modulo the page.
        for p in headers.iter().filter(|p| p.kind == PT_LOAD) {
            assert_eq!(p.offset % PAGE, p.vaddr % PAGE);
        }
        assert_eq!(u64_at(&small, 0x28), Some(0), "no section headers");
    }

    #[test]
    fn a_note_outside_every_segment_leaves_the_file_alone() {
        let mut e = sample();
        put_u64(&mut e, 0x40 + 2 * 0x38 + 8, 0x30_0000); // note in padding
        assert!(compact(&e).is_none());
        assert!(compact(b"not an elf").is_none());
    }
}
