//! How long `diagnose` takes on each pasted report of the test cases, and
//! how that compares with `check` alone on the same paste's XML: the
//! issue's target is well under a second per report without `--replay`.
//!
//! Run: `cargo bench -p mflab-lab --bench diagnose_speed`. Prints figures;
//! asserts nothing about time.

use std::time::{Duration, Instant};

use lab::diagnose::diagnose;
use lab::schema::check::check_text;

fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/diagnose");
    let mut pastes: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("tests/diagnose")
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "txt").then(|| {
                let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&path).unwrap())
            })
        })
        .collect();
    pastes.sort();
    println!("diagnose, one core, per paste (median of 3 rounds of 300 ms)");
    println!(
        "  {:<28} {:>7} {:>12} {:>14}",
        "paste", "bytes", "diagnose", "/ check alone"
    );
    for (name, text) in &pastes {
        let d = per_call(|| diagnose(name, text).groups.len());
        let xml = diagnose(name, text).posted_xml.unwrap_or_default();
        let c = per_call(|| check_text(name, &xml).diagnostics.len());
        println!(
            "  {name:<28} {:>7} {:>9.1} µs {:>13.1}x",
            text.len(),
            d.as_secs_f64() * 1e6,
            d.as_secs_f64() / c.as_secs_f64().max(1e-9)
        );
    }
}

/// The median time of one call over three rounds.
fn per_call<T>(mut f: impl FnMut() -> T) -> Duration {
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < Duration::from_millis(300) {
            std::hint::black_box(f());
            n += 1;
        }
        rounds.push(start.elapsed() / n);
    }
    rounds.sort();
    rounds[1]
}
