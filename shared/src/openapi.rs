//! The OpenAPI document of an HTTP process, served at `GET /openapi.json` by [`crate::http::finish`].
//!
//! The document is never written by hand: every route is registered with `utoipa_axum`'s `routes!`
//! from its handler's `#[utoipa::path]` (method, path, tag, summary, path parameters), and the same
//! call adds it to the document, so the router and the document cannot disagree. Nothing registers a
//! route any other way (no `Router::route`, no `OpenApiRouter::route`); what each endpoint answers is
//! DJI's envelope, described once here rather than on every handler.

use std::collections::BTreeSet;

use serde_json::{json, Value};

/// The HTTP methods an OpenAPI path item can hold, in the document's lower case.
const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Completes the document that the routers collected: title and version, the `x-auth-token` scheme
/// (required unless an operation says `security(())`), and DJI's envelope as every operation's
/// answer. Catch-all segments are written as axum wants them (`{*key}`) in `#[utoipa::path]`, since
/// the same string registers the route; OpenAPI knows only `{key}`, so they are renamed here.
pub fn document(doc: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_else(|_| json!({"openapi": "3.1.0", "paths": {}}));
    doc["info"] = json!({
        "title": "Hangar",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "DJI Cloud API backend. Every JSON answer is DJI's envelope {code, message, data}; \
            code 0 is success.",
    });
    doc["security"] = json!([{"x-auth-token": []}]);
    let components = doc["components"].as_object_mut().map(std::mem::take).unwrap_or_default();
    let mut components = Value::Object(components);
    components["securitySchemes"] = json!({
        "x-auth-token": {"type": "apiKey", "in": "header", "name": "x-auth-token",
            "description": "The token from POST /manage/api/v1/login"},
    });
    components["schemas"]["Envelope"] = json!({
        "type": "object",
        "description": "DJI's response envelope; what `data` holds depends on the endpoint.",
        "properties": {
            "code": {"type": "integer", "description": "0 on success, else DJI's error code"},
            "message": {"type": "string"},
            "data": {"description": "The endpoint's result"},
        },
        "required": ["code", "message"],
    });
    doc["components"] = components;
    let paths = doc["paths"].as_object_mut().map(std::mem::take).unwrap_or_default();
    let paths = paths
        .into_iter()
        .map(|(path, mut item)| {
            for method in METHODS {
                if let Some(op) = item.get_mut(*method).filter(|op| op.is_object()) {
                    if op["responses"].as_object().is_none_or(|r| r.is_empty()) {
                        op["responses"] = json!({"200": {
                            "description": "DJI's envelope (errors too, with a non-zero code)",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}},
                        }});
                    }
                }
            }
            (path.replace("{*", "{"), item)
        })
        .collect();
    doc["paths"] = Value::Object(paths);
    doc
}

/// Every `(METHOD, path)` a document names, the method in upper case as HTTP writes it.
pub fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let Some(paths) = doc["paths"].as_object() else { return BTreeSet::new() };
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS.iter().filter(|m| item.get(**m).is_some()).map(|m| (m.to_uppercase(), path.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use utoipa_axum::{router::OpenApiRouter, routes};

    use super::*;

    #[utoipa::path(get, path = "/objects/{*key}", tag = "T", summary = "an object", params(("key" = String, Path)))]
    async fn object() {}

    #[utoipa::path(delete, path = "/objects/{*key}", tag = "T", summary = "forget it", security(()))]
    async fn forget() {}

    #[test]
    fn a_catch_all_reads_as_an_openapi_parameter_and_every_operation_answers_the_envelope() {
        let (_, doc) = OpenApiRouter::<()>::new().routes(routes!(object, forget)).split_for_parts();
        let doc = document(doc);
        let ops = operations(&doc);
        assert_eq!(
            ops.into_iter().collect::<Vec<_>>(),
            [("DELETE".to_string(), "/objects/{key}".to_string()), ("GET".into(), "/objects/{key}".into())]
        );
        let get = &doc["paths"]["/objects/{key}"]["get"];
        assert_eq!(
            get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Envelope"
        );
        assert_eq!(doc["components"]["securitySchemes"]["x-auth-token"]["in"], "header");
        assert_eq!(doc["paths"]["/objects/{key}"]["delete"]["security"], json!([{}]));
    }
}
