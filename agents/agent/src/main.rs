//! `lifeboat-agent`: the per-cell agent. This binary owns the command line;
//! the work is done by the `lifeboat-repository` and `lifeboat-storage`
//! crates. Each command module under `commands/` maps one group of
//! subcommands onto library calls and prints the result.

mod commands;
mod config;
mod context;
mod output;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use context::Global;

/// Lifeboat's per-cell agent: repository I/O, configuration backups,
/// geo-copies, Postgres PITR and Kafka snapshots.
#[derive(Debug, Parser)]
#[command(name = "lifeboat-agent", version = VERSION, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// The version and the git commit this build is of (`infra/build/commit.rs`).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("LIFEBOAT_GIT_COMMIT"), ")");

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, inspect, verify and copy repositories.
    #[command(subcommand)]
    Repo(commands::repo::RepoCommand),
    /// Back up and restore configuration directories.
    #[command(subcommand)]
    Files(commands::files::FilesCommand),
    /// Manage encryption keys.
    #[command(subcommand)]
    Key(commands::key::KeyCommand),
    /// Fence a failed-over cell's old primary out of its repositories.
    #[command(subcommand)]
    Fence(commands::fence::FenceCommand),
    /// Archive a WAL file: Postgres' archive_command (`wal-push %p`).
    WalPush(commands::wal::PushArgs),
    /// Restore a WAL file: Postgres' restore_command (`wal-fetch %f %p`).
    WalFetch(commands::wal::FetchArgs),
    /// Postgres: base backups, point-in-time restore, backup info, WAL chain checks.
    #[command(subcommand)]
    Pg(commands::pg::PgCommand),
    /// Kafka: topic snapshots, point-in-time restores with group-offset translation.
    #[command(subcommand)]
    Kafka(commands::kafka::KafkaCommand),
    /// Restore drills into a scratch environment, with smoke checks.
    #[command(subcommand)]
    Drill(commands::drill::DrillCommand),
    /// Standbys a recovery site keeps for other cells (hot or warm), promoted by a failover.
    #[command(subcommand)]
    Standby(commands::standby::StandbyCommand),
    /// Fail a cell back home after a failover: rebuild the home, hand back the takeover, promote.
    #[command(subcommand)]
    Failback(commands::failback::FailbackCommand),
    /// Make a failover's new primary kept here archive and back up into the cell's repository.
    Reprotect(commands::reprotect::ReprotectArgs),
    /// Prove the cell's protection works end to end: every location's
    /// repository and key, Kafka, and a fresh WAL segment stored everywhere.
    Check(commands::check::CheckArgs),
    /// Serve the HTTP API the coordinator drives (jobs, health, metrics) for one cell.
    Serve(Box<serve::ServeArgs>),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions { shell: lifeboat_process::cli::Shell },
    /// Write man pages (lifeboat-agent.1 and one per command) into a directory.
    Man {
        #[arg(long)]
        out_dir: std::path::PathBuf,
    },
}

/// The data path allocates and frees multi-MiB buffers (chunks, sealed
/// objects) continuously. glibc serves such sizes with fresh mmaps and
/// returns freed memory at once, so every chunk paid for zeroed pages (11 %
/// of a Kafka restore's CPU). Keep them in the heap instead; the pipelines'
/// bounds still cap how much is held.
///
/// One heap ("arena") for all threads rather than glibc's eight per core:
/// each arena keeps its own high-water mark of those buffers, and threads
/// (librdkafka's, the blocking pool's) reach more arenas the longer a job
/// runs. With eight per core a Kafka snapshot's peak grew with the topic
/// (266 MiB at 100 MiB of records, 667 MiB at 1 GiB); with one per core it
/// was 339 MiB, then 136 to 179 MiB once the pipelines' bounds were cut; with
/// one in all 126 to 128 MiB (a restore: 139 to 145 MiB), at the same speed:
/// the threads allocate big buffers, rarely, so they hardly wait for the lock.
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    if let Some(path) = config::locate(&args) {
        match config::apply(&path) {
            Ok(_) => {}
            Err(e) if config::lenient(&args) => eprintln!("warning: {e}; going on without the file"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let cli = Cli::parse();
    match &cli.command {
        Command::Completions { shell } => {
            lifeboat_process::cli::completions(<Cli as clap::CommandFactory>::command(), *shell);
            return ExitCode::SUCCESS;
        }
        Command::Man { out_dir } => {
            return lifeboat_process::cli::man_command(<Cli as clap::CommandFactory>::command(), out_dir);
        }
        _ => {}
    }
    // A drill handles its own signals (it removes its scratch environment
    // first), and so does the service (it stops its jobs first).
    // A follower's seals are each committed whole: a signal ends it cleanly.
    let own_signals =
        matches!(cli.command, Command::Drill(_) | Command::Serve(_) | Command::Kafka(commands::kafka::KafkaCommand::Follow(_)));
    lifeboat_process::init_logging(cli.global.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        let work = async {
            match cli.command {
                Command::Repo(cmd) => commands::repo::run(&cli.global, cmd).await,
                Command::Files(cmd) => commands::files::run(&cli.global, cmd).await,
                Command::Key(cmd) => commands::key::run(&cli.global, cmd).await,
                Command::Fence(cmd) => commands::fence::run(&cli.global, cmd).await,
                Command::WalPush(args) => commands::wal::push(&cli.global, args).await,
                Command::WalFetch(args) => commands::wal::fetch(&cli.global, args).await,
                Command::Pg(cmd) => commands::pg::run(&cli.global, cmd).await,
                Command::Kafka(cmd) => commands::kafka::run(&cli.global, cmd).await,
                Command::Drill(cmd) => commands::drill::run(&cli.global, cmd).await,
                Command::Standby(cmd) => commands::standby::run(&cli.global, cmd).await,
                Command::Reprotect(args) => commands::reprotect::run(&cli.global, args).await,
                Command::Failback(cmd) => commands::failback::run(&cli.global, cmd).await,
                Command::Check(args) => commands::check::run(&cli.global, args).await,
                Command::Serve(args) => serve::run(&cli.global, *args, lifeboat_process::shutdown_signal()).await,
                Command::Completions { .. } | Command::Man { .. } => unreachable!("answered before the runtime starts"),
            }
        };
        // Ctrl-C / SIGTERM drop the work in flight: nothing is committed
        // before its manifest, so a rerun picks up where this one stopped.
        if own_signals {
            return work.await;
        }
        tokio::select! {
            result = work => result,
            signal = lifeboat_process::shutdown_signal() => {
                Err(anyhow::anyhow!("interrupted by {signal}; nothing half-written was committed, rerun to finish"))
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
