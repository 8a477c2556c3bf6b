//! The Salesforce simulator answers the calls a REST client makes besides
//! the connector's own: a version's resources, describeGlobal, a record by
//! Id, the org's limits and Composite references between subrequests —
//! requested over HTTP exactly as a client would.

mod support;

use serde_json::Value;
use support::{bed, succeeded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_client_reads_resources_objects_records_and_limits() {
    let bed = bed(3).start().await;
    succeeded(&bed.sync().await);
    let sf = &bed.salesforce;
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
    let (instance, bearer) = (token["instance_url"].as_str().unwrap(), token["access_token"].as_str().unwrap());
    let get = |path: String| {
        let request = http.get(format!("{instance}/services/data/v66.0{path}")).bearer_auth(bearer);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
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
    let answer: Value = http
        .post(format!("{instance}/services/data/v66.0/composite"))
        .bearer_auth(bearer)
        .json(&composite)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
