//! The release endpoints: getting an original back, on [`crate::release::Release`] (the same
//! library `mugai quarantine request|release|refuse|unlock` uses).
//!
//! | route | who | body (JSON) | answer |
//! |---|---|---|---|
//! | `POST /v1/quarantine/{report_id}/requests` | any role (a requester: items addressed to them) | `{"reason": "..."}` | 201 `{"request": …}` |
//! | `GET /v1/quarantine/{report_id}/requests` | as above | — | 200 `{"requests": […]}` |
//! | `POST /v1/quarantine/{report_id}/release` | approver, admin (never for their own request) | `{"decision": "approve" \| "refuse", "reason": "...", "request": 12}` (`request` optional: default the item's newest) | 200 `{"request": …, "delivered_to": …}` |
//! | `POST /v1/quarantine/{report_id}/password` | any role that may see the item | `{"password": "..."}` | 200 `{"report": …, "written_to": …}` |
//! | `GET /v1/requests?state=pending` | any role (a requester: their own) | — | 200 `{"requests": […]}` |
//!
//! Errors map through [`crate::release::ReleaseError::http_status`] (400, 403, 404, 409, 410,
//! 422, 429, 502, 503, 500) with `{"error": "..."}`. The password is never logged, stored
//! or echoed; it is wiped when the job ends.

use std::sync::Arc;

use http::StatusCode;
use hyper::Request;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::api::query_pairs;
use super::{Api, Ctx, Resp, error, json, read_body};
use crate::release::{Release, ReleaseError, Target};
use crate::sanitize::Password;
use crate::sinks::index::{RequestFilter, RequestState};

type Handled = Result<Resp, Box<Resp>>;

/// Largest JSON body these endpoints read.
const MAX_JSON: u64 = 64 * 1024;

fn fail(e: &ReleaseError) -> Box<Resp> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!(error = %e, "release operation failed");
    }
    Box::new(error(status, &e.to_string()))
}

/// The JSON object of a request body (400 when it is not one).
async fn body_object(req: Request<Incoming>) -> Result<serde_json::Map<String, Value>, Box<Resp>> {
    let body = read_body(req, MAX_JSON).await?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        ))),
    }
}

fn string_field(m: &serde_json::Map<String, Value>, key: &str) -> String {
    m.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Runs a blocking release operation off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ReleaseError> + Send + 'static,
) -> Result<T, Box<Resp>> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(fail(&e)),
        Err(e) => Err(fail(&ReleaseError::Internal(e.to_string()))),
    }
}

fn service(api: &Api) -> Result<Release, Box<Resp>> {
    api.release().map_err(|e| fail(&ReleaseError::Internal(e)))
}

/// `POST /v1/quarantine/{report_id}/requests`.
pub async fn request(
    api: &Arc<Api>,
    ctx: &Ctx,
    report_id: &str,
    req: Request<Incoming>,
) -> Handled {
    let body = body_object(req).await?;
    let reason = string_field(&body, "reason");
    let release = service(api)?;
    let actor = ctx.actor.clone();
    let id = report_id.to_owned();
    let made = blocking(move || release.request(&actor, &id, &reason)).await?;
    Ok(json(StatusCode::CREATED, &json!({ "request": made })))
}

/// `GET /v1/quarantine/{report_id}/requests`.
pub async fn requests_of(api: &Arc<Api>, ctx: &Ctx, report_id: &str) -> Handled {
    let release = service(api)?;
    let actor = ctx.actor.clone();
    let id = report_id.to_owned();
    let list = blocking(move || {
        // 404 for items the actor may not see, before listing anything about them.
        release.item_for(&actor, &id)?;
        release.list_requests(
            &actor,
            &RequestFilter {
                report_id: Some(id.clone()),
                ..RequestFilter::default()
            },
        )
    })
    .await?;
    Ok(json(StatusCode::OK, &json!({ "requests": list })))
}

/// `GET /v1/requests?state=&limit=&offset=`.
pub async fn requests(api: &Arc<Api>, ctx: &Ctx, query: &str) -> Handled {
    let mut filter = RequestFilter::default();
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "state" => {
                filter.state = Some(RequestState::parse(&v).ok_or_else(|| {
                    Box::new(error(
                        StatusCode::BAD_REQUEST,
                        "state must be pending, approved or refused",
                    ))
                })?);
            }
            "limit" => filter.limit = v.parse().unwrap_or(0),
            "offset" => filter.offset = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    let release = service(api)?;
    let actor = ctx.actor.clone();
    let list = blocking(move || release.list_requests(&actor, &filter)).await?;
    Ok(json(StatusCode::OK, &json!({ "requests": list })))
}

/// `POST /v1/quarantine/{report_id}/release`.
pub async fn decide(api: &Arc<Api>, ctx: &Ctx, report_id: &str, req: Request<Incoming>) -> Handled {
    let body = body_object(req).await?;
    let reason = string_field(&body, "reason");
    let target = match body.get("request").and_then(Value::as_i64) {
        Some(n) => Target::Request(n),
        None => Target::Report(report_id.to_owned()),
    };
    let release = service(api)?;
    match string_field(&body, "decision").as_str() {
        "approve" => {
            let done = release
                .approve(&ctx.actor, &target, &reason)
                .await
                .map_err(|e| fail(&e))?;
            if done.request.report_id != report_id {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    "that request is for another item",
                )));
            }
            Ok(json(
                StatusCode::OK,
                &json!({ "request": done.request, "delivered_to": done.delivered_to }),
            ))
        }
        "refuse" => {
            let actor = ctx.actor.clone();
            let refused = blocking(move || release.refuse(&actor, &target, &reason)).await?;
            Ok(json(StatusCode::OK, &json!({ "request": refused })))
        }
        _ => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "decision must be \"approve\" or \"refuse\"",
        ))),
    }
}

/// `POST /v1/quarantine/{report_id}/password`.
pub async fn password(
    api: &Arc<Api>,
    ctx: &Ctx,
    report_id: &str,
    req: Request<Incoming>,
) -> Handled {
    let body = body_object(req).await?;
    let Some(pw) = body.get("password").and_then(Value::as_str) else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "password (a string) is required",
        )));
    };
    let password = Password::new(pw.to_owned());
    drop(body);
    let release = service(api)?;
    let transform = api.transform();
    let unlocked = release
        .unlock_with_password(&ctx.actor, report_id, password, transform)
        .await
        .map_err(|e| fail(&e))?;
    Ok(json(
        StatusCode::OK,
        &json!({ "report": unlocked.report, "written_to": unlocked.written_to }),
    ))
}
