//! The dashboard HTTP API, Codis 3.2's `/api/topom/...` shape. Reads (`GET`) are open; every
//! mutation (`PUT`) carries the product's xauth token in its path and answers
//! `{"msg": "OK", "ret": 0, …}` or `{"msg": "<error>", "ret": 1}` with a 4xx/5xx status.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;
use crate::error::CtlError;
use crate::request::{dec, Request, Role};
use crate::topom::dump::dump;
use crate::topom::ok;
use crate::topom::slots::slot_info;

/// The web page.
pub const INDEX_HTML: &str = include_str!("index.html");

type St = State<Arc<AppState>>;

fn error(e: CtlError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(json!({"msg": e.to_string(), "ret": 1}))).into_response()
}

fn reply(r: Result<Value, CtlError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(e),
    }
}

async fn mutate(st: &AppState, xauth: &str, req: Request) -> Response {
    if xauth != st.xauth {
        return error(CtlError::Unauthorized);
    }
    reply(st.ctx.apply(req).await)
}

fn int(s: &str, what: &str) -> Result<u32, CtlError> {
    s.parse::<u32>()
        .map_err(|_| CtlError::invalid(format!("{what} {s:?} is not a number")))
}

/// Everything the page shows, in one document.
pub async fn overview(st: &AppState) -> Result<Value, CtlError> {
    let t = st.ctx.store.topology().await?;
    let stats = st.stats.get();
    let control = &st.ctx.control;
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "product": st.ctx.store.product(),
        "coordinator": st.coordinator,
        "model": st.topom,
        "topology_version": t.version(),
        "slots": t.slots(),
        "groups": t.groups().values().collect::<Vec<_>>(),
        "stats": stats,
        "slot_action": {
            "paused": control.paused(),
            "delay_ms": control.delay().as_millis() as u64,
            "status": control.status(),
            "progress": control.progress(),
        },
    }))
}

async fn h_index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn h_overview(State(st): St) -> Response {
    reply(overview(&st).await)
}

async fn h_model(State(st): St) -> Response {
    Json(json!(st.topom)).into_response()
}

async fn h_stats(State(st): St) -> Response {
    let c = &st.ctx.control;
    Json(json!({
        "stats": st.stats.get(),
        "slot_action": {"paused": c.paused(), "delay_ms": c.delay().as_millis() as u64, "status": c.status(), "progress": c.progress()},
    }))
    .into_response()
}

async fn h_slots(State(st): St) -> Response {
    reply(
        st.ctx
            .store
            .slot_mappings()
            .await
            .map(|s| json!(s))
            .map_err(Into::into),
    )
}

async fn h_slot_info(State(st): St, Path(sid): Path<String>) -> Response {
    let r = async {
        let sid = int(&sid, "slot")?;
        crate::topom::slots::check_slot(sid)?;
        let t = st.ctx.store.topology().await?;
        slot_info(&t, sid)
    };
    reply(r.await)
}

async fn h_groups(State(st): St) -> Response {
    reply(
        st.ctx
            .store
            .groups()
            .await
            .map(|g| json!(g.values().collect::<Vec<_>>()))
            .map_err(Into::into),
    )
}

async fn h_servers(State(st): St) -> Response {
    reply(st.ctx.server_list().await.map(|s| json!(s)))
}

async fn h_proxies(State(st): St) -> Response {
    reply(st.ctx.proxy_list().await.map(|p| json!(p)))
}

async fn h_dump(State(st): St) -> Response {
    reply(
        st.ctx
            .store
            .topology()
            .await
            .map(|t| json!(dump(&t)))
            .map_err(Into::into),
    )
}

async fn h_xping(State(st): St, Path(x): Path<String>) -> Response {
    if x != st.xauth {
        return error(CtlError::Unauthorized);
    }
    Json(ok()).into_response()
}

/// `POST /api/topom/login {"auth": "..."}`: the token for whoever knows the product auth.
async fn h_login(State(st): St, Json(body): Json<Value>) -> Response {
    let auth = body.get("auth").and_then(Value::as_str).unwrap_or("");
    if auth != st.ctx.cfg.product_auth {
        return error(CtlError::Unauthorized);
    }
    Json(json!({"msg": "OK", "ret": 0, "xauth": st.xauth})).into_response()
}

async fn h_shutdown(State(st): St, Path(x): Path<String>) -> Response {
    if x != st.xauth {
        return error(CtlError::Unauthorized);
    }
    st.request_shutdown();
    Json(ok()).into_response()
}

async fn h_slot_init(State(st): St, Path((x, f)): Path<(String, String)>) -> Response {
    mutate(&st, &x, Request::SlotInit { force: f == "1" }).await
}

async fn h_slot_set(
    State(st): St,
    Path((x, s, g, status)): Path<(String, String, String, String)>,
) -> Response {
    let req = (|| {
        Ok(Request::SlotSet {
            slot: int(&s, "slot")?,
            gid: int(&g, "group")?,
            status: dec(&status),
        })
    })();
    match req {
        Ok(r) => mutate(&st, &x, r).await,
        Err(e) => error(e),
    }
}

async fn h_assign_range(
    State(st): St,
    Path((x, a, b, g, status)): Path<(String, String, String, String, String)>,
) -> Response {
    let req = (|| {
        Ok(Request::SlotRangeSet {
            from: int(&a, "slot")?,
            to: int(&b, "slot")?,
            gid: int(&g, "group")?,
            status: dec(&status),
        })
    })();
    match req {
        Ok(r) => mutate(&st, &x, r).await,
        Err(e) => error(e),
    }
}

async fn h_create_range(
    State(st): St,
    Path((x, a, b, g)): Path<(String, String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let req = (|| {
        Ok(Request::SlotMigrate {
            from: int(&a, "slot")?,
            to: int(&b, "slot")?,
            gid: int(&g, "group")?,
            delay_ms: match q.get("delay_ms") {
                Some(d) => Some(int(d, "delay_ms")? as u64),
                None => None,
            },
        })
    })();
    match req {
        Ok(r) => mutate(&st, &x, r).await,
        Err(e) => error(e),
    }
}

async fn h_action_remove(State(st): St, Path((x, s)): Path<(String, String)>) -> Response {
    let slot = if s == "all" {
        None
    } else {
        match int(&s, "slot") {
            Ok(n) => Some(n),
            Err(e) => return error(e),
        }
    };
    mutate(&st, &x, Request::SlotActionCancel { slot }).await
}

async fn h_action_disabled(State(st): St, Path((x, v)): Path<(String, String)>) -> Response {
    let req = if v == "1" || v == "true" {
        Request::SlotActionPause
    } else {
        Request::SlotActionResume
    };
    mutate(&st, &x, req).await
}

async fn h_action_interval(State(st): St, Path((x, v)): Path<(String, String)>) -> Response {
    if x != st.xauth {
        return error(CtlError::Unauthorized);
    }
    match int(&v, "interval (µs)") {
        Ok(us) => {
            st.ctx.control.set_delay_ms(us as u64 / 1000);
            Json(ok()).into_response()
        }
        Err(e) => error(e),
    }
}

async fn h_rebalance(State(st): St, Path((x, c)): Path<(String, String)>) -> Response {
    mutate(&st, &x, Request::SlotRebalance { confirm: c == "1" }).await
}

async fn h_group_create(State(st): St, Path((x, g)): Path<(String, String)>) -> Response {
    match int(&g, "group") {
        Ok(gid) => mutate(&st, &x, Request::GroupCreate { gid }).await,
        Err(e) => error(e),
    }
}

async fn h_group_remove(State(st): St, Path((x, g)): Path<(String, String)>) -> Response {
    match int(&g, "group") {
        Ok(gid) => mutate(&st, &x, Request::GroupRemove { gid }).await,
        Err(e) => error(e),
    }
}

async fn h_group_add(
    State(st): St,
    Path((x, g, addr, role)): Path<(String, String, String, String)>,
) -> Response {
    let req = (|| {
        Ok(Request::ServerAdd {
            gid: int(&g, "group")?,
            addr: dec(&addr),
            role: role.parse::<Role>().map_err(CtlError::Invalid)?,
        })
    })();
    match req {
        Ok(r) => mutate(&st, &x, r).await,
        Err(e) => error(e),
    }
}

async fn h_group_del(
    State(st): St,
    Path((x, g, addr)): Path<(String, String, String)>,
) -> Response {
    match int(&g, "group") {
        Ok(gid) => {
            let addr = dec(&addr);
            mutate(&st, &x, Request::ServerRemove { gid, addr }).await
        }
        Err(e) => error(e),
    }
}

async fn h_promote(State(st): St, Path((x, g, addr)): Path<(String, String, String)>) -> Response {
    match int(&g, "group") {
        Ok(gid) => {
            let addr = dec(&addr);
            mutate(&st, &x, Request::ServerPromote { gid, addr }).await
        }
        Err(e) => error(e),
    }
}

async fn h_proxy_online(State(st): St, Path((x, addr)): Path<(String, String)>) -> Response {
    let addr = dec(&addr);
    mutate(&st, &x, Request::ProxyOnline { addr }).await
}

async fn h_proxy_remove(State(st): St, Path((x, id)): Path<(String, String)>) -> Response {
    let id = dec(&id);
    mutate(&st, &x, Request::ProxyOffline { id }).await
}

async fn h_restore(
    State(st): St,
    Path((x, f)): Path<(String, String)>,
    Json(config): Json<Value>,
) -> Response {
    mutate(
        &st,
        &x,
        Request::ConfigRestore {
            config,
            force: f == "1",
        },
    )
    .await
}

/// All routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(h_index))
        .route("/topom", get(h_overview))
        .route("/api/topom/overview", get(h_overview))
        .route("/api/topom/model", get(h_model))
        .route("/api/topom/stats", get(h_stats))
        .route("/api/topom/slots", get(h_slots))
        .route("/api/topom/slots/info/:sid", get(h_slot_info))
        .route("/api/topom/group", get(h_groups))
        .route("/api/topom/servers", get(h_servers))
        .route("/api/topom/proxy", get(h_proxies))
        .route("/api/topom/config/dump", get(h_dump))
        .route("/api/topom/xping/:xauth", get(h_xping))
        .route("/api/topom/login", post(h_login))
        .route("/api/topom/shutdown/:xauth", put(h_shutdown))
        .route("/api/topom/slots/init/:xauth/:force", put(h_slot_init))
        .route(
            "/api/topom/slots/set/:xauth/:sid/:gid/:status",
            put(h_slot_set),
        )
        .route(
            "/api/topom/slots/assign-range/:xauth/:beg/:end/:gid/:status",
            put(h_assign_range),
        )
        .route(
            "/api/topom/slots/action/create-range/:xauth/:beg/:end/:gid",
            put(h_create_range),
        )
        .route(
            "/api/topom/slots/action/remove/:xauth/:sid",
            put(h_action_remove),
        )
        .route(
            "/api/topom/slots/action/disabled/:xauth/:value",
            put(h_action_disabled),
        )
        .route(
            "/api/topom/slots/action/interval/:xauth/:value",
            put(h_action_interval),
        )
        .route(
            "/api/topom/slots/rebalance/:xauth/:confirm",
            put(h_rebalance),
        )
        .route("/api/topom/group/create/:xauth/:gid", put(h_group_create))
        .route("/api/topom/group/remove/:xauth/:gid", put(h_group_remove))
        .route(
            "/api/topom/group/add/:xauth/:gid/:addr/:role",
            put(h_group_add),
        )
        .route("/api/topom/group/del/:xauth/:gid/:addr", put(h_group_del))
        .route("/api/topom/group/promote/:xauth/:gid/:addr", put(h_promote))
        .route("/api/topom/proxy/online/:xauth/:addr", put(h_proxy_online))
        .route("/api/topom/proxy/remove/:xauth/:id", put(h_proxy_remove))
        .route("/api/topom/config/restore/:xauth/:force", put(h_restore))
        .with_state(state)
}
