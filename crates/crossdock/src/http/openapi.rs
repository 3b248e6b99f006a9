//! The OpenAPI 3.1 document, generated from the route annotations and completed from the policy
//! table (security, standard problem responses, `Idempotency-Key`, deprecation), and the
//! reference page rendered from it, served by crossdock itself.

use std::fmt::Write;
use std::sync::{Arc, OnceLock};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::policy::{self, Access, Idempotency};
use super::{catalog, edi, events, inventory, ops, orders, returns};
use crate::app::AppState;

/// The shape of every error response (`application/problem+json`, RFC 9457).
#[derive(Serialize, ToSchema)]
pub struct ProblemBody {
    /// A relative URI naming the problem type; `GET` it for a description.
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    /// What is wrong, in words.
    detail: String,
    /// The request path.
    instance: String,
    /// The id to quote when asking about this request (also in `X-Correlation-Id`).
    correlation_id: String,
    /// Each problem with the input, located by a JSON pointer.
    errors: Option<Vec<FieldErrorBody>>,
}

#[derive(Serialize, ToSchema)]
pub struct FieldErrorBody {
    /// A JSON pointer (RFC 6901) into the body, or `/query/<name>`, `/path/<name>`.
    pointer: String,
    detail: String,
}

/// A CloudEvent 1.0 in structured JSON mode. Extension attributes (lowercase letters and digits)
/// are kept; `correlationid` and `causationid` are recognised.
#[derive(Serialize, ToSchema)]
pub struct CloudEvent {
    /// Must be `1.0`.
    specversion: String,
    /// Unique within its source; `(source, id)` is the deduplication key.
    id: String,
    /// A URI-reference naming the system that produced the event, such as `/wms/east`.
    source: String,
    /// Such as `inventory.adjusted`.
    #[serde(rename = "type")]
    kind: String,
    subject: Option<String>,
    /// RFC 3339.
    time: Option<String>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    /// Any JSON value.
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
    /// Binary data in base64, instead of `data`.
    data_base64: Option<String>,
    correlationid: Option<String>,
    causationid: Option<String>,
    /// Assigned by crossdock (feed only).
    seq: Option<i64>,
    /// When crossdock recorded it, RFC 3339 (feed only).
    recordedtime: Option<String>,
}

/// One event or a batch.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum EventsBody {
    One(Box<CloudEvent>),
    Batch(Vec<CloudEvent>),
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "crossdock API",
        version = "1",
        description = "The governed front door of crossdock, the inventory and order synchronization hub. \
            Every route is under /v1 except probes and documentation. Authenticate with \
            `Authorization: Bearer <token>` (keys are made with `crossdock keys create`); each route \
            names the scope it needs. Errors are RFC 9457 problem details. POST routes accept an \
            `Idempotency-Key`: the first response is kept and returned for the same request."
    ),
    components(schemas(ProblemBody, FieldErrorBody, CloudEvent)),
    tags(
        (name = "events", description = "The event log: append and follow"),
        (name = "catalog", description = "Items and kits, locations, channels and their availability policies, listings"),
        (name = "inventory", description = "Stock per location and channel, explanations, reservations"),
        (name = "orders", description = "Orders taken once from every channel, and their sagas"),
        (name = "edi", description = "X12 from trading partners: kept, checked, turned into events and acknowledged"),
        (name = "dead letters", description = "Deliveries that failed for good: inspect, replay, drop"),
        (name = "operations", description = "Health, metrics, consumers, the inbox and the audit log"),
        (name = "documentation", description = "This document and its reference page"),
    )
)]
struct ApiDoc;

/// Every route, registered together with its documentation. Routes are added only here.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::problem_page))
        .routes(routes!(openapi_json))
        .routes(routes!(docs))
        .routes(routes!(events::post_events, events::get_events))
        .routes(routes!(ops::consumers))
        .routes(routes!(ops::sources))
        .routes(routes!(ops::inbox_list))
        .routes(routes!(ops::inbox_get))
        .routes(routes!(events::inbox_replay))
        .routes(routes!(ops::dead_letters))
        .routes(routes!(ops::dead_letter, ops::drop_dead_letter))
        .routes(routes!(ops::replay_dead_letter))
        .routes(routes!(ops::audit_log))
        .routes(routes!(catalog::put_items, catalog::list_items))
        .routes(routes!(catalog::put_item, catalog::get_item))
        .routes(routes!(catalog::list_locations))
        .routes(routes!(catalog::put_location, catalog::get_location))
        .routes(routes!(catalog::list_channels))
        .routes(routes!(catalog::put_channel, catalog::get_channel))
        .routes(routes!(catalog::list_listings, catalog::put_listings))
        .routes(routes!(
            catalog::put_listing,
            catalog::get_listing,
            catalog::delete_listing
        ))
        .routes(routes!(inventory::get_inventory))
        .routes(routes!(inventory::explain_inventory))
        .routes(routes!(inventory::list_divergences))
        .routes(routes!(inventory::post_reservation))
        .routes(routes!(inventory::delete_reservation))
        .routes(routes!(edi::post_edi))
        .routes(routes!(orders::post_order, orders::list_orders))
        .routes(routes!(orders::get_order))
        .routes(routes!(orders::cancel_order))
        .routes(routes!(orders::resume_order))
        .routes(routes!(returns::post_return, returns::list_returns))
        .routes(routes!(returns::get_return))
        .routes(routes!(returns::list_postings))
        .routes(routes!(returns::get_posting))
        .routes(routes!(returns::run_postings))
        .routes(routes!(edi::list_groups))
}

/// The finished document, built once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let (_, api) = routes().split_for_parts();
        complete(serde_json::to_value(api).unwrap_or_else(|_| json!({})))
    })
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemBody"}}}
    })
}

/// Adds what the policy table says about each operation.
fn complete(mut doc: Value) -> Value {
    doc["openapi"] = json!("3.1.0");
    doc["components"]["securitySchemes"]["bearer"] = json!({
        "type": "http",
        "scheme": "bearer",
        "description": "An API token, `cdk_<key id>_<secret>`. Scopes: catalog:write, inventory:read, \
            inventory:write, orders:read, orders:write, events:read, events:write, ops, admin (all)."
    });
    let Some(paths) = doc["paths"].as_object_mut() else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Ok(m) = method.to_ascii_uppercase().parse::<axum::http::Method>() else {
                continue;
            };
            let Some(policy) = policy::lookup(&m, path) else {
                continue;
            };
            let add = |op: &mut Value, status: &str, description: &str| {
                if op["responses"].get(status).is_none() {
                    op["responses"][status] = problem_response(description);
                }
            };
            match policy.access {
                Access::Public => op["security"] = json!([]),
                Access::Scope(scope) => {
                    op["security"] = json!([{"bearer": [scope.as_str()]}]);
                    add(op, "401", "No valid API key");
                    add(op, "403", &format!("The key lacks the `{scope}` scope"));
                    add(
                        op,
                        "429",
                        "The key's rate limit is used up; see Retry-After",
                    );
                    let text = op["description"].as_str().unwrap_or("").to_owned();
                    op["description"] = json!(
                        format!("{text}\n\nRequires the `{scope}` scope.")
                            .trim()
                            .to_owned()
                    );
                }
            }
            let responses = &mut op["responses"];
            if responses.get("503").is_none() {
                responses["503"] = problem_response("Overloaded or timed out; see Retry-After");
            }
            if policy.idempotency != Idempotency::NotApplicable {
                let required = policy.idempotency == Idempotency::Required;
                let parameter = json!({
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": required,
                    "description": "1 to 255 visible ASCII characters. The first response to a key is kept for \
                        24 hours and returned again for the same request; another request with the same key \
                        is refused (422); a repeat while the first is running is told to wait (409).",
                    "schema": {"type": "string", "maxLength": 255}
                });
                match op["parameters"].as_array_mut() {
                    Some(list) => list.push(parameter),
                    None => op["parameters"] = json!([parameter]),
                }
                let responses = &mut op["responses"];
                if responses.get("409").is_none() {
                    responses["409"] =
                        problem_response("A request with this Idempotency-Key is in progress");
                }
                if responses.get("422").is_none() {
                    responses["422"] =
                        problem_response("The Idempotency-Key was used with another request");
                }
            }
            if policy.deprecated.is_some() {
                op["deprecated"] = json!(true);
            }
        }
    }
    doc
}

/// This document: the OpenAPI 3.1 description of every route.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "documentation",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub(super) async fn openapi_json() -> Response {
    super::json(StatusCode::OK, document())
}

/// A readable reference of the API, rendered from the OpenAPI document (no scripts, no CDN).
#[utoipa::path(get, path = "/docs", tag = "documentation",
    responses((status = 200, description = "The reference page", body = String, content_type = "text/html")))]
pub(super) async fn docs() -> Response {
    static PAGE: OnceLock<String> = OnceLock::new();
    let page = PAGE.get_or_init(|| render(document()));
    let mut response = (StatusCode::OK, page.clone()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A short description of a schema: a reference's name, an array of something, or a type.
fn schema_text(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", escape(name));
    }
    if let Some(items) = schema.get("items") {
        return format!("array of {}", schema_text(items));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(parts) = schema[key].as_array() {
            let texts: Vec<String> = parts.iter().map(schema_text).collect();
            return texts.join(if key == "allOf" { " and " } else { " or " });
        }
    }
    match &schema["type"] {
        Value::String(t) => escape(t),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(escape)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".into(),
    }
}

fn render(doc: &Value) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = escape(doc["info"]["title"].as_str().unwrap_or("API"));
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>\
         body{{font-family:system-ui,sans-serif;max-width:980px;margin:2rem auto;padding:0 1rem;color:#1d232a}}\
         code,.path{{font-family:ui-monospace,monospace}}h2{{border-bottom:1px solid #ccd;padding-bottom:.3rem;margin-top:2.5rem}}\
         .op{{border:1px solid #dde;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}}\
         .m{{display:inline-block;min-width:4.5rem;font-weight:700;font-family:ui-monospace,monospace}}\
         .get{{color:#0a6}}.post{{color:#05c}}.put{{color:#a60}}.delete{{color:#c22}}\
         .scope{{float:right;font-size:.85rem;background:#eef;border-radius:4px;padding:.1rem .4rem}}\
         table{{border-collapse:collapse;margin:.4rem 0;font-size:.92rem}}td,th{{border:1px solid #dde;padding:.2rem .5rem;text-align:left;vertical-align:top}}\
         .dep{{color:#c22;font-weight:700}}</style></head><body><h1>{title}</h1><p>{}</p>\
         <p>Machine-readable: <a href=\"/v1/openapi.json\">/v1/openapi.json</a> (OpenAPI {}).</p>",
        escape(doc["info"]["description"].as_str().unwrap_or("")),
        escape(doc["openapi"].as_str().unwrap_or("")),
    );
    let empty = serde_json::Map::new();
    let paths = doc["paths"].as_object().unwrap_or(&empty);
    let _ = write!(out, "<h2>Operations</h2>");
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, op) in item {
            let scope = op["security"][0]["bearer"][0]
                .as_str()
                .map_or_else(|| "public".to_owned(), |s| format!("scope: {}", escape(s)));
            let _ = write!(
                out,
                "<div class=\"op\"><span class=\"scope\">{scope}</span><span class=\"m {m}\">{M}</span> \
                 <span class=\"path\">{p}</span>{dep}<p>{d}</p>",
                m = escape(method),
                M = escape(&method.to_ascii_uppercase()),
                p = escape(path),
                dep = if op["deprecated"] == json!(true) {
                    " <span class=\"dep\">deprecated</span>"
                } else {
                    ""
                },
                d = escape(
                    [op["summary"].as_str(), op["description"].as_str()]
                        .into_iter()
                        .flatten()
                        .filter(|t| !t.is_empty())
                        .collect::<Vec<_>>()
                        .join("\n\n")
                        .as_str()
                )
                .replace("\n\n", "</p><p>"),
            );
            if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
                let _ = write!(
                    out,
                    "<table><tr><th>parameter</th><th>in</th><th>type</th><th>description</th></tr>"
                );
                for p in params {
                    let required = if p["required"] == json!(true) {
                        " (required)"
                    } else {
                        ""
                    };
                    let _ = write!(
                        out,
                        "<tr><td><code>{}</code>{required}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(p["name"].as_str().unwrap_or("")),
                        escape(p["in"].as_str().unwrap_or("")),
                        schema_text(&p["schema"]),
                        escape(p["description"].as_str().unwrap_or("")),
                    );
                }
                out.push_str("</table>");
            }
            if let Some(content) = op["requestBody"]["content"].as_object() {
                for (media, body) in content {
                    let _ = write!(
                        out,
                        "<p>Body (<code>{}</code>): {}</p>",
                        escape(media),
                        schema_text(&body["schema"])
                    );
                }
            }
            let _ = write!(
                out,
                "<table><tr><th>status</th><th>meaning</th><th>body</th></tr>"
            );
            if let Some(responses) = op["responses"].as_object() {
                for (status, r) in responses {
                    let body = r["content"]
                        .as_object()
                        .and_then(|c| c.values().next())
                        .map(|m| schema_text(&m["schema"]))
                        .unwrap_or_default();
                    let _ = write!(
                        out,
                        "<tr><td>{}</td><td>{}</td><td>{body}</td></tr>",
                        escape(status),
                        escape(r["description"].as_str().unwrap_or(""))
                    );
                }
            }
            out.push_str("</table></div>");
        }
    }
    let _ = write!(out, "<h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            let _ = write!(
                out,
                "<h3 id=\"schema-{0}\">{0}</h3><p>{1}</p>",
                escape(name),
                escape(schema["description"].as_str().unwrap_or(""))
            );
            if let Some(props) = schema["properties"].as_object() {
                let _ = write!(
                    out,
                    "<table><tr><th>field</th><th>type</th><th>description</th></tr>"
                );
                for (field, p) in props {
                    let _ = write!(
                        out,
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                        escape(field),
                        schema_text(p),
                        escape(p["description"].as_str().unwrap_or(""))
                    );
                }
                out.push_str("</table>");
            } else {
                let _ = write!(out, "<p>{}</p>", schema_text(schema));
            }
        }
    }
    out.push_str("</body></html>");
    out
}
