//! The Salesforce simulator answers the calls a REST client makes besides
//! the connector's own: a version's resources, describeGlobal, records by
//! Id (create, read, update, delete), the org's limits, Composite
//! references between subrequests, SOQL query and queryAll with paging and
//! the vendor poll's keyset pages — requested over HTTP exactly as a client
//! would, with a client-credentials token.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use simulators::salesforce::SalesforceSim;
use std::time::Duration;
use support::{bed, succeeded};

/// A REST client of the simulated org, logged in with client credentials.
struct Client {
    http: reqwest::Client,
    instance: String,
    bearer: String,
}

impl Client {
    async fn login(sf: &SalesforceSim) -> Client {
        let http = reqwest::Client::new();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", "3MVG9sim.connector.client"),
            ("client_secret", "sim-client-secret"),
        ];
        let token: Value = http
            .post(format!("{}/services/oauth2/token", sf.base_url()))
            .form(&form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Client {
            http,
            instance: token["instance_url"].as_str().unwrap().to_string(),
            bearer: token["access_token"].as_str().unwrap().to_string(),
        }
    }

    /// `method` on `path` (below /services/data/v66.0 unless it names /services
    /// itself): status and JSON body (null for none).
    async fn call(&self, method: Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> (u16, Value) {
        let url = match path.starts_with("/services/") {
            true => format!("{}{path}", self.instance),
            false => format!("{}/services/data/v66.0{path}", self.instance),
        };
        let mut request = self.http.request(method, url).bearer_auth(&self.bearer);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None, &[]).await
    }

    /// Creates an Account upsert job by `NetSuite_Id__c`, uploads `csv` and
    /// closes the job; returns its id and the close's answer.
    async fn bulk_account_job(&self, csv: String) -> (String, (u16, Value)) {
        let body = json!({"object": "Account", "operation": "upsert", "externalIdFieldName": "NetSuite_Id__c",
                          "contentType": "CSV", "lineEnding": "LF"});
        let (s, job) = self.call(Method::POST, "/jobs/ingest", Some(body), &[]).await;
        assert_eq!(s, 200, "{job}");
        let job = job["id"].as_str().unwrap().to_string();
        let put = self
            .http
            .put(format!("{}/services/data/v66.0/jobs/ingest/{job}/batches", self.instance))
            .bearer_auth(&self.bearer)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status().as_u16(), 201);
        let close = Some(json!({"state": "UploadComplete"}));
        let closed = self.call(Method::PATCH, &format!("/jobs/ingest/{job}"), close, &[]).await;
        (job, closed)
    }

    /// `GET query?q=` (or `queryAll`), optionally asking for a batch size.
    async fn soql(&self, resource: &str, soql: &str, batch: Option<u32>) -> (u16, Value) {
        let q: String = form_urlencoded::byte_serialize(soql.as_bytes()).collect();
        let options = batch.map(|b| format!("batchSize={b}"));
        let headers: Vec<(&str, &str)> = options.iter().map(|o| ("Sforce-Query-Options", o.as_str())).collect();
        self.call(Method::GET, &format!("/{resource}?q={q}"), None, &headers).await
    }
}

/// Salesforce's datetime text for the simulated clock's now.
fn stamp(sf_clock: &simulators::SimClock) -> String {
    stamp_at(sf_clock.now_secs())
}

/// Salesforce's datetime text for `secs` (Unix seconds).
fn stamp_at(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap()
        .format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].000+0000"))
        .unwrap()
}

fn vendor(n: usize) -> Value {
    json!({
        "attributes": {"type": "Vendor__c"},
        "NetSuite_Id__c": format!("V{n:03}"),
        "Name": format!("Vendor {n:03}"),
        "Email__c": format!("ap{n}@vendor.example"),
        "Phone__c": "+14155550100",
        "Payment_Terms__c": "Net 30",
        "Street__c": "1 Market St",
        "City__c": "San Francisco",
        "State__c": "CA",
        "Postal_Code__c": "94105",
        "Country__c": "US",
    })
}

/// Upserts vendors `range` through sObject Collections, 200 per request.
async fn upsert_vendors(client: &Client, range: std::ops::Range<usize>) {
    let all: Vec<Value> = range.map(vendor).collect();
    for chunk in all.chunks(200) {
        let (status, results) = client
            .call(
                Method::PATCH,
                "/composite/sobjects/Vendor__c/NetSuite_Id__c",
                Some(json!({"allOrNone": true, "records": chunk})),
                &[],
            )
            .await;
        assert_eq!(status, 200, "{results}");
        assert!(results.as_array().unwrap().iter().all(|r| r["success"] == true), "{results}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_client_reads_resources_objects_records_and_limits() {
    let bed = bed(3).start().await;
    succeeded(&bed.sync().await);
    let sf = &bed.salesforce;
    let client = Client::login(sf).await;
    let get = |path: String| {
        let client = &client;
        async move { client.get(&path).await }
    };

    let (status, resources) = get("/".into()).await;
    assert_eq!(status, 200);
    assert_eq!(resources["sobjects"], "/services/data/v66.0/sobjects");
    assert_eq!(resources["limits"], "/services/data/v66.0/limits");

    let (status, global) = get("/sobjects".into()).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = global["sobjects"].as_array().unwrap().iter().filter_map(|o| o["name"].as_str()).collect();
    assert!(names.contains(&"Account") && names.contains(&"Vendor__c"), "{names:?}");

    let (id, fields) = bed.sf("Account", bed.customer_ids[0]);
    let (status, record) = get(format!("/sobjects/Account/{id}")).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["Id"], id.as_str());
    assert_eq!(record["Name"], fields["Name"]);
    assert_eq!(record["attributes"]["type"], "Account");
    assert!(record["SystemModstamp"].as_str().unwrap().ends_with(".000+0000"), "{record}");
    let (status, missing) = get("/sobjects/Account/001000000000000AAA".into()).await;
    assert_eq!(status, 404);
    assert_eq!(missing[0]["errorCode"], "NOT_FOUND");

    // Composite: a later subrequest names an earlier one's answer.
    let ext = bed.customer_ids[1].to_string();
    let composite = serde_json::json!({"allOrNone": false, "compositeRequest": [
        {"method": "PATCH", "url": format!("/services/data/v66.0/sobjects/Account/NetSuite_Id__c/{ext}"),
         "referenceId": "up", "body": {"Name": "Referenced Ltd"}},
        {"method": "GET", "url": "/services/data/v66.0/sobjects/Account/@{up.id}", "referenceId": "read"},
    ]});
    let (_, answer) = client.call(Method::POST, "/composite", Some(composite), &[]).await;
    let read = &answer["compositeResponse"][1];
    assert_eq!(read["httpStatusCode"], 200, "{answer}");
    assert_eq!(read["body"]["Name"], "Referenced Ltd");
    assert_eq!(read["body"]["NetSuite_Id__c"], ext.as_str());

    let (status, limits) = get("/limits".into()).await;
    assert_eq!(status, 200);
    let daily = &limits["DailyApiRequests"];
    assert_eq!(daily["Max"], 100_000);
    let remaining = daily["Remaining"].as_u64().unwrap();
    assert!(remaining < 100_000 && remaining + sf.api_requests() >= 100_000, "{daily}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_creates_updates_and_deletes_a_vendor_by_id() {
    let bed = bed(3).start().await;
    let client = Client::login(&bed.salesforce).await;
    let created_at = stamp(&bed.clock);
    let mut body = vendor(1);
    body.as_object_mut().unwrap().remove("attributes");
    let (status, created) = client.call(Method::POST, "/sobjects/Vendor__c", Some(body), &[]).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!((&created["success"], &created["errors"]), (&json!(true), &json!([])));
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("a01") && id.len() == 18, "{id}");
    let (status, record) = client.get(&format!("/sobjects/Vendor__c/{id}")).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!((record["Name"].as_str(), record["IsDeleted"].as_bool()), (Some("Vendor 001"), Some(false)));
    for field in ["CreatedDate", "LastModifiedDate", "SystemModstamp"] {
        assert_eq!(record[field], created_at.as_str(), "{field}");
    }

    // An update moves LastModifiedDate and SystemModstamp, never CreatedDate.
    bed.clock.advance(Duration::from_secs(90));
    let (status, answer) = client
        .call(Method::PATCH, &format!("/sobjects/Vendor__c/{id}"), Some(json!({"Phone__c": "+14155550199"})), &[])
        .await;
    assert_eq!((status, answer), (204, Value::Null));
    let (_, record) = client.get(&format!("/sobjects/Vendor__c/{id}")).await;
    assert_eq!(record["Phone__c"], "+14155550199");
    assert_eq!(record["Name"], "Vendor 001", "fields the update leaves out keep their values");
    assert_eq!(record["CreatedDate"], created_at.as_str());
    assert_eq!(record["SystemModstamp"], stamp(&bed.clock).as_str());
    assert_eq!(record["LastModifiedDate"], stamp(&bed.clock).as_str());
    // A write that changes nothing still moves the stamp, as Salesforce's does.
    bed.clock.advance(Duration::from_secs(30));
    let same = json!({"Phone__c": "+14155550199"});
    assert_eq!(client.call(Method::PATCH, &format!("/sobjects/Vendor__c/{id}"), Some(same), &[]).await.0, 204);
    let (_, record) = client.get(&format!("/sobjects/Vendor__c/{}", &id[..15])).await;
    assert_eq!(record["SystemModstamp"], stamp(&bed.clock).as_str(), "read by the 15-character id too");

    // Deleted: the record answers ENTITY_IS_DELETED from then on.
    let (status, answer) = client.call(Method::DELETE, &format!("/sobjects/Vendor__c/{id}"), None, &[]).await;
    assert_eq!((status, answer), (204, Value::Null));
    let deleted = json!([{"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": []}]);
    assert_eq!(client.get(&format!("/sobjects/Vendor__c/{id}")).await, (404, deleted.clone()));
    assert_eq!(
        client.call(Method::DELETE, &format!("/sobjects/Vendor__c/{id}"), None, &[]).await,
        (404, deleted.clone())
    );
    let patch = Some(json!({"Name": "Back"}));
    assert_eq!(client.call(Method::PATCH, &format!("/sobjects/Vendor__c/{id}"), patch, &[]).await, (404, deleted));
    let (status, missing) = client.call(Method::DELETE, "/sobjects/Vendor__c/a018d0000000ZZZAAA", None, &[]).await;
    assert_eq!((status, missing[0]["errorCode"].as_str()), (404, Some("NOT_FOUND")));

    // Upserting the deleted record's external id makes a new record.
    let (status, again) = client
        .call(Method::PATCH, "/sobjects/Vendor__c/NetSuite_Id__c/V001", Some(json!({"Name": "Vendor 001 again"})), &[])
        .await;
    assert_eq!((status, again["created"].as_bool()), (201, Some(true)), "{again}");
    assert_ne!(again["id"].as_str(), Some(id.as_str()));
}

/// `PATCH composite/sobjects`: records updated by id in order, SaveResults
/// in the same order; a record in the Recycle Bin, an id the org lacks and a
/// record without a type each fail alone, and nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_update_by_id_saves_in_order_and_creates_nothing() {
    let bed = bed(3).start().await;
    let client = Client::login(&bed.salesforce).await;
    let mut ids = Vec::new();
    for n in 1..=2 {
        let mut body = vendor(n);
        body.as_object_mut().unwrap().remove("attributes");
        let (_, created) = client.call(Method::POST, "/sobjects/Vendor__c", Some(body), &[]).await;
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    assert_eq!(client.call(Method::DELETE, &format!("/sobjects/Vendor__c/{}", ids[1]), None, &[]).await.0, 204);
    let records = json!([
        {"attributes": {"type": "Vendor__c"}, "id": ids[0], "Phone__c": "+14155550101"},
        {"attributes": {"type": "Vendor__c"}, "id": ids[1], "Phone__c": "+14155550102"},
        {"attributes": {"type": "Vendor__c"}, "id": "a018d0000000ZZZAAA", "Phone__c": "+14155550103"},
        {"id": ids[0], "Phone__c": "+14155550104"},
    ]);
    let body = Some(json!({"allOrNone": false, "records": records}));
    let (status, results) = client.call(Method::PATCH, "/composite/sobjects", body, &[]).await;
    assert_eq!(status, 200, "{results}");
    let codes: Vec<Option<&str>> =
        results.as_array().unwrap().iter().map(|r| r["errors"][0]["statusCode"].as_str()).collect();
    assert_eq!(codes, [None, Some("ENTITY_IS_DELETED"), Some("INVALID_CROSS_REFERENCE_KEY"), Some("INVALID_TYPE")]);
    assert_eq!((&results[0]["id"], &results[0]["success"]), (&json!(ids[0]), &json!(true)));
    let (_, record) = client.get(&format!("/sobjects/Vendor__c/{}", ids[0])).await;
    assert_eq!(record["Phone__c"], "+14155550101");
    assert_eq!(bed.salesforce.count("Vendor__c"), 1, "nothing created");

    // allOrNone: one failure rolls the others back.
    let records = json!([
        {"attributes": {"type": "Vendor__c"}, "id": ids[0], "Phone__c": "+14155550199"},
        {"attributes": {"type": "Vendor__c"}, "id": ids[1], "Phone__c": "+14155550198"},
    ]);
    let body = Some(json!({"allOrNone": true, "records": records}));
    let (_, results) = client.call(Method::PATCH, "/composite/sobjects", body, &[]).await;
    assert_eq!(results[0]["errors"][0]["statusCode"], "ALL_OR_NONE_OPERATION_ROLLED_BACK");
    let (_, record) = client.get(&format!("/sobjects/Vendor__c/{}", ids[0])).await;
    assert_eq!(record["Phone__c"], "+14155550101");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_writes_are_refused_in_salesforces_shapes() {
    let bed = bed(3).start().await;
    let client = Client::login(&bed.salesforce).await;
    let post = |body: Value| {
        let client = &client;
        async move { client.call(Method::POST, "/sobjects/Vendor__c", Some(body), &[]).await }
    };
    let (status, body) = post(json!({"Name": "X", "Nope__c": 1})).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("INVALID_FIELD")), "{body}");
    let (status, body) = post(json!({"Email__c": "a@b.example"})).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("REQUIRED_FIELD_MISSING")), "{body}");
    assert_eq!(body[0]["fields"], json!(["Name"]));
    let (status, body) = post(json!({"Name": "X", "CreatedDate": "2026-01-01T00:00:00.000+0000"})).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("INVALID_FIELD_FOR_INSERT_UPDATE")), "{body}");
    let (status, first) = post(json!({"Name": "Unique", "NetSuite_Id__c": "77"})).await;
    assert_eq!(status, 201, "{first}");
    let (status, body) = post(json!({"Name": "Twin", "NetSuite_Id__c": "77"})).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("DUPLICATE_VALUE")), "{body}");
    assert!(body[0]["message"].as_str().unwrap().ends_with(first["id"].as_str().unwrap()), "{body}");
    let id = first["id"].as_str().unwrap();
    let (status, body) =
        client.call(Method::PATCH, &format!("/sobjects/Vendor__c/{id}"), Some(json!({"Email__c": "nope"})), &[]).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("INVALID_EMAIL_ADDRESS")), "{body}");
    let (status, body) = client.call(Method::POST, "/sobjects/Nope__c", Some(json!({"Name": "X"})), &[]).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (404, Some("NOT_FOUND")), "{body}");
    // sObject Collections upsert takes an External ID field only, not Id.
    let records =
        json!({"allOrNone": false, "records": [{"attributes": {"type": "Vendor__c"}, "Id": id, "Name": "Y"}]});
    let (status, body) = client.call(Method::PATCH, "/composite/sobjects/Vendor__c/Id", Some(records), &[]).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (404, Some("NOT_FOUND")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_poll_walks_keyset_pages_on_system_modstamp_and_id() {
    let bed = bed(3).start().await;
    let client = Client::login(&bed.salesforce).await;
    // Three writes of 150 vendors a minute apart: each group shares a stamp.
    for group in 0..3 {
        upsert_vendors(&client, group * 150..(group + 1) * 150).await;
        bed.clock.advance(Duration::from_secs(60));
    }
    let fields = "Id, Name, Email__c, Phone__c, Payment_Terms__c, Street__c, City__c, State__c, Postal_Code__c, \
                  Country__c, NetSuite_Id__c, SystemModstamp";
    // One poll: pages of 100 after (stamp, id), until a page comes back empty.
    let poll = |cursor: (String, String)| {
        let client = &client;
        async move {
            let (mut stamp, mut id) = cursor;
            let mut seen: Vec<Value> = Vec::new();
            loop {
                let soql = format!(
                    "SELECT {fields} FROM Vendor__c WHERE SystemModstamp > {stamp} OR (SystemModstamp = {stamp} \
                     AND Id > '{id}') ORDER BY SystemModstamp, Id LIMIT 100"
                );
                let (status, page) = client.soql("query", &soql, None).await;
                assert_eq!(status, 200, "{page}");
                let records = page["records"].as_array().unwrap().clone();
                let Some(last) = records.last() else { return (seen, (stamp, id)) };
                stamp = last["SystemModstamp"].as_str().unwrap().to_string();
                id = last["Id"].as_str().unwrap().to_string();
                seen.extend(records);
            }
        }
    };
    let start = ("1970-01-01T00:00:00Z".to_string(), "000000000000000AAA".to_string());
    let (seen, cursor) = poll(start).await;
    let keys: Vec<&str> = seen.iter().map(|r| r["NetSuite_Id__c"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..450).map(|n| format!("V{n:03}")).collect();
    assert_eq!(keys, expected, "every vendor once, in (SystemModstamp, Id) order");
    let first = &seen[0];
    assert_eq!((first["Payment_Terms__c"].as_str(), first["Country__c"].as_str()), (Some("Net 30"), Some("US")));
    assert_eq!(first["attributes"]["type"], "Vendor__c");

    // Nothing changed: the next poll reads nothing.
    let (nothing, cursor) = poll(cursor).await;
    assert!(nothing.is_empty());
    // A vendor edited in Salesforce, one created there (no NetSuite id yet)
    // and one rewritten unchanged by the connector all come back, in order.
    bed.clock.advance(Duration::from_secs(60));
    let edited = seen[10]["Id"].as_str().unwrap();
    let patch = Some(json!({"Payment_Terms__c": "Net 45"}));
    assert_eq!(client.call(Method::PATCH, &format!("/sobjects/Vendor__c/{edited}"), patch, &[]).await.0, 204);
    let new = Some(json!({"Name": "Made in Salesforce", "Email__c": "new@vendor.example"}));
    let (status, made) = client.call(Method::POST, "/sobjects/Vendor__c", new, &[]).await;
    assert_eq!(status, 201);
    bed.clock.advance(Duration::from_secs(1));
    upsert_vendors(&client, 3..4).await;
    let (changed, cursor) = poll(cursor).await;
    let ids: Vec<&str> = changed.iter().map(|r| r["Id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![edited, made["id"].as_str().unwrap(), seen[3]["Id"].as_str().unwrap()]);
    assert_eq!(changed[0]["Payment_Terms__c"], "Net 45");
    assert_eq!(changed[1]["NetSuite_Id__c"], Value::Null, "not yet written back to NetSuite");
    // The write-back of its NetSuite id is one more change the poll sees.
    bed.clock.advance(Duration::from_secs(1));
    let made_id = made["id"].as_str().unwrap();
    let back = Some(json!({"NetSuite_Id__c": "9001"}));
    assert_eq!(client.call(Method::PATCH, &format!("/sobjects/Vendor__c/{made_id}"), back, &[]).await.0, 204);
    let (changed, _) = poll(cursor).await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["NetSuite_Id__c"], "9001");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_results_page_through_next_records_url() {
    let bed = bed(3).start().await;
    let client = Client::login(&bed.salesforce).await;
    upsert_vendors(&client, 0..450).await;
    let soql = "SELECT Id, Name FROM Vendor__c ORDER BY Name";
    let (status, page) = client.soql("query", soql, Some(200)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!((page["totalSize"].as_u64(), page["done"].as_bool()), (Some(450), Some(false)));
    assert_eq!(page["records"].as_array().unwrap().len(), 200);
    let url = page["nextRecordsUrl"].as_str().unwrap().to_string();
    let locator = url.strip_prefix("/services/data/v66.0/query/").unwrap();
    let (id, offset) = locator.split_once('-').unwrap();
    assert!(id.starts_with("01g") && id.len() == 18 && offset == "200", "{url}");

    // A vendor not yet returned is renamed: the pages keep the query's view.
    let (_, late) = client.soql("query", "SELECT Id FROM Vendor__c WHERE Name = 'Vendor 449'", None).await;
    let late = late["records"][0]["Id"].as_str().unwrap().to_string();
    let rename = Some(json!({"Name": "AAA first now"}));
    assert_eq!(client.call(Method::PATCH, &format!("/sobjects/Vendor__c/{late}"), rename, &[]).await.0, 204);
    let mut names: Vec<String> = Vec::new();
    let mut next = Some(url);
    let mut pages = vec![page];
    while let Some(url) = next {
        let (status, more) = client.get(&url).await;
        assert_eq!((status, more["totalSize"].as_u64()), (200, Some(450)), "{more}");
        next = more["nextRecordsUrl"].as_str().map(str::to_string);
        assert_eq!(more["done"].as_bool(), Some(next.is_none()));
        pages.push(more);
    }
    for page in &pages {
        names.extend(page["records"].as_array().unwrap().iter().map(|r| r["Name"].as_str().unwrap().to_string()));
    }
    let expected: Vec<String> = (0..450).map(|n| format!("Vendor {n:03}")).collect();
    assert_eq!(names, expected);
    assert_eq!(pages.len(), 3);

    // Without the header a page holds up to 2,000 rows; below 200 is raised to 200.
    let (_, whole) = client.soql("query", soql, None).await;
    assert_eq!((whole["done"].as_bool(), whole["records"].as_array().unwrap().len()), (Some(true), 450));
    let (_, small) = client.soql("query", soql, Some(50)).await;
    assert_eq!(small["records"].as_array().unwrap().len(), 200);
    let (status, body) = client.get("/query/01g8d00000000ZZAAA-200").await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("INVALID_QUERY_LOCATOR")), "{body}");

    // Id IN with an existing id finds it (in either id form).
    let short = &late[..15];
    let (_, found) =
        client.soql("query", &format!("SELECT Id, Name FROM Vendor__c WHERE Id IN ('{late}', '{short}')"), None).await;
    assert_eq!((found["totalSize"].as_u64(), found["records"][0]["Name"].as_str()), (Some(1), Some("AAA first now")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_all_shows_deleted_records_that_query_hides() {
    let bed = bed(30).setting("delete_action", "delete").start().await;
    succeeded(&bed.sync().await);
    let client = Client::login(&bed.salesforce).await;
    upsert_vendors(&client, 0..5).await;
    let (_, vendors) = client.soql("query", "SELECT Id FROM Vendor__c ORDER BY NetSuite_Id__c", None).await;
    let ids: Vec<&str> = vendors["records"].as_array().unwrap().iter().map(|r| r["Id"].as_str().unwrap()).collect();
    // One deleted by Id, two through sObject Collections (as the connector deletes).
    assert_eq!(client.call(Method::DELETE, &format!("/sobjects/Vendor__c/{}", ids[0]), None, &[]).await.0, 204);
    let (status, results) = client
        .call(Method::DELETE, &format!("/composite/sobjects?ids={},{},{}", ids[1], ids[2], ids[0]), None, &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(results[0]["success"], true);
    assert_eq!(results[2]["errors"][0]["statusCode"], "ENTITY_IS_DELETED", "{results}");

    let soql = "SELECT Id, Name, IsDeleted, SystemModstamp FROM Vendor__c WHERE IsDeleted = true ORDER BY Name";
    let (_, live) = client.soql("query", soql, None).await;
    assert_eq!(live["totalSize"], 0, "query never returns deleted records");
    let (status, bin) = client.soql("queryAll", soql, None).await;
    assert_eq!(status, 200, "{bin}");
    let names: Vec<&str> = bin["records"].as_array().unwrap().iter().map(|r| r["Name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Vendor 000", "Vendor 001", "Vendor 002"]);
    assert!(bin["records"].as_array().unwrap().iter().all(|r| r["IsDeleted"] == true));
    let (_, count) = client.soql("query", "SELECT COUNT() FROM Vendor__c", None).await;
    assert_eq!(count["totalSize"], 2);

    // The connector's deletion (delete_action = "delete") lands in the Recycle Bin too.
    let gone = bed.customer_ids[4];
    bed.netsuite.delete_record("customer", gone).unwrap();
    succeeded(&bed.sync().await);
    let soql = format!("SELECT Id, IsDeleted FROM Account WHERE NetSuite_Id__c = '{gone}'");
    let (_, live) = client.soql("query", &soql, None).await;
    assert_eq!(live["totalSize"], 0);
    let (_, bin) = client.soql("queryAll", &soql, None).await;
    assert_eq!((bin["totalSize"].as_u64(), bin["records"][0]["IsDeleted"].as_bool()), (Some(1), Some(true)), "{bin}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_path_stamps_the_record() {
    let bed = bed(3).start().await;
    let client = Client::login(&bed.salesforce).await;
    let when = |key: &str| {
        let client = &client;
        let soql =
            format!("SELECT CreatedDate, LastModifiedDate, SystemModstamp FROM Account WHERE NetSuite_Id__c = '{key}'");
        async move {
            let (_, page) = client.soql("query", &soql, None).await;
            let r = &page["records"][0];
            [&r["CreatedDate"], &r["LastModifiedDate"], &r["SystemModstamp"]]
                .map(|v| v.as_str().unwrap_or("").to_string())
        }
    };
    let account =
        |key: &str, name: &str| json!({"attributes": {"type": "Account"}, "NetSuite_Id__c": key, "Name": name});
    let write_all = |name: &'static str| {
        let client = &client;
        async move {
            let (s, _) = client
                .call(
                    Method::PATCH,
                    "/composite/sobjects/Account/NetSuite_Id__c",
                    Some(json!({"records": [account("c", name)]})),
                    &[],
                )
                .await;
            assert_eq!(s, 200);
            let (s, _) = client
                .call(Method::PATCH, "/sobjects/Account/NetSuite_Id__c/s", Some(json!({"Name": name})), &[])
                .await;
            assert!(s == 200 || s == 201);
            let sub = json!({"compositeRequest": [{"method": "PATCH", "referenceId": "r",
                "url": "/services/data/v66.0/sobjects/Account/NetSuite_Id__c/k", "body": {"Name": name}}]});
            let (s, answer) = client.call(Method::POST, "/composite", Some(sub), &[]).await;
            assert_eq!(s, 200, "{answer}");
            let (_, (s, closed)) = client.bulk_account_job(format!("NetSuite_Id__c,Name\nb,{name}\n")).await;
            assert_eq!(s, 200, "{closed}");
        }
    };
    let created = stamp(&bed.clock);
    write_all("First").await;
    let (s, made) =
        client.call(Method::POST, "/sobjects/Account", Some(json!({"Name": "Made", "NetSuite_Id__c": "p"})), &[]).await;
    assert_eq!(s, 201);
    for key in ["c", "s", "k", "b", "p"] {
        assert_eq!(when(key).await, [created.clone(), created.clone(), created.clone()], "{key}");
    }
    bed.clock.advance(Duration::from_secs(3600));
    let later = stamp(&bed.clock);
    write_all("First").await; // the same values again: the stamps still move
    let id = made["id"].as_str().unwrap();
    assert_eq!(
        client.call(Method::PATCH, &format!("/sobjects/Account/{id}"), Some(json!({"Name": "Made"})), &[]).await.0,
        204
    );
    for key in ["c", "s", "k", "b", "p"] {
        assert_eq!(when(key).await, [created.clone(), later.clone(), later.clone()], "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_are_refused_with_salesforces_codes() {
    let bed = bed(3).start().await;
    let client = Client::login(&bed.salesforce).await;
    let (status, body) = client.soql("query", "SELECT Id, Nope__c FROM Vendor__c", None).await;
    assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some("INVALID_FIELD")));
    assert_eq!(
        body[0]["message"],
        "\nSELECT Id, Nope__c FROM Vendor__c\n           ^\nERROR at Row:1:Column:12\nNo such column 'Nope__c' on entity \
         'Vendor__c'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field \
         name. Please reference your WSDL or the describe call for the appropriate names."
    );
    let cases = [
        ("SELECT Id FROM Vendor__c WHERE Name = 'a' AND Name = 'b' OR Name = 'c'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Vendor__c WHERE Name = 'it\\s'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Vendor__c WHERE SystemModstamp > '2026-12-01T00:00:00Z'", "INVALID_QUERY_FILTER_OPERATOR"),
        ("SELECT Id FROM Vendors", "INVALID_TYPE"),
    ];
    for (soql, code) in cases {
        let (status, body) = client.soql("queryAll", soql, None).await;
        assert_eq!((status, body[0]["errorCode"].as_str()), (400, Some(code)), "{soql}: {body}");
    }
}

/// A Bulk API 2.0 job runs once closed, beside the client: the close answers
/// UploadComplete at once, and a poll made later sees the job ended, its
/// records stamped with the time it was closed. Held, it stays InProgress
/// (its results not yet readable) however long it is polled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_bulk_job_runs_beside_the_client_and_a_later_poll_sees_it_ended() {
    let bed = bed(3).start().await;
    let client = Client::login(&bed.salesforce).await;
    let submit = |csv: &'static str| {
        let client = &client;
        async move {
            let (job, (status, info)) = client.bulk_account_job(csv.to_string()).await;
            assert_eq!((status, info["state"].as_str()), (200, Some("UploadComplete")), "{info}");
            job
        }
    };
    let closed_at = stamp(&bed.clock);
    let job = submit("NetSuite_Id__c,Name\nj1,First\nj2,Second\n").await;
    bed.clock.advance(Duration::from_secs(600));
    let (_, info) = client.get(&format!("/jobs/ingest/{job}")).await;
    assert_eq!((info["state"].as_str(), info["numberRecordsProcessed"].as_u64()), (Some("JobComplete"), Some(2)));
    let (_, page) = client.soql("query", "SELECT SystemModstamp FROM Account WHERE NetSuite_Id__c = 'j2'", None).await;
    assert_eq!(page["records"][0]["SystemModstamp"], closed_at.as_str(), "stamped when closed, not when polled");

    bed.salesforce.hold_bulk_jobs(true);
    let held = submit("NetSuite_Id__c,Name\nj3,Third\n").await;
    for _ in 0..3 {
        let (_, info) = client.get(&format!("/jobs/ingest/{held}")).await;
        assert_eq!(info["state"], "InProgress");
    }
    let (status, answer) = client.get(&format!("/jobs/ingest/{held}/successfulResults/")).await;
    assert_eq!((status, answer[0]["errorCode"].as_str()), (400, Some("INVALIDJOBSTATE")), "{answer}");
    bed.salesforce.hold_bulk_jobs(false);
    let (_, info) = client.get(&format!("/jobs/ingest/{held}")).await;
    assert_eq!(info["state"], "JobComplete");

    // A row with a field too many fails the job, rather than vanishing.
    let ragged = submit("NetSuite_Id__c,Name\nj4,Fourth\nj5,Fifth,extra\n").await;
    let (_, info) = client.get(&format!("/jobs/ingest/{ragged}")).await;
    assert_eq!(info["state"], "Failed", "{info}");
    assert!(info["errorMessage"].as_str().is_some_and(|m| m.starts_with("InvalidBatch")), "{info}");
    let (_, page) = client.soql("query", "SELECT Id FROM Account WHERE NetSuite_Id__c = 'j4'", None).await;
    assert_eq!(page["totalSize"], 0, "nothing of a failed job is applied");
}

/// What simple-salesforce and other clients call beyond the connector's
/// own paths: an object's basic information, a record by external id
/// (value percent-encoded), update-only upserts, the pre-v46 answer
/// without `created`, getUpdated and getDeleted, and a parent named by a
/// field that is not its External ID, refused as Salesforce refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reads_by_external_id_lists_changes_and_upserts_update_only() {
    let bed = bed(3).start().await;
    let client = Client::login(&bed.salesforce).await;
    let (status, info) = client.get("/sobjects/Vendor__c").await;
    assert_eq!((status, info["objectDescribe"]["name"].as_str()), (200, Some("Vendor__c")), "{info}");
    let from = stamp(&bed.clock);
    bed.clock.advance(Duration::from_secs(60));

    // Update-only: nothing carries the value, so nothing is created.
    let path = "/sobjects/Vendor__c/NetSuite_Id__c/V%20001";
    let name = |n: &str| Some(json!({ "Name": n }));
    let (status, refused) = client.call(Method::PATCH, &format!("{path}?updateOnly=true"), name("A"), &[]).await;
    assert_eq!((status, refused[0]["errorCode"].as_str()), (404, Some("NOT_FOUND")), "{refused}");
    assert_eq!(client.get(path).await.0, 404, "an update-only upsert created nothing");
    let (status, created) = client.call(Method::PATCH, path, name("A"), &[]).await;
    assert_eq!((status, created["created"].as_bool()), (201, Some(true)), "{created}");
    let (status, updated) = client.call(Method::PATCH, &format!("{path}?updateOnly=true"), name("B"), &[]).await;
    assert_eq!((status, updated["created"].as_bool()), (200, Some(false)), "{updated}");
    let (status, record) = client.get(path).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!((record["Name"].as_str(), record["NetSuite_Id__c"].as_str()), (Some("B"), Some("V 001")));
    let vendor_id = record["Id"].as_str().unwrap().to_string();

    // Before v46.0 a create answers without `created`, an update with no body.
    let old = "/services/data/v45.0/sobjects/Vendor__c/NetSuite_Id__c/V002";
    let (status, created) = client.call(Method::PATCH, old, name("C"), &[]).await;
    assert_eq!(status, 201, "{created}");
    assert!(created.get("created").is_none() && created["success"] == true, "{created}");
    assert_eq!(client.call(Method::PATCH, old, name("D"), &[]).await, (204, Value::Null));
    let old_id = client.get("/sobjects/Vendor__c/NetSuite_Id__c/V002").await.1["Id"].as_str().unwrap().to_string();

    bed.clock.advance(Duration::from_secs(60));
    assert_eq!(client.call(Method::DELETE, &format!("/sobjects/Vendor__c/{old_id}"), None, &[]).await.0, 204);
    let deleted_at = stamp(&bed.clock);
    bed.clock.advance(Duration::from_secs(60));
    let window = |start: &str| {
        let enc = |t: &str| form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>();
        format!("?start={}&end={}", enc(start), enc(&stamp(&bed.clock)))
    };
    let (status, updated) = client.get(&format!("/sobjects/Vendor__c/updated/{}", window(&from))).await;
    assert_eq!((status, &updated["ids"]), (200, &json!([vendor_id])), "{updated}");
    assert_eq!(updated["latestDateCovered"], stamp(&bed.clock).as_str());
    let (status, deleted) = client.get(&format!("/sobjects/Vendor__c/deleted/{}", window(&from))).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["deletedRecords"], json!([{ "id": old_id, "deletedDate": deleted_at }]));
    let month_ago = stamp_at(bed.clock.now_secs() - 31 * 86_400);
    let (status, refused) = client.get(&format!("/sobjects/Vendor__c/updated/{}", window(&month_ago))).await;
    assert_eq!((status, refused[0]["errorCode"].as_str()), (400, Some("INVALID_REPLICATION_DATE")), "{refused}");

    // A parent is found by its External ID field only.
    let contact = |parent: Value| {
        json!({"allOrNone": false, "records": [{"attributes": {"type": "Contact"}, "NetSuite_Id__c": "C1",
               "LastName": "Lee", "Vendor__r": parent}]})
    };
    let by = |body| client.call(Method::PATCH, "/composite/sobjects/Contact/NetSuite_Id__c", Some(body), &[]);
    let (_, results) = by(contact(json!({ "Name": "V 001" }))).await;
    assert_eq!(
        (&results[0]["success"], &results[0]["errors"][0]["statusCode"]),
        (&json!(false), &json!("INVALID_FIELD"))
    );
    let (_, results) = by(contact(json!({ "NetSuite_Id__c": "V 001" }))).await;
    assert_eq!(results[0]["success"], true, "{results}");
}
