//! The NetSuite simulator's REST record API (vendors, customers, contacts) and its M2M
//! certificates, called over real HTTP as a client would
//! (shared/reference/netsuite.md 2.4, 4.1, 5, 7).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use simulators::SimClock;
use simulators::keys::{KeyPair, Signing};
use simulators::netsuite::{
    NetSuiteSim, NetSuiteSimConfig, Permission, ScriptedFailure, TbaConfig, VendorMatch, VendorRejection,
};
use std::sync::OnceLock;
use std::time::Duration;

const CLIENT_ID: &str = "client-1";
const TBA: (&str, &str, &str, &str) = ("ck-1", "cs-1", "tk-1", "ts-1");

fn rsa_key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate(Signing::Ps256).unwrap())
}

fn ec_key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate(Signing::Es256).unwrap())
}

/// An account with one PS256 certificate ("cert-ps"), as the existing
/// single-certificate setup makes it, and TBA credentials.
async fn netsuite(concurrency_limit: usize) -> (NetSuiteSim, SimClock) {
    let clock = SimClock::new();
    let sim = NetSuiteSim::start(
        NetSuiteSimConfig {
            account_id: "1234567_SB1".into(),
            client_id: CLIENT_ID.into(),
            certificate_id: "cert-ps".into(),
            public_key_pem: rsa_key().public_pem.clone(),
            concurrency_limit,
            token_lifetime: Duration::from_secs(3600),
            tba: Some(TbaConfig {
                consumer_key: TBA.0.into(),
                consumer_secret: TBA.1.into(),
                token_id: TBA.2.into(),
                token_secret: TBA.3.into(),
            }),
        },
        clock.clone(),
        0,
    )
    .await
    .unwrap();
    (sim, clock)
}

fn assertion(sim: &NetSuiteSim, clock: &SimClock, key: &KeyPair, kid: &str) -> String {
    let now = clock.now_secs();
    let claims = json!({
        "iss": CLIENT_ID,
        "scope": ["rest_webservices"],
        "aud": format!("{}/services/rest/auth/oauth2/v1/token", sim.base_url()),
        "iat": now,
        "exp": now + 300,
    });
    let pem = key.private_pem.as_bytes();
    let rsa = |alg| (alg, EncodingKey::from_rsa_pem(pem).unwrap());
    let (alg, encoding) = match key.signing {
        Signing::Ps256 => rsa(Algorithm::PS256),
        Signing::Ps384 => rsa(Algorithm::PS384),
        Signing::Ps512 => rsa(Algorithm::PS512),
        Signing::Es256 => (Algorithm::ES256, EncodingKey::from_ec_pem(pem).unwrap()),
        Signing::Es384 => (Algorithm::ES384, EncodingKey::from_ec_pem(pem).unwrap()),
        Signing::Es512 => return es512(&key.private_pem, kid, &claims),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
}

/// An ES512 JWS made here with RustCrypto's p521 (jsonwebtoken has none),
/// apart from the connector's signer.
fn es512(private_pem: &str, kid: &str, claims: &Value) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p521::ecdsa::signature::RandomizedSigner;
    use p521::pkcs8::DecodePrivateKey;
    let secret = p521::SecretKey::from_pkcs8_pem(private_pem).unwrap();
    let key = p521::ecdsa::SigningKey::from_bytes(&secret.to_bytes()).unwrap();
    let header = json!({ "alg": "ES512", "typ": "JWT", "kid": kid });
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature: p521::ecdsa::Signature = key.sign_with_rng(&mut rand::rngs::OsRng, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// The token endpoint's answer to an assertion signed with `key` under `kid`.
async fn token_for(sim: &NetSuiteSim, clock: &SimClock, key: &KeyPair, kid: &str) -> (u16, Value) {
    let jwt = assertion(sim, clock, key, kid);
    let r = reqwest::Client::new()
        .post(format!("{}/services/rest/auth/oauth2/v1/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &jwt),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn token(sim: &NetSuiteSim, clock: &SimClock) -> String {
    let (status, body) = token_for(sim, clock, rsa_key(), "cert-ps").await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

struct Answer {
    status: u16,
    location: Option<String>,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["o:errorDetails"][0]["o:errorCode"].as_str().unwrap_or_default()
    }

    fn detail(&self) -> &str {
        self.body["o:errorDetails"][0]["detail"].as_str().unwrap_or_default()
    }

    /// The internal id a write's Location names.
    fn id(&self) -> i64 {
        self.location.as_deref().and_then(|l| l.rsplit('/').next()).and_then(|id| id.parse().ok()).unwrap()
    }
}

/// One record API call: `path` after /services/rest/record/v1.
async fn call(
    sim: &NetSuiteSim,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}/services/rest/record/v1{path}", sim.base_url()))
        .bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let location = r.headers().get("location").map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    Answer { status, location, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
}

async fn suiteql(sim: &NetSuiteSim, token: &str, query: &str) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/services/rest/query/v1/suiteql", sim.base_url()))
        .bearer_auth(token)
        .header("Prefer", "transient")
        .json(&json!({ "q": query }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

fn new_vendor(name: &str) -> String {
    json!({
        "companyName": name,
        "externalId": format!("SF-{}", name.replace(' ', "-")),
        "email": "ap@example.com",
        "phone": "+1 512-555-0100",
        "terms": {"id": "2"},
        "subsidiary": {"id": "1"},
        "addressBook": {"items": [{
            "defaultBilling": true,
            "defaultShipping": true,
            "addressBookAddress": {"addr1": "1 Congress Ave", "city": "Austin", "state": "TX", "zip": "78701",
                                   "country": {"id": "US"}}
        }]}
    })
    .to_string()
}

#[tokio::test]
async fn a_created_vendor_reads_back_by_internal_and_external_id() {
    let (sim, clock) = netsuite(5).await;
    let t = token(&sim, &clock).await;
    let created = call(&sim, &t, Method::POST, "/vendor", Some(&new_vendor("Acme Supply")), &[]).await;
    assert_eq!(created.status, 204, "{}", created.body);
    assert_eq!(created.body, Value::Null, "204 No Content");
    let location = created.location.clone().unwrap();
    assert_eq!(location, format!("{}/services/rest/record/v1/vendor/{}", sim.base_url(), created.id()));

    let got = call(&sim, &t, Method::GET, &format!("/vendor/{}", created.id()), None, &[]).await;
    assert_eq!(got.status, 200);
    let v = &got.body;
    assert_eq!(v["id"], created.id().to_string(), "ids are strings");
    assert_eq!(v["externalId"], "SF-Acme-Supply");
    assert_eq!(v["companyName"], "Acme Supply");
    assert_eq!(v["email"], "ap@example.com");
    assert_eq!(v["phone"], "+1 512-555-0100");
    assert_eq!(v["terms"]["id"], "2");
    assert_eq!(v["terms"]["refName"], "Net 30");
    assert!(v["terms"]["links"][0]["href"].as_str().unwrap().ends_with("/services/rest/record/v1/term/2"));
    assert_eq!(v["isInactive"], false);
    assert_eq!(v["links"][0]["rel"], "self");
    assert_eq!(v["links"][0]["href"], location);
    assert_eq!(v["defaultAddress"], "1 Congress Ave\nAustin TX 78701\nUnited States");
    assert!(v["addressBook"]["links"][0]["href"].as_str().unwrap().ends_with("/addressBook"));
    assert!(v["addressBook"].get("items").is_none(), "sublists are links unless expanded");
    let modified = v["lastModifiedDate"].as_str().unwrap();
    assert!(modified.ends_with('Z') && modified.contains('T'), "ISO 8601 UTC: {modified}");

    let by_eid = call(&sim, &t, Method::GET, "/vendor/eid:SF-Acme-Supply?expandSubResources=true", None, &[]).await;
    assert_eq!(by_eid.status, 200);
    assert_eq!(by_eid.body["id"], v["id"]);
    let line = &by_eid.body["addressBook"]["items"][0];
    assert_eq!(line["defaultBilling"], true);
    assert_eq!(line["addressBookAddress"]["city"], "Austin");
    assert_eq!(line["addressBookAddress"]["country"], json!({"id": "US", "refName": "United States"}));
    let picked = call(&sim, &t, Method::GET, &format!("/vendor/{}?fields=companyName", created.id()), None, &[]).await;
    assert_eq!(picked.body["companyName"], "Acme Supply");
    assert!(picked.body.get("email").is_none(), "fields= returns what it names");

    assert_eq!(sim.vendor_count().unwrap(), 1);
    assert_eq!(sim.vendor(created.id()).unwrap().unwrap()["companyName"], "Acme Supply");
    assert_eq!(sim.vendor_id_by_external_id("SF-Acme-Supply").unwrap(), Some(created.id()));
    assert_eq!(sim.record_writes(), 1);
}

#[tokio::test]
async fn a_patch_changes_only_the_given_fields_and_suiteql_sees_it() {
    let (sim, clock) = netsuite(5).await;
    let ids = sim.seed_vendors(3, 7).unwrap();
    let id = ids[1];
    let t = token(&sim, &clock).await;
    let q = format!(
        "SELECT v.phone, v.companyname, TO_CHAR(v.lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS lm FROM vendor v \
         WHERE v.id = {id}"
    );
    let before = suiteql(&sim, &t, &q).await["items"][0].clone();
    clock.advance(Duration::from_secs(90));

    let patched =
        call(&sim, &t, Method::PATCH, &format!("/vendor/{id}"), Some(r#"{"phone": "+44 20 7946 0000"}"#), &[]).await;
    assert_eq!(patched.status, 204, "{}", patched.body);
    assert_eq!(patched.id(), id, "Location names the record");
    let after = suiteql(&sim, &t, &q).await["items"][0].clone();
    assert_eq!(after["phone"], "+44 20 7946 0000");
    assert_eq!(after["companyname"], before["companyname"], "fields left out stay");
    assert!(after["lm"].as_str() > before["lm"].as_str(), "{before} -> {after}");

    // The connector's incremental read (keyset on the second-truncated time) finds exactly this vendor.
    let changed = suiteql(
        &sim,
        &t,
        &format!(
            "SELECT v.id FROM vendor v WHERE TO_CHAR(v.lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') >= '{}' ORDER BY v.id",
            after["lm"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(changed["items"], json!([{"links": [], "id": id.to_string()}]));

    // PATCH by external id; null clears a field.
    sim.execute(&format!("UPDATE vendor SET externalid = 'SF-9' WHERE id = {id}")).unwrap();
    let cleared = call(&sim, &t, Method::PATCH, "/vendor/eid:SF-9", Some(r#"{"phone": null}"#), &[]).await;
    assert_eq!(cleared.status, 204, "{}", cleared.body);
    assert_eq!(sim.vendor_field(id, "phone").unwrap(), None);
}

#[tokio::test]
async fn a_repeated_upsert_by_external_id_finds_the_same_vendor() {
    let (sim, clock) = netsuite(5).await;
    sim.seed_vendors(2, 1).unwrap();
    let t = token(&sim, &clock).await;
    let body = r#"{"companyName": "Globex", "subsidiary": {"id": "1"}, "terms": {"id": "1"}}"#;
    let first = call(&sim, &t, Method::PUT, "/vendor/eid:001Dn00000GLOBEX", Some(body), &[]).await;
    assert_eq!(first.status, 204, "{}", first.body);
    let again =
        call(&sim, &t, Method::PUT, "/vendor/eid:001Dn00000GLOBEX", Some(r#"{"companyName": "Globex Corp"}"#), &[])
            .await;
    assert_eq!(again.status, 204, "{}", again.body);
    assert_eq!(again.location, first.location, "the second PUT updates the first one's vendor");
    assert_eq!(sim.vendor_count().unwrap(), 3);
    let v = sim.vendor(first.id()).unwrap().unwrap();
    assert_eq!((v["companyName"].clone(), v["externalId"].clone()), (json!("Globex Corp"), json!("001Dn00000GLOBEX")));
    assert_eq!(v["terms"]["id"], "1", "an upsert that updates keeps what it leaves out");

    // Concurrent repeats of one upsert still make one vendor.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let (sim, t) = (sim.clone(), t.clone());
            tokio::spawn(async move {
                let body = r#"{"companyName": "Initech", "subsidiary": {"id": "1"}}"#;
                call(&sim, &t, Method::PUT, "/vendor/eid:SF-INITECH", Some(body), &[]).await.status
            })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap(), 204);
    }
    assert_eq!(sim.vendor_count().unwrap(), 4);

    let mismatch = call(&sim, &t, Method::PUT, "/vendor/eid:SF-X", Some(r#"{"externalId": "SF-Y"}"#), &[]).await;
    assert_eq!((mismatch.status, mismatch.code()), (400, "INVALID_CONTENT"));
    let by_internal = call(&sim, &t, Method::PUT, &format!("/vendor/{}", first.id()), Some(body), &[]).await;
    assert_eq!((by_internal.status, by_internal.code()), (405, "INVALID_METHOD"), "upsert takes an external id");
}

#[tokio::test]
async fn a_missing_required_field_is_refused_with_its_label() {
    let (sim, clock) = netsuite(5).await;
    let t = token(&sim, &clock).await;
    let r =
        call(&sim, &t, Method::POST, "/vendor", Some(r#"{"email": "x@example.com", "subsidiary": {"id": "1"}}"#), &[])
            .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["title"], "Bad Request");
    assert_eq!(r.body["status"], 400);
    assert_eq!(r.code(), "USER_ERROR");
    assert_eq!(r.detail(), "Error while accessing a resource. Please enter value(s) for: Company Name.");
    // OneWorld: a new vendor needs its primary subsidiary.
    let r = call(&sim, &t, Method::POST, "/vendor", Some(r#"{"companyName": "No Sub"}"#), &[]).await;
    assert!(r.detail().ends_with("Please enter value(s) for: Primary Subsidiary."), "{}", r.body);
    sim.set_one_world(false);
    let r = call(&sim, &t, Method::POST, "/vendor", Some(r#"{"companyName": "No Sub"}"#), &[]).await;
    assert_eq!(r.status, 204, "{}", r.body);
    // Clearing a required field on update is refused too, and nothing changes.
    let r = call(&sim, &t, Method::PATCH, &format!("/vendor/{}", r.id()), Some(r#"{"companyName": null}"#), &[]).await;
    assert_eq!((r.status, r.code()), (400, "USER_ERROR"));
    assert_eq!(sim.vendor_count().unwrap(), 1);
    assert_eq!(sim.record_writes(), 1);
}

#[tokio::test]
async fn unknown_fields_fail_when_the_client_asks_for_name_validation() {
    let (sim, clock) = netsuite(5).await;
    let t = token(&sim, &clock).await;
    let body = r#"{"companyName": "Typo Inc", "subsidiary": {"id": "1"}, "companyNmae": "x"}"#;
    let strict = [("X-NetSuite-PropertyNameValidation", "Error")];
    let r = call(&sim, &t, Method::POST, "/vendor", Some(body), &strict).await;
    assert_eq!((r.status, r.code()), (400, "NONEXISTENT_FIELD"), "{}", r.body);
    assert_eq!(r.body["o:errorDetails"][0]["o:errorPath"], "companyNmae");
    assert_eq!(sim.vendor_count().unwrap(), 0);
    // NetSuite's default for names is Warning: the write goes through without the unknown field.
    let r = call(&sim, &t, Method::POST, "/vendor", Some(body), &[]).await;
    assert_eq!(r.status, 204, "{}", r.body);
    // A value of the wrong type fails under the default value validation (Error)...
    let r = call(&sim, &t, Method::PATCH, &format!("/vendor/{}", r.id()), Some(r#"{"isInactive": "yes"}"#), &[]).await;
    assert_eq!((r.status, r.code()), (400, "INVALID_CONTENT"));
    assert_eq!(r.body["o:errorDetails"][0]["o:errorPath"], "isInactive");
    let r = call(&sim, &t, Method::POST, "/vendor", Some(body), &[("X-NetSuite-PropertyNameValidation", "Loud")]).await;
    assert_eq!((r.status, r.code()), (400, "INVALID_HEADER"));
    assert_eq!(r.body["o:errorDetails"][0]["o:errorHeader"], "x-netsuite-propertynamevalidation");
    // ...and a body that is not JSON at all.
    let r = call(&sim, &t, Method::POST, "/vendor", Some("{\"companyName\": "), &[]).await;
    assert_eq!((r.status, r.code()), (400, "INVALID_CONTENT"));
}

#[tokio::test]
async fn an_unknown_terms_reference_is_an_invalid_field_value() {
    let (sim, clock) = netsuite(5).await;
    let t = token(&sim, &clock).await;
    let body = r#"{"companyName": "Ref Co", "subsidiary": {"id": "1"}, "terms": {"id": "99"}}"#;
    let r = call(&sim, &t, Method::POST, "/vendor", Some(body), &[]).await;
    assert_eq!((r.status, r.code()), (400, "INVALID_CONTENT"), "{}", r.body);
    assert_eq!(r.body["o:errorDetails"][0]["o:errorPath"], "terms");
    assert!(r.detail().contains("Invalid Field Value 99 for the following field: terms"), "{}", r.detail());
    let address = r#"{"companyName": "Ref Co", "subsidiary": {"id": "1"},
        "addressBook": {"items": [{"addressBookAddress": {"addr1": "x", "country": {"id": "Narnia"}}}]}}"#;
    let r = call(&sim, &t, Method::POST, "/vendor", Some(address), &[]).await;
    assert_eq!(r.body["o:errorDetails"][0]["o:errorPath"], "addressBook.items[0].addressBookAddress.country");
    assert_eq!(sim.vendor_count().unwrap(), 0);
}

#[tokio::test]
async fn missing_records_are_404_and_wrong_methods_405() {
    let (sim, clock) = netsuite(5).await;
    let t = token(&sim, &clock).await;
    for (method, path) in [
        (Method::GET, "/vendor/999999"),
        (Method::GET, "/vendor/eid:nobody"),
        (Method::PATCH, "/vendor/eid:nobody"),
        (Method::DELETE, "/vendor/424242"),
        (Method::GET, "/vendor/424242/addressBook"),
    ] {
        let r = call(&sim, &t, method.clone(), path, Some("{}"), &[]).await;
        assert_eq!((r.status, r.code()), (404, "NONEXISTENT_ID"), "{method} {path}: {}", r.body);
        assert_eq!(r.body["title"], "Not Found");
    }
    let r = call(&sim, &t, Method::GET, "/Vendor/1", None, &[]).await;
    assert_eq!(r.status, 404, "record types are camelCase");

    let ids = sim.seed_vendors(1, 2).unwrap();
    let r = call(&sim, &t, Method::POST, &format!("/vendor/{}", ids[0]), Some("{}"), &[]).await;
    assert_eq!((r.status, r.code()), (405, "INVALID_METHOD"));
    let r = call(&sim, &t, Method::DELETE, "/vendor", None, &[]).await;
    assert_eq!(r.status, 405);

    let deleted = call(&sim, &t, Method::DELETE, &format!("/vendor/{}", ids[0]), None, &[]).await;
    assert_eq!(deleted.status, 204);
    let gone = suiteql(&sim, &t, "SELECT d.recordid FROM deletedrecord d WHERE d.type = 'vendor'").await;
    assert_eq!(gone["items"][0]["recordid"], ids[0].to_string(), "a deletion is a deletedrecord row, as SuiteQL reads");
}

#[tokio::test]
async fn record_calls_share_the_concurrency_limit_auth_and_role_with_suiteql() {
    let (sim, clock) = netsuite(2).await;
    let ids = sim.seed_vendors(2, 3).unwrap();
    let t = token(&sim, &clock).await;
    sim.set_latency(Duration::from_millis(300));
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let (sim, t, path) = (sim.clone(), t.clone(), format!("/vendor/{}", ids[0]));
            tokio::spawn(async move { call(&sim, &t, Method::GET, &path, None, &[]).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        let r = c.await.unwrap();
        if r.status == 429 {
            assert_eq!(r.code(), "CONCURRENCY_LIMIT_EXCEEDED");
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3, "{statuses:?}");
    sim.set_latency(Duration::ZERO);

    let r = call(&sim, "not-a-token", Method::GET, &format!("/vendor/{}", ids[0]), None, &[]).await;
    assert_eq!((r.status, r.code()), (401, "INVALID_LOGIN"));
    assert!(sim.login_audit().iter().any(|l| l.contains("REST record request refused")));

    // TBA signs the method and the query parameters of a GET as well.
    let url = format!("{}/services/rest/record/v1/vendor/{}?expandSubResources=true", sim.base_url(), ids[1]);
    let creds = netsuite_salesforce::netsuite::tba::TbaCredentials {
        consumer_key: TBA.0.into(),
        consumer_secret: TBA.1.into(),
        token_id: TBA.2.into(),
        token_secret: TBA.3.into(),
        realm: "1234567_SB1".into(),
    };
    let header = netsuite_salesforce::netsuite::tba::authorization(&creds, "GET", &url, "nonce-0001", clock.now_secs());
    let r = reqwest::Client::new().get(&url).header("authorization", header).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let signed_as_post =
        netsuite_salesforce::netsuite::tba::authorization(&creds, "POST", &url, "nonce-0002", clock.now_secs());
    let r = reqwest::Client::new().get(&url).header("authorization", signed_as_post).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "a signature over another method is refused");
    // A `+` in the query is a space to both signer and verifier (form decoding, RFC 5849 §3.4.1.3.1).
    let plus = format!("{}/services/rest/record/v1/vendor/{}?expandSubResources=true&note=a+b", sim.base_url(), ids[1]);
    let header =
        netsuite_salesforce::netsuite::tba::authorization(&creds, "GET", &plus, "nonce-0003", clock.now_secs());
    let r = reqwest::Client::new().get(&plus).header("authorization", header).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", sim.login_audit());

    sim.set_vendor_permission(Permission::View);
    let r = call(&sim, &t, Method::PATCH, &format!("/vendor/{}", ids[0]), Some(r#"{"phone": "1"}"#), &[]).await;
    assert_eq!((r.status, r.code()), (403, "INSUFFICIENT_PERMISSION"));
    assert_eq!(call(&sim, &t, Method::GET, &format!("/vendor/{}", ids[0]), None, &[]).await.status, 200);
    sim.deny_table("vendor");
    assert_eq!(call(&sim, &t, Method::GET, &format!("/vendor/{}", ids[0]), None, &[]).await.status, 403);
}

#[tokio::test]
async fn injected_failures_and_validation_errors_reach_the_client() {
    let (sim, clock) = netsuite(5).await;
    let t = token(&sim, &clock).await;
    sim.reject_vendor_writes(VendorRejection {
        matches: VendorMatch::ExternalId("SF-BAD".into()),
        message: "Vendor SF-BAD is on hold by Accounts Payable.".into(),
    });
    let body = r#"{"companyName": "Held", "subsidiary": {"id": "1"}}"#;
    let r = call(&sim, &t, Method::PUT, "/vendor/eid:SF-BAD", Some(body), &[]).await;
    assert_eq!((r.status, r.code()), (400, "USER_ERROR"));
    assert!(r.detail().ends_with("Vendor SF-BAD is on hold by Accounts Payable."), "{}", r.detail());
    assert_eq!(sim.vendor_count().unwrap(), 0);
    sim.clear_vendor_rejections();
    sim.fail_next_record_requests(&[ScriptedFailure::TooManyRequests, ScriptedFailure::Unexpected]);
    assert_eq!(call(&sim, &t, Method::PUT, "/vendor/eid:SF-BAD", Some(body), &[]).await.status, 429);
    assert_eq!(call(&sim, &t, Method::PUT, "/vendor/eid:SF-BAD", Some(body), &[]).await.status, 500);
    assert_eq!(call(&sim, &t, Method::PUT, "/vendor/eid:SF-BAD", Some(body), &[]).await.status, 204);
    assert_eq!(sim.vendor_count().unwrap(), 1);
}

#[tokio::test]
async fn two_certificates_side_by_side_and_the_kid_picks_one() {
    let (sim, clock) = netsuite(5).await;
    sim.add_certificate("cert-es", &ec_key().public_pem).unwrap();
    assert!(sim.add_certificate("cert-again", &ec_key().public_pem).is_err(), "a key is mapped once");
    let ids: Vec<String> = sim.certificate_list().into_iter().map(|c| c.certificate_id).collect();
    assert_eq!(ids, ["cert-ps", "cert-es"]);

    let (ps_status, ps) = token_for(&sim, &clock, rsa_key(), "cert-ps").await;
    let (es_status, es) = token_for(&sim, &clock, ec_key(), "cert-es").await;
    assert_eq!((ps_status, es_status), (200, 200), "{ps} {es}");
    let vendors = sim.seed_vendors(1, 4).unwrap();
    for t in [&ps, &es] {
        let r =
            call(&sim, t["access_token"].as_str().unwrap(), Method::GET, &format!("/vendor/{}", vendors[0]), None, &[])
                .await;
        assert_eq!(r.status, 200);
    }

    // The kid picks the certificate: an EC assertion named as the RSA one, or an unknown kid, is refused.
    assert_eq!(token_for(&sim, &clock, ec_key(), "cert-ps").await, (400, json!({"error": "invalid_grant"})));
    assert_eq!(token_for(&sim, &clock, rsa_key(), "no-such-cert").await, (400, json!({"error": "invalid_grant"})));
    assert!(sim.login_audit().iter().any(|r| r.contains("\"no-such-cert\"") && r.contains("not the certificate id")));

    // A revoked certificate signs in no more, and its tokens stop working; the other one goes on.
    sim.revoke_certificate("cert-es").unwrap();
    assert_eq!(token_for(&sim, &clock, ec_key(), "cert-es").await, (400, json!({"error": "invalid_grant"})));
    assert!(sim.login_audit().iter().any(|r| r.contains("was revoked")));
    let r =
        call(&sim, es["access_token"].as_str().unwrap(), Method::GET, &format!("/vendor/{}", vendors[0]), None, &[])
            .await;
    assert_eq!((r.status, r.code()), (401, "INVALID_LOGIN"));
    assert_eq!(token_for(&sim, &clock, rsa_key(), "cert-ps").await.0, 200);
    assert!(sim.certificate_list().iter().any(|c| c.certificate_id == "cert-es" && c.revoked));

    // An expired certificate is refused too; a removed one is unknown.
    sim.set_certificate_expiry("cert-ps", Some(clock.now_secs() + 60)).unwrap();
    clock.advance(Duration::from_secs(61));
    assert_eq!(token_for(&sim, &clock, rsa_key(), "cert-ps").await.0, 400);
    assert!(sim.login_audit().iter().any(|r| r.contains("expired")));
    sim.remove_certificate("cert-ps").unwrap();
    assert!(sim.certificate_list().iter().all(|c| c.certificate_id != "cert-ps"));
}

#[tokio::test]
async fn every_algorithm_netsuite_accepts_signs_in_with_a_certificate_of_its_kind() {
    let (sim, clock) = netsuite(5).await;
    let ec384 = KeyPair::generate(Signing::Es384).unwrap();
    let ec521 = KeyPair::generate(Signing::Es512).unwrap();
    sim.add_certificate("cert-es256", &ec_key().public_pem).unwrap();
    sim.add_certificate("cert-es384", &ec384.public_pem).unwrap();
    sim.add_certificate("cert-es512", &ec521.public_pem).unwrap();
    let keys = [
        (rsa_key().signing_as(Signing::Ps256), "cert-ps"),
        (rsa_key().signing_as(Signing::Ps384), "cert-ps"),
        (rsa_key().signing_as(Signing::Ps512), "cert-ps"),
        (ec_key().clone(), "cert-es256"),
        (ec384.clone(), "cert-es384"),
        (ec521.clone(), "cert-es512"),
    ];
    for (key, kid) in &keys {
        let (status, body) = token_for(&sim, &clock, key, kid).await;
        assert_eq!(status, 200, "{} under {kid}: {body}", key.algorithm());
    }

    // The algorithm must be the certificate's: ES384 under the P-521 one is refused and the audit trail says why.
    assert_eq!(token_for(&sim, &clock, &ec384, "cert-es512").await, (400, json!({"error": "invalid_grant"})));
    assert!(sim.login_audit().iter().any(|r| r.contains("EcP521") && r.contains("verifies ES512 JWTs, not ES384")));
    // A P-521 key other than the certificate's signs nothing.
    let stranger = KeyPair::generate(Signing::Es512).unwrap();
    assert_eq!(token_for(&sim, &clock, &stranger, "cert-es512").await, (400, json!({"error": "invalid_grant"})));
    assert!(sim.login_audit().iter().any(|r| r.contains("does not verify with certificate \"cert-es512\"")));
    // An ES512 signature cut short is refused, not read as something else.
    let jwt = assertion(&sim, &clock, &ec521, "cert-es512");
    let cut = &jwt[..jwt.len() - 4];
    let r = reqwest::Client::new()
        .post(format!("{}/services/rest/auth/oauth2/v1/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", cut),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(sim.login_audit().last().is_some_and(|r| r.contains("does not verify with certificate \"cert-es512\"")));
}

/// A company customer of the seed (not an individual) with a default billing address.
fn company_customers(sim: &NetSuiteSim, count: u64) -> Vec<i64> {
    sim.seed_customers(count, 11).unwrap();
    sim.customers_with_billing_address().unwrap()
}

#[tokio::test]
async fn a_customer_patch_renames_it_and_suiteql_sees_lastmodifieddate_move() {
    let (sim, clock) = netsuite(5).await;
    let id = company_customers(&sim, 6)[0];
    let t = token(&sim, &clock).await;
    let q = format!(
        "SELECT c.companyname, c.email, c.phone, c.terms, c.isinactive, ba.addr1, \
         TO_CHAR(c.lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS lm FROM customer c \
         LEFT JOIN customeraddressbookentityaddress ba ON ba.nkey = c.defaultbillingaddress WHERE c.id = {id}"
    );
    let before = suiteql(&sim, &t, &q).await["items"][0].clone();
    clock.advance(Duration::from_secs(90));

    let patched =
        call(&sim, &t, Method::PATCH, &format!("/customer/{id}"), Some(r#"{"companyName": "Renamed Ltd"}"#), &[]).await;
    assert_eq!(patched.status, 204, "{}", patched.body);
    assert_eq!(patched.body, Value::Null, "204 No Content");
    assert_eq!(
        patched.location.as_deref(),
        Some(format!("{}/services/rest/record/v1/customer/{id}", sim.base_url()).as_str())
    );
    let after = suiteql(&sim, &t, &q).await["items"][0].clone();
    assert_eq!(after["companyname"], "Renamed Ltd");
    assert_eq!(after["email"], before["email"], "fields left out stay");
    assert!(after["lm"].as_str() > before["lm"].as_str(), "{before} -> {after}");

    // Email, phone, terms, inactive, and the default billing line's street, in one PATCH.
    let got = call(&sim, &t, Method::GET, &format!("/customer/{id}?expandSubResources=true"), None, &[]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let line = got.body["addressBook"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["defaultBilling"] == true)
        .unwrap()["id"]
        .clone();
    let edit = json!({
        "email": "billing@renamed.example", "phone": "+1 206-555-0199", "terms": {"id": "2"}, "isInactive": true,
        "addressBook": {"items": [{"id": line, "addressBookAddress": {"addr1": "500 Pine St"}}]}
    });
    let r = call(&sim, &t, Method::PATCH, &format!("/customer/{id}"), Some(&edit.to_string()), &[]).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let after = suiteql(&sim, &t, &q).await["items"][0].clone();
    assert_eq!(
        (&after["email"], &after["phone"], &after["terms"], &after["isinactive"], &after["addr1"]),
        (&json!("billing@renamed.example"), &json!("+1 206-555-0199"), &json!("2"), &json!("T"), &json!("500 Pine St"))
    );
    let got = call(&sim, &t, Method::GET, &format!("/customer/{id}"), None, &[]).await;
    assert_eq!(got.body["terms"]["refName"], "Net 30");
    assert!(got.body["defaultAddress"].as_str().unwrap().contains("500 Pine St"), "{}", got.body);

    // replaceSelectedFields clears what the body leaves out; a required field cannot be cleared.
    let r = call(
        &sim,
        &t,
        Method::PATCH,
        &format!("/customer/{id}?replace=phone&replaceSelectedFields=true"),
        Some("{}"),
        &[],
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(sim.customer_field(id, "phone").unwrap(), None);
    let r = call(&sim, &t, Method::PATCH, &format!("/customer/{id}"), Some(r#"{"companyName": null}"#), &[]).await;
    assert_eq!((r.status, r.code()), (400, "USER_ERROR"));
    assert!(r.detail().ends_with("Please enter value(s) for: Company Name."), "{}", r.detail());

    // Upsert by external id: an individual created, then updated in place.
    let person = r#"{"isPerson": true, "firstName": "Ada", "lastName": "Lovelace", "subsidiary": {"id": "1"}}"#;
    let first = call(&sim, &t, Method::PUT, "/customer/eid:SF-ADA", Some(person), &[]).await;
    assert_eq!(first.status, 204, "{}", first.body);
    let again = call(&sim, &t, Method::PUT, "/customer/eid:SF-ADA", Some(r#"{"email": "ada@example.com"}"#), &[]).await;
    assert_eq!(again.location, first.location, "the second PUT updates the first one's customer");
    let ada =
        suiteql(&sim, &t, "SELECT c.entityid, c.email, c.isperson FROM customer c WHERE c.externalid = 'SF-ADA'").await;
    assert_eq!(
        ada["items"],
        json!([{"links": [], "entityid": "Ada Lovelace", "email": "ada@example.com", "isperson": "T"}])
    );
    let r =
        call(&sim, &t, Method::POST, "/customer", Some(r#"{"isPerson": true, "subsidiary": {"id": "1"}}"#), &[]).await;
    assert!(r.detail().ends_with("Please enter value(s) for: First Name, Last Name."), "{}", r.body);
}

#[tokio::test]
async fn a_contact_moves_to_another_company_and_its_company_can_be_cleared() {
    let (sim, clock) = netsuite(5).await;
    let companies = company_customers(&sim, 6);
    let (from, to) = (companies[0], companies[1]);
    sim.seed_contacts(1, &[from], clock.now_secs() - 3600, 5).unwrap();
    let t = token(&sim, &clock).await;
    let contact =
        suiteql(&sim, &t, "SELECT ct.id FROM contact ct").await["items"][0]["id"].as_str().unwrap().to_string();
    let q = format!(
        "SELECT ct.company, TO_CHAR(ct.lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS lm FROM contact ct \
         WHERE ct.id = {contact}"
    );
    let before = suiteql(&sim, &t, &q).await["items"][0].clone();
    assert_eq!(before["company"], from.to_string());

    let body = json!({"company": {"id": to.to_string()}}).to_string();
    let moved = call(&sim, &t, Method::PATCH, &format!("/contact/{contact}"), Some(&body), &[]).await;
    assert_eq!(moved.status, 204, "{}", moved.body);
    assert_eq!(moved.id().to_string(), contact);
    let after = suiteql(&sim, &t, &q).await["items"][0].clone();
    assert_eq!(after["company"], to.to_string());
    assert!(after["lm"].as_str() > before["lm"].as_str(), "{before} -> {after}");
    let got = call(&sim, &t, Method::GET, &format!("/contact/{contact}"), None, &[]).await;
    assert_eq!(got.body["company"]["id"], to.to_string());
    assert!(got.body["company"]["links"][0]["href"].as_str().unwrap().ends_with(&format!("/customer/{to}")));

    // A contact may belong to a vendor too; an unknown company is an invalid reference.
    let vendor = sim.seed_vendors(1, 3).unwrap()[0];
    let body = json!({"company": {"id": vendor}}).to_string();
    assert_eq!(call(&sim, &t, Method::PATCH, &format!("/contact/{contact}"), Some(&body), &[]).await.status, 204);
    let r =
        call(&sim, &t, Method::PATCH, &format!("/contact/{contact}"), Some(r#"{"company": {"id": "987654"}}"#), &[])
            .await;
    assert_eq!((r.status, r.code()), (400, "INVALID_CONTENT"), "{}", r.body);
    assert_eq!((r.body["title"].as_str(), r.body["status"].as_u64()), (Some("Bad Request"), Some(400)));
    assert_eq!(r.body["o:errorDetails"][0]["o:errorPath"], "company");
    assert!(r.detail().contains("Invalid Field Value 987654 for the following field: company"), "{}", r.detail());
    assert_eq!(
        suiteql(&sim, &t, &q).await["items"][0]["company"],
        vendor.to_string(),
        "a refused write changes nothing"
    );

    let cleared =
        call(&sim, &t, Method::PATCH, &format!("/contact/{contact}"), Some(r#"{"company": null}"#), &[]).await;
    assert_eq!(cleared.status, 204, "{}", cleared.body);
    assert!(suiteql(&sim, &t, &q).await["items"][0]["company"].is_null(), "no company: NULL");

    // Name, email, phone and title change as given.
    let edit = r#"{"firstName": "Grace", "lastName": "Hopper", "email": "grace@example.com", "phone": "555-0100", "title": "Rear Admiral"}"#;
    assert_eq!(call(&sim, &t, Method::PATCH, &format!("/contact/{contact}"), Some(edit), &[]).await.status, 204);
    let row = suiteql(
        &sim,
        &t,
        &format!(
            "SELECT ct.firstname, ct.lastname, ct.email, ct.phone, ct.title FROM contact ct WHERE ct.id = {contact}"
        ),
    )
    .await["items"][0]
        .clone();
    assert_eq!(
        row,
        json!({"links": [], "firstname": "Grace", "lastname": "Hopper", "email": "grace@example.com",
               "phone": "555-0100", "title": "Rear Admiral"})
    );
}

#[tokio::test]
async fn a_deleted_customer_is_404_and_a_deletedrecord_row() {
    let (sim, clock) = netsuite(5).await;
    let ids = company_customers(&sim, 4);
    let (id, other) = (ids[0], ids[1]);
    sim.seed_contacts(1, &[other], clock.now_secs(), 2).unwrap();
    let t = token(&sim, &clock).await;
    let deleted = call(&sim, &t, Method::DELETE, &format!("/customer/{id}"), None, &[]).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let gone = call(&sim, &t, Method::GET, &format!("/customer/{id}"), None, &[]).await;
    assert_eq!((gone.status, gone.code()), (404, "NONEXISTENT_ID"));
    let again = call(&sim, &t, Method::DELETE, &format!("/customer/{id}"), None, &[]).await;
    assert_eq!((again.status, again.code()), (404, "NONEXISTENT_ID"));
    let rows = suiteql(&sim, &t, "SELECT d.recordid, d.type FROM deletedrecord d").await;
    assert_eq!(rows["items"], json!([{"links": [], "recordid": id.to_string(), "type": "customer"}]));
    let lines =
        suiteql(&sim, &t, &format!("SELECT COUNT(*) AS n FROM customeraddressbook b WHERE b.entity = {id}")).await;
    assert_eq!(lines["items"][0]["n"], "0", "its address book goes with it");

    // Contacts too; a collection DELETE is no method.
    let contact =
        suiteql(&sim, &t, "SELECT ct.id FROM contact ct").await["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(call(&sim, &t, Method::DELETE, &format!("/contact/{contact}"), None, &[]).await.status, 204);
    let rows = suiteql(&sim, &t, "SELECT d.recordid FROM deletedrecord d WHERE d.type = 'contact'").await;
    assert_eq!(rows["items"][0]["recordid"], contact);
    let r = call(&sim, &t, Method::DELETE, "/contact", None, &[]).await;
    assert_eq!((r.status, r.code()), (405, "INVALID_METHOD"));

    // The role's permission on customers decides, as on vendors.
    sim.set_record_permission("customer", Permission::Edit);
    let r = call(&sim, &t, Method::DELETE, &format!("/customer/{other}"), None, &[]).await;
    assert_eq!((r.status, r.code()), (403, "INSUFFICIENT_PERMISSION"));
    assert!(r.detail().contains("'Lists -> Customers'"), "{}", r.detail());
    sim.deny_table("contact");
    assert_eq!(call(&sim, &t, Method::POST, "/contact", Some("{}"), &[]).await.status, 403);
}

#[tokio::test]
async fn a_posted_contact_answers_204_with_its_location() {
    let (sim, clock) = netsuite(5).await;
    let company = company_customers(&sim, 3)[0];
    let t = token(&sim, &clock).await;
    let body = json!({
        "firstName": "Katherine", "lastName": "Johnson", "email": "kj@example.com", "title": "Mathematician",
        "company": {"id": company.to_string()}, "subsidiary": {"id": "1"}, "externalId": "SF-003KJ"
    })
    .to_string();
    let created = call(&sim, &t, Method::POST, "/contact", Some(&body), &[]).await;
    assert_eq!(created.status, 204, "{}", created.body);
    assert_eq!(created.body, Value::Null, "204 No Content");
    let id = created.id();
    assert_eq!(created.location.unwrap(), format!("{}/services/rest/record/v1/contact/{id}", sim.base_url()));
    let row = suiteql(
        &sim,
        &t,
        &format!("SELECT ct.entityid, ct.company, ct.isinactive, ct.externalid FROM contact ct WHERE ct.id = {id}"),
    )
    .await["items"][0]
        .clone();
    assert_eq!(
        row,
        json!({"links": [], "entityid": "Katherine Johnson", "company": company.to_string(), "isinactive": "F",
               "externalid": "SF-003KJ"})
    );
    let by_eid = call(&sim, &t, Method::GET, "/contact/eid:SF-003KJ", None, &[]).await;
    assert_eq!(
        (by_eid.body["id"].clone(), by_eid.body["title"].clone()),
        (json!(id.to_string()), json!("Mathematician"))
    );

    // A contact needs a name (a last name, or its entity id) and, in OneWorld, a subsidiary.
    let r = call(&sim, &t, Method::POST, "/contact", Some(r#"{"firstName": "Solo"}"#), &[]).await;
    assert_eq!((r.status, r.code()), (400, "USER_ERROR"));
    assert_eq!(r.detail(), "Error while accessing a resource. Please enter value(s) for: Last Name, Subsidiary.");
    let r =
        call(&sim, &t, Method::POST, "/contact", Some(r#"{"entityId": "Front Desk", "subsidiary": {"id": "1"}}"#), &[])
            .await;
    assert_eq!(r.status, 204, "{}", r.body);
    // An upsert of the same external id updates it; its external id is unique per record type.
    let r = call(&sim, &t, Method::PUT, "/contact/eid:SF-003KJ", Some(r#"{"phone": "757-555-0100"}"#), &[]).await;
    assert_eq!((r.status, r.id()), (204, id));
    assert_eq!(sim.record_writes(), 3);
}
