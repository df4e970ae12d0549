//! Context source identity (§5.15.1 of V1.9): `GET /info/sourceIdentity`.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed assertion

mod common;

use common::TestBroker;
use reqwest::Method;
use serde_json::Value;

async fn alias(b: &TestBroker, tenant: Option<&str>) -> Value {
    let mut req = b.request(Method::GET, "/info/sourceIdentity");
    if let Some(t) = tenant {
        req = req.header("NGSILD-Tenant", t);
    }
    let r = req.send().await.expect("request sent");
    assert_eq!(r.status(), 200);
    r.json().await.expect("JSON")
}

async fn identity_per_tenant(b: &TestBroker) {
    let default = alias(b, None).await;
    assert_eq!(default["type"], "ContextSourceIdentity");
    assert!(default["id"].as_str().is_some_and(|id| id.starts_with("urn:")));
    assert!(default["contextSourceUptime"].as_str().is_some_and(|u| u.starts_with("PT") && u.ends_with('S')));
    assert!(default["contextSourceTimeAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    let a = alias(b, Some("a")).await["contextSourceAlias"].clone();
    assert_ne!(a, default["contextSourceAlias"]);
    assert_ne!(a, alias(b, Some("b")).await["contextSourceAlias"]);
    assert_eq!(a, alias(b, Some("a")).await["contextSourceAlias"]);
}

store_tests! {
    identity_per_tenant,
}
