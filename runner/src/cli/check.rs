//! `mflab check FILE...`

use std::path::PathBuf;

use clap::Args;
use lab::schema::check::check_text;
use lab::Diagnostic;

use super::{CliError, Format, Outcome};

#[derive(Args)]
pub struct CheckArgs {
    /// Output format: text for people (FILE:LINE:COL: error[R3]: …), json for tools.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// mflab: the static rules. libvirt: also the verdict of a real libvirt
    /// daemon (define, then undefine; started in a lab VM), beside mflab's.
    #[arg(long, value_enum, default_value_t = CheckBackend::Mflab)]
    backend: CheckBackend,
    /// Another libvirt, for --backend libvirt: a meson build directory
    /// (configured with -Dsystem=true, built with ninja), or a directory
    /// with libvirtd and virsh. L1 sees it in the host's root.
    #[arg(long)]
    libvirt_bin: Option<PathBuf>,
    /// Domain XML files: a whole <domain>, a <devices> element, or device elements.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckBackend {
    Mflab,
    Libvirt,
}

pub fn run(args: CheckArgs) -> Result<Outcome, CliError> {
    let mut all: Vec<Diagnostic> = Vec::new();
    let mut io_failed = false;
    let mut items = Vec::new();
    for path in &args.files {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                all.extend(check_text(&name, &text).diagnostics);
                items.push(lab::protocol::CheckItem {
                    file: name,
                    xml: text,
                });
            }
            // Said now, and the other files still checked: exit 2 all the same.
            Err(e) => {
                eprintln!("mflab: cannot read {name}: {e}");
                io_failed = true;
            }
        }
    }
    if args.backend == CheckBackend::Libvirt {
        let userland = crate::host::images::release_root::Userland::from_env()?;
        let libvirt_bin = match args.libvirt_bin.as_deref() {
            Some(dir) => Some(crate::host::libvirt_bin::checked(dir, userland)?),
            None => None,
        };
        return super::check_libvirt::run(
            &items,
            &all,
            args.format,
            libvirt_bin.as_deref(),
            io_failed,
        );
    }
    print_diagnostics(&all, args.format);
    Ok(if io_failed {
        Outcome::UsageOrIo
    } else if all.iter().any(Diagnostic::is_error) {
        Outcome::Failed
    } else {
        Outcome::Clean
    })
}

/// Prints findings on stdout: one block each in text, one array in JSON.
/// The text form ends with a count on stderr, so stdout stays parseable.
pub fn print_diagnostics(list: &[Diagnostic], format: Format) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(list).expect("diagnostics serialize")
        ),
        Format::Text => {
            for d in list {
                println!("{d}");
            }
            let errors = list.iter().filter(|d| d.is_error()).count();
            let warnings = list.len() - errors;
            eprintln!("{errors} error(s), {warnings} warning(s)");
        }
    }
}
