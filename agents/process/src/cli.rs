//! What both command lines offer beside their commands: shell completions
//! (`completions bash|zsh|fish`, by clap_complete) and man pages (`man
//! --out-dir DIR`, one page per command, by clap_mangen), made from the
//! same definitions clap parses, so they never disagree with `--help`.

use std::path::{Path, PathBuf};

pub use clap_complete::Shell;

/// Write the completion script for `shell` to stdout.
pub fn completions(mut cmd: clap::Command, shell: Shell) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout());
}

/// Write `NAME.1` and one `NAME-SUB[-SUB].1` per visible subcommand into
/// `dir`; the paths written.
pub fn man_pages(mut cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    cmd.build();
    let mut written = Vec::new();
    page(&cmd, cmd.get_name(), dir, &mut written)?;
    Ok(written)
}

/// `man --out-dir DIR`: write the pages and say how many, or the error (exit 1).
pub fn man_command(cmd: clap::Command, dir: &Path) -> std::process::ExitCode {
    match man_pages(cmd, dir) {
        Ok(pages) => {
            println!("{} man pages in {}", pages.len(), dir.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: writing man pages into {}: {e}", dir.display());
            std::process::ExitCode::FAILURE
        }
    }
}

fn page(cmd: &clap::Command, name: &str, dir: &Path, written: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let path = dir.join(format!("{name}.1"));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone().name(name.to_string())).render(&mut out)?;
    std::fs::write(&path, out)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        page(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

/// The 1-based line of byte `offset` in `text` (a TOML span's start), for
/// `file:line` errors in plans and config files.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}
