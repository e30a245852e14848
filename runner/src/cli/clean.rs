//! `mflab clean [--kept]`: remove the work directories in the temp dir
//! (`$TMPDIR`) that runners killed by SIGKILL left behind. A live runner's
//! directories are never touched; kept ones (a failed run, `--keep`) only
//! with `--kept`.

use clap::Args;

use super::{CliError, Outcome};
use crate::host::workdir::{sweep, Owner};

#[derive(Args)]
pub struct CleanArgs {
    /// Also remove kept directories (of failed runs, or --keep) whose runner is gone.
    #[arg(long)]
    kept: bool,
}

pub fn run(args: CleanArgs) -> Result<Outcome, CliError> {
    let tmp = std::env::temp_dir();
    let swept = sweep(&tmp, args.kept, &Owner::alive);
    for l in &swept.removed {
        let what = if l.kept { "kept" } else { "left" };
        println!(
            "removed {} ({what} by runner {}, which is gone)",
            l.path.display(),
            l.owner.pid
        );
    }
    for l in &swept.left_kept {
        println!(
            "kept {} (a failed run's or --keep; `mflab clean --kept` removes it)",
            l.path.display()
        );
    }
    for (l, e) in &swept.failed {
        eprintln!("mflab: cannot remove {}: {e}", l.path.display());
    }
    eprintln!(
        "mflab: {} work director{} removed from {}",
        swept.removed.len(),
        if swept.removed.len() == 1 { "y" } else { "ies" },
        tmp.display()
    );
    // Each directory that stayed is said above, beside those removed.
    Ok(if swept.failed.is_empty() {
        Outcome::Clean
    } else {
        Outcome::UsageOrIo
    })
}
