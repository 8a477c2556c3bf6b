//! `connector demo`: the embedded default. Both simulators on loopback, 1,000
//! seeded customers and 2,000 contacts, a first sync; edits in NetSuite
//! (renames, address moves, a phone change, a save that changes nothing
//! mapped, a phone a Salesforce validation rule refuses), an incremental
//! sync; the rule fixed and the refused write replayed; a signed change event
//! applied by the listener; then vendors both ways: a `Vendor__c` edited in
//! Salesforce reaches NetSuite. And where to look further.

use crate::host::{ReplayScope, Runtime, SyncMode};
use crate::scheduler::RunReport;
use crate::testbed::{KeyPair, Signing, Testbed, TestbedOptions, WEBHOOK_SECRET};
use anyhow::{Context, Result};
use serde::Serialize;
use simulators::salesforce::{SalesforceSimConfig, ValidationRule};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub struct DemoOptions {
    pub customers: u64,
    pub data_dir: Option<PathBuf>,
    pub component: PathBuf,
}

#[derive(Serialize)]
pub struct DemoRun {
    pub label: String,
    #[serde(flatten)]
    pub report: RunReport,
}

#[derive(Serialize)]
pub struct DemoOutput {
    pub netsuite_url: String,
    pub salesforce_url: String,
    pub database: String,
    pub edits: Vec<String>,
    /// Edits made in Salesforce, before the last run.
    pub salesforce_edits: Vec<String>,
    pub salesforce_accounts: u64,
    pub salesforce_vendors: u64,
    /// What NetSuite holds after the Salesforce edit of a vendor.
    pub netsuite_vendor: String,
    pub salesforce_contacts: u64,
    /// The write a validation rule refused, and its replay.
    pub rejected_then_replayed: String,
    /// A change event posted to the listener and the time until Salesforce held the edit.
    pub change_event: String,
    pub change_event_ms: u64,
    /// The tenant's config, for the commands below.
    pub config_file: String,
    /// Commands to look further.
    pub look_further: Vec<String>,
    pub runs: Vec<DemoRun>,
}

/// Contacts per seeded customer in the demo's NetSuite account.
const CONTACTS_PER_CUSTOMER: u64 = 2;

/// Vendors in the demo's NetSuite account.
const DEMO_VENDORS: u64 = 20;

pub async fn run(options: DemoOptions) -> Result<DemoOutput> {
    let data_dir = match options.data_dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("connector-demo-{}", crate::scheduler::new_run_id())),
    };
    let key = tokio::task::spawn_blocking(|| KeyPair::generate(Signing::Ps256)).await??;
    let bed = Testbed::start(TestbedOptions {
        customers: options.customers,
        key,
        data_dir,
        salesforce: SalesforceSimConfig::default(),
        settings: BTreeMap::from([("vendor_writeback".to_string(), "true".to_string())]),
        netsuite_concurrency: 15,
        max_memory_mb: 512,
    })
    .await?;
    let component = options.component.clone();
    // The change-event listener keeps a reference for the life of the process.
    let runtime: &'static Runtime =
        Box::leak(Box::new(tokio::task::spawn_blocking(move || Runtime::load(&component)).await??));
    let config_file = bed.tenant.config.data_dir.join("connector.toml");
    bed.write_config(&config_file)?;
    let customers = bed.customer_ids.clone();
    let contacts = options.customers * CONTACTS_PER_CUSTOMER;
    bed.netsuite.seed_contacts(contacts, &customers, bed.clock.now_secs() - 3600, 19)?;

    let mut runs = Vec::new();
    let first = bed.sync_kinds(runtime, SyncMode::Incremental, &[]).await?;
    runs.push(DemoRun { label: "initial sync".into(), report: first });

    // Edit a handful of customers the way a NetSuite user would.
    let with_address = bed.netsuite.customers_with_billing_address()?;
    let pick = |i: usize| with_address.get(i * 97 % with_address.len().max(1)).copied().context("no customers to edit");
    let mut edits = Vec::new();
    for (i, name) in ["Contoso Holdings Inc", "Fabrikam Robotics Ltd"].iter().enumerate() {
        let id = pick(i)?;
        let old = bed.netsuite.customer_field(id, "companyname")?.unwrap_or_default();
        bed.netsuite.rename_customer(id, name)?;
        edits.push(format!("renamed customer {id} from \"{old}\" to \"{name}\""));
    }
    for (i, (street, city, zip)) in
        [("500 Terry A Francois Blvd", "San Francisco", "94158"), ("1 Infinite Loop", "Cupertino", "95014")]
            .iter()
            .enumerate()
    {
        let id = pick(i + 2)?;
        bed.netsuite.move_customer_billing(id, street, city, zip)?;
        edits.push(format!("moved the billing address of customer {id} to {street}, {city}"));
    }
    let id = pick(4)?;
    bed.netsuite.set_customer_phone(id, "+1 415-555-0199")?;
    edits.push(format!("changed the phone of customer {id}"));
    let resaved = pick(5)?;
    let same = bed.netsuite.customer_field(resaved, "phone")?.unwrap_or_default();
    bed.netsuite.set_customer_phone(resaved, &same)?;
    edits.push(format!("saved customer {resaved} again without changing anything (reported unchanged, not written)"));
    // An org rule the integration user's write breaks.
    let refused = pick(6)?;
    bed.salesforce.set_validation_rule(Some(ValidationRule {
        sobject: "Account".into(),
        field: "Name".into(),
        contains: "(TEST)".into(),
        message: "Account Name: test accounts are not allowed in this org".into(),
    }));
    bed.netsuite.rename_customer(refused, "Northwind Traders (TEST)")?;
    edits.push(format!(
        "renamed customer {refused} to \"Northwind Traders (TEST)\", which a Salesforce validation rule refuses"
    ));

    let second = bed.sync(runtime, SyncMode::Incremental).await?;
    runs.push(DemoRun { label: "incremental sync after edits".into(), report: second });

    // The Salesforce admin relaxes the rule; the refused write is replayed as it was recorded.
    bed.salesforce.set_validation_rule(None);
    let replay = bed.tenant.replay(runtime, ReplayScope::AllFailed).await?;
    let replayed = replay.objects.get("customer").map_or(0, |c| c.updated + c.created);
    runs.push(DemoRun { label: "replay after the validation rule was fixed".into(), report: replay });
    let rejected_then_replayed = format!(
        "customer {refused}'s write was refused by the rule (audited, kept for replay); after the fix, the replay wrote \
         {replayed} record"
    );

    // A change event: NetSuite's user-event script signs it; the listener verifies, queues and applies it.
    let hook = crate::webhook::serve(bed.tenant.clone(), runtime, "127.0.0.1:0".parse()?).await?;
    let evented = pick(7)?;
    let phone_in_salesforce =
        || bed.salesforce.find("Account", &evented.to_string()).and_then(|(_, f)| f.get("Phone").cloned());
    let before = phone_in_salesforce();
    bed.netsuite.set_customer_phone(evented, "+1 212-555-0142")?;
    let body = format!(r#"{{"recordType":"customer","id":"{evented}","type":"edit"}}"#);
    let signature = netsuite_salesforce::events::sign(WEBHOOK_SECRET.as_bytes(), bed.clock.now_secs(), body.as_bytes());
    let posted = std::time::Instant::now();
    let answer = reqwest::Client::new()
        .post(format!("{}{}", hook.url, crate::webhook::EVENTS_PATH))
        .header("content-type", "application/json")
        .header(netsuite_salesforce::events::SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await?;
    let status = answer.status();
    anyhow::ensure!(status.as_u16() == 202, "the listener refused the demo's event: {}", answer.text().await?);
    let applied = loop {
        // The mapping normalizes the number: any change is the event's.
        if phone_in_salesforce() != before {
            break posted.elapsed();
        }
        anyhow::ensure!(posted.elapsed() < std::time::Duration::from_secs(30), "the change event was not applied");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    let change_event = format!(
        "customer {evented}'s new phone reached Salesforce {} ms after its signed change event was posted",
        applied.as_millis()
    );
    // The event's run records what it wrote and gives its lease back after
    // the write lands; the next sync would otherwise find the tenant busy.
    while bed.tenant.running() > 0 {
        anyhow::ensure!(posted.elapsed() < std::time::Duration::from_secs(30), "the change event's run did not end");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    // Vendors both ways: synced to Salesforce, then edited there by a buyer.
    let vendors = bed.netsuite.seed_vendors(DEMO_VENDORS, 7)?;
    let vendor_kind = [crate::host::RecordKind::Vendor];
    let third = bed.sync_kinds(runtime, SyncMode::Incremental, &vendor_kind).await?;
    runs.push(DemoRun { label: "vendor sync".into(), report: third });
    let vendor = *vendors.first().context("no vendors seeded")?;
    let (sf_id, _) = bed.salesforce.find("Vendor__c", &vendor.to_string()).context("the vendor reached Salesforce")?;
    bed.clock.advance(std::time::Duration::from_secs(1));
    let phone = "+14155550123";
    let edit = serde_json::Map::from_iter([("Phone__c".to_string(), serde_json::Value::String(phone.into()))]);
    bed.salesforce.edit_by_hand("Vendor__c", &sf_id, edit);
    let salesforce_edits =
        vec![format!("changed the phone of Vendor__c {sf_id} (NetSuite vendor {vendor}) to {phone}")];
    let fourth = bed.sync_kinds(runtime, SyncMode::Incremental, &vendor_kind).await?;
    runs.push(DemoRun { label: "vendor sync after a Salesforce edit".into(), report: fourth });
    let now = bed.netsuite.vendor_field(vendor, "phone")?.unwrap_or_default();

    Ok(DemoOutput {
        netsuite_url: bed.netsuite.base_url().to_string(),
        salesforce_url: bed.salesforce.base_url().to_string(),
        database: bed.database_path().display().to_string(),
        edits,
        salesforce_edits,
        salesforce_accounts: bed.salesforce.count("Account"),
        salesforce_vendors: bed.salesforce.count("Vendor__c"),
        netsuite_vendor: format!("NetSuite vendor {vendor} now has phone {now}"),
        salesforce_contacts: bed.salesforce.count("Contact"),
        rejected_then_replayed,
        change_event,
        change_event_ms: applied.as_millis() as u64,
        look_further: vec![
            format!("connector status --config {}", config_file.display()),
            format!("connector audit show --config {} customer:{refused}", config_file.display()),
            format!("connector audit list --config {} --outcome failed", config_file.display()),
        ],
        config_file: config_file.display().to_string(),
        runs,
    })
}

pub fn print_text(out: &DemoOutput) -> std::io::Result<()> {
    crate::outln!("NetSuite → Salesforce connector demo")?;
    crate::outln!("  NetSuite simulator:   {}", out.netsuite_url)?;
    crate::outln!("  Salesforce simulator: {}", out.salesforce_url)?;
    for (i, run) in out.runs.iter().enumerate() {
        let r = &run.report;
        crate::outln!()?;
        crate::outln!("Run {} ({}, {}): {} in {} ms", i + 1, run.label, r.mode, r.status, r.duration_ms)?;
        if let Some(e) = &r.error {
            crate::outln!("  error: {e}")?;
        }
        for (kind, c) in &r.objects {
            let back = match c.written_back {
                0 => String::new(),
                n => format!("  written back to NetSuite {n}"),
            };
            crate::outln!(
                "  {kind:<9} read {:>5}  created {:>5}  updated {:>5}  unchanged {:>5}  deferred {:>5}  failed {:>5}  deleted {:>5}{back}",
                c.read,
                c.created,
                c.updated,
                c.unchanged,
                c.deferred,
                c.failed,
                c.deleted
            )?;
        }
        crate::outln!("  API calls: NetSuite {}, Salesforce {}", r.api_calls.netsuite, r.api_calls.salesforce)?;
        if i == 2 {
            crate::outln!()?;
            crate::outln!("{}.", out.rejected_then_replayed)?;
            crate::outln!("A change event: {}.", out.change_event)?;
        }
        let (title, edits) = match i {
            0 => ("Edits made in NetSuite:", &out.edits),
            3 => ("Edits made in Salesforce:", &out.salesforce_edits),
            _ => continue,
        };
        if !edits.is_empty() {
            crate::outln!()?;
            crate::outln!("{title}")?;
            for e in edits {
                crate::outln!("  - {e}")?;
            }
        }
    }
    crate::outln!()?;
    crate::outln!(
        "Salesforce now holds {} Accounts, {} Contacts (each linked to its Account) and {} Vendor__c records.",
        out.salesforce_accounts,
        out.salesforce_contacts,
        out.salesforce_vendors
    )?;
    crate::outln!("{} (the Salesforce edit reached NetSuite).", out.netsuite_vendor)?;
    crate::outln!("Audit trail and state: {} (tables audit, runs, kv)", out.database)?;
    crate::outln!()?;
    crate::outln!("Look further:")?;
    for command in &out.look_further {
        crate::outln!("  {command}")?;
    }
    Ok(())
}
