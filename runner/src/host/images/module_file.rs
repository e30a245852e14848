//! A module file as distributions ship it: `name.ko`, or compressed as
//! `name.ko.xz` (Debian 13), `name.ko.zst` (Ubuntu) or `name.ko.gz`.
//! L1's busybox `insmod` takes only plain ELF, so the initramfs carries
//! every module uncompressed; the decoders are pure Rust so that the build
//! needs no system library.

use std::io::Read;
use std::path::Path;

/// How a module file is compressed, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Gzip,
}

const SUFFIXES: &[(&str, Compression)] = &[
    (".ko", Compression::None),
    (".ko.xz", Compression::Xz),
    (".ko.zst", Compression::Zstd),
    (".ko.gz", Compression::Gzip),
];

/// The module name a file name gives (as written, before normalizing),
/// and how it is compressed; `None` for a file that is not a module.
pub fn module_name(file_name: &str) -> Option<(&str, Compression)> {
    SUFFIXES
        .iter()
        .find_map(|(suffix, c)| Some((file_name.strip_suffix(suffix)?, *c)))
        .filter(|(stem, _)| !stem.is_empty())
}

/// The module's ELF bytes, decompressed as its name says.
pub fn read_module(path: &Path) -> std::io::Result<Vec<u8>> {
    let compression = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(module_name)
        .map_or(Compression::None, |(_, c)| c);
    let data = std::fs::read(path)?;
    decompress(&data, compression).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot decompress ({compression:?}): {e}"),
        )
    })
}

pub fn decompress(data: &[u8], compression: Compression) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match compression {
        Compression::None => out.extend_from_slice(data),
        Compression::Xz => lzma_rs::xz_decompress(&mut std::io::BufReader::new(data), &mut out)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e:?}")))?,
        Compression::Zstd => {
            let mut data = data;
            ruzstd::decoding::StreamingDecoder::new(&mut data)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?
                .read_to_end(&mut out)?;
        }
        Compression::Gzip => {
            flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
pub mod tests {
    use std::io::Write;

    use super::*;

    /// `data` compressed the way a file named `*{suffix}` is.
    pub fn compress(data: &[u8], compression: Compression) -> Vec<u8> {
        match compression {
            Compression::None => data.to_vec(),
            Compression::Xz => {
                let mut out = Vec::new();
                lzma_rs::xz_compress(&mut std::io::BufReader::new(data), &mut out).unwrap();
                out
            }
            Compression::Zstd => {
                ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
            }
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(data).unwrap();
                gz.finish().unwrap()
            }
        }
    }

    #[test]
    fn names_are_read_with_every_suffix() {
        assert_eq!(
            module_name("kvm-amd.ko.zst"),
            Some(("kvm-amd", Compression::Zstd))
        );
        assert_eq!(module_name("9p.ko.xz"), Some(("9p", Compression::Xz)));
        assert_eq!(
            module_name("e1000e.ko.gz"),
            Some(("e1000e", Compression::Gzip))
        );
        assert_eq!(module_name("vfio.ko"), Some(("vfio", Compression::None)));
        assert_eq!(module_name("modules.dep"), None);
        assert_eq!(module_name("vfio.ko.bz2"), None);
        assert_eq!(module_name(".ko"), None);
    }

    #[test]
    fn every_compression_round_trips() {
        let body = b"\x7fELF\0\0\0depends=a,b\0name=x\0".repeat(100);
        for c in [
            Compression::None,
            Compression::Xz,
            Compression::Zstd,
            Compression::Gzip,
        ] {
            assert_eq!(decompress(&compress(&body, c), c).unwrap(), body, "{c:?}");
        }
        assert!(decompress(b"not xz", Compression::Xz).is_err());
        assert!(decompress(b"not zstd", Compression::Zstd).is_err());
    }
}
