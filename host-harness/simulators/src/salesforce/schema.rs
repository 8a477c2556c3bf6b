//! The simulated org's objects and fields, as describe would report them.

use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Id,
    String,
    TextArea,
    Email,
    Phone,
    Reference,
    Boolean,
    DateTime,
    /// A whole number (`int` in describe).
    Int,
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: &'static str,
    pub kind: FieldType,
    pub length: usize,
    /// Required on create (nillable = false, not defaulted).
    pub required: bool,
    pub external_id: bool,
    pub unique: bool,
    pub updateable: bool,
    /// For references: (relationship name, target object).
    pub relationship: Option<(&'static str, &'static str)>,
    /// For references: whether deleting the target deletes this record too
    /// (an Account's Contacts); else the lookup is cleared.
    pub cascade_delete: bool,
    /// A system field Salesforce maintains (Id, CreatedDate, SystemModstamp,
    /// IsDeleted...): read-only, never null, not stored with the record.
    pub system: bool,
}

#[derive(Debug, Clone)]
pub struct SObject {
    pub name: &'static str,
    pub key_prefix: &'static str,
    /// Call [`SObject::fields_changed`] after changing them.
    pub fields: Vec<Field>,
    /// Names requests used that name a field or a relationship, with their
    /// positions in `fields`: a Collections request repeats the same names
    /// in every record, and scanning the fields for each one, three times a
    /// record, was a tenth of the simulator's upsert.
    resolved: RefCell<HashMap<String, Resolved, foldhash::fast::RandomState>>,
}

/// The positions in `fields` of the field and of the relationship a name
/// matches, ignoring case.
type Resolved = (Option<usize>, Option<usize>);

impl SObject {
    pub fn new(name: &'static str, key_prefix: &'static str, fields: Vec<Field>) -> SObject {
        SObject { name, key_prefix, fields, resolved: RefCell::default() }
    }

    /// Forgets resolved names: `fields` changed.
    pub fn fields_changed(&self) {
        self.resolved.borrow_mut().clear();
    }

    fn resolve(&self, name: &str) -> Resolved {
        if let Some(found) = self.resolved.borrow().get(name) {
            return *found;
        }
        let found = (
            self.fields.iter().position(|f| f.name.eq_ignore_ascii_case(name)),
            self.fields.iter().position(|f| f.relationship.is_some_and(|(r, _)| r.eq_ignore_ascii_case(name))),
        );
        // Names that match nothing fail their request and are not kept.
        if found != (None, None) {
            self.resolved.borrow_mut().insert(name.to_string(), found);
        }
        found
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.named(name).0
    }

    pub fn relationship(&self, name: &str) -> Option<&Field> {
        self.named(name).1
    }

    /// The field and the relationship `name` names (either, both or none).
    pub fn named(&self, name: &str) -> (Option<&Field>, Option<&Field>) {
        let (field, relationship) = self.resolve(name);
        (field.map(|i| &self.fields[i]), relationship.map(|i| &self.fields[i]))
    }

    /// The External ID field whose value the store indexes (`NetSuite_Id__c`).
    pub fn external_id(&self) -> Option<&Field> {
        self.fields.iter().find(|f| f.external_id)
    }
}

const fn text(name: &'static str, length: usize) -> Field {
    Field {
        name,
        kind: FieldType::String,
        length,
        required: false,
        external_id: false,
        unique: false,
        updateable: true,
        relationship: None,
        cascade_delete: false,
        system: false,
    }
}

const fn required(mut f: Field) -> Field {
    f.required = true;
    f
}

const fn typed(mut f: Field, kind: FieldType) -> Field {
    f.kind = kind;
    f
}

fn id() -> Field {
    Field { unique: true, length: 18, ..system("Id", FieldType::Id) }
}

const fn system(name: &'static str, kind: FieldType) -> Field {
    Field {
        name,
        kind,
        length: 0,
        required: false,
        external_id: false,
        unique: false,
        updateable: false,
        relationship: None,
        cascade_delete: false,
        system: true,
    }
}

/// The audit fields every object has, kept by the store on each write.
fn audit() -> Vec<Field> {
    vec![
        system("CreatedDate", FieldType::DateTime),
        system("LastModifiedDate", FieldType::DateTime),
        system("SystemModstamp", FieldType::DateTime),
        system("IsDeleted", FieldType::Boolean),
    ]
}

/// The connector's checkboxes: inactive in NetSuite, deleted in NetSuite.
fn flags() -> Vec<Field> {
    vec![
        typed(text("NetSuite_Inactive__c", 5), FieldType::Boolean),
        typed(text("NetSuite_Deleted__c", 5), FieldType::Boolean),
    ]
}

/// `NetSuite_Id__c`: Text(18), External ID, Unique, case-insensitive.
fn netsuite_id() -> Field {
    Field { external_id: true, unique: true, ..text("NetSuite_Id__c", 18) }
}

fn address(prefix: &str) -> Vec<Field> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    vec![
        typed(text(leak(format!("{prefix}Street")), 255), FieldType::TextArea),
        text(leak(format!("{prefix}City")), 40),
        text(leak(format!("{prefix}State")), 80),
        text(leak(format!("{prefix}PostalCode")), 20),
        text(leak(format!("{prefix}Country")), 80),
    ]
}

pub fn objects() -> Vec<SObject> {
    let mut account = vec![
        id(),
        required(text("Name", 255)),
        typed(text("Phone", 40), FieldType::Phone),
        typed(text("Email__c", 80), FieldType::Email),
        text("Payment_Terms__c", 255),
        typed(text("Description", 32000), FieldType::TextArea),
        typed(text("NumberOfEmployees", 8), FieldType::Int),
        netsuite_id(),
    ];
    account.extend(address("Billing"));
    account.extend(address("Shipping"));
    account.extend(flags());
    account.extend(audit());
    let mut contact = vec![
        id(),
        text("FirstName", 40),
        required(text("LastName", 80)),
        typed(text("Email", 80), FieldType::Email),
        typed(text("Phone", 40), FieldType::Phone),
        text("Title", 128),
        Field {
            relationship: Some(("Account", "Account")),
            cascade_delete: true,
            ..typed(text("AccountId", 18), FieldType::Reference)
        },
        Field { relationship: Some(("Vendor__r", "Vendor__c")), ..typed(text("Vendor__c", 18), FieldType::Reference) },
        netsuite_id(),
    ];
    contact.extend(flags());
    contact.extend(audit());
    let mut vendor = vec![
        id(),
        required(text("Name", 80)),
        typed(text("Email__c", 80), FieldType::Email),
        typed(text("Phone__c", 40), FieldType::Phone),
        text("Payment_Terms__c", 255),
        typed(text("Street__c", 255), FieldType::TextArea),
        text("City__c", 40),
        text("State__c", 80),
        text("Postal_Code__c", 20),
        text("Country__c", 80),
        netsuite_id(),
    ];
    vendor.extend(flags());
    vendor.extend(audit());
    vec![
        SObject::new("Account", "001", account),
        SObject::new("Contact", "003", contact),
        SObject::new("Vendor__c", "a01", vendor),
    ]
}

/// An 18-character Salesforce id: 15 case-sensitive characters plus the
/// 3-character suffix that makes it case-insensitive.
pub fn salesforce_id(prefix: &str, n: u64) -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut body = [b'0'; 10];
    let mut v = n;
    for slot in body.iter_mut().rev() {
        *slot = BASE62[(v % 62) as usize];
        v /= 62;
    }
    with_suffix(&format!("{prefix}8d{}", std::str::from_utf8(&body).expect("base62 is ascii")))
}

const SUFFIX: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

fn with_suffix(id15: &str) -> String {
    let suffix: String = id15
        .as_bytes()
        .chunks(5)
        .map(|chunk| {
            let bits =
                chunk.iter().enumerate().fold(0usize, |acc, (i, c)| acc | (usize::from(c.is_ascii_uppercase()) << i));
            SUFFIX[bits] as char
        })
        .collect();
    format!("{id15}{suffix}")
}

/// The 18-character form of an id given in either form, as Salesforce
/// accepts them: 15 case-sensitive characters, or 18 whose last three
/// restore the case of the first fifteen (so any case matches). None for
/// text that is no id.
pub fn normalize_id(text: &str) -> Option<String> {
    if !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match text.len() {
        15 => Some(with_suffix(text)),
        18 => {
            let (body, suffix) = text.split_at(15);
            let mut id15 = String::with_capacity(15);
            for (chunk, s) in body.as_bytes().chunks(5).zip(suffix.bytes()) {
                let bits = SUFFIX.iter().position(|c| *c == s.to_ascii_uppercase())?;
                for (i, c) in chunk.iter().enumerate() {
                    let upper = bits & (1 << i) != 0;
                    id15.push(if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() } as char);
                }
            }
            Some(with_suffix(&id15))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_in_any_case_and_again_after_the_fields_change() {
        let mut contact = objects().into_iter().find(|o| o.name == "Contact").unwrap();
        assert_eq!(contact.field("email").map(|f| f.name), Some("Email"));
        assert_eq!(contact.field("EMAIL").map(|f| f.name), Some("Email"));
        assert_eq!(contact.relationship("account").and_then(|f| f.relationship), Some(("Account", "Account")));
        assert!(contact.field("Account").is_none(), "a relationship is not a field");
        assert!(contact.field("Nope__c").is_none());
        // Positions move when a field goes: resolved names are forgotten.
        let before = contact.fields.iter().position(|f| f.name == "Email").unwrap();
        contact.fields.remove(before - 1);
        contact.fields_changed();
        assert_eq!(contact.field("Email").map(|f| f.name), Some("Email"));
        contact.fields.retain(|f| f.name != "Email");
        contact.fields_changed();
        assert!(contact.field("email").is_none());
    }

    #[test]
    fn ids_have_prefix_length_and_case_suffix() {
        let id = salesforce_id("001", 0);
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("0018d"));
        assert_ne!(salesforce_id("001", 61), salesforce_id("001", 62));
        // A known case: the suffix encodes which of each 5 characters are upper-case.
        assert_eq!(&salesforce_id("001", 0)[15..], "AAA");
    }

    #[test]
    fn ids_normalize_from_15_characters_and_from_any_case_of_18() {
        let id = salesforce_id("a01", 123_456);
        assert_eq!(normalize_id(&id).as_deref(), Some(id.as_str()));
        assert_eq!(normalize_id(&id[..15]).as_deref(), Some(id.as_str()));
        assert_eq!(normalize_id(&id.to_ascii_lowercase()).as_deref(), Some(id.as_str()));
        assert_eq!(normalize_id(&id.to_ascii_uppercase()).as_deref(), Some(id.as_str()));
        assert_eq!(normalize_id("001' OR Name != '"), None);
        assert_eq!(normalize_id("42"), None);
    }
}
