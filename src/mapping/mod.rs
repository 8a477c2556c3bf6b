//! NetSuite record → Salesforce record, driven by a mapping file (TOML; the
//! shipped default is `default.toml`). Pure: every target field is written
//! (null when NetSuite has no value, so clearing a value in NetSuite clears
//! it in Salesforce) and every rule that fired is recorded.

pub mod file;
pub mod transforms;
pub mod writeback;

use crate::model::{ConnectorError, MappedRecord, NetSuiteRecord, RecordKind, Result, SObjectRecord, Transformation};
use file::{Constant, MappingFile, ObjectMapping, Rule};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::rc::Rc;

/// The external id field on every target object.
pub const EXTERNAL_ID_FIELD: &str = "NetSuite_Id__c";
/// Checkbox set when the record is deleted in NetSuite (delete_action = flag).
pub const DELETED_FIELD: &str = "NetSuite_Deleted__c";
/// The shipped mapping.
pub const DEFAULT_MAPPING: &str = include_str!("default.toml");

/// What the mapping of one kind writes, checked against Salesforce's
/// describe before the first write of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    pub sobject: String,
    /// Fields the mapping sets (the external id field included).
    pub fields: Vec<String>,
    /// Parent links.
    pub relationships: Vec<Link>,
}

/// A child → parent lookup as the mapping writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Relationship name, e.g. `Account`: set to `{external id field: id}`.
    pub relationship: String,
    /// The lookup field behind it, e.g. `AccountId`: set to null to clear.
    pub field: String,
    /// The parent's object.
    pub sobject: String,
}

impl Link {
    /// The parent's external id a record's fields link to: `Some(None)` when
    /// they clear the link, `None` when they do not mention it.
    pub fn target<'f>(&self, fields: &'f Map<String, Value>) -> Option<Option<&'f str>> {
        match (fields.get(&self.relationship), fields.get(&self.field)) {
            (Some(Value::Object(parent)), _) => Some(parent.get(EXTERNAL_ID_FIELD).and_then(Value::as_str)),
            (_, Some(Value::Null)) => Some(None),
            _ => None,
        }
    }
}

/// A Salesforce value written back to NetSuite (see [`Mapping::back_value`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Back {
    /// What NetSuite is sent.
    pub netsuite: Value,
    /// What the forward mapping makes of it: what Salesforce is to hold.
    pub salesforce: Value,
}

impl Back {
    fn same(value: Value) -> Back {
        Back { netsuite: value.clone(), salesforce: value }
    }
}

#[derive(Debug, Clone)]
pub struct Mapping {
    file: MappingFile,
    /// What each rule of each field is called in the audit trail, and the
    /// transforms' suffix, worked out once: mapping runs for every record.
    names: Vec<(RecordKind, Vec<FieldNames>)>,
    /// The transformation every record's external id gets.
    external_id: Transformation,
    /// What each parent link of each kind is called in the audit trail.
    parents: Vec<(RecordKind, Vec<ParentNames>)>,
}

/// A parent link's audit names, the same for every record.
#[derive(Debug, Clone)]
struct ParentNames {
    relationship: Rc<str>,
    rule: Rc<str>,
    /// The detail when the record names its parent, and when it names none.
    linked: Rc<str>,
    cleared: Rc<str>,
    lookup_field: String,
}

#[derive(Debug, Clone)]
struct FieldNames {
    /// The target field.
    target: Rc<str>,
    rules: Vec<RuleNames>,
    /// The start of the JSON of a transformation that found no value.
    empty_json: Rc<str>,
}

#[derive(Debug, Clone)]
struct RuleNames {
    /// The rule's kind with the transforms (`copy+phone`).
    rule: Rc<str>,
    /// Its kind alone.
    kind: String,
    /// What it reads (`billaddr1 + billaddr2`).
    detail: Rc<str>,
    /// The start of its transformation's JSON ([`Transformation::start_json`]).
    json: Rc<str>,
}

impl Mapping {
    fn new(file: MappingFile) -> Mapping {
        let names = RecordKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let object = file.object(kind)?;
                let fields = object
                    .field
                    .iter()
                    .map(|f| {
                        let transforms: String =
                            f.transforms.iter().map(|t| format!("+{}", format!("{t:?}").to_lowercase())).collect();
                        FieldNames {
                            target: f.target.as_str().into(),
                            rules: f
                                .rules
                                .iter()
                                .map(Rule::describe)
                                .map(|(kind, detail)| {
                                    let rule = kind.clone() + &transforms;
                                    let json = Transformation::start_json(&f.target, &rule, &detail).into();
                                    RuleNames { rule: rule.into(), kind, detail: detail.into(), json }
                                })
                                .collect(),
                            empty_json: Transformation::start_json(&f.target, "empty", "").into(),
                        }
                    })
                    .collect();
                Some((kind, fields))
            })
            .collect();
        let external_id = Transformation {
            field: EXTERNAL_ID_FIELD.into(),
            rule: "external-id".into(),
            detail: "id".into(),
            json_start: Some(Transformation::start_json(EXTERNAL_ID_FIELD, "external-id", "id").into()),
            ..Default::default()
        };
        let rule: Rc<str> = "parent-link".into();
        let parents = RecordKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let parents = file.object(kind)?.parent.iter().map(|parent| ParentNames {
                    relationship: parent.relationship.as_str().into(),
                    rule: rule.clone(),
                    linked: format!("{} → {}.{EXTERNAL_ID_FIELD}", parent.column, parent.sobject).into(),
                    cleared: format!("{} empty → {} cleared", parent.column, parent.lookup_field()).into(),
                    lookup_field: parent.lookup_field(),
                });
                Some((kind, parents.collect()))
            })
            .collect();
        Mapping { file, names, external_id, parents }
    }

    fn names(&self, kind: RecordKind) -> &[FieldNames] {
        self.names.iter().find(|(k, _)| *k == kind).map_or(&[], |(_, n)| n.as_slice())
    }
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping::new(MappingFile::parse(DEFAULT_MAPPING).expect("the shipped mapping is valid"))
    }
}

fn fail(record: &NetSuiteRecord, target: &str, rule: &str, what: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Config(format!("{} {}: {target} ({rule}): {what}", record.kind, record.id))
}

impl Mapping {
    /// The mapping in `text`, or the shipped one.
    pub fn load(text: Option<&str>) -> Result<Mapping> {
        match text {
            Some(t) => Ok(Mapping::new(MappingFile::parse(t)?)),
            None => Ok(Mapping::default()),
        }
    }

    pub fn object(&self, kind: RecordKind) -> Result<&ObjectMapping> {
        self.file.object(kind).ok_or_else(|| {
            ConnectorError::Config(format!(
                "the mapping has no [{kind}] section: add one, or leave {kind} out of the run"
            ))
        })
    }

    /// The Salesforce → NetSuite section of `kind`, if the mapping has one.
    pub fn writeback(&self, kind: RecordKind) -> Option<&writeback::WritebackMapping> {
        self.file.object(kind).and_then(|o| o.writeback.as_ref())
    }

    /// The value of `kind`'s field `target` to write back to NetSuite: a
    /// value from Salesforce must come back through the forward mapping's
    /// transforms once NetSuite holds it (the error names the transform and
    /// what is wrong). NetSuite is sent it trimmed, and as a country code
    /// where the forward mapping makes one (NetSuite takes `DE`, not
    /// `Germany`); other transforms only check it, the user's form is kept
    /// there. Salesforce is to hold what the forward mapping makes of it
    /// (`+14155550101` for `+1 (415) 555-0101`), so the next forward pass
    /// finds nothing to write.
    /// Whether the forward mapping of `target` only puts a value in a
    /// standard form (trimmed, an email in lower case, a phone in E.164, a
    /// country as its code): two texts it makes alike are one value typed
    /// twice. `upper` and `title` make alike names a person wrote apart.
    pub fn normalizes_only(&self, kind: RecordKind, target: &str) -> bool {
        use file::Transform::{CountryIso, Lower, Phone, Trim};
        let field = self.object(kind).ok().and_then(|o| o.field.iter().find(|f| f.target == target));
        field.is_some_and(|f| f.transforms.iter().all(|t| matches!(t, Trim | Lower | Phone | CountryIso)))
    }

    pub fn back_value(&self, kind: RecordKind, target: &str, value: &Value) -> std::result::Result<Back, String> {
        let Value::String(text) = value else { return Ok(Back::same(value.clone())) };
        let text = text.trim().to_string();
        // Blank is cleared: the forward mapping reads it as no value.
        if text.is_empty() {
            return Ok(Back::same(Value::Null));
        }
        let Some(field) = self.object(kind).ok().and_then(|o| o.field.iter().find(|f| f.target == target)) else {
            return Ok(Back::same(Value::String(text)));
        };
        let transformed = |text: String| through(&field.transforms, text);
        let mapped = transformed(text.clone())?;
        let netsuite = match field.transforms.contains(&file::Transform::CountryIso) {
            true => mapped.clone(),
            false => text.clone(),
        };
        // Only a rule that reads the column as it is gives back the
        // transformed text (a value map or a flag makes something else of it).
        let plain = field.rules.iter().all(|r| r.copy.is_some() || r.join.is_some() || r.first.is_some());
        let salesforce = match field.rules.first() {
            // Lines written back to two columns (`line = 1`, `line = 2`)
            // come back joined, each part trimmed, blanks left out.
            Some(rule) if plain && rule.join.is_some() => {
                let separator = rule.separator.as_deref().unwrap_or(" ");
                match separator.contains('\n') {
                    true => {
                        let mut lines = text.lines();
                        let first = lines.next().unwrap_or_default().trim().to_string();
                        let rest = lines.collect::<Vec<_>>().join("\n").trim().to_string();
                        let parts: Vec<String> = [first, rest].into_iter().filter(|p| !p.is_empty()).collect();
                        transformed(parts.join(separator))?
                    }
                    false => mapped,
                }
            }
            _ if plain => mapped,
            _ => text,
        };
        Ok(Back { netsuite: Value::String(netsuite), salesforce: Value::String(salesforce) })
    }

    /// `text` through the forward transforms of `kind`'s field `target`
    /// (unchanged when it has none, or no such field).
    pub fn transformed(&self, kind: RecordKind, target: &str, text: String) -> std::result::Result<String, String> {
        let Some(field) = self.object(kind).ok().and_then(|o| o.field.iter().find(|f| f.target == target)) else {
            return Ok(text);
        };
        through(&field.transforms, text)
    }

    pub fn maps(&self, kind: RecordKind) -> bool {
        self.file.object(kind).is_some()
    }

    pub fn target_spec(&self, kind: RecordKind) -> Result<TargetSpec> {
        let object = self.object(kind)?;
        let mut fields: Vec<String> = object.field.iter().map(|f| f.target.clone()).collect();
        fields.push(EXTERNAL_ID_FIELD.into());
        Ok(TargetSpec {
            sobject: object.sobject.clone(),
            fields,
            relationships: object
                .parent
                .iter()
                .map(|p| Link {
                    relationship: p.relationship.clone(),
                    field: p.lookup_field(),
                    sobject: p.sobject.clone(),
                })
                .collect(),
        })
    }

    /// Every NetSuite column the mapping of `kind` reads.
    pub fn columns(&self, kind: RecordKind) -> Vec<String> {
        let Some(object) = self.file.object(kind) else { return vec![] };
        let mut cols: Vec<String> = object
            .field
            .iter()
            .flat_map(|f| f.rules.iter().flat_map(Rule::columns))
            .chain(object.parent.iter().map(|p| p.column.as_str()))
            .map(str::to_string)
            .collect();
        cols.sort();
        cols.dedup();
        cols
    }

    /// Where the mapping of `kind` reads NetSuite column `column` (ignoring
    /// case): `field BillingCity`, `parent Account`.
    pub fn readers_of(&self, kind: RecordKind, column: &str) -> Vec<String> {
        let Some(object) = self.file.object(kind) else { return vec![] };
        let fields = object
            .field
            .iter()
            .filter(|f| f.rules.iter().flat_map(Rule::columns).any(|c| c.eq_ignore_ascii_case(column)))
            .map(|f| format!("field {}", f.target));
        let parents = object
            .parent
            .iter()
            .filter(|p| p.column.eq_ignore_ascii_case(column))
            .map(|p| format!("parent {}", p.relationship));
        fields.chain(parents).collect()
    }

    /// Changes whenever the mapping of `kind` changes.
    pub fn fingerprint(&self, kind: RecordKind) -> String {
        // The reverse direction does not change what Salesforce is given.
        let forward = self.file.object(kind).map(|o| ObjectMapping { writeback: None, ..o.clone() });
        let text = serde_json::to_string(&forward).expect("a mapping serializes");
        hex::encode(&Sha256::digest(text.as_bytes())[..16])
    }

    pub fn map(&self, record: &NetSuiteRecord) -> Result<MappedRecord> {
        let object = self.object(record.kind)?;
        let names = self.names(record.kind);
        let mut fields = Map::new();
        let mut transformations = Vec::with_capacity(object.field.len() + object.parent.len() + 1);
        for (field, names) in object.field.iter().zip(names) {
            // Only errors need the target's full name: built then, not per record.
            let target = || format!("{}.{}", object.sobject, field.target);
            let mut produced: Option<(Value, usize)> = None;
            for (n, rule) in field.rules.iter().enumerate() {
                if let Some(when) = &rule.when
                    && record.field(&when.column) != Some(when.equals.as_str())
                {
                    continue;
                }
                let value = evaluate(rule, record)
                    .map_err(|e| fail(record, &target(), &format!("rule {} {}", n + 1, names.rules[n].kind), e))?;
                if let Some(value) = value {
                    produced = Some((value, n));
                    break;
                }
            }
            let (value, rule, detail, json_start) = match produced {
                Some((value, n)) => {
                    let r = &names.rules[n];
                    (value, r.rule.clone(), r.detail.clone(), r.json.clone())
                }
                None if field.required => {
                    let tried: Vec<&str> = names.rules.iter().map(|r| &*r.detail).collect();
                    return Err(fail(
                        record,
                        &target(),
                        "required",
                        format!(
                            "Salesforce requires a value but every rule came up empty ({}); fill one in NetSuite. \
                             The record is read again when it changes",
                            tried.join("; ")
                        ),
                    ));
                }
                None => (Value::Null, "empty".into(), Rc::from(""), names.empty_json.clone()),
            };
            let value = match value {
                Value::String(s) => {
                    let mut s = match s.trim() {
                        trimmed if trimmed.len() == s.len() => s,
                        trimmed => trimmed.to_string(),
                    };
                    for t in &field.transforms {
                        s = transforms::apply(*t, s)
                            .map_err(|e| fail(record, &target(), &format!("transform {t:?}"), e))?;
                    }
                    if s.is_empty() { Value::Null } else { Value::String(s) }
                }
                other => other,
            };
            fields.insert(field.target.clone(), value);
            // Every field named (no `..Default::default()`): a default
            // `Rc<str>` is an allocation, three per field and record.
            transformations.push(Transformation {
                field: names.target.clone(),
                rule,
                detail,
                old: None,
                new: None,
                json_start: Some(json_start),
            });
        }
        let parent_names = self.parents.iter().find(|(k, _)| *k == record.kind).map_or(&[][..], |(_, n)| n);
        for (parent, names) in object.parent.iter().zip(parent_names) {
            let detail = match record.field(&parent.column).map(str::trim).filter(|id| !id.is_empty()) {
                Some(id) => {
                    // The relationship by external id: Salesforce resolves the parent.
                    fields.insert(parent.relationship.clone(), json!({ EXTERNAL_ID_FIELD: id }));
                    names.linked.clone()
                }
                None => {
                    // Salesforce keeps a field a write leaves out: clearing the
                    // lookup is the only way a link NetSuite dropped goes away.
                    fields.insert(names.lookup_field.clone(), Value::Null);
                    names.cleared.clone()
                }
            };
            transformations.push(Transformation {
                field: names.relationship.clone(),
                rule: names.rule.clone(),
                detail,
                old: None,
                new: None,
                json_start: None,
            });
        }
        fields.insert(EXTERNAL_ID_FIELD.into(), Value::String(record.id.clone()));
        transformations.push(self.external_id.clone());
        Ok(MappedRecord {
            source_kind: record.kind,
            source_id: record.id.clone(),
            target: SObjectRecord {
                sobject: object.sobject.clone(),
                external_id_field: EXTERNAL_ID_FIELD.into(),
                external_id: record.id.clone(),
                fields,
            },
            transformations,
        })
    }

    /// The NetSuite kind whose records land in `sobject`, if the mapping has one.
    pub fn kind_for(&self, sobject: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| self.file.object(*k).is_some_and(|o| o.sobject == sobject))
    }

    /// Whether `kind`'s records link to parent records (a lookup field).
    pub fn has_parents(&self, kind: RecordKind) -> bool {
        self.file.object(kind).is_some_and(|o| !o.parent.is_empty())
    }

    /// The parents a record links to: (parent kind, NetSuite id), for parents
    /// the connector itself writes.
    pub fn parents(&self, record: &NetSuiteRecord) -> Vec<(RecordKind, String)> {
        let Some(object) = self.file.object(record.kind) else { return vec![] };
        object
            .parent
            .iter()
            .filter_map(|p| Some((self.kind_for(&p.sobject)?, record.field(&p.column)?.trim().to_string())))
            .collect()
    }

    /// The kinds that link to `parent` records, each with the column that
    /// names the parent.
    pub fn children_of(&self, parent: RecordKind) -> Vec<(RecordKind, String)> {
        RecordKind::ALL
            .into_iter()
            .filter_map(|kind| Some((kind, self.file.object(kind)?)))
            .flat_map(|(kind, object)| {
                object
                    .parent
                    .iter()
                    .filter(move |p| self.kind_for(&p.sobject) == Some(parent))
                    .map(move |p| (kind, p.column.clone()))
            })
            .collect()
    }

    /// The lookup through which `kind`'s records name a `parent` record in
    /// `column` (one of [`Mapping::children_of`]'s pairs).
    pub fn link(&self, kind: RecordKind, column: &str, parent: RecordKind) -> Option<Link> {
        let object = self.file.object(kind)?;
        let p = object.parent.iter().find(|p| p.column == column && self.kind_for(&p.sobject) == Some(parent))?;
        Some(Link { relationship: p.relationship.clone(), field: p.lookup_field(), sobject: p.sobject.clone() })
    }

    /// The partial record that marks a NetSuite deletion: only the flag changes.
    pub fn deletion_flag(&self, kind: RecordKind, id: &str) -> Result<SObjectRecord> {
        let mut fields = Map::new();
        fields.insert(DELETED_FIELD.into(), Value::Bool(true));
        fields.insert(EXTERNAL_ID_FIELD.into(), Value::String(id.into()));
        Ok(SObjectRecord {
            sobject: self.object(kind)?.sobject.clone(),
            external_id_field: EXTERNAL_ID_FIELD.into(),
            external_id: id.into(),
            fields,
        })
    }
}

/// `text` through `list` in order; an error names the transform that refused.
fn through(list: &[file::Transform], text: String) -> std::result::Result<String, String> {
    list.iter().try_fold(text, |text, t| transforms::apply(*t, text).map_err(|e| format!("(transform {t:?}): {e}")))
}

/// A rule's value, or None when it has nothing to give (the next rule is
/// tried). An error is a value the rule cannot use.
fn evaluate(rule: &Rule, record: &NetSuiteRecord) -> std::result::Result<Option<Value>, String> {
    let text = |s: &str| Some(Value::String(s.to_string()));
    if let Some(col) = &rule.copy {
        // Blank is empty: the value is written trimmed, so spaces alone
        // would become null instead of trying the next rule.
        return Ok(record.field(col).filter(|v| !v.trim().is_empty()).and_then(text));
    }
    if let Some(cols) = &rule.join {
        let sep = rule.separator.as_deref().unwrap_or(" ");
        let parts: Vec<&str> =
            cols.iter().filter_map(|c| record.field(c)).map(str::trim).filter(|p| !p.is_empty()).collect();
        return Ok((!parts.is_empty()).then(|| Value::String(parts.join(sep))));
    }
    if let Some(cols) = &rule.first {
        return Ok(cols.iter().find_map(|c| record.field(c).filter(|v| !v.trim().is_empty())).and_then(text));
    }
    if let Some(c) = &rule.constant {
        return Ok(Some(match c {
            Constant::Text(t) => Value::String(t.clone()),
            Constant::Bool(b) => Value::Bool(*b),
        }));
    }
    if let Some(col) = &rule.value_map {
        let Some(v) = record.field(col) else { return Ok(None) };
        let map = rule.map.as_ref().expect("checked when the mapping was loaded");
        return match (map.get(v.trim()), &rule.default) {
            (Some(mapped), _) => Ok(text(mapped)),
            (None, Some(d)) => Ok(text(d)),
            (None, None) => Err(format!("`{v}` of {col} has no entry in the value map: add it, or give a default")),
        };
    }
    if let Some(col) = &rule.flag {
        return Ok(Some(Value::Bool(record.field(col) == Some(rule.equals.as_deref().unwrap_or("T")))));
    }
    if let Some(col) = &rule.split {
        let sep = rule.separator.as_deref().unwrap_or("\n");
        let part = record.field(col).and_then(|v| v.split(sep).nth(rule.index.unwrap_or(0))).map(str::trim);
        return Ok(part.filter(|p| !p.is_empty()).and_then(text));
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) fn record(kind: RecordKind, id: &str, fields: &[(&str, &str)]) -> NetSuiteRecord {
    NetSuiteRecord {
        kind,
        id: id.into(),
        last_modified: "2026-01-01 00:00:00".into(),
        fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

#[cfg(test)]
mod tests;
