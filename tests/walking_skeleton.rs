//! NetSuite customers become Salesforce Accounts end to end: the real
//! component in the real host against both simulators.

mod support;

use support::{bed, succeeded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_customers_become_thousand_accounts_with_their_fields() {
    let bed = bed(1000).start().await;
    let report = bed.sync().await;
    succeeded(&report);
    let c = report.counts("customer");
    assert_eq!((c.read, c.created, c.updated, c.failed), (1000, 1000, 0, 0));
    assert_eq!(bed.salesforce.count("Account"), 1000);

    // Spot-check the mapping against what NetSuite holds.
    for &id in bed.customer_ids.iter().step_by(97) {
        let (sf_id, fields) = bed.salesforce.find("Account", &id.to_string()).expect("account exists");
        assert!(sf_id.starts_with("001") && sf_id.len() == 18, "{sf_id}");
        let company = bed.netsuite.customer_field(id, "companyname").unwrap();
        let person = bed.netsuite.customer_field(id, "isperson").unwrap().as_deref() == Some("T");
        if !person {
            assert_eq!(fields["Name"].as_str(), company.as_deref(), "customer {id}");
        }
        // Phones arrive in E.164: the same digits, without punctuation.
        let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
        let phone = bed.netsuite.customer_field(id, "phone").unwrap();
        assert_eq!(fields["Phone"].as_str().map(digits), phone.as_deref().map(digits), "customer {id}");
    }
    // 1,000 records cost one Composite call; the others are the token and the
    // describe check made before the first write.
    assert_eq!(report.api_calls.salesforce, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_address_change_update_the_same_account() {
    let bed = bed(200).start().await;
    succeeded(&bed.sync().await);
    let id = bed.netsuite.customers_with_billing_address().unwrap()[3];
    let (before_id, _) = bed.salesforce.find("Account", &id.to_string()).unwrap();

    bed.netsuite.rename_customer(id, "Renamed & Co. \"Ltd\"").unwrap();
    bed.netsuite.move_customer_billing(id, "9 New Street", "Zürich", "8001").unwrap();
    let report = bed.sync().await;
    succeeded(&report);
    let c = report.counts("customer");
    assert_eq!((c.read, c.created, c.updated), (1, 0, 1));

    let (after_id, fields) = bed.salesforce.find("Account", &id.to_string()).unwrap();
    assert_eq!(after_id, before_id, "the rename must land on the existing Account");
    assert_eq!(fields["Name"], "Renamed & Co. \"Ltd\"");
    assert_eq!(fields["BillingCity"], "Zürich");
    assert!(fields["BillingStreet"].as_str().unwrap().starts_with("9 New Street"));
    assert_eq!(bed.salesforce.count("Account"), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_second_sync_writes_nothing() {
    let bed = bed(300).start().await;
    succeeded(&bed.sync().await);
    let (writes, requests) = (bed.salesforce.writes(), bed.salesforce.api_requests());

    let again = bed.sync().await;
    succeeded(&again);
    assert_eq!(again.counts("customer").read, 0);
    assert_eq!(bed.salesforce.writes(), writes, "no record may be written");
    assert_eq!(bed.salesforce.api_requests(), requests, "no Salesforce API call is needed");

    // A full resync reads everything again but writes nothing: every record is unchanged.
    let full = bed.full_sync().await;
    succeeded(&full);
    let c = full.counts("customer");
    assert_eq!((c.read, c.unchanged, c.created, c.updated), (300, 300, 0, 0));
    assert_eq!(bed.salesforce.writes(), writes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_reads_every_customer_once() {
    let bed = bed(1000).setting("netsuite_page_size", "150").start().await;
    let report = bed.sync().await;
    succeeded(&report);
    let c = report.counts("customer");
    assert_eq!((c.read, c.created), (1000, 1000));
    // One token, the time zone's check (the record changed last, its UTC
    // time from the record API, its time again), the newest change (where
    // the next run goes on), the highest id (asked with the first page, to
    // split the rest of the scan into three ranges of 283-284 rows), seven
    // pages of at most 150 by id, one read of deletions.
    assert_eq!(report.api_calls.netsuite, 1 + 3 + 1 + 1 + 7 + 1);
    assert_eq!(bed.salesforce.writes(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_salesforce_session_is_refreshed_once_and_the_run_completes() {
    let bed = bed(1000).setting("netsuite_page_size", "200").start().await;
    // The session dies after the first Composite call of the run.
    bed.salesforce.expire_sessions_after(1);
    let report = bed.sync().await;
    succeeded(&report);
    assert_eq!(report.counts("customer").created, 1000);
    assert_eq!(bed.salesforce.count("Account"), 1000);
    assert_eq!(bed.salesforce.token_requests(), 2, "one login, one refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_signed_with_the_wrong_key_is_rejected_with_a_clear_error() {
    let bed = bed(50).start().await;
    bed.set_secret("netsuite_private_key", &support::other_rsa_key().private_pem).unwrap();

    let report = bed.sync().await;
    assert_eq!(report.status, "failed");
    let error = report.error.unwrap();
    assert!(error.starts_with("authentication failed: NetSuite token endpoint"), "{error}");
    assert!(error.contains("invalid_grant"), "{error}");
    assert!(error.contains("`netsuite_private_key` is the private key of the certificate"), "{error}");
    assert!(!error.contains("BEGIN"), "the key must never appear in an error: {error}");
    assert!(
        bed.netsuite.login_audit().iter().any(|r| r.contains("signature does not verify")),
        "{:?}",
        bed.netsuite.login_audit()
    );
    assert_eq!(bed.salesforce.writes(), 0);
}
