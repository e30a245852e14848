//! Progress as data: the suite emits [`Event`]s, and an [`Observer`]
//! renders them. On a terminal, one live line per running scenario with
//! its stage and elapsed seconds ([`Live`]); otherwise (CI logs, pipes)
//! plain lines on stderr ([`Plain`]); `MFLAB_NO_PROGRESS=1` forces plain.
//! The reports (text, JSON, JUnit) consume the finished results, not these.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use lab::protocol::Progress;

/// What happened to one run of the suite (`run` numbers the runs).
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    Started {
        run: usize,
        label: &'a str,
    },
    Reached {
        run: usize,
        step: Progress,
    },
    /// The lab failed and the run starts again on a fresh L1.
    Retrying {
        run: usize,
        why: &'a str,
    },
    Finished {
        run: usize,
        passed: bool,
        elapsed: Duration,
    },
}

pub trait Observer: Sync {
    fn event(&self, e: Event<'_>);

    /// Prints a finished run's report to stdout without tearing a live
    /// display.
    fn print(&self, text: &str) {
        print!("{text}");
    }
}

/// No progress at all: for callers that only want the results.
pub struct Quiet;

impl Observer for Quiet {
    fn event(&self, _: Event<'_>) {}
}

/// The observer for this process's stderr.
pub fn for_stderr() -> Box<dyn Observer> {
    let forced_plain = std::env::var_os("MFLAB_NO_PROGRESS").is_some_and(|v| v == "1");
    if std::io::stderr().is_terminal() && !forced_plain {
        Box::new(Live::default())
    } else {
        Box::new(Plain::default())
    }
}

/// Plain lines on stderr, one per event, each with the seconds since the
/// suite started: `mflab: [  12.3s] gpu-audio-unassigned [libvirt]: starting L2`.
pub struct Plain {
    start: Instant,
    labels: Mutex<HashMap<usize, String>>,
}

impl Default for Plain {
    fn default() -> Self {
        Plain {
            start: Instant::now(),
            labels: Mutex::new(HashMap::new()),
        }
    }
}

impl Plain {
    /// The line an event is printed as, `None` for none.
    pub fn line(&self, e: Event<'_>) -> Option<String> {
        let mut labels = self.labels.lock().expect("labels");
        let (run, what) = match e {
            Event::Started { run, label } => {
                labels.insert(run, label.to_string());
                (run, "started".to_string())
            }
            Event::Reached { run, step } => (run, step.to_string()),
            Event::Retrying { run, why } => (run, format!("lab fault, running again: {why}")),
            Event::Finished {
                run,
                passed,
                elapsed,
            } => (
                run,
                format!(
                    "{} after {:.1}s",
                    if passed { "passed" } else { "FAILED" },
                    elapsed.as_secs_f64()
                ),
            ),
        };
        let label = labels.get(&run)?;
        Some(format!(
            "mflab: [{:6.1}s] {label}: {what}",
            self.start.elapsed().as_secs_f64()
        ))
    }
}

impl Observer for Plain {
    fn event(&self, e: Event<'_>) {
        if let Some(line) = self.line(e) {
            eprintln!("{line}");
        }
    }
}

/// A live line per running scenario (indicatif): its name, its current
/// stage, and the seconds since it started; the line goes when it ends.
pub struct Live {
    multi: MultiProgress,
    bars: Mutex<HashMap<usize, ProgressBar>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Observer for Live {
    fn event(&self, e: Event<'_>) {
        let mut bars = self.bars.lock().expect("bars");
        match e {
            Event::Started { run, label } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {prefix:.bold} {elapsed:>4} {wide_msg}",
                    )
                    .expect("template"),
                );
                bar.set_prefix(label.to_string());
                bar.set_message("started");
                bar.enable_steady_tick(Duration::from_millis(200));
                bars.insert(run, bar);
            }
            Event::Reached { run, step } => {
                if let Some(bar) = bars.get(&run) {
                    bar.set_message(step.to_string());
                }
            }
            Event::Retrying { run, why } => {
                if let Some(bar) = bars.get(&run) {
                    bar.set_message(format!("lab fault, running again: {why}"));
                }
            }
            Event::Finished { run, .. } => {
                if let Some(bar) = bars.remove(&run) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
        }
    }

    fn print(&self, text: &str) {
        self.multi.suspend(|| print!("{text}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_name_the_run_and_its_stage() {
        let plain = Plain::default();
        assert_eq!(
            plain.line(Event::Reached {
                run: 1,
                step: Progress::L2Starting
            }),
            None
        );
        let started = plain
            .line(Event::Started {
                run: 1,
                label: "gpu-audio-unassigned [libvirt]",
            })
            .unwrap();
        assert!(
            started.ends_with("] gpu-audio-unassigned [libvirt]: started"),
            "{started}"
        );
        let step = plain
            .line(Event::Reached {
                run: 1,
                step: Progress::L2Starting,
            })
            .unwrap();
        assert!(
            step.ends_with("gpu-audio-unassigned [libvirt]: starting L2"),
            "{step}"
        );
        let done = plain
            .line(Event::Finished {
                run: 1,
                passed: false,
                elapsed: Duration::from_millis(12_340),
            })
            .unwrap();
        assert!(done.ends_with(": FAILED after 12.3s"), "{done}");
    }
}
