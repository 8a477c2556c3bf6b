use super::*;
use crate::audit::export::{CSV_HEADER, ExportFormat, export};

/// A database in a temporary directory (removed with the guard).
fn database() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = crate::store::Database::open(&dir.path().join("connector.db")).unwrap().connect().unwrap();
    (dir, conn)
}

struct Row<'a> {
    tenant: &'a str,
    run: &'a str,
    at: &'a str,
    kind: &'a str,
    action: &'a str,
    netsuite_id: &'a str,
    salesforce_id: Option<&'a str>,
    outcome: &'a str,
    transformations: &'a str,
    error: Option<&'a str>,
}

fn insert(conn: &Connection, r: Row<'_>) {
    let direction = if ["netsuite-write", "netsuite-create", "link"].contains(&r.action) {
        "salesforce-to-netsuite"
    } else {
        "netsuite-to-salesforce"
    };
    conn.execute(
        "INSERT INTO audit (tenant, run_id, at, kind, action, direction, netsuite_id, salesforce_id, outcome,
             transformations, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            r.tenant,
            r.run,
            r.at,
            r.kind,
            r.action,
            direction,
            r.netsuite_id,
            r.salesforce_id,
            r.outcome,
            r.transformations,
            r.error
        ],
    )
    .unwrap();
}

const NAME: &str = r#"[{"field":"Name","rule":"copy","detail":"companyname","new":"Acme"}]"#;
const PHONE: &str = r#"[{"field":"Phone","rule":"phone","detail":"phone","old":"555","new":"+1555"}]"#;

/// Rows 1 to 10 (their seq), of two tenants.
fn seeded() -> (tempfile::TempDir, Connection) {
    let (dir, conn) = database();
    let base = Row {
        tenant: "acme",
        run: "run-1",
        at: "2026-12-01T10:00:00.000000Z",
        kind: "customer",
        action: "write",
        netsuite_id: "42",
        salesforce_id: Some("001A"),
        outcome: "created",
        transformations: NAME,
        error: None,
    };
    // 1, 2: the first run.
    insert(&conn, Row { ..base });
    insert(
        &conn,
        Row {
            at: "2026-12-01T10:00:00.500000Z",
            kind: "contact",
            action: "defer",
            netsuite_id: "7",
            salesforce_id: None,
            outcome: "deferred",
            transformations: "[]",
            ..base
        },
    );
    // 3, 4: the second (times are stored in one width: text order is time order).
    insert(
        &conn,
        Row { run: "run-2", at: "2026-12-01T11:00:00.250000Z", outcome: "updated", transformations: PHONE, ..base },
    );
    insert(
        &conn,
        Row {
            run: "run-2",
            at: "2026-12-01T11:00:01.000000Z",
            kind: "contact",
            action: "write-deferred",
            netsuite_id: "7",
            salesforce_id: Some("003B"),
            ..base
        },
    );
    // 5: another tenant, same record.
    insert(&conn, Row { tenant: "other", run: "run-9", ..base });
    // 6, 7: a failure with an awkward message; a vendor with the same NetSuite id.
    insert(
        &conn,
        Row {
            run: "run-3",
            at: "2026-12-02T09:00:00.000000Z",
            netsuite_id: "43",
            salesforce_id: None,
            outcome: "failed",
            error: Some("REQUIRED_FIELD_MISSING: Name, \"quoted\"\nsecond line"),
            ..base
        },
    );
    insert(
        &conn,
        Row {
            run: "run-3",
            at: "2026-12-02T09:00:01.000000Z",
            kind: "vendor",
            action: "netsuite-write",
            salesforce_id: Some("a0C1"),
            outcome: "updated",
            transformations: r#"{"Phone__c":"+1 555"}"#,
            ..base
        },
    );
    // 8, 9, 10: a vendor new in Salesforce created in NetSuite as 50, linked,
    // then a NetSuite → Salesforce write of 50 that failed (no Salesforce id).
    let created = Row {
        run: "run-4",
        at: "2026-12-03T08:00:00.000000Z",
        kind: "vendor",
        action: "netsuite-create",
        netsuite_id: "",
        salesforce_id: Some("a0C9"),
        transformations: "{}",
        ..base
    };
    insert(&conn, Row { ..created });
    insert(&conn, Row { action: "link", netsuite_id: "50", at: "2026-12-03T08:00:01.000000Z", ..created });
    insert(
        &conn,
        Row {
            run: "run-5",
            at: "2026-12-04T08:00:00.000000Z",
            kind: "vendor",
            netsuite_id: "50",
            salesforce_id: None,
            outcome: "failed",
            error: Some("UNABLE_TO_LOCK_ROW"),
            ..base
        },
    );
    (dir, conn)
}

fn filter(f: FilterArgs) -> AuditFilter {
    f.filter("acme").unwrap()
}

fn seqs(rows: &[AuditRecord]) -> Vec<i64> {
    rows.iter().map(|r| r.seq).collect()
}

fn listed(conn: &Connection, f: FilterArgs) -> Vec<i64> {
    seqs(&list(conn, &filter(f), 100, None).unwrap())
}

#[test]
fn each_filter_selects_its_rows_of_the_tenant_newest_first() {
    let (_dir, conn) = seeded();
    assert_eq!(listed(&conn, FilterArgs::default()), [10, 9, 8, 7, 6, 4, 3, 2, 1]);
    assert_eq!(listed(&conn, FilterArgs { tenant: Some("other".into()), ..Default::default() }), [5]);
    assert_eq!(listed(&conn, FilterArgs { run: Some("run-2".into()), ..Default::default() }), [4, 3]);
    assert_eq!(listed(&conn, FilterArgs { kind: Some("contacts".into()), ..Default::default() }), [4, 2]);
    assert_eq!(listed(&conn, FilterArgs { netsuite_id: Some("42".into()), ..Default::default() }), [7, 3, 1]);
    assert_eq!(
        listed(&conn, FilterArgs { netsuite_id: Some("42".into()), kind: Some("vendor".into()), ..Default::default() }),
        [7]
    );
    assert_eq!(listed(&conn, FilterArgs { salesforce_id: Some("001A".into()), ..Default::default() }), [3, 1]);
    assert_eq!(listed(&conn, FilterArgs { action: Some("defer".into()), ..Default::default() }), [2]);
    assert_eq!(listed(&conn, FilterArgs { outcome: Some("failed".into()), ..Default::default() }), [10, 6]);
    assert_eq!(
        listed(&conn, FilterArgs { outcome: Some("failed".into()), kind: Some("vendor".into()), ..Default::default() }),
        [10]
    );
    // Actions are a closed list: a typo is named, not an empty answer.
    assert_eq!(listed(&conn, FilterArgs { action: Some("DEFER".into()), ..Default::default() }), [2]);
    let typo = FilterArgs { action: Some("defered".into()), ..Default::default() }.filter("acme").unwrap_err();
    assert!(typo.to_string().contains("--action `defered` is not an audit action: use one of write,"), "{typo}");
    // Outcomes are open (a conflict's names its winner): what the rows hold.
    assert_eq!(outcomes(&conn, "acme").unwrap().first().map(String::as_str), Some("created"));
    assert!(outcomes(&conn, "acme").unwrap().contains(&"failed".to_string()));
    assert!(outcomes(&conn, "nobody").unwrap().is_empty());
}

#[test]
fn time_ranges_compare_instants() {
    let (_dir, conn) = seeded();
    let range = |since: Option<&str>, until: Option<&str>| {
        listed(&conn, FilterArgs { since: since.map(Into::into), until: until.map(Into::into), ..Default::default() })
    };
    // 11:00:00.25Z is after 11:00:00Z.
    assert_eq!(range(Some("2026-12-01T11:00:00Z"), Some("2026-12-02T00:00:00Z")), [4, 3]);
    // --since is inclusive, --until exclusive.
    assert_eq!(range(Some("2026-12-01T10:00:00Z"), Some("2026-12-01T10:00:00.5Z")), [1]);
    // An offset is an instant like any other: 12:00+01:00 is 11:00Z.
    assert_eq!(range(Some("2026-12-01T12:00:00.5+01:00"), Some("2026-12-02T10:00:00.5+01:00")), [6, 4]);
    assert_eq!(range(None, Some("2026-12-01T10:00:00.1Z")), [1]);
    assert_eq!(range(Some("2026-12-03T00:00:00Z"), None), [10, 9, 8]);
    // Finer than the stored microseconds: a row a nanosecond before --since
    // is out, one a nanosecond before --until in.
    assert!(!range(Some("2026-12-01T10:00:00.000000001Z"), None).contains(&1));
    assert_eq!(range(None, Some("2026-12-01T10:00:00.000000001Z")), [1]);
}

#[test]
fn pages_follow_one_another_with_before() {
    let (_dir, conn) = seeded();
    let f = filter(FilterArgs::default());
    let first = list(&conn, &f, 4, None).unwrap();
    assert_eq!(seqs(&first), [10, 9, 8, 7]);
    let second = list(&conn, &f, 4, Some(first.last().unwrap().seq)).unwrap();
    assert_eq!(seqs(&second), [6, 4, 3, 2]);
    let third = list(&conn, &f, 4, Some(second.last().unwrap().seq)).unwrap();
    assert_eq!(seqs(&third), [1]);
    let err = list(&conn, &f, 0, None).unwrap_err().to_string();
    assert!(err.contains("--limit 0") && err.contains("audit export"), "{err}");
}

#[test]
fn rows_come_back_whole() {
    let (_dir, conn) = seeded();
    let rows = list(&conn, &filter(FilterArgs { run: Some("run-3".into()), ..Default::default() }), 1, None).unwrap();
    assert_eq!(
        rows,
        [AuditRecord {
            seq: 7,
            tenant: "acme".into(),
            run_id: "run-3".into(),
            at: "2026-12-02T09:00:01.000000Z".into(),
            kind: "vendor".into(),
            action: "netsuite-write".into(),
            direction: "salesforce-to-netsuite".into(),
            netsuite_id: "42".into(),
            salesforce_id: Some("a0C1".into()),
            outcome: "updated".into(),
            transformations: r#"{"Phone__c":"+1 555"}"#.into(),
            error: None,
        }]
    );
}

#[test]
fn bad_flags_are_named_with_what_to_do() {
    let err = |f: FilterArgs| format!("{:#}", f.filter("acme").unwrap_err());
    let e = err(FilterArgs { since: Some("yesterday".into()), ..Default::default() });
    assert!(e.contains("--since `yesterday`") && e.contains("2026-12-01T00:00:00Z"), "{e}");
    let e = err(FilterArgs { until: Some("2026-12-01".into()), ..Default::default() });
    assert!(e.contains("--until `2026-12-01`"), "{e}");
    let e = err(FilterArgs {
        since: Some("2026-12-02T00:00:00Z".into()),
        until: Some("2026-12-01T00:00:00Z".into()),
        ..Default::default()
    });
    assert!(e.contains("is not before --until"), "{e}");
    let e = err(FilterArgs { kind: Some("widget".into()), ..Default::default() });
    assert!(e.contains("--kind") && e.contains("use customer, contact or vendor"), "{e}");
    let e = err(FilterArgs { run: Some(" ".into()), ..Default::default() });
    assert!(e.contains("--run is empty"), "{e}");
}

#[test]
fn selective_filters_use_an_index() {
    let (_dir, conn) = seeded();
    let plan = |f: FilterArgs| -> String {
        let (sql, values) = page_statement(&filter(f), 100, None);
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map(params_from_iter(values), |r| r.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    };
    for (f, index) in [
        (FilterArgs { netsuite_id: Some("42".into()), ..Default::default() }, "audit_by_record"),
        (
            FilterArgs { netsuite_id: Some("42".into()), kind: Some("vendor".into()), ..Default::default() },
            "audit_by_record",
        ),
        (FilterArgs { salesforce_id: Some("001A".into()), ..Default::default() }, "audit_by_salesforce_id"),
        (FilterArgs { run: Some("run-2".into()), ..Default::default() }, "audit_by_run"),
        (FilterArgs { since: Some("2026-12-03T00:00:00Z".into()), ..Default::default() }, "audit_by_time"),
        (FilterArgs { until: Some("2026-12-01T00:00:00Z".into()), ..Default::default() }, "audit_by_time"),
    ] {
        let described = format!("{f:?}");
        let plan = plan(f);
        assert!(plan.contains(index), "{described}: {plan}");
    }
}

#[test]
fn a_record_history_spans_runs_oldest_first_and_both_ids() {
    let (_dir, conn) = seeded();
    let customer = RecordKey::parse("customer:42").unwrap();
    assert_eq!(customer, RecordKey::NetSuite { kind: "customer", id: "42".into() });
    let rows = history(&conn, "acme", &customer).unwrap();
    assert_eq!(seqs(&rows), [1, 3], "not the vendor 42 nor the other tenant's customer 42");
    assert_eq!(seqs(&history(&conn, "other", &customer).unwrap()), [5]);
    // By its Salesforce id: the creation in NetSuite (no NetSuite id yet), the
    // link, and the later NetSuite → Salesforce failure of vendor 50.
    let rows = history(&conn, "acme", &RecordKey::Salesforce("a0C9".into())).unwrap();
    assert_eq!(seqs(&rows), [8, 9, 10]);
    // By its NetSuite id: the same history, the creation found through the link.
    let rows = history(&conn, "acme", &RecordKey::parse("vendor:50").unwrap()).unwrap();
    assert_eq!(seqs(&rows), [8, 9, 10]);
    assert!(history(&conn, "acme", &RecordKey::parse("customer:999").unwrap()).unwrap().is_empty());
}

#[test]
fn a_record_is_named_as_kind_and_id() {
    let err = |text: &str| format!("{:#}", RecordKey::parse(text).unwrap_err());
    assert!(err("42").contains("kind:id"), "{}", err("42"));
    assert!(err("customer:").contains("names no NetSuite id"), "{}", err("customer:"));
    assert!(err("widget:4").contains("use customer, contact or vendor"), "{}", err("widget:4"));
}

#[test]
fn history_shows_each_rule_with_old_and_new_values() {
    let (_dir, conn) = seeded();
    let rows = history(&conn, "acme", &RecordKey::parse("customer:42").unwrap()).unwrap();
    let text: String = rows.iter().map(crate::audit::text::history_entry).collect();
    assert_eq!(
        text,
        "#1 2026-12-01T10:00:00.000000Z run-1 customer 42 → 001A write created\n    Name ← copy (companyname): (none) → \"Acme\"\n\
         #3 2026-12-01T11:00:00.250000Z run-2 customer 42 → 001A write updated\n    Phone ← phone (phone): \"555\" → \"+1555\"\n"
    );
    // A write-back's changes (no `detail`) and a detail object read as well.
    let mut writeback = rows[0].clone();
    writeback.transformations = r#"[{"field":"Phone__c","new":"+1 555","old":"555","rule":"writeback"}]"#.into();
    assert!(
        crate::audit::text::history_entry(&writeback).ends_with("\n    Phone__c ← writeback: \"555\" → \"+1 555\"\n"),
        "{}",
        crate::audit::text::history_entry(&writeback)
    );
    let vendor = history(&conn, "acme", &RecordKey::Salesforce("a0C1".into())).unwrap();
    assert_eq!(
        crate::audit::text::history_entry(&vendor[0]),
        "#7 2026-12-02T09:00:01.000000Z run-3 vendor 42 ← a0C1 netsuite-write updated\n    Phone__c: \"+1 555\"\n"
    );
}

#[test]
fn csv_export_reads_back_as_the_rows_oldest_first() {
    let (_dir, conn) = seeded();
    let mut out = Vec::new();
    let f = filter(FilterArgs { netsuite_id: Some("43".into()), ..Default::default() });
    assert_eq!(export(&conn, &f, ExportFormat::Csv, &mut out).unwrap(), 1);
    let f = filter(FilterArgs { kind: Some("customer".into()), ..Default::default() });
    let mut out = Vec::new();
    assert_eq!(export(&conn, &f, ExportFormat::Csv, &mut out).unwrap(), 3);
    let mut reader = csv::Reader::from_reader(out.as_slice());
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), CSV_HEADER);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let column = |name: &str| CSV_HEADER.iter().position(|h| *h == name).unwrap();
    let got: Vec<(&str, &str, &str)> =
        records.iter().map(|r| (&r[column("seq")], &r[column("outcome")], &r[column("error")])).collect();
    assert_eq!(
        got,
        [
            ("1", "created", ""),
            ("3", "updated", ""),
            ("6", "failed", "REQUIRED_FIELD_MISSING: Name, \"quoted\"\nsecond line")
        ]
    );
    assert_eq!(&records[1][column("transformations")], PHONE);
    assert_eq!(&records[1][column("salesforce_id")], "001A");
    assert_eq!(&records[2][column("salesforce_id")], "");
}

#[test]
fn jsonl_export_is_one_object_per_row_with_transformations_as_json() {
    let (_dir, conn) = seeded();
    let mut out = Vec::new();
    let f = filter(FilterArgs { since: Some("2026-12-01T11:00:00Z".into()), ..Default::default() });
    assert_eq!(export(&conn, &f, ExportFormat::Jsonl, &mut out).unwrap(), 7);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 7);
    let seqs: Vec<i64> = lines.iter().map(|l| l["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [3, 4, 6, 7, 8, 9, 10]);
    assert_eq!(lines[0]["transformations"], serde_json::from_str::<serde_json::Value>(PHONE).unwrap());
    assert_eq!(lines[0]["tenant"], "acme");
    assert_eq!(lines[1]["salesforce_id"], "003B");
    assert_eq!(lines[2]["salesforce_id"], serde_json::Value::Null);
    assert_eq!(lines[2]["error"], "REQUIRED_FIELD_MISSING: Name, \"quoted\"\nsecond line");
    assert_eq!(lines[3]["direction"], "salesforce-to-netsuite");
    assert_eq!(lines[3]["transformations"]["Phone__c"], "+1 555");
}

#[test]
fn ids_and_outcomes_are_read_as_the_audit_stores_them() {
    let f = filter(FilterArgs {
        netsuite_id: Some(" 011".into()),
        salesforce_id: Some("0018d0000000001".into()),
        outcome: Some("FAILED".into()),
        ..Default::default()
    });
    assert_eq!(
        (f.netsuite_id.as_deref(), f.salesforce_id.as_deref(), f.outcome.as_deref()),
        (Some("11"), Some("0018d0000000001AAA"), Some("failed"))
    );
    // Not a NetSuite id (a Salesforce-created record's row): kept as typed.
    let f = filter(FilterArgs { netsuite_id: Some("a018d0000000015AAA".into()), ..Default::default() });
    assert_eq!(f.netsuite_id.as_deref(), Some("a018d0000000015AAA"));
    assert!(matches!(RecordKey::parse("customer:007").unwrap(), RecordKey::NetSuite { id, .. } if id == "7"));
}
