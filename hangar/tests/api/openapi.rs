//! The OpenAPI document at `/openapi.json`: it names exactly the routes the router serves, and every
//! endpoint of DJI's API index that Hangar implements.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{TestApp, WS};

/// DJI's API index from the seed (`shared/seed/endpoints.txt`, its table of contents): a controller
/// per `  • ` line, then each endpoint's summary (`    • `) and, where the index gives it, its method.
const DJI_INDEX: &str = include_str!("dji_endpoints.txt");

/// Index entries Hangar does not serve yet, by controller (every entry of it) or `(controller,
/// summary)`. An entry here whose every listing in the index the document has fails the test too,
/// so the list only shrinks. Empty now: every entry of the index is served.
const NOT_YET: &[(&str, Option<&str>)] = &[];

/// The index names three controllers in Chinese; the document's tags are English.
fn tag_of(controller: &str) -> &str {
    match controller {
        "DRC(直接遥控)控制器类。" => "DrcController",
        "机场(Dock)控制器类。" => "DockController",
        "航线生成控制器" => "WaylineGenerateController",
        other => other,
    }
}

async fn document(app: &TestApp) -> Value {
    let res = app.http.get(format!("{}/openapi.json", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// `(tag, summary, METHOD)` of every operation in the document, with repeats.
fn operations_by_summary(doc: &Value) -> Vec<(String, String, String)> {
    let mut ops = Vec::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for (method, op) in item.as_object().unwrap() {
            let summary = op["summary"].as_str().unwrap_or_default().to_string();
            for tag in op["tags"].as_array().into_iter().flatten() {
                ops.push((tag.as_str().unwrap().to_string(), summary.clone(), method.to_uppercase()));
            }
        }
    }
    ops
}

/// `(controller, summary, method if given)` of every endpoint in DJI's index.
fn dji_index() -> Vec<(String, String, Option<String>)> {
    let mut entries: Vec<(String, String, Option<String>)> = Vec::new();
    let mut controller = String::new();
    for line in DJI_INDEX.lines() {
        if let Some(c) = line.strip_prefix("  • ") {
            controller = c.trim().to_string();
        } else if let Some(s) = line.strip_prefix("    • ") {
            entries.push((controller.clone(), s.trim().to_string(), None));
        } else if let Some(m) = line.strip_prefix("      ").map(str::trim).filter(|m| !m.is_empty()) {
            entries.last_mut().expect("a method follows its endpoint").2 = Some(m.to_string());
        }
    }
    entries
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let doc = document(&app).await;
    let ops = shared::openapi::operations(&doc);
    assert!(ops.len() > 50, "{ops:?}");
    for (method, path) in &ops {
        // dummy path parameters, the token's own workspace so that the workspace guard lets it through
        let url: String = path
            .split('/')
            .map(|seg| match seg {
                "{workspace_id}" => WS.to_string(),
                s if s.starts_with('{') => "dummy".to_string(),
                s => s.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = (method == Method::POST || method == Method::PUT).then(|| json!({}));
        let (status, answer) = app.request(method.clone(), &url, Some(&token), body).await;
        // `shared::http::not_found` and `method_not_allowed`: the router has no such route
        let no_route = (status == StatusCode::NOT_FOUND
            && answer["message"].as_str().is_some_and(|m| m.starts_with("No endpoint ")))
            || status == StatusCode::METHOD_NOT_ALLOWED;
        assert!(!no_route, "{method} {path} is documented but not served: {status} {answer}");
    }
    app.stop().await;
}

#[tokio::test]
async fn every_endpoint_of_djis_index_is_documented() {
    let app = TestApp::spawn().await;
    let all = operations_by_summary(&document(&app).await);
    let mut documented = all.clone();
    let index = dji_index();
    let mut missing = Vec::new();
    for (controller, summary, method) in &index {
        let not_yet = NOT_YET.iter().any(|(c, s)| c == controller && s.is_none_or(|s| s == summary));
        let tag = tag_of(controller);
        // take one match, so that an endpoint the index lists twice needs two routes
        let found = documented
            .iter()
            .position(|(t, s, m)| t == tag && s == summary && method.as_ref().is_none_or(|want| want == m))
            .map(|i| documented.swap_remove(i));
        if found.is_none() && !not_yet {
            missing.push(format!("{controller} / {summary} ({method:?})"));
        }
    }
    assert!(missing.is_empty(), "not in /openapi.json:\n{}", missing.join("\n"));
    // an entry of NOT_YET whose every listing in the index is served now must go
    for (c, s) in NOT_YET {
        let listed = index.iter().filter(|(ic, is, _)| ic == c && s.is_none_or(|s| s == is)).count();
        let served = all.iter().filter(|(t, os, _)| t == tag_of(c) && s.is_none_or(|s| s == os)).count();
        assert!(served < listed, "{c} / {s:?} is served now: take it out of NOT_YET");
    }
    app.stop().await;
}

/// The document's routes are the registered routes. By construction: a route is registered only by
/// `routes!` from its handler's `#[utoipa::path]`, which puts it in the document too. This checks
/// that construction from the sources: every annotation is in the document (none is left
/// unregistered), the document has nothing else, and nothing registers a route around `routes!`.
#[tokio::test]
async fn the_document_names_exactly_the_registered_routes() {
    let app = TestApp::spawn().await;
    let documented = shared::openapi::operations(&document(&app).await);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut annotated = BTreeSet::new();
    let mut bypasses = Vec::new();
    for dir in ["shared/src", "command-api/src", "query-api/src", "hangar/src"] {
        for file in rust_files(&root.join(dir)) {
            // the S3-compatible endpoint is a protocol of its own on its own listener, not this API
            if file.ends_with("command-api/src/s3_endpoint.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            // unit tests build routers of their own
            let text = text.split("#[cfg(test)]").next().unwrap();
            for call in [".route(", ".route_service(", ".nest(", ".nest_service(", ".fallback_service("] {
                if text.contains(call) {
                    bypasses.push(format!("{} calls {call}", file.display()));
                }
            }
            for block in text.split("#[utoipa::path(").skip(1) {
                let method = block.split(',').next().unwrap().trim().to_uppercase();
                let path = block.split("path = \"").nth(1).and_then(|p| p.split('"').next()).unwrap();
                annotated.insert((method, path.replace("{*", "{")));
            }
        }
    }
    assert!(bypasses.is_empty(), "routes registered outside routes!: {bypasses:?}");
    let unregistered: Vec<_> = annotated.difference(&documented).collect();
    let unannotated: Vec<_> = documented.difference(&annotated).collect();
    assert!(unregistered.is_empty(), "annotated but not registered: {unregistered:?}");
    assert!(unannotated.is_empty(), "documented without an annotation: {unannotated:?}");
    app.stop().await;
}

fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
