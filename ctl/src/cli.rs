//! The command line: clap definitions and what each verb does. Mutating verbs go to the running
//! dashboard (found through the lock node, or `--dashboard`) or, when none holds the product
//! lock, act on the coordinator directly after taking the lock themselves.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use coord::Store;
use serde_json::{json, Value};

use crate::config::{CtlConfig, DEFAULT_DASHBOARD_ADDR};
use crate::dashboard::{acquire, Dashboard};
use crate::error::{CtlError, Result};
use crate::executor::Executor;
use crate::output::{print_value, Output};
use crate::request::{Request, Role};
use crate::topom::{dump::dump, slots::slot_info, topom_record, xauth, Ctx};

/// codisctl: the operator's CLI and dashboard of codis-rs.
#[derive(Parser, Debug)]
#[command(name = "codisctl", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Options every verb takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// config.ini with coordinator=, zk=, product=, product_auth=, dashboard_addr=, migration_*.
    #[arg(short = 'c', long = "config", global = true)]
    pub config: Option<PathBuf>,
    /// Coordinator: zookeeper, etcd or filesystem.
    #[arg(long, global = true)]
    pub coordinator: Option<String>,
    /// Coordinator address (host:port[,…]) or filesystem root.
    #[arg(long, global = true)]
    pub zk: Option<String>,
    /// Product name.
    #[arg(long, global = true)]
    pub product: Option<String>,
    /// Product auth (server password; the API token derives from it).
    #[arg(long = "product-auth", global = true)]
    pub product_auth: Option<String>,
    /// Talk to this dashboard (host:port) instead of discovering it.
    #[arg(long, global = true)]
    pub dashboard: Option<String>,
    /// Answer as JSON (default) or as a readable table.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Json)]
    pub output: Output,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Slots: init, info, set, range-set, migrate, rebalance, action.
    #[command(subcommand)]
    Slot(SlotCmd),
    /// Group servers: add, remove, promote, list.
    #[command(subcommand)]
    Server(ServerCmd),
    /// Groups: create, remove.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Proxies: list, online, offline.
    #[command(subcommand)]
    Proxy(ProxyCmd),
    /// Run the dashboard daemon (HTTP API and web page).
    Dashboard {
        /// Listen address (default: dashboard_addr of the config, else 127.0.0.1:18087).
        #[arg(long)]
        addr: Option<String>,
    },
    /// Force-remove the product lock (a live dashboard keeps running without it).
    RemoveLock,
    /// Dump or restore the whole product as JSON.
    #[command(subcommand)]
    Config(ConfigCmd),
}

/// `slot …`.
#[derive(Subcommand, Debug)]
pub enum SlotCmd {
    /// Write all 1024 slots offline.
    Init {
        /// Reset slots that are already assigned.
        #[arg(short, long)]
        force: bool,
    },
    /// Show one slot.
    Info { slot: u32 },
    /// Force one slot to a group (`online`) or `offline`, clearing its action.
    Set { slot: u32, gid: u32, status: String },
    /// Assign slots from..=to to a group without moving data.
    RangeSet {
        from: u32,
        to: u32,
        gid: u32,
        status: String,
    },
    /// Migrate slots from..=to to a group, following progress until done.
    Migrate {
        from: u32,
        to: u32,
        gid: u32,
        /// Milliseconds to wait between migration steps.
        #[arg(long)]
        delay: Option<u64>,
        /// Queue the actions and return at once.
        #[arg(long)]
        no_wait: bool,
    },
    /// Print Codis' rebalance plan; apply it with --confirm.
    Rebalance {
        #[arg(long)]
        confirm: bool,
    },
    /// Pause, resume or cancel migrations.
    #[command(subcommand)]
    Action(ActionCmd),
}

/// `slot action …`.
#[derive(Subcommand, Debug)]
pub enum ActionCmd {
    /// Pause the executor (no new slot starts; draining stops between steps).
    Pause,
    /// Resume it.
    Resume,
    /// Cancel actions that have not started moving data (one slot, or all).
    Cancel { slot: Option<u32> },
}

/// `server …`.
#[derive(Subcommand, Debug)]
pub enum ServerCmd {
    /// Add a server to a group (SLAVEOF the master for a slave).
    Add {
        gid: u32,
        addr: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Remove a server from a group.
    Remove { gid: u32, addr: String },
    /// Promote a replica to master of its group.
    Promote { gid: u32, addr: String },
    /// List servers with their live replication state.
    List,
}

fn parse_role(s: &str) -> std::result::Result<Role, String> {
    s.parse()
}

/// `group …`.
#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// Create an empty group.
    Create { gid: u32 },
    /// Remove an empty group.
    Remove { gid: u32 },
}

/// `proxy …`.
#[derive(Subcommand, Debug)]
pub enum ProxyCmd {
    /// List registered and live proxies.
    List,
    /// Register a proxy from its admin address.
    Online { addr: String },
    /// Remove a proxy registration (id, token or address).
    Offline { id: String },
}

/// `config …`.
#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print the whole product as JSON.
    Dump,
    /// Write a dump into the product.
    Restore {
        file: PathBuf,
        /// Overwrite a product that already has groups or slots.
        #[arg(short, long)]
        force: bool,
    },
}

/// Builds the config from `-c` and flags.
pub fn load_config(g: &Global) -> Result<CtlConfig> {
    let mut cfg = match &g.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| CtlError::io(format!("read {}", p.display()), e))?;
            CtlConfig::from_ini(&text)?
        }
        None => CtlConfig::new("codis-demo"),
    };
    cfg.apply_flags(
        g.coordinator.as_deref(),
        g.zk.as_deref(),
        g.product.as_deref(),
        g.product_auth.as_deref(),
        g.dashboard.as_deref(),
    )?;
    Ok(cfg)
}

/// Where mutations go.
enum Target {
    Remote { addr: String, xauth: String },
    Local { ctx: Arc<Ctx> },
}

async fn store_of(cfg: &CtlConfig) -> Result<Option<Store>> {
    match &cfg.coord {
        Some(cc) => Ok(Some(Store::new(coord::connect(cc).await?, &cfg.product)?)),
        None => Ok(None),
    }
}

async fn target(cfg: &CtlConfig, explicit_dashboard: bool) -> Result<Target> {
    let remote = |addr: String| Target::Remote {
        addr,
        xauth: xauth(&cfg.product, &cfg.product_auth),
    };
    let Some(store) = store_of(cfg).await? else {
        return match (&cfg.dashboard_addr, explicit_dashboard) {
            (Some(d), _) => Ok(remote(d.clone())),
            _ => Err(CtlError::invalid(
                "no coordinator or dashboard given: use -c config.ini, --coordinator/--zk or --dashboard",
            )),
        };
    };
    if explicit_dashboard {
        if let Some(d) = &cfg.dashboard_addr {
            return Ok(remote(d.clone()));
        }
    }
    let me = topom_record(&cfg.product, "");
    let mut tries = 0;
    loop {
        if let Some(t) = store.load_topom().await? {
            if !t.admin_addr.is_empty() {
                return Ok(remote(t.admin_addr));
            }
        }
        match acquire(&store, &me).await {
            Ok(()) => {
                return Ok(Target::Local {
                    ctx: Ctx::new(store, cfg.clone(), false),
                })
            }
            // Another codisctl command holds it for a moment: wait a little.
            Err(CtlError::Locked(msg)) if tries >= 25 => return Err(CtlError::Locked(msg)),
            Err(CtlError::Locked(_)) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn finish(ctx: &Ctx) {
    if let Err(e) = ctx.store.release().await {
        tracing::warn!("release lock: {e}");
    }
    ctx.store.coordinator().close().await;
}

fn api_error(addr: &str, e: impl std::fmt::Display) -> CtlError {
    CtlError::Dashboard {
        addr: addr.to_string(),
        cause: e.to_string(),
    }
}

async fn http_json(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
    let r = crate::http::request(addr, method, path, body.as_deref(), Duration::from_secs(60))
        .await
        .map_err(|e| api_error(addr, e))?;
    let v: Value = serde_json::from_slice(&r.body).map_err(|_| {
        api_error(
            addr,
            format!(
                "HTTP {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body).trim()
            ),
        )
    })?;
    if r.status != 200 {
        let msg = v.get("msg").and_then(Value::as_str).unwrap_or("error");
        return Err(match r.status {
            403 => CtlError::Unauthorized,
            409 => CtlError::Conflict(msg.to_string()),
            400 => CtlError::Invalid(msg.to_string()),
            _ => api_error(addr, msg),
        });
    }
    Ok(v)
}

/// Applies `req` wherever it must go; for a local migration, also runs the executor.
async fn mutate(cfg: &CtlConfig, g: &Global, req: Request) -> Result<Value> {
    match target(cfg, g.dashboard.is_some()).await? {
        Target::Remote { addr, xauth } => {
            let (path, body) = req.http(&xauth);
            http_json(&addr, "PUT", &path, body.as_ref()).await
        }
        Target::Local { ctx } => {
            let r = ctx.apply(req).await;
            finish(&ctx).await;
            r
        }
    }
}

async fn migrate(
    cfg: &CtlConfig,
    g: &Global,
    (from, to, gid): (u32, u32, u32),
    delay: Option<u64>,
    no_wait: bool,
) -> Result<Value> {
    let req = Request::SlotMigrate {
        from,
        to,
        gid,
        delay_ms: delay,
    };
    let total = (to.saturating_sub(from) + 1) as u64;
    match target(cfg, g.dashboard.is_some()).await? {
        Target::Remote { addr, xauth } => {
            let (path, _) = req.http(&xauth);
            let v = http_json(&addr, "PUT", &path, None).await?;
            if no_wait {
                return Ok(v);
            }
            let bar = crate::output::progress_bar(total);
            let done = loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break false,
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
                let slots = http_json(&addr, "GET", "/api/topom/slots", None).await?;
                let n = count_done(&slots, from, to, gid);
                bar.set_position(n);
                if n >= total {
                    break true;
                }
            };
            bar.finish_and_clear();
            if done {
                Ok(v)
            } else {
                eprintln!("interrupted: the migration goes on in the dashboard at {addr}");
                Ok(
                    json!({"msg": "interrupted; the migration continues in the dashboard", "ret": 0}),
                )
            }
        }
        Target::Local { ctx } => {
            let r = ctx.apply(req).await;
            if r.is_err() || no_wait {
                finish(&ctx).await;
                return r;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let exec = Executor::redis(ctx.clone());
            let bar = crate::output::progress_bar(total);
            let s2 = stop.clone();
            let c2 = ctx.clone();
            // Wakes the watcher as the migration ends: waiting out its tick kept the command
            // alive up to 300 ms after the last slot moved.
            let ended = Arc::new(tokio::sync::Notify::new());
            let e2 = ended.clone();
            let watcher = tokio::spawn(async move {
                // Counted from the executor's own record of what it finished, not read back
                // from the coordinator: reading 1,024 slots every tick cost the filesystem
                // coordinator tens of ms of CPU each time, on the machine the migration runs
                // on. (No slot of the range was in `gid` before: `apply` refuses that.)
                loop {
                    let done = c2.control.finished_into(from, to, gid);
                    bar.set_position(done.len() as u64);
                    if s2.load(Ordering::SeqCst) {
                        bar.finish_and_clear();
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                        _ = e2.notified() => {}
                    }
                }
            });
            let res = tokio::select! {
                r = exec.run_until_idle(&stop) => r.map(|_| true),
                _ = tokio::signal::ctrl_c() => Ok(false),
            };
            stop.store(true, Ordering::SeqCst);
            // notify_one keeps a permit when the watcher is not waiting yet.
            ended.notify_one();
            let _ = watcher.await;
            finish(&ctx).await;
            match res {
                Ok(true) => r,
                Ok(false) => {
                    eprintln!("interrupted: the state stays in the coordinator; `codisctl dashboard` or another `slot migrate` resumes it");
                    Ok(
                        json!({"msg": "interrupted; the migration resumes when a dashboard runs", "ret": 0}),
                    )
                }
                Err(e) => Err(e),
            }
        }
    }
}

fn count_done(slots: &Value, from: u32, to: u32, gid: u32) -> u64 {
    slots
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|m| {
                    let id = m["id"].as_u64().unwrap_or(u64::MAX);
                    id >= from as u64
                        && id <= to as u64
                        && m["group_id"].as_u64() == Some(gid as u64)
                        && m["action"].get("state").is_none_or(|s| s == "")
                })
                .count() as u64
        })
        .unwrap_or(0)
}

/// Reads go straight to the coordinator when one is configured, else to the dashboard.
async fn read(cfg: &CtlConfig, what: &str, sid: u32) -> Result<Value> {
    if let Some(store) = store_of(cfg).await? {
        let ctx = Ctx::new(store, cfg.clone(), false);
        let r = match what {
            "slot" => slot_info(&ctx.store.topology().await?, sid),
            "servers" => ctx.server_list().await.map(|s| json!(s)),
            "proxies" => ctx.proxy_list().await.map(|p| json!(p)),
            _ => Ok(json!(dump(&ctx.store.topology().await?))),
        };
        ctx.store.coordinator().close().await;
        return r;
    }
    let Some(addr) = &cfg.dashboard_addr else {
        return Err(CtlError::invalid(
            "no coordinator or dashboard given: use -c config.ini, --coordinator/--zk or --dashboard",
        ));
    };
    let path = match what {
        "slot" => format!("/api/topom/slots/info/{sid}"),
        "servers" => "/api/topom/servers".into(),
        "proxies" => "/api/topom/proxy".into(),
        _ => "/api/topom/config/dump".into(),
    };
    http_json(addr, "GET", &path, None).await
}

/// Runs one command; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let out = cli.global.output;
    match dispatch(cli).await {
        Ok(Some((kind, v))) => {
            print_value(out, kind, &v);
            0
        }
        Ok(None) => 0,
        Err(e) => {
            match out {
                Output::Json => println!("{}", json!({"msg": e.to_string(), "ret": 1})),
                Output::Table => eprintln!("error: {e}"),
            }
            1
        }
    }
}

async fn dispatch(cli: Cli) -> Result<Option<(&'static str, Value)>> {
    let g = &cli.global;
    let cfg = load_config(g)?;
    let m = |req| mutate(&cfg, g, req);
    let v = match cli.cmd {
        Cmd::Slot(c) => match c {
            SlotCmd::Init { force } => ("ok", m(Request::SlotInit { force }).await?),
            SlotCmd::Info { slot } => {
                crate::topom::slots::check_slot(slot)?;
                ("slot", read(&cfg, "slot", slot).await?)
            }
            SlotCmd::Set { slot, gid, status } => {
                ("ok", m(Request::SlotSet { slot, gid, status }).await?)
            }
            SlotCmd::RangeSet {
                from,
                to,
                gid,
                status,
            } => (
                "ok",
                m(Request::SlotRangeSet {
                    from,
                    to,
                    gid,
                    status,
                })
                .await?,
            ),
            SlotCmd::Migrate {
                from,
                to,
                gid,
                delay,
                no_wait,
            } => {
                crate::topom::slots::check_range(from, to)?;
                (
                    "ok",
                    migrate(&cfg, g, (from, to, gid), delay, no_wait).await?,
                )
            }
            SlotCmd::Rebalance { confirm } => {
                ("plan", m(Request::SlotRebalance { confirm }).await?)
            }
            SlotCmd::Action(a) => (
                "ok",
                m(match a {
                    ActionCmd::Pause => Request::SlotActionPause,
                    ActionCmd::Resume => Request::SlotActionResume,
                    ActionCmd::Cancel { slot } => Request::SlotActionCancel { slot },
                })
                .await?,
            ),
        },
        Cmd::Server(c) => match c {
            ServerCmd::Add { gid, addr, role } => {
                ("ok", m(Request::ServerAdd { gid, addr, role }).await?)
            }
            ServerCmd::Remove { gid, addr } => {
                ("ok", m(Request::ServerRemove { gid, addr }).await?)
            }
            ServerCmd::Promote { gid, addr } => {
                ("ok", m(Request::ServerPromote { gid, addr }).await?)
            }
            ServerCmd::List => ("servers", read(&cfg, "servers", 0).await?),
        },
        Cmd::Group(c) => match c {
            GroupCmd::Create { gid } => ("ok", m(Request::GroupCreate { gid }).await?),
            GroupCmd::Remove { gid } => ("ok", m(Request::GroupRemove { gid }).await?),
        },
        Cmd::Proxy(c) => match c {
            ProxyCmd::List => ("proxies", read(&cfg, "proxies", 0).await?),
            ProxyCmd::Online { addr } => ("ok", m(Request::ProxyOnline { addr }).await?),
            ProxyCmd::Offline { id } => ("ok", m(Request::ProxyOffline { id }).await?),
        },
        Cmd::Config(c) => match c {
            ConfigCmd::Dump => ("dump", read(&cfg, "dump", 0).await?),
            ConfigCmd::Restore { file, force } => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| CtlError::io(format!("read {}", file.display()), e))?;
                let config: Value = serde_json::from_str(&text)
                    .map_err(|e| CtlError::invalid(format!("{}: not JSON: {e}", file.display())))?;
                ("ok", m(Request::ConfigRestore { config, force }).await?)
            }
        },
        Cmd::RemoveLock => {
            let store = store_of(&cfg).await?.ok_or_else(|| {
                CtlError::invalid("remove-lock needs the coordinator: -c or --coordinator/--zk")
            })?;
            let removed = store.remove_lock().await?;
            store.coordinator().close().await;
            ("ok", json!({"msg": "OK", "ret": 0, "removed": removed}))
        }
        Cmd::Dashboard { addr } => {
            let listen = addr
                .or_else(|| cfg.dashboard_addr.clone())
                .unwrap_or_else(|| DEFAULT_DASHBOARD_ADDR.to_string());
            let d = Dashboard::start(cfg, &listen).await?;
            eprintln!("codisctl dashboard: http://{}/", d.addr);
            d.run_until(shutdown_signal()).await?;
            return Ok(None);
        }
    };
    Ok(Some(v))
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
