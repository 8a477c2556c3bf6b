use super::*;
use serde_json::json;

fn map(kind: RecordKind, id: &str, fields: &[(&str, &str)]) -> MappedRecord {
    Mapping::default().map(&record(kind, id, fields)).unwrap()
}

#[test]
fn company_with_addresses_terms_and_normalised_phone() {
    let m = map(
        RecordKind::Customer,
        "42",
        &[
            ("companyname", " Acme Corp "),
            ("isperson", "F"),
            ("phone", "+1 555-010-0100"),
            ("email", "AP@Acme.example"),
            ("termsname", "Net 30"),
            ("billaddr1", "1 Main St"),
            ("billaddr2", "Suite 5"),
            ("billcity", "Springfield"),
            ("billcountry", "us"),
            ("shipaddr1", "2 Dock Rd"),
            ("isinactive", "T"),
        ],
    );
    let f = &m.target.fields;
    assert_eq!(m.target.sobject, "Account");
    assert_eq!(f["Name"], json!("Acme Corp"));
    assert_eq!(f["Phone"], json!("+15550100100"));
    assert_eq!(f["Email__c"], json!("ap@acme.example"));
    assert_eq!(f["BillingStreet"], json!("1 Main St\nSuite 5"));
    assert_eq!(f["BillingCountry"], json!("US"));
    assert_eq!(f["ShippingCity"], json!(null));
    assert_eq!(f["NetSuite_Inactive__c"], json!(true));
    assert_eq!(f["NetSuite_Id__c"], json!("42"));
    let street = m.transformations.iter().find(|t| &*t.field == "BillingStreet").unwrap();
    assert_eq!((&*street.rule, &*street.detail), ("join", "billaddr1 + billaddr2"));
    let phone = m.transformations.iter().find(|t| &*t.field == "Phone").unwrap();
    assert_eq!(&*phone.rule, "copy+phone");
}

#[test]
fn person_customer_uses_first_and_last_name_then_falls_back() {
    let m = map(RecordKind::Customer, "7", &[("isperson", "T"), ("firstname", "Ada"), ("lastname", "Lovelace")]);
    assert_eq!(m.target.fields["Name"], json!("Ada Lovelace"));
    let m = map(RecordKind::Customer, "8", &[("entityid", "CUST-8")]);
    assert_eq!(m.target.fields["Name"], json!("CUST-8"));
    let err = Mapping::default().map(&record(RecordKind::Customer, "9", &[])).unwrap_err().to_string();
    assert!(err.contains("customer 9: Account.Name (required)") && err.contains("companyname"), "{err}");
    // A name of spaces alone is no name: the next rule gives it, or the record fails as required.
    let m = map(RecordKind::Customer, "10", &[("companyname", "   "), ("entityid", "CUST-10")]);
    assert_eq!(m.target.fields["Name"], json!("CUST-10"));
    let blank = record(RecordKind::Customer, "11", &[("companyname", " \t ")]);
    let err = Mapping::default().map(&blank).unwrap_err().to_string();
    assert!(err.contains("customer 11: Account.Name (required)"), "{err}");
}

#[test]
fn contacts_link_to_a_customer_or_a_vendor_parent() {
    let m = map(RecordKind::Contact, "5", &[("lastname", "Hopper"), ("company", "42"), ("companycustomer", "42")]);
    assert_eq!(m.target.fields["Account"], json!({"NetSuite_Id__c": "42"}));
    let m = map(RecordKind::Contact, "6", &[("lastname", "Ng"), ("company", "77"), ("companyvendor", "77")]);
    assert_eq!(m.target.fields["Vendor__r"], json!({"NetSuite_Id__c": "77"}));
    assert!(!m.target.fields.contains_key("Account"));
}

#[test]
fn a_bad_value_names_record_field_and_rule() {
    let err = Mapping::default()
        .map(&record(RecordKind::Vendor, "3", &[("companyname", "Parts"), ("billcountry", "Narnia")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("vendor 3: Vendor__c.Country__c (transform CountryIso)") && err.contains("Narnia"), "{err}");
}

#[test]
fn custom_rules_value_maps_constants_splits_and_custom_fields() {
    let text = r#"
        [customer]
        sobject = "Account"
        [[customer.field]]
        target = "Name"
        rules = [{ copy = "companyname" }]
        transforms = ["upper"]
        [[customer.field]]
        target = "Payment_Terms__c"
        rules = [{ value_map = "terms", map = { "1" = "Net 15", "2" = "Net 30" }, default = "Other" }]
        [[customer.field]]
        target = "Source__c"
        rules = [{ constant = "NetSuite" }]
        [[customer.field]]
        target = "Street_Line_2__c"
        rules = [{ split = "billstreet", separator = "\n", index = 1 }]
        [[customer.field]]
        target = "Segment__c"
        rules = [{ copy = "custentity_segment" }]
    "#;
    let mapping = Mapping::load(Some(text)).unwrap();
    let rec = record(
        RecordKind::Customer,
        "1",
        &[("companyname", "acme"), ("terms", "2"), ("billstreet", "1 Main\nFloor 2"), ("custentity_segment", "SMB")],
    );
    let f = mapping.map(&rec).unwrap().target.fields;
    assert_eq!(f["Name"], json!("ACME"));
    assert_eq!(f["Payment_Terms__c"], json!("Net 30"));
    assert_eq!(f["Source__c"], json!("NetSuite"));
    assert_eq!(f["Street_Line_2__c"], json!("Floor 2"));
    assert_eq!(f["Segment__c"], json!("SMB"));
    assert!(mapping.columns(RecordKind::Customer).contains(&"custentity_segment".to_string()));
    assert!(!mapping.maps(RecordKind::Contact));
    let other = mapping.map(&record(RecordKind::Customer, "2", &[("companyname", "b"), ("terms", "9")])).unwrap();
    assert_eq!(other.target.fields["Payment_Terms__c"], json!("Other"));
}

#[test]
fn bad_mapping_files_are_refused_with_the_place() {
    let cases = [
        (
            "[customer]\nsobject = \"Account\"\n[[customer.field]]\ntarget = \"Name\"\nrules = [{ copy = \"a; DROP\" }]\n",
            "rule 1: `a; DROP` is not a SuiteQL column name",
        ),
        (
            "[customer]\nsobject = \"Account\"\n[[customer.field]]\ntarget = \"Name\"\nrules = [{ copy = \"a\", constant = \"b\" }]\n",
            "give exactly one of",
        ),
        (
            "[customer]\nsobject = \"Account\"\n[[customer.field]]\ntarget = \"NetSuite_Id__c\"\nrules = [{ copy = \"id\" }]\n",
            "set by the connector",
        ),
        (
            "[customer]\nsobject = \"Account\"\nfield = [{ target = \"Name\", rules = [{ cpy = \"x\" }] }]\n",
            "unknown field `cpy`",
        ),
        (
            "[customer]\nsobject = \"Account\"\n[[customer.field]]\ntarget = \"Phone\"\nrules = [{ copy = \"phone\" }]\ntransforms = [\"shout\"]\n",
            "unknown variant `shout`",
        ),
        (
            "[customer]\nsobject = \"Account\"\n[[customer.field]]\ntarget = \"Name\"\nrules = [{ copy = \"a\" }]\n[[customer.field]]\ntarget = \"NAME\"\nrules = [{ copy = \"b\" }]\n",
            "field 2 (NAME): the target appears twice",
        ),
        (
            "[customer]\nsobject = \"Account\"\n[[customer.field]]\ntarget = \"Id\"\nrules = [{ copy = \"id\" }]\n",
            "field 1 (Id): `Id` is the record id Salesforce gives",
        ),
        (
            "[contact]\nsobject = \"Contact\"\n[[contact.field]]\ntarget = \"accountid\"\nrules = [{ copy = \"company\" }]\n\
             [[contact.parent]]\nrelationship = \"Account\"\nsobject = \"Account\"\ncolumn = \"company\"\n",
            "[contact] parent 1 (Account): `AccountId` is a field's target too, but the parent link sets it",
        ),
        (
            "[customer]\nsobject = \"Account\"\n[[customer.field]]\ntarget = \"NetSuite_Deleted__c\"\nrules = [{ constant = \"x\" }]\n",
            "the deletion flag is set by the connector",
        ),
        (
            "[contact]\nsobject = \"Contact\"\n[[contact.field]]\ntarget = \"LastName\"\nrules = [{ copy = \"lastname\" }]\n\
             [[contact.parent]]\nrelationship = \"Account\"\nsobject = \"Account\"\ncolumn = \"company\"\n\
             [[contact.parent]]\nrelationship = \"Other\"\nsobject = \"Vendor__c\"\ncolumn = \"other\"\nfield = \"AccountId\"\n",
            "[contact] parent 2 (Other): another parent sets `AccountId` too",
        ),
        (
            "[contact]\nsobject = \"Contact\"\n[[contact.field]]\ntarget = \"LastName\"\nrules = [{ copy = \"lastname\" }]\n\
             [[contact.parent]]\nrelationship = \"Account\"\nsobject = \"Account\"\ncolumn = \"company\"\nfield = \"NetSuite_Id__c\"\n",
            "`NetSuite_Id__c` is not a lookup field",
        ),
    ];
    for (text, expected) in cases {
        let err = Mapping::load(Some(text)).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn fingerprints_follow_the_mapping() {
    let default = Mapping::default();
    let edited =
        Mapping::load(Some(&DEFAULT_MAPPING.replace("target = \"Title\"", "target = \"Department\""))).unwrap();
    assert_eq!(default.fingerprint(RecordKind::Customer), edited.fingerprint(RecordKind::Customer));
    assert_ne!(default.fingerprint(RecordKind::Contact), edited.fingerprint(RecordKind::Contact));
}

#[test]
fn the_spec_lists_exactly_what_the_mapping_writes() {
    let mapping = Mapping::default();
    let full = [
        ("companyname", "Acme"),
        ("entityid", "E"),
        ("lastname", "L"),
        ("companycustomer", "1"),
        ("companyvendor", "2"),
    ];
    for kind in RecordKind::ALL {
        let spec = mapping.target_spec(kind).unwrap();
        let m = mapping.map(&record(kind, "1", &full)).unwrap();
        assert_eq!(m.target.sobject, spec.sobject);
        let relationships: Vec<&str> = spec.relationships.iter().map(|l| l.relationship.as_str()).collect();
        let mut written: Vec<&str> =
            m.target.fields.keys().map(String::as_str).filter(|f| !relationships.contains(f)).collect();
        let mut expected: Vec<&str> = spec.fields.iter().map(String::as_str).collect();
        written.sort_unstable();
        expected.sort_unstable();
        assert_eq!(written, expected, "{kind}");
    }
}

#[test]
fn a_contact_links_exactly_its_netsuite_parent_and_clears_the_other_lookup() {
    let mapping = Mapping::default();
    let spec = mapping.target_spec(RecordKind::Contact).unwrap();
    let fields = |pairs: &[(&str, &str)]| mapping.map(&record(RecordKind::Contact, "9", pairs)).unwrap().target.fields;
    let links = |f: &serde_json::Map<String, serde_json::Value>| -> Vec<Option<Option<String>>> {
        spec.relationships.iter().map(|l| l.target(f).map(|t| t.map(str::to_string))).collect()
    };

    let of_customer = fields(&[("lastname", "L"), ("companycustomer", "5")]);
    assert_eq!(of_customer["Account"], serde_json::json!({ "NetSuite_Id__c": "5" }));
    assert_eq!(of_customer["Vendor__c"], serde_json::Value::Null, "the vendor lookup is cleared, not left out");
    assert!(!of_customer.contains_key("AccountId"), "a link and its lookup are never sent together");
    assert_eq!(links(&of_customer), vec![Some(Some("5".to_string())), Some(None)]);

    let moved_to_vendor = fields(&[("lastname", "L"), ("companyvendor", "7")]);
    assert_eq!(moved_to_vendor["AccountId"], serde_json::Value::Null);
    assert_eq!(moved_to_vendor["Vendor__r"], serde_json::json!({ "NetSuite_Id__c": "7" }));

    let orphan = fields(&[("lastname", "L")]);
    assert_eq!((&orphan["AccountId"], &orphan["Vendor__c"]), (&serde_json::Value::Null, &serde_json::Value::Null));
    assert!(mapping.parents(&record(RecordKind::Contact, "9", &[("lastname", "L")])).is_empty());
}

#[test]
fn a_lookup_field_can_be_named_when_it_breaks_the_naming_convention() {
    let text = DEFAULT_MAPPING.replace(
        "relationship = \"Vendor__r\"\nsobject = \"Vendor__c\"\ncolumn = \"companyvendor\"",
        "relationship = \"Vendor__r\"\nsobject = \"Vendor__c\"\ncolumn = \"companyvendor\"\nfield = \"Supplier__c\"",
    );
    let mapping = Mapping::load(Some(&text)).unwrap();
    let m = mapping.map(&record(RecordKind::Contact, "9", &[("lastname", "L")])).unwrap();
    assert!(m.target.fields.contains_key("Supplier__c") && !m.target.fields.contains_key("Vendor__c"));
}

/// A value written back to NetSuite comes through the forward transforms:
/// refused when they refuse it, a country sent as its code, blanks cleared,
/// other values sent as typed (trimmed); Salesforce is to hold what the
/// forward mapping makes of what NetSuite is sent.
#[test]
fn values_written_back_pass_the_forward_transforms() {
    let mapping = Mapping::load(None).unwrap();
    let back = |field: &str, value: serde_json::Value| {
        let back = mapping.back_value(RecordKind::Vendor, field, &value)?;
        Ok::<_, String>((back.netsuite, back.salesforce))
    };
    let refused = back("Phone__c", json!("n/a")).unwrap_err();
    assert!(refused.contains("Phone") && refused.contains("n/a"), "{refused}");
    assert_eq!(
        back("Phone__c", json!(" +1 (212) 555-0100 ")).unwrap(),
        (json!("+1 (212) 555-0100"), json!("+12125550100"))
    );
    assert_eq!(back("Country__c", json!("Germany")).unwrap(), (json!("DE"), json!("DE")));
    assert_eq!(back("Phone__c", json!("   ")).unwrap(), (Value::Null, Value::Null));
    assert_eq!(back("Phone__c", Value::Null).unwrap(), (Value::Null, Value::Null));
    assert_eq!(
        back("Email__c", json!("Buyer@Example.com")).unwrap(),
        (json!("Buyer@Example.com"), json!("buyer@example.com"))
    );
    assert_eq!(back("NetSuite_Inactive__c", json!(true)).unwrap(), (json!(true), json!(true)));
    assert_eq!(back("Name", json!(" Acme ")).unwrap(), (json!("Acme"), json!("Acme")));
    let street = back("Street__c", json!("1 Main St \r\n\r\n Suite 5 \n")).unwrap();
    assert_eq!(street, (json!("1 Main St \r\n\r\n Suite 5"), json!("1 Main St\nSuite 5")));
}

#[test]
fn only_standard_forms_make_two_texts_one_value() {
    let shipped = Mapping::default();
    for target in ["Name", "Email__c", "Phone__c", "Country__c"] {
        assert!(shipped.normalizes_only(RecordKind::Vendor, target), "{target}");
    }
    let titled = DEFAULT_MAPPING.replacen(
        "target = \"Name\"\nrequired = true\nrules = [{ copy = \"companyname\" }, { copy = \"entityid\" }]",
        "target = \"Name\"\nrequired = true\nrules = [{ copy = \"companyname\" }, { copy = \"entityid\" }]\ntransforms = [\"title\"]",
        1,
    );
    assert_ne!(titled, DEFAULT_MAPPING);
    let titled = Mapping::load(Some(&titled)).unwrap();
    assert!(!titled.normalizes_only(RecordKind::Vendor, "Name"), "`ACME LLC` and `Acme LLC` are two edits");
    assert!(!shipped.normalizes_only(RecordKind::Vendor, "Not_Mapped__c"));
}
