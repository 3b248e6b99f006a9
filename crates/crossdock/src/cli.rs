//! The command line: `serve`, `migrate`, `config check`, `keys`, `dlq`, `replay`, `explain`,
//! `edi`, `bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use crossdock_core::Timestamp;
use crossdock_store::{DeadLetterQuery, DropOutcome, Projection, ReplayOutcome, Store};

use crate::app::{AppBuilder, shutdown_signal};
use crate::audit;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Overrides};
use crate::keys::KeySpec;
use crate::runtime::inventory::DeadLetterReplay;
use crossdock_core::access::{Quota, Scopes};

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
        /// Serve without authentication: every caller is an administrator. For local
        /// development only; never on a network others can reach.
        #[arg(long)]
        no_auth: bool,
    },
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
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
    /// Explain the number a channel may show for an item: counts, movements, allocations,
    /// reservations and policy steps, from the ledger as it is now.
    Explain {
        /// Our SKU.
        sku: String,
        /// The channel whose number to explain.
        #[arg(long)]
        channel: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Post shipped lines and received returns to the ERP in journal batches.
    #[command(subcommand)]
    Postings(PostingsCommand),
    /// Read, check and acknowledge X12 EDI files.
    #[command(subcommand)]
    Edi(crate::edi::EdiCommand),
    /// Measure ingest, deduplication and replay throughput against baselines.
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print its token (shown once; only a hash is stored).
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: catalog:write, inventory:read, inventory:write, orders:read,
        /// orders:write, events:read, events:write, ops, admin.
        #[arg(long)]
        scopes: String,
        /// Bind the key to one channel: it sees only that channel's data.
        #[arg(long)]
        channel: Option<String>,
        /// Requests per second, such as 50/s (default: auth.rate_per_second).
        #[arg(long)]
        rate: Option<String>,
        /// Requests allowed at once beyond the rate (default: auth.burst).
        #[arg(long)]
        burst: Option<u32>,
    },
    /// List keys (never their tokens).
    List,
    /// Revoke the active key with this name.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
enum PostingsCommand {
    /// Gather every line not yet posted into journal batches (per channel, currency and
    /// business day) and queue their `erp.journal.post` actions; a running crossdock delivers
    /// them. Running it again posts nothing twice.
    Run,
    /// List journal batches, newest first.
    List {
        /// queued or posted.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
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
        Command::Serve { listen, .. } => listen.clone(),
        _ => None,
    };
    let overrides = Overrides {
        database: cli.database.clone(),
        listen,
    };
    let (mut config, file) = Config::load(cli.config.as_deref(), &overrides)?;
    match cli.command {
        Command::Serve { no_auth, .. } => {
            if no_auth {
                config.auth.enabled = false;
            }
            serve(config).await
        }
        Command::Keys(command) => keys(&config, command).await,
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
        Command::Explain { sku, channel, json } => explain(&config, &sku, &channel, json).await,
        Command::Postings(command) => postings(&config, command).await,
        Command::Edi(command) => tokio::task::spawn_blocking(move || crate::edi::run(command))
            .await
            .context("the EDI command stopped")?,
        Command::Bench(args) => crate::bench::run(&args).await,
    }
}

async fn explain(config: &Config, sku: &str, channel: &str, json: bool) -> anyhow::Result<()> {
    let sku = crossdock_core::catalog::Sku::parse(sku)
        .map_err(|why| anyhow::anyhow!("SKU {sku:?}: {why}"))?;
    let channel = crossdock_core::catalog::ChannelId::parse(channel)
        .map_err(|why| anyhow::anyhow!("channel {channel:?}: {why}"))?;
    let store = Store::open(&config.store.options()).await?;
    let catalog = crate::runtime::inventory::CatalogCache::default()
        .get(&store)
        .await?;
    let result = crate::explain::explain(&store, &catalog, &sku, &channel).await;
    store.close().await;
    let explanation = result?;
    if json {
        println!("{}", serde_json::to_string_pretty(&explanation)?);
    } else {
        print!("{}", explanation.to_text());
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.server.listen.clone();
    let app = AppBuilder::new(config).build().await?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    app.serve(listener, shutdown_signal()).await
}

async fn keys(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    let store = Store::open(&config.store.options()).await?;
    let now = SystemClock.now();
    let actor = audit::cli_actor();
    let result = async {
        match command {
            KeysCommand::Create {
                name,
                scopes,
                channel,
                rate,
                burst,
            } => {
                let spec = KeySpec {
                    scopes: Scopes::parse(&scopes).map_err(|e| anyhow::anyhow!("--scopes: {e}"))?,
                    rate_per_second: rate
                        .as_deref()
                        .map(Quota::parse_rate)
                        .transpose()
                        .map_err(|e| anyhow::anyhow!("--rate: {e}"))?,
                    name,
                    channel,
                    burst,
                };
                let token = crate::keys::create(&store, &spec, now).await?;
                let detail = serde_json::json!({"scopes": spec.scopes.to_string(), "channel": spec.channel,
                    "rate_per_second": spec.rate_per_second, "burst": spec.burst, "key_id": token.key_id()});
                record(&store, &actor, "key.create", &spec.name, Some(detail)).await;
                println!("{}", token.expose());
                eprintln!(
                    "key {:?} created (id {}). The token above is shown once and cannot be recovered.",
                    spec.name,
                    token.key_id()
                );
                Ok(())
            }
            KeysCommand::List => {
                let keys = store.keys_list().await?;
                if keys.is_empty() {
                    println!("there are no keys; `crossdock serve` creates an admin key on first start");
                }
                for k in keys {
                    let rate = k.key.rate_per_second.map_or("default".into(), |r| format!("{r}/s"));
                    let status = k.revoked_at.map_or("active".to_owned(), |t| format!("revoked {t}"));
                    println!(
                        "{:<24} id={}  scopes={}  channel={}  rate={}  created={}  {}",
                        k.key.name,
                        k.key.id,
                        k.key.scopes,
                        k.key.channel.as_deref().unwrap_or("-"),
                        rate,
                        k.key.created_at,
                        status
                    );
                }
                Ok(())
            }
            KeysCommand::Revoke { name } => match store.key_revoke(&name, now).await? {
                Some(id) => {
                    record(&store, &actor, "key.revoke", &name, Some(serde_json::json!({"key_id": id}))).await;
                    println!("key {name:?} (id {id}) revoked; running servers refuse it within seconds");
                    Ok(())
                }
                None => bail!("there is no active key named {name:?}"),
            },
        }
    }
    .await;
    store.close().await;
    result
}

/// Records a command-line action in the audit log.
async fn record(
    store: &Store,
    actor: &str,
    action: &str,
    target: &str,
    detail: Option<serde_json::Value>,
) {
    let action = audit::Action {
        actor,
        action,
        target,
        outcome: "ok",
        correlation_id: None,
        detail,
    };
    audit::record(store, SystemClock.now(), action).await;
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
        DlqCommand::Replay { id } => {
            match crate::runtime::inventory::replay_dead_letter(&store, id, now).await? {
                DeadLetterReplay::Refreshed => {
                    record(
                        &store,
                        &audit::cli_actor(),
                        "dead_letter.replay",
                        &format!("action:{id}"),
                        None,
                    )
                    .await;
                    println!(
                        "action {id} was a channel availability batch: {}; a running crossdock sends them shortly",
                        crate::runtime::inventory::REFRESHED_REASON
                    );
                    Ok(())
                }
                DeadLetterReplay::Store(ReplayOutcome::Replayed) => {
                    record(
                        &store,
                        &audit::cli_actor(),
                        "dead_letter.replay",
                        &format!("action:{id}"),
                        None,
                    )
                    .await;
                    println!(
                        "action {id} is pending again; a running crossdock delivers it shortly"
                    );
                    Ok(())
                }
                DeadLetterReplay::Store(ReplayOutcome::Superseded { by }) => bail!(
                    "action {id} was superseded by the newer action {by}; replaying it would send stale data"
                ),
                DeadLetterReplay::Store(ReplayOutcome::NotFound) => {
                    bail!("there is no action {id}")
                }
                DeadLetterReplay::Store(ReplayOutcome::NotDead) => {
                    bail!("action {id} is not in the dead-letter queue")
                }
            }
        }
        DlqCommand::Drop { id, reason } => {
            if reason.trim().is_empty() {
                bail!("--reason must say why the action is dropped");
            }
            match store.drop_dead_letter(id, reason.trim(), now).await? {
                DropOutcome::Dropped => {
                    let detail = serde_json::json!({"reason": reason.trim()});
                    record(
                        &store,
                        &audit::cli_actor(),
                        "dead_letter.drop",
                        &format!("action:{id}"),
                        Some(detail),
                    )
                    .await;
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

async fn postings(config: &Config, command: PostingsCommand) -> anyhow::Result<()> {
    let store = Store::open(&config.store.options()).await?;
    let result = async {
        let batches = match command {
            PostingsCommand::Run => {
                let made =
                    crate::postings::run_on(&store, &config.postings, SystemClock.now()).await?;
                if made.is_empty() {
                    println!("nothing to post");
                }
                made
            }
            PostingsCommand::List { status, limit } => {
                store
                    .postings(crossdock_store::PostingQuery {
                        status,
                        channel: None,
                        limit,
                    })
                    .await?
            }
        };
        for b in batches {
            println!(
                "{}  {:<7} {} lines, {} units, {} {}{}",
                b.key,
                b.status,
                b.lines,
                b.units,
                b.amount,
                b.currency,
                b.journal
                    .map(|j| format!(", journal {j}"))
                    .unwrap_or_default()
            );
        }
        Ok(())
    }
    .await;
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
            record(&store, &audit::cli_actor(), "projection.rebuild", consumer, None).await;
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
        let detail = serde_json::json!({"from": current, "to": position});
        record(&store, &audit::cli_actor(), "consumer.reset", consumer, Some(detail)).await;
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
