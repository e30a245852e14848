//! How many domain XMLs per second `check` handles on one core.
//!
//! Run: `cargo bench -p mflab-lab --bench check_throughput`. Prints figures;
//! asserts nothing about time.

use std::time::{Duration, Instant};

use lab::schema::check::check_text;

fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/rules");
    let mut inputs: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("scenarios/rules")
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "xml").then(|| {
                (
                    path.display().to_string(),
                    std::fs::read_to_string(&path).ok().unwrap(),
                )
            })
        })
        .collect();
    inputs.sort();
    let dumpxml = inputs
        .iter()
        .find(|(n, _)| n.ends_with("ok-virsh-dumpxml.xml"))
        .cloned()
        .expect("dumpxml case");

    println!(
        "check throughput, one core ({} rule cases, mean {} bytes)",
        inputs.len(),
        inputs.iter().map(|(_, t)| t.len()).sum::<usize>() / inputs.len()
    );
    report("all rule cases, round robin", &inputs);
    report(
        "a full virsh dumpxml domain",
        std::slice::from_ref(&dumpxml),
    );
}

fn report(label: &str, inputs: &[(String, String)]) {
    // Warm up, then run for a fixed wall time, three rounds, print the median.
    let mut rates = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let mut n = 0u64;
        let mut errors = 0usize;
        while start.elapsed() < Duration::from_millis(700) {
            for (name, text) in inputs {
                errors += check_text(name, text).diagnostics.len();
                n += 1;
            }
        }
        std::hint::black_box(errors);
        rates.push(n as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "  {label:<32} {:>10.0} domain XMLs/s (median of 3)",
        rates[1]
    );
}
