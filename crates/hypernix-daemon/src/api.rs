//! The local HTTP API (JSON). Each request becomes one call on [`Daemon`]; handlers hold
//! no state of their own.
//!
//! | method and path | does |
//! |---|---|
//! | `GET /v1/health` | version, pid, state directory |
//! | `POST /v1/apply` | applies a configuration (`{"hypervisor": {...}}`), answers the plan |
//! | `POST /v1/plan` | the plan only |
//! | `GET /v1/units`, `GET /v1/units/NAME` | unit status |
//! | `POST /v1/units/NAME/ACTION` | start, stop, restart, pause, resume |
//! | `GET /v1/units/NAME/console?tail=BYTES` | the end of the unit's console log |
//! | `GET /v1/events?after=ID&limit=N` | the event log |
//! | `POST /v1/shutdown` | stops the daemon (`{"stopUnits": true}` stops the units first) |

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::daemon::{Daemon, UnitAction};
use crate::error::DaemonError;

/// The API's routes.
pub fn router(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/apply", post(apply))
        .route("/v1/plan", post(plan))
        .route("/v1/units", get(units))
        .route("/v1/units/{name}", get(unit))
        .route("/v1/units/{name}/console", get(console))
        .route("/v1/units/{name}/{action}", post(action))
        .route("/v1/events", get(events))
        .route("/v1/shutdown", post(shutdown))
        .layer(DefaultBodyLimit::max(16 << 20))
        .with_state(daemon)
}

impl IntoResponse for DaemonError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let details = match &self {
            DaemonError::Config(errors) => errors.clone(),
            _ => Vec::new(),
        };
        (
            status,
            Json(json!({ "error": self.to_string(), "details": details })),
        )
            .into_response()
    }
}

type Reply = Result<Json<Value>, DaemonError>;

fn to_json<T: serde::Serialize>(v: T) -> Reply {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| DaemonError::Store(e.to_string()))
}

async fn health(State(d): State<Arc<Daemon>>) -> Reply {
    to_json(d.health())
}

#[derive(Deserialize)]
struct ApplyBody {
    hypervisor: Map<String, Value>,
}

async fn apply(State(d): State<Arc<Daemon>>, Json(body): Json<ApplyBody>) -> Reply {
    to_json(d.apply(body.hypervisor).await?)
}

async fn plan(State(d): State<Arc<Daemon>>, Json(body): Json<ApplyBody>) -> Reply {
    to_json(d.plan(body.hypervisor)?)
}

async fn units(State(d): State<Arc<Daemon>>) -> Reply {
    to_json(d.units())
}

async fn unit(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> Reply {
    to_json(d.unit(&name)?)
}

async fn action(
    State(d): State<Arc<Daemon>>,
    Path((name, action)): Path<(String, String)>,
) -> Reply {
    let action = match action.as_str() {
        "start" => UnitAction::Start,
        "stop" => UnitAction::Stop,
        "restart" => UnitAction::Restart,
        "pause" => UnitAction::Pause,
        "resume" => UnitAction::Resume,
        other => {
            return Err(DaemonError::Unit {
                unit: name,
                message: format!(
                    "unknown action `{other}`; use start, stop, restart, pause or resume"
                ),
            });
        }
    };
    to_json(d.act(&name, action).await?)
}

#[derive(Deserialize)]
struct Tail {
    tail: Option<u64>,
}

async fn console(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Query(q): Query<Tail>,
) -> Reply {
    let text = d.console_log(&name, q.tail.unwrap_or(64 << 10))?;
    to_json(json!({ "unit": name, "log": text }))
}

#[derive(Deserialize)]
struct EventQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn events(State(d): State<Arc<Daemon>>, Query(q): Query<EventQuery>) -> Reply {
    to_json(d.events(q.after, q.limit.unwrap_or(1000).min(10_000))?)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ShutdownBody {
    #[serde(default)]
    stop_units: bool,
}

async fn shutdown(State(d): State<Arc<Daemon>>, body: Option<Json<ShutdownBody>>) -> Reply {
    let stop_units = body.map(|b| b.0.stop_units).unwrap_or(false);
    d.shutdown(stop_units).await?;
    to_json(json!({ "ok": true }))
}
