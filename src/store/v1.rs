//! Version 1 of the state file (0.1.0, when every resource was a Fargate profile) and its
//! migration to version 2, applied as the file is read.
//!
//! Version 2 differs only in names: a key gains `kind` and its `profile` becomes `name`, the
//! list `profiles` becomes `resources`, and the event kind and resolve reason
//! `profile_deleted` become `resource_deleted`. Everything else (episode ids and `since`, the
//! sequence, every undelivered event with its id, attempts and due time) is carried over as it
//! is, so an upgrade re-alerts nothing and delivers each pending event once.

use serde_json::{Map, Value};

/// The version this module reads.
pub const VERSION: u32 = 1;

/// Rewrites a version-1 document as version 2. A document that does not have the shape of
/// version 1 is an error naming what is wrong (the file is then set aside, like any damage).
pub fn migrate(mut document: Value) -> Result<Value, String> {
    let top = object(&mut document, "the file")?;
    top.insert("version".to_owned(), Value::from(super::FORMAT_VERSION));
    let profiles = top
        .remove("profiles")
        .ok_or("version 1 without `profiles`")?;
    let mut resources = profiles;
    for (i, saved) in array(&mut resources, "`profiles`")?.iter_mut().enumerate() {
        let saved = object(saved, "a profile")?;
        let key = saved
            .get_mut("key")
            .ok_or(format!("profile {i} has no key"))?;
        migrate_key(key).map_err(|e| format!("profile {i}: {e}"))?;
    }
    top.insert("resources".to_owned(), resources);
    let outbox = top.get_mut("outbox").ok_or("version 1 without `outbox`")?;
    for (i, pending) in array(outbox, "`outbox`")?.iter_mut().enumerate() {
        migrate_pending(pending).map_err(|e| format!("outbox entry {i}: {e}"))?;
    }
    Ok(document)
}

fn migrate_pending(pending: &mut Value) -> Result<(), String> {
    let event = object(pending, "an entry")?
        .get_mut("event")
        .ok_or("no event")?;
    let event = object(event, "an event")?;
    migrate_key(event.get_mut("key").ok_or("no key")?)?;
    let detail = object(event.get_mut("detail").ok_or("no detail")?, "a detail")?;
    for field in ["kind", "reason"] {
        if let Some(value) = detail.get_mut(field)
            && value.as_str() == Some("profile_deleted")
        {
            *value = Value::from("resource_deleted");
        }
    }
    Ok(())
}

/// `{account_id, region, cluster, profile}` → `{kind, account_id, region, cluster, name}`.
fn migrate_key(key: &mut Value) -> Result<(), String> {
    let key = object(key, "a key")?;
    if key.contains_key("kind") || key.contains_key("name") {
        return Err("a key of version 1 has no `kind` or `name`".to_owned());
    }
    let name = key.remove("profile").ok_or("a key without `profile`")?;
    key.insert("kind".to_owned(), Value::from("fargate_profile"));
    key.insert("name".to_owned(), name);
    Ok(())
}

fn object<'a>(value: &'a mut Value, what: &str) -> Result<&'a mut Map<String, Value>, String> {
    value
        .as_object_mut()
        .ok_or_else(|| format!("{what} is not an object"))
}

fn array<'a>(value: &'a mut Value, what: &str) -> Result<&'a mut Vec<Value>, String> {
    value
        .as_array_mut()
        .ok_or_else(|| format!("{what} is not a list"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::diff::EventDetail;
    use crate::model::{Kind, ResolveReason};
    use crate::store::decode;

    /// A file written by 0.1.0; see `tests/fixtures/README.md`.
    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/state-v1.json");

    #[test]
    fn the_fixture_of_0_1_0_reads_with_every_episode_event_and_the_sequence_kept() {
        let saved = decode(FIXTURE).expect("version 1 is migrated");
        let raw: serde_json::Value = serde_json::from_slice(FIXTURE).unwrap();
        assert_eq!(saved.sequence, raw["sequence"].as_u64().unwrap());
        assert_eq!(
            saved.resources.len(),
            raw["profiles"].as_array().unwrap().len()
        );
        for (saved, raw) in saved
            .resources
            .iter()
            .zip(raw["profiles"].as_array().unwrap())
        {
            assert_eq!(saved.key.kind, Kind::FARGATE_PROFILE);
            assert_eq!(saved.key.name, raw["key"]["profile"].as_str().unwrap());
            assert_eq!(saved.key.cluster, raw["key"]["cluster"].as_str().unwrap());
            assert_eq!(
                saved.known.status.as_str(),
                raw["known"]["status"].as_str().unwrap()
            );
            let episodes = raw["known"]["episodes"].as_object().unwrap();
            assert_eq!(saved.known.episodes.len(), episodes.len());
            for (code, episode) in &saved.known.episodes {
                let raw = &episodes[code.as_str()];
                assert_eq!(episode.id, raw["id"].as_str().unwrap());
                assert_eq!(episode.since.as_millis(), raw["since"].as_i64().unwrap());
            }
        }
        let unknown = saved
            .resources
            .iter()
            .flat_map(|r| r.known.episodes.keys())
            .any(|code| code.as_str() == "SubnetNotFound");
        assert!(unknown, "an unknown code survives");
        let ids: Vec<&str> = raw["outbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        let kept: Vec<&str> = saved.outbox.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(kept, ids, "every pending event, in order, with its id");
        let kinds: BTreeSet<&str> = saved
            .outbox
            .iter()
            .map(|p| p.event.kind().as_str())
            .collect();
        assert!(kinds.contains("resource_deleted"), "{kinds:?}");
        assert!(saved.outbox.iter().any(|p| matches!(
            p.event.detail,
            EventDetail::IssueResolved {
                reason: ResolveReason::ResourceDeleted,
                ..
            }
        )));
        assert!(saved.outbox.iter().all(|p| p.sink == "hooks"));
    }

    #[test]
    fn a_file_that_is_not_version_1_in_shape_is_refused_not_guessed() {
        for bad in [
            r#"{"version":1,"sequence":1,"outbox":[]}"#,
            r#"{"version":1,"sequence":1,"profiles":{},"outbox":[]}"#,
            r#"{"version":1,"sequence":1,"profiles":[{"key":{"kind":"x","name":"a"}}],"outbox":[]}"#,
            r#"{"version":1,"sequence":1,"profiles":[],"outbox":[{"event":7}]}"#,
            r#"{"version":1,"sequence":1,"profiles":[7],"outbox":[]}"#,
            r#"[1]"#,
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad}");
        }
        let empty = r#"{"version":1,"sequence":9,"profiles":[],"outbox":[]}"#;
        assert_eq!(decode(empty.as_bytes()).unwrap().sequence, 9);
    }
}
