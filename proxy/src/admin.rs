//! The admin HTTP server (axum, on the control thread's tokio runtime).
//!
//! Open (read-only) routes: `/proxy` (overview), `/proxy/model`, `/proxy/stats`, `/proxy/slots`,
//! `/proxy/slowlog`, `/metrics` (Prometheus text). Codis 3.2's admin API where it applies:
//! `GET /api/proxy/model`, `/api/proxy/xping/:xauth`, `/api/proxy/stats/:xauth[/:flags]`,
//! `/api/proxy/slots/:xauth`; `PUT /api/proxy/start/:xauth`, `/api/proxy/stats/reset/:xauth`,
//! `/api/proxy/shutdown/:xauth`. A wrong xauth answers 403 with `{"Cause": …}` (Codis used
//! status 800). `PUT /api/proxy/fillslots/:xauth` takes a [`coord::FillSlots`] (slot mappings
//! and groups as stored at a topology version; not Codis' body format): the migration executor
//! pushes each slot state with it and the reply comes once every core has applied it (a
//! `prepared` slot drained and locked), so it need not wait for the coordinator watch. The
//! coordinator stays the source of truth: its snapshots replace pushed state once they are as new.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::control::{Control, Fill};

type Ctl = State<Arc<Control>>;

/// The routes.
pub fn router(ctl: Arc<Control>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/proxy") }))
        .route("/proxy", get(overview))
        .route("/proxy/model", get(model))
        .route("/proxy/stats", get(stats))
        .route("/proxy/slots", get(slots))
        .route("/proxy/slowlog", get(slowlog))
        .route("/metrics", get(metrics))
        .route("/api/proxy/model", get(model))
        .route("/api/proxy/xping/:xauth", get(xping))
        .route("/api/proxy/stats/:xauth", get(api_stats))
        .route("/api/proxy/stats/:xauth/:flags", get(api_stats_flags))
        .route("/api/proxy/slots/:xauth", get(api_slots))
        .route("/api/proxy/start/:xauth", put(api_start))
        .route("/api/proxy/fillslots/:xauth", put(api_fillslots))
        .route("/api/proxy/stats/reset/:xauth", put(api_reset))
        .route("/api/proxy/shutdown/:xauth", put(api_shutdown))
        .with_state(ctl)
}

/// Serves the admin API on an already bound listener until the process ends.
pub async fn serve(ctl: Arc<Control>, listener: tokio::net::TcpListener) {
    if let Err(e) = axum::serve(listener, router(ctl)).await {
        tracing::error!("admin HTTP server failed: {e}");
    }
}

fn config_json(ctl: &Control) -> Value {
    let c = &ctl.shared.cfg;
    json!({
        "product_name": c.product_name,
        "product_auth": if c.product_auth.is_empty() { "" } else { "********" },
        "session_auth": if c.session_auth.is_empty() { "" } else { "********" },
        "proxy_addr": c.proxy_addr,
        "admin_addr": c.admin_addr,
        "ncpu": c.ncpu,
        "coordinator_name": c.coordinator.as_ref().map(|cc| cc.kind.to_string()).unwrap_or_default(),
        "coordinator_addr": c.coordinator.as_ref().map(|cc| cc.addr.clone()).unwrap_or_default(),
        "dashboard_addr": c.dashboard_addr,
        "proxy_datacenter": c.proxy_datacenter,
        "proxy_max_clients": c.proxy_max_clients,
        "backend_ping_period": format!("{:?}", c.backend_ping_period),
        "backend_recv_timeout": format!("{:?}", c.backend_recv_timeout),
        "backend_send_timeout": format!("{:?}", c.backend_send_timeout),
        "backend_max_pipeline": c.backend_max_pipeline,
        "backend_primary_only": c.backend_primary_only,
        "backend_core_lanes": c.backend_core_lanes,
        "backend_prefer_unixsocket": c.backend_prefer_unixsocket,
        "disable_thp": c.disable_thp,
        "backend_number_databases": c.backend_number_databases,
        "session_recv_timeout": format!("{:?}", c.session_recv_timeout),
        "session_max_pipeline": c.session_max_pipeline,
        "session_break_on_failure": c.session_break_on_failure,
        "migration_method": format!("{:?}", c.migration_method),
        "slowlog_slower_than_us": c.slowlog_slower_than.as_micros() as u64,
    })
}

fn slots_json(ctl: &Control) -> Value {
    let Some(t) = ctl.table.lock().ok().and_then(|t| t.clone()) else {
        return json!([]);
    };
    let addr = |o: Option<u32>| o.map(|i| t.addr(i).to_string()).unwrap_or_default();
    Value::Array(
        t.slots
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "locked": s.locked,
                    "state": s.state.as_str(),
                    "backend_addr": addr(s.backend),
                    "backend_addr_group_id": if s.migrate_from.is_some() || !s.state.is_nothing() && s.target_id != 0 { s.target_id } else { s.group_id },
                    "migrate_from": addr(s.migrate_from),
                    "migrate_from_group_id": if s.migrate_from.is_some() { s.group_id } else { 0 },
                    "forward_method": format!("{:?}", ctl.shared.cfg.migration_method),
                    "replica_groups": if s.replicas.is_empty() { json!([]) } else { json!([s.replicas.iter().map(|&r| t.addr(r)).collect::<Vec<_>>()]) },
                })
            })
            .collect(),
    )
}

async fn overview(State(ctl): Ctl) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "compile": "codis-rs",
        "config": config_json(&ctl),
        "model": ctl.model,
        "stats": ctl.shared.snapshot(),
        "slots": slots_json(&ctl),
    }))
}

async fn model(State(ctl): Ctl) -> Json<coord::Proxy> {
    Json(ctl.model.clone())
}

async fn stats(State(ctl): Ctl) -> Json<crate::stats::StatsSnapshot> {
    Json(ctl.shared.snapshot())
}

async fn slots(State(ctl): Ctl) -> Json<Value> {
    Json(slots_json(&ctl))
}

async fn slowlog(State(ctl): Ctl) -> Json<Value> {
    let entries = ctl
        .shared
        .slowlog
        .lock()
        .map(|s| s.entries().to_vec())
        .unwrap_or_default();
    Json(json!({
        "slower_than_us": ctl.shared.cfg.slowlog_slower_than.as_micros() as u64,
        "entries": entries,
    }))
}

fn check(ctl: &Control, xauth: &str) -> Result<(), Box<Response>> {
    if xauth == ctl.xauth {
        Ok(())
    } else {
        let cause = json!({"Cause": "invalid xauth, please check product name & auth"});
        Err(Box::new(
            (StatusCode::FORBIDDEN, Json(cause)).into_response(),
        ))
    }
}

async fn xping(State(ctl): Ctl, Path(xauth): Path<String>) -> Response {
    match check(&ctl, &xauth) {
        Ok(()) => Json(json!("OK")).into_response(),
        Err(r) => *r,
    }
}

async fn api_stats(State(ctl): Ctl, Path(xauth): Path<String>) -> Response {
    match check(&ctl, &xauth) {
        Ok(()) => Json(ctl.shared.snapshot()).into_response(),
        Err(r) => *r,
    }
}

async fn api_stats_flags(
    State(ctl): Ctl,
    Path((xauth, _flags)): Path<(String, String)>,
) -> Response {
    api_stats(State(ctl), Path(xauth)).await
}

async fn api_slots(State(ctl): Ctl, Path(xauth): Path<String>) -> Response {
    match check(&ctl, &xauth) {
        Ok(()) => Json(slots_json(&ctl)).into_response(),
        Err(r) => *r,
    }
}

async fn api_start(State(ctl): Ctl, Path(xauth): Path<String>) -> Response {
    match check(&ctl, &xauth) {
        Ok(()) => Json(json!("OK")).into_response(),
        Err(r) => *r,
    }
}

async fn api_fillslots(
    State(ctl): Ctl,
    Path(xauth): Path<String>,
    Json(fill): Json<coord::FillSlots>,
) -> Response {
    if let Err(r) = check(&ctl, &xauth) {
        return *r;
    }
    let start = std::time::Instant::now();
    let version = fill.version;
    match ctl.fill(&fill) {
        None => {
            let cause = json!({"Cause": "proxy is not online yet (no topology)"});
            return (StatusCode::SERVICE_UNAVAILABLE, Json(cause)).into_response();
        }
        Some(Fill::Wait(_)) => {}
        Some(Fill::ReadBack) => match ctl.read_back().await {
            Ok(whole) if whole >= version => {}
            Ok(whole) => {
                let cause = json!({"Cause": format!(
                    "the coordinator holds topology {whole}, older than the pushed {version}"
                )});
                return (StatusCode::CONFLICT, Json(cause)).into_response();
            }
            Err(e) => {
                let cause = json!({"Cause": format!("cannot read the topology back: {e}")});
                return (StatusCode::SERVICE_UNAVAILABLE, Json(cause)).into_response();
            }
        },
    }
    ctl.wait_applied(version).await;
    tracing::debug!(
        version,
        slots = fill.slots.len(),
        micros = start.elapsed().as_micros() as u64,
        "fillslots applied"
    );
    Json(json!({"version": version})).into_response()
}

async fn api_reset(State(ctl): Ctl, Path(xauth): Path<String>) -> Response {
    match check(&ctl, &xauth) {
        Ok(()) => {
            ctl.shared.reset();
            Json(json!("OK")).into_response()
        }
        Err(r) => *r,
    }
}

async fn api_shutdown(State(ctl): Ctl, Path(xauth): Path<String>) -> Response {
    match check(&ctl, &xauth) {
        Ok(()) => {
            ctl.shutdown.notify_one();
            Json(json!("OK")).into_response()
        }
        Err(r) => *r,
    }
}

async fn metrics(State(ctl): Ctl) -> Response {
    let s = ctl.shared.snapshot();
    let mut o = String::new();
    let gauge = |o: &mut String, name: &str, kind: &str, help: &str, v: String| {
        let _ = write!(o, "# HELP codis_proxy_{name} {help}\n# TYPE codis_proxy_{name} {kind}\ncodis_proxy_{name} {v}\n");
    };
    gauge(
        &mut o,
        "online",
        "gauge",
        "1 once a topology is applied.",
        u8::from(s.online).to_string(),
    );
    gauge(
        &mut o,
        "topology_version",
        "gauge",
        "Topology version applied by every core.",
        s.topology_version.to_string(),
    );
    gauge(
        &mut o,
        "topology_reads_total",
        "counter",
        "Whole topology snapshots read from the coordinator (changes no push announced).",
        s.topology_reads.to_string(),
    );
    gauge(
        &mut o,
        "ops_total",
        "counter",
        "Requests answered.",
        s.ops_total.to_string(),
    );
    gauge(
        &mut o,
        "ops_fails_total",
        "counter",
        "Requests the proxy failed (routing, backend failures, refused).",
        s.ops_fails.to_string(),
    );
    gauge(
        &mut o,
        "ops_redis_errors_total",
        "counter",
        "Error replies from backends.",
        s.ops_redis_errors.to_string(),
    );
    gauge(
        &mut o,
        "ops_qps",
        "gauge",
        "Requests in the last second.",
        s.ops_qps.to_string(),
    );
    gauge(
        &mut o,
        "sessions_total",
        "counter",
        "Client connections accepted.",
        s.sessions_total.to_string(),
    );
    gauge(
        &mut o,
        "sessions_alive",
        "gauge",
        "Client connections open.",
        s.sessions_alive.to_string(),
    );
    gauge(
        &mut o,
        "sessions_subscribed",
        "gauge",
        "Client connections in subscribed mode (each with a connection to the pub/sub home).",
        s.sessions_subscribed.to_string(),
    );
    gauge(
        &mut o,
        "sessions_blocked",
        "gauge",
        "Client connections waiting in a blocking pop (each on a connection of its own).",
        s.sessions_blocked.to_string(),
    );
    gauge(
        &mut o,
        "uptime_seconds",
        "gauge",
        "Seconds since start.",
        s.uptime_secs.to_string(),
    );
    let _ = write!(o, "# HELP codis_proxy_latency_usecs Request latency percentiles (microseconds).\n# TYPE codis_proxy_latency_usecs summary\n");
    for (q, v) in [
        ("0.5", s.latency_usecs.p50),
        ("0.9", s.latency_usecs.p90),
        ("0.99", s.latency_usecs.p99),
        ("0.999", s.latency_usecs.p999),
        ("1", s.latency_usecs.max),
    ] {
        let _ = writeln!(o, "codis_proxy_latency_usecs{{quantile=\"{q}\"}} {v}");
    }
    let _ = writeln!(
        o,
        "codis_proxy_latency_usecs_count {}",
        s.latency_usecs.count
    );
    for (name, help) in [
        ("calls", "Requests per command."),
        ("usecs", "Microseconds spent per command."),
        ("fails", "Failed requests per command."),
        ("redis_errors", "Backend error replies per command."),
    ] {
        let _ = write!(o, "# HELP codis_proxy_cmd_{name}_total {help}\n# TYPE codis_proxy_cmd_{name}_total counter\n");
        for c in &s.cmds {
            let v = match name {
                "calls" => c.calls,
                "usecs" => c.usecs,
                "fails" => c.fails,
                _ => c.redis_errtype,
            };
            let _ = writeln!(o, "codis_proxy_cmd_{name}_total{{cmd=\"{}\"}} {v}", c.opstr);
        }
    }
    let _ = ctl.shared.online.load(Relaxed);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], o).into_response()
}
