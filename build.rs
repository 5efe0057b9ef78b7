//! Compresses what is built into the binary. The models (`src/recognize/models.rs` inflates them when
//! loading): the cascade's XML shrinks 7x and the int8 SFace 18 %, 2.8 MB off every board binary.
//! The web UI and the API description (`src/serve/gzipped.rs` sends them as they are to clients
//! that take gzip): 96 KB to 22 KB.

use std::path::Path;

/// Embedded models, relative to `models/`.
const MODELS: [&str; 4] = [
    "sface_int8w.onnx",
    "yunet_2023mar.onnx",
    "haarcascade_frontalface_default.xml",
    "lbpcascade_frontalface_improved.xml",
];

/// Files `serve` sends, relative to the repository root; stored as `<file name>.gz`.
const WEB: [&str; 4] = [
    "src/serve/ui/index.html",
    "src/serve/ui/app.js",
    "src/serve/ui/style.css",
    "docs/openapi.yaml",
];

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    for name in MODELS {
        let bytes = read(&Path::new("models").join(name));
        let packed = miniz_oxide::deflate::compress_to_vec(&bytes, 9);
        write(&Path::new(&out).join(format!("{name}.deflate")), &packed);
    }
    for path in WEB {
        let source = Path::new(path);
        let bytes = read(source);
        let name = source
            .file_name()
            .expect("WEB names files")
            .to_string_lossy();
        write(&Path::new(&out).join(format!("{name}.gz")), &gzip(&bytes));
    }
}

fn read(source: &Path) -> Vec<u8> {
    println!("cargo:rerun-if-changed={}", source.display());
    std::fs::read(source).unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()))
}

fn write(target: &Path, bytes: &[u8]) {
    std::fs::write(target, bytes)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", target.display()));
}

/// A gzip member (RFC 1952): header, raw deflate, CRC-32 and length.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    // No name, no time stamp (reproducible builds), "best compression", unknown OS.
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255];
    out.extend(miniz_oxide::deflate::compress_to_vec(bytes, 9));
    out.extend(crc32(bytes).to_le_bytes());
    let len = u32::try_from(bytes.len()).expect("web files are far below 4 GiB");
    out.extend(len.to_le_bytes());
    out
}

/// CRC-32 (IEEE, reflected), bit by bit: a build step over 100 KB needs no table.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
