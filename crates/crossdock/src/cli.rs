//! The command line: `serve`, `migrate`, `config check`, `dlq`, `replay`, `bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use crossdock_core::Timestamp;
use crossdock_store::{DeadLetterQuery, DropOutcome, Projection, ReplayOutcome, Store};

use crate::app::{AppBuilder, shutdown_signal};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "crossdock",
    version,
    about = "Inventory and order synchronization hub for distributors",
    long_about = "crossdock keeps ERPs, warehouses, storefronts, marketplaces and EDI partners in \
                  step: every message is kept, turned into deduplicated events, applied exactly once, \
                  and every resulting action is delivered with retries, dead letters and replay."
)]
struct Cli {
    /// Configuration file (default: ./crossdock.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database: a SQLite file path (default ./crossdock.db) or a postgres:// URL.
    #[arg(long, global = true, value_name = "URL")]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub: HTTP API, consumers and delivery workers.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free port).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Work with the dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Move a consumer back (or forward) so that it re-applies the log from there.
    Replay {
        /// The consumer, as listed by GET /v1/consumers (e.g. source_activity).
        #[arg(long)]
        consumer: String,
        /// Re-apply every event after this sequence number.
        #[arg(long, value_name = "SEQ", conflicts_with_all = ["from_time", "rebuild"])]
        from: Option<i64>,
        /// Re-apply every event recorded at or after this time (RFC 3339).
        #[arg(long, value_name = "TIME", conflicts_with = "rebuild")]
        from_time: Option<String>,
        /// Clear the projection's state and rebuild it from the whole log.
        #[arg(long)]
        rebuild: bool,
    },
    /// Measure ingest, deduplication and replay throughput against baselines.
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print it with secrets hidden; starts nothing.
    Check,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead letters.
    List {
        #[arg(long)]
        target: Option<String>,
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Send a dead letter again (same idempotency key, fresh attempt budget).
    Replay { id: i64 },
    /// Give up on a dead letter, saying why.
    Drop {
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CROSSDOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let listen = match &cli.command {
        Command::Serve { listen } => listen.clone(),
        _ => None,
    };
    let overrides = Overrides {
        database: cli.database.clone(),
        listen,
    };
    let (config, file) = Config::load(cli.config.as_deref(), &overrides)?;
    match cli.command {
        Command::Serve { .. } => serve(config).await,
        Command::Migrate => {
            let store = Store::connect(&config.store.options()).await?;
            let report = store.migrate().await?;
            if report.applied.is_empty() {
                println!("schema is current (version {})", report.version);
            }
            for (version, name) in report.applied {
                println!("applied migration {version} ({name})");
            }
            store.close().await;
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            match file {
                Some(path) => println!("# configuration from {} (valid)", path.display()),
                None => println!("# no configuration file; defaults and environment (valid)"),
            }
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
        Command::Dlq(command) => dlq(&config, command).await,
        Command::Replay {
            consumer,
            from,
            from_time,
            rebuild,
        } => replay(&config, &consumer, from, from_time.as_deref(), rebuild).await,
        Command::Bench(args) => crate::bench::run(&args).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.server.listen.clone();
    let app = AppBuilder::new(config).build().await?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    app.serve(listener, shutdown_signal()).await
}

async fn dlq(config: &Config, command: DlqCommand) -> anyhow::Result<()> {
    let store = Store::open(&config.store.options()).await?;
    let now = SystemClock.now();
    let result = match command {
        DlqCommand::List {
            target,
            after,
            limit,
        } => {
            let letters = store
                .dead_letters(DeadLetterQuery {
                    target,
                    after_id: after,
                    limit,
                })
                .await?;
            if letters.is_empty() {
                println!("the dead-letter queue is empty");
            }
            for a in letters {
                println!(
                    "{:>8}  {:<20}  attempts={:<3} key={}  since={}  error={}",
                    a.id,
                    a.target,
                    a.attempts,
                    a.idempotency_key,
                    a.updated_at,
                    a.last_error.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        DlqCommand::Replay { id } => match store.replay_dead_letter(id, now).await? {
            ReplayOutcome::Replayed => {
                println!("action {id} is pending again; a running crossdock delivers it shortly");
                Ok(())
            }
            ReplayOutcome::Superseded { by } => bail!(
                "action {id} was superseded by the newer action {by}; replaying it would send stale data"
            ),
            ReplayOutcome::NotFound => bail!("there is no action {id}"),
            ReplayOutcome::NotDead => bail!("action {id} is not in the dead-letter queue"),
        },
        DlqCommand::Drop { id, reason } => {
            if reason.trim().is_empty() {
                bail!("--reason must say why the action is dropped");
            }
            match store.drop_dead_letter(id, reason.trim(), now).await? {
                DropOutcome::Dropped => {
                    println!("action {id} dropped");
                    Ok(())
                }
                DropOutcome::NotFound => bail!("there is no action {id}"),
                DropOutcome::NotDead => bail!("action {id} is not in the dead-letter queue"),
            }
        }
    };
    store.close().await;
    result
}

async fn replay(
    config: &Config,
    consumer: &str,
    from: Option<i64>,
    from_time: Option<&str>,
    rebuild: bool,
) -> anyhow::Result<()> {
    let store = Store::open(&config.store.options()).await?;
    let now = SystemClock.now();
    let known = store.consumers().await?;
    let current = known
        .iter()
        .find(|c| c.name == consumer)
        .map(|c| c.position);
    let result = async {
        if rebuild {
            let projection = Projection::from_consumer_name(consumer).with_context(|| {
                format!("{consumer} keeps no state to rebuild; use --from 0 to re-apply the whole log")
            })?;
            store.clear_projection(projection, now).await?;
            println!("{consumer}: state cleared; it is rebuilt from the whole log by a running crossdock");
            return Ok(());
        }
        if current.is_none() {
            let names: Vec<&str> = known.iter().map(|c| c.name.as_str()).collect();
            bail!("there is no consumer {consumer:?}; known consumers: {}", names.join(", "));
        }
        let position = match (from, from_time) {
            (Some(seq), None) if seq >= 0 => seq,
            (Some(seq), None) => bail!("--from must be 0 or more, got {seq}"),
            (None, Some(text)) => {
                let time = Timestamp::parse_rfc3339(text).map_err(|e| anyhow::anyhow!("--from-time: {e}"))?;
                store.seq_before(time).await?
            }
            _ => bail!("say where to replay from: --from SEQ, --from-time TIME or --rebuild"),
        };
        store.reset_consumer(consumer, position, now).await?;
        println!(
            "{consumer}: moved from {} to {position}; a running crossdock re-applies the events after it",
            current.unwrap_or(0)
        );
        Ok(())
    }
    .await;
    store.close().await;
    result
}
