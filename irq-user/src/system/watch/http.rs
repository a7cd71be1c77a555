//! The /metrics endpoint. Handlers only read the text the last interval published.

use std::sync::{Arc, RwLock};

use axum::{
    http::{header, HeaderMap, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};

/// What the last interval published.
#[derive(Clone, Default)]
pub struct Published {
    pub text: Arc<RwLock<String>>,
}

const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics(state: axum::extract::State<Published>, headers: HeaderMap) -> impl IntoResponse {
    let text = state.text.read().map(|t| t.clone()).unwrap_or_default();
    if text.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain")],
            "no interval read yet\n".to_string(),
        );
    }
    let wants_om = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    if wants_om {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, OPENMETRICS)],
            super::to_openmetrics(&text),
        )
    } else {
        (StatusCode::OK, [(header::CONTENT_TYPE, PROMETHEUS)], text)
    }
}

async fn index() -> &'static str {
    "irqtune watch: metrics at /metrics\n"
}

pub fn router(state: Published) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(index))
        .with_state(state)
}
