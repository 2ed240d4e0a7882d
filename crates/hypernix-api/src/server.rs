//! The HTTP side: `POST /graphql` for queries and mutations, `GET /graphql` upgraded to a
//! WebSocket for subscriptions (graphql-transport-ws, and the legacy graphql-ws), and
//! GraphiQL at `/` when enabled, the web console at `/ui` and a unit's serial console at
//! `/console/UNIT` (see [`crate::ui`], [`crate::terminal`]), and `GET /metrics` in the
//! Prometheus text format (with a token allowing `monitor.metrics`, as
//! `Authorization: Bearer TOKEN`).

use std::sync::Arc;

use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State, WebSocketUpgrade};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use hypernix_caps::{Access, Request};
use hypernix_daemon::Daemon;

use crate::auth::Credential;
use crate::schema::{self, ConnectionSubscriptions, HypernixSchema, Limits};

/// The API's routes over a daemon.
pub fn router(daemon: Arc<Daemon>, limits: Limits, graphiql: bool) -> Router {
    let schema = schema::build(Some(daemon.clone()), limits);
    let mut r = Router::new()
        .route("/graphql", get(subscribe).post(query))
        .merge(crate::ui::routes())
        .merge(crate::terminal::routes(daemon.clone()))
        .route(
            "/metrics",
            get(move |headers: HeaderMap| metrics(daemon.clone(), headers)),
        )
        .layer(DefaultBodyLimit::max(limits.body_size));
    if graphiql {
        r = r.route("/", get(graphiql_page));
    }
    r.with_state(schema)
}

/// Queries and mutations. The body is read under `api.limits.bodySize`; a body that is too
/// large or not a GraphQL request still gets an answer in GraphQL's shape.
async fn query(
    State(schema): State<HypernixSchema>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => return refuse(rejection.status(), rejection.body_text()),
    };
    match serde_json::from_slice::<async_graphql::Request>(&body) {
        Ok(req) => {
            let token = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
            let req = req.data(Credential::from_header(token));
            axum::Json(schema.execute(req).await).into_response()
        }
        Err(e) => refuse(
            StatusCode::BAD_REQUEST,
            format!("not a GraphQL request: {e}"),
        ),
    }
}

/// The latest metrics, for a token allowed `monitor.metrics` (audited like any request).
async fn metrics(daemon: Arc<Daemon>, headers: HeaderMap) -> Response {
    let token = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = Credential::from_header(token).token().map(str::to_string);
    let request = Request::new("monitor.metrics", Access::new("any", "read"));
    match daemon.guard().authorize(token.as_deref(), &request) {
        Ok(_) => (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            daemon.monitor().exposition(),
        )
            .into_response(),
        Err(denied) => (
            if token.is_none() {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            },
            format!("/metrics: {}\n", denied.reason),
        )
            .into_response(),
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": "BAD_REQUEST" } }]
    });
    (status, axum::Json(body)).into_response()
}

async fn subscribe(
    State(schema): State<HypernixSchema>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(|payload| async move {
                    let mut data = Data::default();
                    data.insert(ConnectionSubscriptions::default());
                    data.insert(init_credential(&payload));
                    Ok(data)
                })
                .serve()
        })
}

/// The token of a WebSocket connection: `{"token": "..."}` or
/// `{"Authorization": "Bearer ..."}` in the connection_init payload.
fn init_credential(payload: &serde_json::Value) -> Credential {
    if let Some(t) = payload.get("token").and_then(|t| t.as_str()) {
        return Credential::new(Some(t.to_string()));
    }
    Credential::from_header(
        payload
            .get("Authorization")
            .or_else(|| payload.get("authorization"))
            .and_then(|v| v.as_str()),
    )
}

async fn graphiql_page() -> impl IntoResponse {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql")
            .finish(),
    )
}
