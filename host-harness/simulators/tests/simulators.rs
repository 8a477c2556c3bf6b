//! The simulators answer like the documented APIs (shared/reference/):
//! paths, JSON shapes, status codes and quirks, checked over real HTTP.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use simulators::SimClock;
use simulators::keys::{KeyPair, Signing};
use simulators::netsuite::{NetSuiteSim, NetSuiteSimConfig};
use simulators::salesforce::{SalesforceSim, SalesforceSimConfig};
use std::sync::OnceLock;
use std::time::Duration;

fn key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate(Signing::Ps256).unwrap())
}

async fn netsuite(concurrency_limit: usize) -> (NetSuiteSim, SimClock) {
    let clock = SimClock::new();
    let sim = NetSuiteSim::start(
        NetSuiteSimConfig {
            account_id: "1234567_SB1".into(),
            client_id: "client-1".into(),
            certificate_id: "cert-1".into(),
            public_key_pem: key().public_pem.clone(),
            concurrency_limit,
            token_lifetime: Duration::from_secs(3600),
            tba: None,
        },
        clock.clone(),
        0,
    )
    .await
    .unwrap();
    (sim, clock)
}

fn assertion(sim: &NetSuiteSim, clock: &SimClock, alg: Algorithm, lifetime: i64, scope: Value) -> String {
    let now = clock.now_secs();
    let claims = json!({
        "iss": "client-1",
        "scope": scope,
        "aud": format!("{}/services/rest/auth/oauth2/v1/token", sim.base_url()),
        "iat": now,
        "exp": now + lifetime,
    });
    let mut header = Header::new(alg);
    header.kid = Some("cert-1".into());
    let key = EncodingKey::from_rsa_pem(key().private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

async fn token_response(sim: &NetSuiteSim, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/services/rest/auth/oauth2/v1/token", sim.base_url()))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn token(sim: &NetSuiteSim, clock: &SimClock) -> String {
    let jwt = assertion(sim, clock, Algorithm::PS256, 300, json!(["rest_webservices"]));
    let (status, body) = token_response(
        sim,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &jwt),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], "3600");
    let token = body["access_token"].as_str().unwrap().to_string();
    // A JWT, as NetSuite's are: a client may read when it expires.
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600, "{claims}");
    token
}

async fn suiteql(sim: &NetSuiteSim, token: &str, query: &str, params: &str, transient: bool) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/services/rest/query/v1/suiteql{params}", sim.base_url()))
        .bearer_auth(token)
        .json(&json!({ "q": query }));
    if transient {
        req = req.header("Prefer", "transient");
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn error_code(body: &Value) -> &str {
    body["o:errorDetails"][0]["o:errorCode"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn netsuite_token_endpoint_checks_the_assertion() {
    let (sim, clock) = netsuite(5).await;
    let form = |jwt: &str| {
        vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string()),
            ("client_assertion", jwt.to_string()),
        ]
    };
    let send = |f: Vec<(&'static str, String)>| {
        let sim = sim.clone();
        async move {
            let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            token_response(&sim, &pairs).await
        }
    };
    let rs256 = assertion(&sim, &clock, Algorithm::RS256, 300, json!("rest_webservices"));
    assert_eq!(send(form(&rs256)).await, (400, json!({"error": "invalid_request"})), "RS256 is no longer accepted");
    // `exp` must be less than 60 minutes after `iat`.
    let long = assertion(&sim, &clock, Algorithm::PS256, 3600, json!("rest_webservices"));
    assert_eq!(send(form(&long)).await, (400, json!({"error": "invalid_grant"})));
    let mcp = assertion(&sim, &clock, Algorithm::PS256, 300, json!(["mcp", "rest_webservices"]));
    assert_eq!(send(form(&mcp)).await, (400, json!({"error": "invalid_scope"})), "mcp stands alone");
    // The header's typ is always JWT.
    let signed = assertion(&sim, &clock, Algorithm::PS256, 300, json!("rest_webservices"));
    let claims = signed.split('.').nth(1).unwrap();
    let mut header = Header::new(Algorithm::PS256);
    (header.typ, header.kid) = (Some("at+jwt".into()), Some("cert-1".into()));
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    let key = EncodingKey::from_rsa_pem(key().private_pem.as_bytes()).unwrap();
    let untyped = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    assert_eq!(send(form(&untyped)).await, (400, json!({"error": "invalid_request"})));
    let no_scope = assertion(&sim, &clock, Algorithm::PS256, 300, json!("rest_services"));
    assert_eq!(send(form(&no_scope)).await, (400, json!({"error": "invalid_scope"})));
    let mut wrong_grant = form(&rs256);
    wrong_grant[0].1 = "password".into();
    assert_eq!(send(wrong_grant).await, (400, json!({"error": "unsupported_grant_type"})));
    // The claims NetSuite requires: the integration's client id as `iss`, the token endpoint as `aud`, and
    // both times; each refused when wrong or missing.
    let token_url = format!("{}/services/rest/auth/oauth2/v1/token", sim.base_url());
    let now = clock.now_secs();
    let good =
        json!({ "iss": "client-1", "scope": "rest_webservices", "aud": token_url, "iat": now, "exp": now + 300 });
    let mut header = Header::new(Algorithm::PS256);
    header.kid = Some("cert-1".into());
    let sign = |claims: &Value| jsonwebtoken::encode(&header, claims, &key).unwrap();
    assert_eq!(send(form(&sign(&good))).await.0, 200, "the claims as NetSuite wants them");
    let mut audiences = good.clone();
    audiences["aud"] = json!(["https://elsewhere.example", token_url]);
    assert_eq!(send(form(&sign(&audiences))).await.0, 200, "an audience list naming the endpoint");
    for (field, value) in [
        ("iss", json!("another-client")),
        ("aud", json!("https://elsewhere.example/token")),
        ("aud", json!(["https://elsewhere.example/token"])),
        ("exp", Value::Null),
        ("iat", Value::Null),
        ("iss", Value::Null),
        ("aud", Value::Null),
    ] {
        let mut claims = good.clone();
        match value {
            Value::Null => claims.as_object_mut().unwrap().remove(field),
            value => claims.as_object_mut().unwrap().insert(field.into(), value),
        };
        assert_eq!(send(form(&sign(&claims))).await, (400, json!({"error": "invalid_grant"})), "{claims}");
    }
    assert!(sim.login_audit().iter().any(|r| r.contains("iss \"another-client\"")));
    assert!(sim.login_audit().iter().any(|r| r.contains("is not the token endpoint")));
    assert!(sim.login_audit().iter().any(|r| r.contains("missing field `exp`")));
    // A string scope works as well as Oracle's array form.
    let string_scope = assertion(&sim, &clock, Algorithm::PS256, 300, json!("restlets,rest_webservices"));
    assert_eq!(send(form(&string_scope)).await.0, 200);
    assert!(sim.login_audit().iter().any(|r| r.contains("lives 60 minutes or longer")));
}

#[tokio::test]
async fn netsuite_suiteql_pages_and_values_follow_the_rest_shape() {
    let (sim, clock) = netsuite(5).await;
    sim.seed_customers(25, 3).unwrap();
    let t = token(&sim, &clock).await;
    let (status, body) = suiteql(
        &sim,
        &t,
        "SELECT id, isinactive, lastmodifieddate FROM customer ORDER BY id",
        "?limit=10&offset=10",
        true,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["count"].as_u64(), body["offset"].as_u64(), body["totalResults"].as_u64()),
        (Some(10), Some(10), Some(25))
    );
    assert_eq!(body["hasMore"], true);
    let rels: Vec<&str> = body["links"].as_array().unwrap().iter().map(|l| l["rel"].as_str().unwrap()).collect();
    assert_eq!(rels, ["first", "prev", "next", "last", "self"]);
    assert!(body["links"][2]["href"].as_str().unwrap().ends_with("suiteql?limit=10&offset=20"));
    let row = &body["items"][0];
    assert_eq!(row["links"], json!([]));
    assert_eq!(row["id"], "11", "ids are strings");
    assert!(row["isinactive"] == "T" || row["isinactive"] == "F");
    let date = row["lastmodifieddate"].as_str().unwrap();
    assert!(!date.contains('-') && date.matches('/').count() == 2, "raw dates follow the user's format: {date}");

    // The columns peers read, and the display values of the lists they refer to.
    assert_eq!(sim.execute("UPDATE customer SET currency = 4, altphone = '+15550199' WHERE id = 3").unwrap(), 1);
    let q = "SELECT c.id, c.externalid, c.altphone, c.fax, c.url, c.creditlimit, c.balance, c.category, \
             c.entitystatus, c.parent, BUILTIN.DF(c.currency) AS currencyname, BUILTIN.DF(c.salesrep) AS rep \
             FROM customer c WHERE c.id = 3";
    let (status, body) = suiteql(&sim, &t, q, "", true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["currencyname"], "Euro");
    assert_eq!(body["items"][0]["altphone"], "+15550199");
    assert!(body["items"][0].get("rep").is_none(), "no sales rep: the column is left out, as NULLs are");
    for q in ["SELECT ct.mobilephone, ct.officephone, ct.externalid FROM contact ct", "SELECT v.currency FROM vendor v"]
    {
        assert_eq!(suiteql(&sim, &t, q, "", true).await.0, 200, "{q}");
    }
}

/// A client that follows `next` links, as peers do, reads every row once
/// when pages come shorter than their limit: each link the simulator gives
/// is one it accepts.
#[tokio::test]
async fn netsuite_short_pages_link_to_pages_the_simulator_serves() {
    let (sim, clock) = netsuite(5).await;
    sim.seed_customers(25, 3).unwrap();
    sim.set_page_rows(7);
    let t = token(&sim, &clock).await;
    let query = "SELECT id FROM customer ORDER BY id";
    let mut params = "?limit=10&offset=0".to_string();
    let mut ids = Vec::new();
    loop {
        let (status, body) = suiteql(&sim, &t, query, &params, true).await;
        assert_eq!(status, 200, "{params}: {body}");
        ids.extend(body["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()));
        let next = body["links"].as_array().unwrap().iter().find(|l| l["rel"] == "next");
        match (body["hasMore"].as_bool(), next) {
            (Some(true), Some(link)) => {
                let href = link["href"].as_str().unwrap();
                params = href[href.find('?').unwrap()..].to_string();
            }
            _ => break,
        }
    }
    let expected: Vec<String> = (1..=25).map(|n| n.to_string()).collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn netsuite_refuses_what_netsuite_refuses() {
    let (sim, clock) = netsuite(5).await;
    sim.seed_customers(5, 3).unwrap();
    let t = token(&sim, &clock).await;
    let q = "SELECT id FROM customer ORDER BY id";
    let (s, b) = suiteql(&sim, &t, q, "?limit=1001", true).await;
    assert_eq!((s, error_code(&b)), (400, "INVALID_PARAMETER"), "{b}");
    assert_eq!(b["title"], "Bad Request");
    assert_eq!(b["status"], 400);
    let (s, b) = suiteql(&sim, &t, q, "?limit=10&offset=5", true).await;
    assert_eq!((s, error_code(&b)), (400, "INVALID_PARAMETER"), "offset must be a multiple of limit: {b}");
    let (s, b) = suiteql(&sim, &t, q, "?limit=1000&offset=100000", true).await;
    assert_eq!((s, error_code(&b)), (400, "INVALID_PARAMETER"), "100,000-row ceiling: {b}");
    // No page past the thousandth: pages of 10 reach 10,000 rows at most.
    let (s, b) = suiteql(&sim, &t, q, "?limit=10&offset=10000", true).await;
    assert_eq!((s, error_code(&b)), (400, "INVALID_PARAMETER"), "1,000-page ceiling: {b}");
    let (s, b) = suiteql(&sim, &t, q, "?limit=10&offset=9990", true).await;
    assert_eq!((s, b["count"].as_u64()), (200, Some(0)), "the thousandth page is served: {b}");
    let (s, b) = suiteql(&sim, &t, q, "", false).await;
    assert_eq!(s, 400, "Prefer: transient is required: {b}");
    let (s, b) = suiteql(&sim, &t, "SELECT nosuchcolumn FROM customer", "", true).await;
    assert_eq!(s, 400);
    assert_eq!(b["o:errorDetails"][0]["o:errorQueryParam"], "q");
    assert!(b["o:errorDetails"][0]["detail"].as_str().unwrap().contains("Unknown identifier 'nosuchcolumn'"));
    let (s, b) = suiteql(&sim, "not-a-token", q, "", true).await;
    assert_eq!((s, error_code(&b)), (401, "INVALID_LOGIN"));
    // Tokens last 60 minutes of simulated time.
    clock.advance(Duration::from_secs(3601));
    let (s, b) = suiteql(&sim, &t, q, "", true).await;
    assert_eq!((s, error_code(&b)), (401, "INVALID_LOGIN"), "{b}");
}

#[tokio::test]
async fn netsuite_answers_429_above_the_concurrency_limit() {
    let (sim, clock) = netsuite(2).await;
    let t = token(&sim, &clock).await;
    sim.set_latency(Duration::from_millis(300));
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let (sim, t) = (sim.clone(), t.clone());
            tokio::spawn(async move { suiteql(&sim, &t, "SELECT id FROM customer", "", true).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        statuses.push(c.await.unwrap().0);
    }
    statuses.sort();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3, "{statuses:?}");
}

async fn salesforce(config: SalesforceSimConfig) -> (SalesforceSim, String) {
    salesforce_on(config, SimClock::new()).await
}

/// A Salesforce simulator on `clock`, and an access token for it.
async fn salesforce_on(config: SalesforceSimConfig, clock: SimClock) -> (SalesforceSim, String) {
    let sim = SalesforceSim::start(config, clock, 0).await.unwrap();
    let r: Value = reqwest::Client::new()
        .post(format!("{}/services/oauth2/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sim.client_id()),
            ("client_secret", "sim-client-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for field in ["access_token", "instance_url", "id", "token_type", "issued_at", "signature"] {
        assert!(r.get(field).is_some(), "token response lacks {field}: {r}");
    }
    assert!(r.get("expires_in").is_none(), "Salesforce sends no expires_in");
    (sim, r["access_token"].as_str().unwrap().to_string())
}

async fn sf_call(
    sim: &SalesforceSim,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Option<String>, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{}{path}", sim.base_url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let limit = r.headers().get("sforce-limit-info").map(|v| v.to_str().unwrap().to_string());
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, limit, serde_json::from_str(&text).unwrap_or(Value::Null))
}

const COLLECTIONS: &str = "/services/data/v66.0/composite/sobjects/Account/NetSuite_Id__c";

fn account(id: &str, name: Option<&str>) -> Value {
    let mut r = json!({ "attributes": {"type": "Account"}, "NetSuite_Id__c": id });
    if let Some(n) = name {
        r["Name"] = json!(n);
    }
    r
}

#[tokio::test]
async fn salesforce_token_and_session_errors_have_the_documented_shapes() {
    let sim = SalesforceSim::start(SalesforceSimConfig::default(), SimClock::new(), 0).await.unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/services/oauth2/token", sim.base_url()))
        .form(&[("grant_type", "client_credentials"), ("client_id", sim.client_id()), ("client_secret", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    let (status, limit, body) =
        sf_call(&sim, "expired", reqwest::Method::PATCH, COLLECTIONS, json!({"records": []})).await;
    assert_eq!(status, 401);
    assert_eq!(body, json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]));
    assert!(limit.unwrap().starts_with("api-usage="));
}

/// The token endpoint takes a form-encoded body; any other body gets the
/// OAuth error shape (400 invalid_request), not a bare 415.
#[tokio::test]
async fn salesforce_token_endpoint_answers_oauth_errors_for_bodies_that_are_not_forms() {
    let sim = SalesforceSim::start(SalesforceSimConfig::default(), SimClock::new(), 0).await.unwrap();
    let url = format!("{}/services/oauth2/token", sim.base_url());
    let grant =
        json!({"grant_type": "client_credentials", "client_id": sim.client_id(), "client_secret": sim.client_secret()});
    let client = reqwest::Client::new();
    for request in [client.post(&url).json(&grant), client.post(&url).body("grant_type=client_credentials")] {
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{body}");
        assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    }
    let form =
        [("grant_type", "client_credentials"), ("client_id", sim.client_id()), ("client_secret", sim.client_secret())];
    let r = client.post(&url).form(&form).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn salesforce_collections_upsert_reports_per_record_outcomes() {
    let (sim, t) = salesforce(SalesforceSimConfig::default()).await;
    let body = json!({ "allOrNone": false, "records": [
        account("1", Some("Acme")), account("2", None), account("3", Some("Dup A")), account("3", Some("Dup B"))
    ]});
    let (status, limit, results) = sf_call(&sim, &t, reqwest::Method::PATCH, COLLECTIONS, body).await;
    assert_eq!(status, 200);
    assert_eq!(limit.as_deref(), Some("api-usage=1/100000"));
    assert_eq!(results[0]["success"], true);
    assert_eq!(results[0]["created"], true);
    assert_eq!(results[1]["errors"][0]["statusCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(results[1]["errors"][0]["fields"], json!(["Name"]));
    for row in [2, 3] {
        assert_eq!(results[row]["errors"][0]["statusCode"], "DUPLICATE_VALUE", "both rows with the same id fail");
        assert_eq!(results[row]["id"], Value::Null);
    }
    let (_, _, again) =
        sf_call(&sim, &t, reqwest::Method::PATCH, COLLECTIONS, json!({"records": [account("1", Some("Acme 2"))]}))
            .await;
    assert_eq!((again[0]["created"].clone(), again[0]["id"].clone()), (json!(false), results[0]["id"].clone()));

    let unknown =
        json!({"records": [ {"attributes": {"type": "Account"}, "NetSuite_Id__c": "9", "Name": "X", "Nope__c": 1} ]});
    let (status, _, body) = sf_call(&sim, &t, reqwest::Method::PATCH, COLLECTIONS, unknown).await;
    assert_eq!(status, 400);
    assert_eq!(body[0]["errorCode"], "INVALID_FIELD");
    let many: Vec<Value> = (0..201).map(|i| account(&i.to_string(), Some("n"))).collect();
    let (status, _, _) = sf_call(&sim, &t, reqwest::Method::PATCH, COLLECTIONS, json!({"records": many})).await;
    assert_eq!(status, 400, "at most 200 records per request");

    let (status, _, body) = sf_call(
        &sim,
        &t,
        reqwest::Method::PATCH,
        "/services/data/v66.0/sobjects/Account/NetSuite_Id__c/77",
        json!({"Name": "Single"}),
    )
    .await;
    assert_eq!((status, body["created"].clone()), (201, json!(true)));
    let (status, _, body) = sf_call(
        &sim,
        &t,
        reqwest::Method::PATCH,
        "/services/data/v66.0/sobjects/Account/NetSuite_Id__c/77",
        json!({"Name": "Single 2"}),
    )
    .await;
    assert_eq!((status, body["created"].clone()), (200, json!(false)), "v46+ answers 200 with created:false");
}

/// sObject Collections create (`POST composite/sobjects`, types may mix)
/// and retrieve (`GET composite/sobjects/{SObject}?ids=&fields=` and its
/// POST form), as simple-salesforce and jsforce call them.
#[tokio::test]
async fn salesforce_collections_create_and_retrieve_records() {
    let (sim, t) = salesforce(SalesforceSimConfig::default()).await;
    let create = "/services/data/v66.0/composite/sobjects";
    let records = json!([
        {"attributes": {"type": "Account"}, "Name": "Acme", "NetSuite_Id__c": "c1"},
        {"attributes": {"type": "Contact"}, "LastName": "Ng", "NetSuite_Id__c": "c2"},
        {"attributes": {"type": "Account"}, "NetSuite_Id__c": "c3"},
    ]);
    let (status, _, results) =
        sf_call(&sim, &t, reqwest::Method::POST, create, json!({"allOrNone": false, "records": records})).await;
    assert_eq!(status, 200, "{results}");
    assert_eq!((results[0]["success"].clone(), results[1]["success"].clone()), (json!(true), json!(true)));
    assert!(results[0].get("created").is_none(), "create answers SaveResults: {results}");
    assert_eq!(results[2]["errors"][0]["statusCode"], "REQUIRED_FIELD_MISSING", "{results}");
    assert_eq!(results[2]["id"], Value::Null);
    let acme = results[0]["id"].as_str().unwrap().to_string();
    assert_eq!(sim.find("Account", "c1").map(|(id, _)| id), Some(acme.clone()));
    assert!(sim.find("Contact", "c2").is_some());

    // allOrNone: one failure undoes the rest.
    let records = json!([
        {"attributes": {"type": "Account"}, "Name": "Kept?", "NetSuite_Id__c": "c4"},
        {"attributes": {"type": "Account"}, "Id": acme, "Name": "has an Id", "NetSuite_Id__c": "c5"},
    ]);
    let (status, _, results) =
        sf_call(&sim, &t, reqwest::Method::POST, create, json!({"allOrNone": true, "records": records})).await;
    assert_eq!(status, 200, "{results}");
    assert_eq!(results[0]["errors"][0]["statusCode"], "ALL_OR_NONE_OPERATION_ROLLED_BACK", "{results}");
    assert_eq!(results[1]["errors"][0]["statusCode"], "INVALID_FIELD_FOR_INSERT_UPDATE", "{results}");
    assert!(sim.find("Account", "c4").is_none(), "rolled back");
    let many: Vec<Value> = (0..201).map(|i| account(&format!("m{i}"), Some("n"))).collect();
    let (status, _, _) = sf_call(&sim, &t, reqwest::Method::POST, create, json!({"records": many})).await;
    assert_eq!(status, 400, "at most 200 records per request");

    // Retrieve: in the order of the ids, null for one the org does not hold.
    let missing = "001000000000000AAA";
    let get = format!("{create}/Account?ids={acme},{missing}&fields=Id,Name,NetSuite_Id__c");
    let (status, _, found) = sf_call(&sim, &t, reqwest::Method::GET, &get, Value::Null).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found.as_array().map(Vec::len), Some(2), "{found}");
    assert_eq!(found[0]["attributes"]["type"], "Account");
    assert_eq!(found[0]["attributes"]["url"], format!("/services/data/v66.0/sobjects/Account/{acme}"));
    assert_eq!((found[0]["Id"].as_str(), found[0]["Name"].as_str()), (Some(acme.as_str()), Some("Acme")));
    assert_eq!(found[1], Value::Null);
    let body = json!({"ids": [missing, acme], "fields": ["Name"]});
    let (status, _, found) = sf_call(&sim, &t, reqwest::Method::POST, &format!("{create}/Account"), body).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!((found[0].clone(), found[1]["Name"].clone()), (Value::Null, json!("Acme")), "{found}");
    let bad = format!("{create}/Account?ids={acme}&fields=Nope__c");
    let (status, _, body) = sf_call(&sim, &t, reqwest::Method::GET, &bad, Value::Null).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("INVALID_FIELD")), "{body}");
}

#[tokio::test]
async fn salesforce_composite_limits_and_the_daily_allocation() {
    let (sim, t) = salesforce(SalesforceSimConfig { daily_api_limit: 3, ..Default::default() }).await;
    let sub = |i: usize| {
        json!({"method": "PATCH", "url": COLLECTIONS, "referenceId": format!("c{i}"),
               "body": {"records": [account(&i.to_string(), Some("n"))]}})
    };
    let six: Vec<Value> = (0..6).map(sub).collect();
    let (status, _, body) =
        sf_call(&sim, &t, reqwest::Method::POST, "/services/data/v66.0/composite", json!({"compositeRequest": six}))
            .await;
    assert_eq!(status, 400, "at most five collections per Composite: {body}");
    let five: Vec<Value> = (0..5).map(sub).collect();
    let (status, _, body) =
        sf_call(&sim, &t, reqwest::Method::POST, "/services/data/v66.0/composite", json!({"compositeRequest": five}))
            .await;
    assert_eq!(status, 200);
    assert_eq!(body["compositeResponse"].as_array().unwrap().len(), 5);
    assert_eq!(body["compositeResponse"][4]["httpStatusCode"], 200);
    assert_eq!(body["compositeResponse"][4]["referenceId"], "c4");
    assert_eq!(sim.count("Account"), 5);
    let (_, _, _) = sf_call(&sim, &t, reqwest::Method::PATCH, COLLECTIONS, json!({"records": []})).await;
    let (status, limit, body) = sf_call(&sim, &t, reqwest::Method::PATCH, COLLECTIONS, json!({"records": []})).await;
    assert_eq!(status, 403);
    assert_eq!(body, json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]));
    assert_eq!(limit.as_deref(), Some("api-usage=3/3"));
}

#[tokio::test]
async fn salesforce_composite_order_is_promised_only_uncollated_and_all_or_none_rolls_back() {
    let (sim, t) = salesforce(SalesforceSimConfig::default()).await;
    let upsert = |n: usize, id: &str, name: &str| {
        json!({"method": "PATCH", "url": COLLECTIONS, "referenceId": format!("c{n}"),
               "body": {"records": [account(id, Some(name))]}})
    };
    let name = |id: &str| sim.find("Account", id).map(|(_, f)| f["Name"].clone());
    let composite = |version: &str| format!("/services/data/v{version}/composite");
    // Two versions of one record: collated (the default from v49), the order is not kept.
    let two = |id: &str| json!([upsert(0, id, "older"), upsert(1, id, "newer")]);
    let post = async |path: String, body: Value| sf_call(&sim, &t, reqwest::Method::POST, &path, body).await;
    let (status, _, _) = post(composite("66.0"), json!({"compositeRequest": two("1")})).await;
    assert_eq!((status, name("1")), (200, Some(json!("older"))), "collated, the later subrequest ran first");
    post(composite("66.0"), json!({"collateSubrequests": false, "compositeRequest": two("2")})).await;
    assert_eq!(name("2"), Some(json!("newer")), "uncollated, in the order given");
    post(composite("48.0"), json!({"compositeRequest": two("3")})).await;
    assert_eq!(name("3"), Some(json!("newer")), "before v49 nothing is collated");

    // allOrNone: one failed record undoes every subrequest.
    let untyped = json!({"method": "PATCH", "url": COLLECTIONS, "referenceId": "c1",
                         "body": {"records": [{"NetSuite_Id__c": "5", "Name": "no type"}]}});
    let request = json!({"allOrNone": true, "compositeRequest": [upsert(0, "4", "kept?"), untyped.clone()]});
    let (status, _, body) = post(composite("66.0"), request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["compositeResponse"][0]["httpStatusCode"], 400);
    assert_eq!(body["compositeResponse"][0]["body"][0]["errorCode"], "PROCESSING_HALTED");
    assert_eq!(body["compositeResponse"][1]["body"][0]["success"], false);
    assert!(sim.find("Account", "4").is_none() && sim.find("Account", "5").is_none(), "rolled back: {body}");
    let request = json!({"allOrNone": false, "compositeRequest": [upsert(0, "4", "kept"), untyped]});
    post(composite("66.0"), request).await;
    assert_eq!(name("4"), Some(json!("kept")), "without allOrNone the good subrequest stays");
}

#[tokio::test]
async fn salesforce_bulk_counts_batches_and_versions_its_result_columns() {
    let (sim, t) = salesforce(SalesforceSimConfig::default()).await;
    let client = reqwest::Client::new();
    let mut failed_headers = Vec::new();
    for version in ["52.0", "66.0"] {
        let jobs = format!("/services/data/v{version}/jobs/ingest");
        let create = json!({"object": "Contact", "operation": "upsert", "externalIdFieldName": "NetSuite_Id__c",
                            "contentType": "CSV", "lineEnding": "LF"});
        let (status, _, job) = sf_call(&sim, &t, reqwest::Method::POST, &jobs, create).await;
        assert_eq!(status, 200, "{job}");
        let id = job["id"].as_str().unwrap().to_string();
        // The second row lacks LastName, which Contact requires.
        let csv = "NetSuite_Id__c,LastName\n1,Ng\n2,\n";
        let put = client
            .put(format!("{}{jobs}/{id}/batches", sim.base_url()))
            .bearer_auth(&t)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status().as_u16(), 201);
        let close = json!({"state": "UploadComplete"});
        sf_call(&sim, &t, reqwest::Method::PATCH, &format!("{jobs}/{id}"), close).await;
        let (_, _, info) = sf_call(&sim, &t, reqwest::Method::GET, &format!("{jobs}/{id}"), Value::Null).await;
        assert_eq!(info["state"], "JobComplete", "{info}");
        let failed = client
            .get(format!("{}{jobs}/{id}/failedResults/", sim.base_url()))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        failed_headers.push(failed.lines().next().unwrap_or_default().to_string());
    }
    // `sf__Id` joined the failed results in v53.0.
    assert_eq!(
        failed_headers,
        [r#""sf__Error",NetSuite_Id__c,LastName"#, r#""sf__Id","sf__Error",NetSuite_Id__c,LastName"#]
    );
    // Each job of up to 10,000 records is one of the day's 15,000 batches.
    let (_, _, limits) = sf_call(&sim, &t, reqwest::Method::GET, "/services/data/v66.0/limits", Value::Null).await;
    assert_eq!(limits["DailyBulkApiBatches"]["Remaining"], 14_998, "{limits}");
    // The version list names every version served.
    let versions: Value =
        client.get(format!("{}/services/data/", sim.base_url())).send().await.unwrap().json().await.unwrap();
    let listed: Vec<&str> = versions.as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert_eq!((listed.first(), listed.last(), listed.len()), (Some(&"31.0"), Some(&"67.0"), 37));
}

const JOBS: &str = "/services/data/v66.0/jobs/ingest";

/// Creates a Bulk API 2.0 Account job (`extra` adds to the upsert by
/// NetSuite_Id__c), uploads `csv` as `content_type` and, when the upload is
/// taken, closes the job and polls it: the job's id, the upload's status and
/// body, and the job's info as last seen.
async fn bulk_job(
    sim: &SalesforceSim,
    t: &str,
    extra: Value,
    csv: &str,
    content_type: &str,
) -> (String, u16, Value, Value) {
    let mut create = json!({"object": "Account", "operation": "upsert", "externalIdFieldName": "NetSuite_Id__c",
                            "contentType": "CSV"});
    create.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (status, _, job) = sf_call(sim, t, reqwest::Method::POST, JOBS, create).await;
    assert_eq!(status, 200, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let put = reqwest::Client::new()
        .put(format!("{}{JOBS}/{id}/batches", sim.base_url()))
        .bearer_auth(t)
        .header("content-type", content_type)
        .body(csv.to_string())
        .send()
        .await
        .unwrap();
    let uploaded = put.status().as_u16();
    let answer: Value = serde_json::from_str(&put.text().await.unwrap()).unwrap_or(Value::Null);
    if uploaded != 201 {
        return (id, uploaded, answer, job);
    }
    sf_call(sim, t, reqwest::Method::PATCH, &format!("{JOBS}/{id}"), json!({"state": "UploadComplete"})).await;
    let (_, _, info) = sf_call(sim, t, reqwest::Method::GET, &format!("{JOBS}/{id}"), Value::Null).await;
    (id, uploaded, answer, info)
}

async fn bulk_results(sim: &SalesforceSim, t: &str, id: &str, which: &str) -> String {
    let r = reqwest::Client::new()
        .get(format!("{}{JOBS}/{id}/{which}/", sim.base_url()))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.text().await.unwrap()
}

/// Every columnDelimiter of the create-job request is taken: uploads are
/// read, and result files written, with it. Data whose line endings
/// contradict the job's lineEnding fails the job.
#[tokio::test]
async fn salesforce_bulk_jobs_take_every_delimiter_and_check_line_endings() {
    let (sim, t) = salesforce(SalesforceSimConfig::default()).await;
    for (name, d) in
        [("COMMA", ','), ("TAB", '\t'), ("PIPE", '|'), ("SEMICOLON", ';'), ("CARET", '^'), ("BACKQUOTE", '`')]
    {
        // The second row lacks Name, which Account requires.
        let csv = format!("NetSuite_Id__c{d}Name\n{name}1{d}\"A{d}B\"\n{name}2{d}\n");
        let extra = json!({"columnDelimiter": name, "lineEnding": "LF"});
        let (id, uploaded, _, info) = bulk_job(&sim, &t, extra, &csv, "text/csv").await;
        assert_eq!((uploaded, info["state"].as_str()), (201, Some("JobComplete")), "{name}: {info}");
        assert_eq!(info["columnDelimiter"], name);
        assert_eq!(
            sim.find("Account", &format!("{name}1")).map(|(_, f)| f["Name"].clone()),
            Some(json!(format!("A{d}B")))
        );
        let ok = bulk_results(&sim, &t, &id, "successfulResults").await;
        let mut lines = ok.lines();
        assert_eq!(
            lines.next(),
            Some(format!("\"sf__Id\"{d}\"sf__Created\"{d}NetSuite_Id__c{d}Name").as_str()),
            "{name}"
        );
        assert!(lines.next().unwrap().ends_with(&format!("{d}true{d}{name}1{d}\"A{d}B\"")), "{name}: {ok}");
        let failed = bulk_results(&sim, &t, &id, "failedResults").await;
        assert!(failed.lines().nth(1).unwrap().ends_with(&format!("{d}{name}2{d}")), "{name}: {failed}");
    }
    let (status, _, refused) = sf_call(
        &sim,
        &t,
        reqwest::Method::POST,
        JOBS,
        json!({"object": "Account", "operation": "insert", "columnDelimiter": "SPACE"}),
    )
    .await;
    assert_eq!((status, refused[0]["errorCode"].as_str()), (400, Some("INVALIDJOB")), "{refused}");

    // A line break inside quotes is data, whatever the job's lineEnding.
    let csv = "NetSuite_Id__c,Name,Description\r\nE1,Crlf,\"two\nlines\"\r\n";
    let (_, _, _, info) = bulk_job(&sim, &t, json!({"lineEnding": "CRLF"}), csv, "text/csv").await;
    assert_eq!(info["state"], "JobComplete", "{info}");
    let csv = "NetSuite_Id__c,Name,Description\nE2,Lf,\"two\r\nlines\"\n";
    let (_, _, _, info) = bulk_job(&sim, &t, json!({"lineEnding": "LF"}), csv, "text/csv").await;
    assert_eq!(info["state"], "JobComplete", "{info}");
    for (ending, csv) in [("LF", "NetSuite_Id__c,Name\r\nE3,X\r\n"), ("CRLF", "NetSuite_Id__c,Name\nE4,X\n")] {
        let (_, _, _, info) = bulk_job(&sim, &t, json!({"lineEnding": ending}), csv, "text/csv").await;
        assert_eq!(info["state"], "Failed", "{ending}: {info}");
        let message = info["errorMessage"].as_str().unwrap_or_default();
        assert!(message.contains("LineEnding") && message.contains(ending), "{ending}: {info}");
    }
    assert!(sim.find("Account", "E3").is_none() && sim.find("Account", "E4").is_none());
}

/// Bulk API 2.0 refuses what Salesforce refuses: an upload that is not
/// text/csv, externalIdFieldName on a job that does not upsert, a quote
/// left open, and a second upload to a job (one job, one upload).
#[tokio::test]
async fn salesforce_bulk_refuses_other_content_types_stray_external_ids_open_quotes_and_second_uploads() {
    let (sim, t) = salesforce(SalesforceSimConfig::default()).await;
    let csv = "NetSuite_Id__c,Name\nS1,Strict\n";
    for content_type in ["application/json", "text/plain", "application/octet-stream"] {
        let (_, uploaded, answer, _) = bulk_job(&sim, &t, json!({}), csv, content_type).await;
        assert_eq!(
            (uploaded, answer[0]["errorCode"].as_str()),
            (415, Some("INVALIDCONTENTTYPE")),
            "{content_type}: {answer}"
        );
    }
    let (_, uploaded, _, info) = bulk_job(&sim, &t, json!({}), csv, "text/csv; charset=UTF-8").await;
    assert_eq!((uploaded, info["state"].as_str()), (201, Some("JobComplete")), "{info}");

    for operation in ["insert", "update", "delete"] {
        let create = json!({"object": "Account", "operation": operation, "externalIdFieldName": "NetSuite_Id__c"});
        let (status, _, refused) = sf_call(&sim, &t, reqwest::Method::POST, JOBS, create).await;
        assert_eq!((status, refused[0]["errorCode"].as_str()), (400, Some("INVALIDJOB")), "{operation}: {refused}");
        let create = json!({"object": "Account", "operation": operation});
        assert_eq!(sf_call(&sim, &t, reqwest::Method::POST, JOBS, create).await.0, 200, "{operation}");
    }

    let open = "NetSuite_Id__c,Name\nS2,\"Open\nS3,Never closed\n";
    let (_, uploaded, _, info) = bulk_job(&sim, &t, json!({"lineEnding": "LF"}), open, "text/csv").await;
    assert_eq!((uploaded, info["state"].as_str()), (201, Some("Failed")), "{info}");
    assert!(info["errorMessage"].as_str().is_some_and(|m| m.contains("quote")), "{info}");
    assert!(sim.find("Account", "S2").is_none());

    let (_, _, job) = sf_call(
        &sim,
        &t,
        reqwest::Method::POST,
        JOBS,
        json!({"object": "Account", "operation": "upsert", "externalIdFieldName": "NetSuite_Id__c"}),
    )
    .await;
    let put = |body: &'static str| {
        reqwest::Client::new()
            .put(format!("{}{JOBS}/{}/batches", sim.base_url(), job["id"].as_str().unwrap()))
            .bearer_auth(&t)
            .header("content-type", "text/csv")
            .body(body)
            .send()
    };
    assert_eq!(put(csv).await.unwrap().status().as_u16(), 201);
    let again = put("NetSuite_Id__c,Name\nS4,More\n").await.unwrap();
    assert_eq!(again.status().as_u16(), 409);
    let answer: Value = again.json().await.unwrap();
    assert_eq!(answer[0]["errorCode"], "INVALIDJOBSTATE", "{answer}");
    assert!(answer[0]["message"].as_str().is_some_and(|m| m.contains("one upload")), "{answer}");
}

#[tokio::test]
async fn salesforce_single_upsert_answers_300_when_the_external_id_matches_several_records() {
    let (sim, t) = salesforce(SalesforceSimConfig::default()).await;
    sim.alter_field("Account", "NetSuite_Id__c", |f| f.unique = false);
    let first = sim.insert_by_hand("Account", "55", serde_json::Map::from_iter([("Name".into(), "One".into())]));
    let second = sim.insert_by_hand("Account", "55", serde_json::Map::from_iter([("Name".into(), "Two".into())]));
    let (status, _, body) = sf_call(
        &sim,
        &t,
        reqwest::Method::PATCH,
        "/services/data/v66.0/sobjects/Account/NetSuite_Id__c/55",
        json!({"Name": "Three"}),
    )
    .await;
    assert_eq!(status, 300);
    assert_eq!(
        body,
        json!([
            format!("/services/data/v66.0/sobjects/Account/{first}"),
            format!("/services/data/v66.0/sobjects/Account/{second}")
        ])
    );
    assert_eq!(sim.find("Account", "55").unwrap().1["Name"], "One", "nothing was written");
}

async fn soql(sim: &SalesforceSim, token: &str, path_and_query: &str, batch: Option<u32>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{}{path_and_query}", sim.base_url())).bearer_auth(token);
    if let Some(b) = batch {
        req = req.header("Sforce-Query-Options", format!("batchSize={b}"));
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn salesforce_soql_pages_with_next_records_url_and_refuses_bad_queries() {
    let (sim, t) = salesforce(SalesforceSimConfig::default()).await;
    let records: Vec<Value> = (0..450).map(|i| account(&i.to_string(), Some(&format!("A{i}")))).collect();
    for chunk in records.chunks(200) {
        sf_call(&sim, &t, reqwest::Method::PATCH, COLLECTIONS, json!({"records": chunk})).await;
    }
    let ids: Vec<String> = (0..450).map(|i| format!("'{i}'")).collect();
    let q = format!("SELECT Id, Name, NetSuite_Id__c FROM Account WHERE NetSuite_Id__c IN ({})", ids.join(","));
    let path =
        format!("/services/data/v66.0/query?q={}", form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>());
    let (status, page) = soql(&sim, &t, &path, Some(200)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!((page["totalSize"].as_u64(), page["done"].as_bool()), (Some(450), Some(false)));
    assert_eq!(page["records"].as_array().unwrap().len(), 200);
    assert_eq!(page["records"][0]["attributes"]["type"], "Account");
    let mut seen = 200;
    let mut next = page["nextRecordsUrl"].as_str().map(str::to_string);
    while let Some(url) = next {
        let (_, more) = soql(&sim, &t, &url, None).await;
        seen += more["records"].as_array().unwrap().len();
        next = more["nextRecordsUrl"].as_str().map(str::to_string);
    }
    assert_eq!(seen, 450);

    // An escaped quote is data, not syntax.
    let hostile = "SELECT Id FROM Account WHERE NetSuite_Id__c IN ('1\\' OR Name != \\'')";
    let path = format!(
        "/services/data/v66.0/query?q={}",
        form_urlencoded::byte_serialize(hostile.as_bytes()).collect::<String>()
    );
    let (status, body) = soql(&sim, &t, &path, None).await;
    assert_eq!((status, body["totalSize"].as_u64()), (200, Some(0)), "{body}");
    let bad = "SELECT Nope__c FROM Account";
    let path =
        format!("/services/data/v66.0/query?q={}", form_urlencoded::byte_serialize(bad.as_bytes()).collect::<String>());
    let (status, body) = soql(&sim, &t, &path, None).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("INVALID_FIELD")));
}

#[tokio::test]
async fn salesforce_edits_by_hand_move_the_stamps_a_poll_reads() {
    let clock = SimClock::new();
    let (sim, t) = salesforce_on(SalesforceSimConfig::default(), clock.clone()).await;
    let t = t.as_str();
    let fields = |v: Value| v.as_object().unwrap().clone();
    let id = sim.create_by_hand("Vendor__c", fields(json!({"Name": "Harbor Freight", "Phone__c": "+15550444"})));
    clock.advance(Duration::from_secs(60));
    sim.edit_by_hand("Vendor__c", &id, fields(json!({"City__c": "Dallas"})));
    let q =
        "SELECT Id, City__c, CreatedDate, SystemModstamp FROM Vendor__c WHERE SystemModstamp > 2000-01-01T00:00:00Z";
    let path =
        format!("/services/data/v66.0/query?q={}", form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>());
    let (status, page) = soql(&sim, t, &path, None).await;
    assert_eq!(status, 200, "{page}");
    let row = &page["records"][0];
    assert_eq!((row["Id"].as_str(), row["City__c"].as_str()), (Some(id.as_str()), Some("Dallas")));
    assert_ne!(row["CreatedDate"], row["SystemModstamp"], "the edit moved the stamp");
    sim.delete_by_hand(&id);
    assert_eq!(sim.count("Vendor__c"), 0);
    let all = path.replace("/query?", "/queryAll?");
    let (_, page) = soql(&sim, t, &all, None).await;
    assert_eq!(page["records"][0]["Id"], id.as_str(), "queryAll finds it in the Recycle Bin");
}

/// SuiteQL's times follow the user's time zone, set at any moment: rows
/// seeded before it still change and read back in the new zone.
#[tokio::test]
async fn the_user_time_zone_can_change_after_rows_exist() {
    let (sim, clock) = netsuite(5).await;
    let ids = sim.seed_customers(3, 1).unwrap();
    let token = token(&sim, &clock).await;
    let q =
        format!("SELECT TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS t FROM customer WHERE id = {}", ids[2]);
    let (_, before) = suiteql(&sim, &token, &q, "", true).await;
    sim.set_user_time_zone(3600);
    sim.rename_customer_any(ids[0], "Renamed After The Zone Changed").unwrap();
    sim.delete_record("customer", ids[1]).unwrap();
    let (status, after) = suiteql(&sim, &token, &q, "", true).await;
    assert_eq!(status, 200, "{after}");
    let hour = |body: &Value| body["items"][0]["t"].as_str().unwrap()[11..13].parse::<u32>().unwrap();
    assert_eq!(hour(&after), (hour(&before) + 1) % 24, "{before} {after}");
    assert_eq!(sim.customer_field(ids[0], "companyname").unwrap().as_deref(), Some("Renamed After The Zone Changed"));
}

/// Reference 3.7: a bare string compared with a date column works only when
/// it follows the user's date format preference (M/D/YYYY here, in the
/// user's time zone); any other literal is refused, never matching nothing.
#[tokio::test]
async fn netsuite_bare_date_literals_follow_the_date_format_preference() {
    let (sim, clock) = netsuite(5).await;
    let ids = sim.seed_customers(3, 1).unwrap();
    // 2025-12-31 23:30, 2026-01-01 00:00 and 2026-01-02 12:00 UTC.
    for (id, at) in ids.iter().zip([1_767_223_800i64, 1_767_225_600, 1_767_355_200]) {
        sim.execute(&format!("UPDATE customer SET lastmodifieddate = {at} WHERE id = {id}")).unwrap();
    }
    let t = token(&sim, &clock).await;
    let count = |filter: &str| {
        let (sim, t) = (sim.clone(), t.clone());
        let q = format!("SELECT COUNT(*) AS n FROM customer c WHERE {filter}");
        async move {
            let (status, body) = suiteql(&sim, &t, &q, "", true).await;
            assert_eq!(status, 200, "{q}: {body}");
            body["items"][0]["n"].as_str().unwrap().parse::<u32>().unwrap()
        }
    };
    assert_eq!(count("lastmodifieddate > '1/1/2026'").await, 1);
    assert_eq!(count("c.lastmodifieddate >= '01/01/2026'").await, 2);
    assert_eq!(count("'1/1/2026' < c.lastmodifieddate").await, 1);
    assert_eq!(count("c.lastmodifieddate >= '1/2/2026 12:00 pm'").await, 1);
    assert_eq!(count("c.lastmodifieddate < '1/2/2026 11:59 am'").await, 2);
    assert_eq!(count("c.lastmodifieddate BETWEEN '12/31/2025' AND '1/1/2026'").await, 2);
    assert_eq!(count("c.lastmodifieddate IN ('1/1/2026', '1/3/2026')").await, 1);
    assert_eq!(count("c.companyname > '1/1/2026'").await, 3, "text columns compare as text");
    // The literal is the user's local time: midnight an hour east of UTC is 23:00 UTC.
    sim.set_user_time_zone(3600);
    assert_eq!(count("lastmodifieddate >= '1/1/2026'").await, 3);
    for literal in ["2026-01-01", "garbage", "13/45/2026", "1/1/26", ""] {
        let q = format!("SELECT COUNT(*) AS n FROM customer WHERE lastmodifieddate > '{literal}'");
        let (status, body) = suiteql(&sim, &t, &q, "", true).await;
        assert_eq!((status, error_code(&body)), (400, "INVALID_PARAMETER"), "{q}: {body}");
        assert_eq!(body["o:errorDetails"][0]["o:errorQueryParam"], "q");
        let detail = body["o:errorDetails"][0]["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("'{literal}'")) && detail.contains("M/D/YYYY"), "{detail}");
    }
    let (status, body) =
        suiteql(&sim, &t, "SELECT id FROM customer WHERE datecreated BETWEEN '1/1/2026' AND 'soon'", "", true).await;
    assert_eq!(status, 400, "{body}");
}

/// Reference 2.1 and 3: the Oracle forms SuiteQL accepts and peers send.
#[tokio::test]
async fn netsuite_suiteql_takes_the_oracle_forms_peers_send() {
    let (sim, clock) = netsuite(5).await;
    let ids = sim.seed_customers(3, 1).unwrap();
    // 2025-12-31 23:30, 2026-01-01 00:00 and 2026-01-02 12:00 UTC; the second's parent is the first.
    for (id, at) in ids.iter().zip([1_767_223_800i64, 1_767_225_600, 1_767_355_200]) {
        let sql = format!("UPDATE customer SET lastmodifieddate = {at}, terms = 2, parent = NULL WHERE id = {id}");
        sim.execute(&sql).unwrap();
    }
    sim.execute(&format!("UPDATE customer SET parent = {} WHERE id = {}", ids[0], ids[1])).unwrap();
    let vendors = sim.seed_vendors(1, 2).unwrap();
    sim.seed_contacts(2, &[ids[0]], clock.now_secs(), 4).unwrap();
    let t = token(&sim, &clock).await;
    let rows = |q: String| {
        let (sim, t) = (sim.clone(), t.clone());
        async move {
            let (status, body) = suiteql(&sim, &t, &q, "", true).await;
            assert_eq!(status, 200, "{q}: {body}");
            body["items"].as_array().unwrap().clone()
        }
    };
    let ids_of =
        |items: Vec<Value>| -> Vec<i64> { items.iter().map(|r| r["id"].as_str().unwrap().parse().unwrap()).collect() };
    let entityid = |id: i64| sim.customer_field(id, "entityid").unwrap().unwrap();

    // amp's fractional-second form: the `x` radix character and `FF`.
    let q = "SELECT id FROM customer WHERE lastmodifieddate >= \
             TO_TIMESTAMP('2026-01-01 00:00:00.000000000', 'YYYY-MM-DD HH24:MI:SSxFF') ORDER BY id";
    assert_eq!(ids_of(rows(q.into()).await), ids[1..]);
    let q = "SELECT id FROM customer WHERE lastmodifieddate > \
             TO_TIMESTAMP('2025-12-31 23:30:00.5', 'YYYY-MM-DD HH24:MI:SSxFF') ORDER BY id";
    assert_eq!(ids_of(rows(q.into()).await), ids[1..], "a fraction counts");
    // Double-quoted text in a format.
    let q = format!(
        "SELECT TO_CHAR(lastmodifieddate, 'YYYY-MM-DD\"T\"HH24:MI:SS') AS t FROM customer WHERE id = {}",
        ids[2]
    );
    assert_eq!(rows(q).await[0]["t"], "2026-01-02T12:00:00");
    // BUILTIN.DF without an alias, read from the query's own row (customer has `parent` too).
    let q = format!("SELECT BUILTIN.DF(terms) AS t, BUILTIN.DF(parent) AS p FROM customer WHERE id = {}", ids[1]);
    let row = &rows(q).await[0];
    assert_eq!((row["t"].as_str(), row["p"].as_str()), (Some("Net 30"), Some(entityid(ids[0]).as_str())));
    // A contact's company: a customer or a vendor.
    sim.execute(&format!("UPDATE contact SET company = {} WHERE id = (SELECT MAX(id) FROM contact)", vendors[0]))
        .unwrap();
    let q = "SELECT BUILTIN.DF(ct.company) AS c FROM contact ct ORDER BY ct.id".to_string();
    let companies: Vec<Value> = rows(q).await.iter().map(|r| r["c"].clone()).collect();
    let vendor = sim.vendor_field(vendors[0], "entityid").unwrap().unwrap();
    assert_eq!(companies, [json!(entityid(ids[0])), json!(vendor)]);
    // SYSDATE is the account's now; a number added or taken is days.
    sim.execute(&format!("UPDATE customer SET lastmodifieddate = {} WHERE id = {}", clock.now_secs() - 7200, ids[0]))
        .unwrap();
    let count = |filter: &str| {
        let rows = rows(format!("SELECT COUNT(*) AS n FROM customer WHERE {filter}"));
        async move { rows.await[0]["n"].as_str().unwrap().parse::<u32>().unwrap() }
    };
    assert_eq!(count("lastmodifieddate < SYSDATE").await, 3);
    assert_eq!(count("lastmodifieddate > SYSDATE - 1/24").await, 0);
    assert_eq!(count("lastmodifieddate > SYSDATE - 3/24").await, 1);
    assert_eq!(count("lastmodifieddate BETWEEN SYSDATE - 1 AND SYSDATE").await, 1);
    // DECODE, ROWNUM and the row limiting clause.
    let q = format!(
        "SELECT DECODE(isinactive, 'T', 'inactive', 'F', 'active', 'other') AS s FROM customer WHERE id = {}",
        ids[0]
    );
    sim.execute(&format!("UPDATE customer SET isinactive = 'F' WHERE id = {}", ids[0])).unwrap();
    assert_eq!(rows(q).await[0]["s"], "active");
    assert_eq!(ids_of(rows("SELECT id FROM customer WHERE ROWNUM <= 2 ORDER BY id".into()).await), ids[..2]);
    let q = "SELECT * FROM (SELECT id FROM customer ORDER BY id DESC) WHERE ROWNUM = 1";
    assert_eq!(ids_of(rows(q.into()).await), ids[2..]);
    let q = "SELECT id FROM customer WHERE ROWNUM < 3 AND isinactive IN ('T', 'F') ORDER BY id";
    assert_eq!(ids_of(rows(q.into()).await), ids[..2]);
    assert_eq!(ids_of(rows("SELECT id FROM customer ORDER BY id FETCH FIRST 2 ROWS ONLY".into()).await), ids[..2]);
    let q = "SELECT id FROM customer ORDER BY id OFFSET 1 ROWS FETCH NEXT 1 ROWS ONLY";
    assert_eq!(ids_of(rows(q.into()).await), ids[1..2]);
}

/// SuiteQL's errors speak NetSuite (reference 2.4), never SQLite, and
/// SQLite's own functions and tables are not there to be found.
#[tokio::test]
async fn netsuite_suiteql_errors_do_not_leak_sqlite() {
    let (sim, clock) = netsuite(5).await;
    sim.seed_customers(2, 1).unwrap();
    let t = token(&sim, &clock).await;
    for (q, names) in [
        ("SELECT NOSUCHFN(id) AS x FROM customer", Some("Unknown identifier 'NOSUCHFN'")),
        ("SELECT sqlite_version() AS v FROM customer", Some("Unknown identifier 'sqlite_version'")),
        ("SELECT sqlite_source_id() AS v FROM customer", Some("Unknown identifier 'sqlite_source_id'")),
        ("SELECT typeof(id) AS t FROM customer", Some("Unknown identifier 'typeof'")),
        ("SELECT printf('%d', id) AS t FROM customer", Some("Unknown identifier 'printf'")),
        ("SELECT name FROM sqlite_master", Some("Record 'sqlite_master' was not found")),
        ("SELECT name FROM SQLITE_SCHEMA", Some("Record 'SQLITE_SCHEMA' was not found")),
        ("SELECT name FROM pragma_table_info('customer')", Some("Record 'pragma_table_info' was not found")),
        ("SELECT id FROM customer ORDER BY id OFFSET", None),
        ("SELECT id FROM customer WHERE", None),
        ("SELECT id, FROM customer", None),
        ("SELECT SUBSTR(id) AS x FROM customer", None),
        ("SELECT c.id FROM customer c JOIN vendor v ON v.id = c.id WHERE id > 0", None),
    ] {
        let (status, body) = suiteql(&sim, &t, q, "", true).await;
        assert_eq!((status, error_code(&body)), (400, "INVALID_PARAMETER"), "{q}: {body}");
        assert_eq!(body["o:errorDetails"][0]["o:errorQueryParam"], "q");
        let detail = body["o:errorDetails"][0]["detail"].as_str().unwrap();
        assert!(detail.starts_with("Invalid search query."), "{q}: {detail}");
        for sqlite in ["no such", "near \"", "syntax error", "sqlite_master", "incomplete input", "ambiguous column"] {
            assert!(!detail.contains(sqlite) || names.is_some_and(|n| n.contains(sqlite)), "{q}: {detail}");
        }
        if let Some(names) = names {
            assert!(detail.contains(names), "{q}: {detail}");
        }
    }
    // Functions SuiteQL shares with SQLite still run.
    let q = "SELECT SUBSTR(UPPER(companyname), 1, 3) AS s, LENGTH(entityid) AS n, COALESCE(email, 'none') AS e, \
             ROUND(1.26, 1) AS r FROM customer ORDER BY id";
    let (status, body) = suiteql(&sim, &t, q, "", true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["r"], "1.3");
}

/// Reference 4.1: the scopes an assertion may ask for, each granted as
/// asked (only `rest_webservices` opens REST web services and SuiteQL);
/// the token endpoint answers OAuth errors to a body that is not a form,
/// and SuiteQL answers GET with NetSuite's error shape.
#[tokio::test]
async fn netsuite_scopes_are_granted_as_asked_and_wrong_requests_get_error_bodies() {
    let (sim, clock) = netsuite(5).await;
    let http = reqwest::Client::new();
    let token_url = format!("{}/services/rest/auth/oauth2/v1/token", sim.base_url());
    let issue = |scope: Value| {
        let jwt = assertion(&sim, &clock, Algorithm::PS256, 300, scope);
        let sim = sim.clone();
        async move {
            token_response(
                &sim,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                    ("client_assertion", &jwt),
                ],
            )
            .await
        }
    };
    let granted = |body: &Value| -> Value {
        let payload = body["access_token"].as_str().unwrap().split('.').nth(1).unwrap().to_string();
        serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()["scope"].clone()
    };
    let q = "SELECT id FROM customer";
    for (scope, expected) in [
        (json!("restlets"), json!(["restlets"])),
        (json!(["suite_analytics"]), json!(["suite_analytics"])),
        (json!("restlets suite_analytics"), json!(["restlets", "suite_analytics"])),
    ] {
        let (status, body) = issue(scope.clone()).await;
        assert_eq!(status, 200, "{scope}: {body}");
        assert_eq!(granted(&body), expected);
        let t = body["access_token"].as_str().unwrap();
        let (status, body) = suiteql(&sim, t, q, "", true).await;
        assert_eq!((status, error_code(&body)), (401, "INVALID_LOGIN"), "{scope}: {body}");
        let r = http.get(format!("{}/services/rest/record/v1/vendor/1", sim.base_url())).bearer_auth(t).send().await;
        assert_eq!(r.unwrap().status().as_u16(), 401, "{scope}");
    }
    assert!(sim.login_audit().iter().any(|r| r.contains("rest_webservices")), "{:?}", sim.login_audit());
    let (status, body) = issue(json!("rest_webservices,restlets")).await;
    assert_eq!((status, granted(&body)), (200, json!(["rest_webservices", "restlets"])));
    let t = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(suiteql(&sim, &t, q, "", true).await.0, 200);
    for scope in [json!("nonsense"), json!([]), json!(""), json!(["restlets", "bogus"])] {
        assert_eq!(issue(scope.clone()).await, (400, json!({"error": "invalid_scope"})), "{scope}");
    }
    // Not a form: the OAuth error, not a plain-text 415.
    for request in [
        http.post(&token_url).json(&json!({"grant_type": "client_credentials"})),
        http.post(&token_url).header("content-type", "text/plain").body("grant_type=client_credentials"),
        http.post(&token_url),
    ] {
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        assert_eq!((status, r.json::<Value>().await.unwrap()), (400, json!({"error": "invalid_request"})));
    }
    // GET on the SuiteQL resource: 405 in NetSuite's error shape.
    let r =
        http.get(format!("{}/services/rest/query/v1/suiteql", sim.base_url())).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (error_code(&body), body["status"].as_u64(), body["title"].as_str()),
        ("INVALID_METHOD", Some(405), Some("Method Not Allowed"))
    );
}
