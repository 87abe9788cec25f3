//! `redsink-worker try JOB EVENT`: what a job does with one event, with no Redis and no
//! configuration — the event read as the worker reads it (a Debezium change event, with
//! or without its envelope, or a plain row; `{"key": …, "value": …}` gives the record key
//! too, as the extended stream format does), each transform's row (the whole change in
//! RDI's full row format), and the writes as the redis-cli commands the worker would send
//! through the module (versions in the lane of the job's stream, under the default
//! stream prefix).

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::commands::{as_cli, module_command};
use crate::error::{Error, Result};
use crate::format::{debezium, decode, Decoded, Schemas};
use crate::job::{Job, RowFormat, Transform};
use crate::plan::{apply, full_row, plan_with, Lookups, Position, Version};

/// The report for `event` (JSON text) under `job`.
pub fn dry_run(job: &Job, event: &str) -> Result<String> {
    let object = match serde_json::from_str::<Value>(event) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(Error::Event("the event must be a JSON object".into())),
        Err(error) => return Err(Error::Event(format!("the event is not JSON: {error}"))),
    };
    let mut report = String::new();
    let decoded = match (object.get("key"), object.get("value")) {
        // A record key and its value, as the extended format holds them.
        (Some(key), Some(value)) if object.len() == 2 => {
            let fields = [
                (b"key".to_vec(), key.to_string().into_bytes()),
                (b"value".to_vec(), value.to_string().into_bytes()),
            ];
            decode(&fields, &Schemas::default())?
        }
        _ => debezium::object(object)?,
    };
    let (change, typed) = match decoded {
        Decoded::Change(change) => (change, true),
        Decoded::Untyped(change) => (change, false),
        Decoded::Skip(skip) => {
            return Ok(format!(
                "a Debezium {} event: acknowledged, nothing written\n",
                skip.name()
            ));
        }
    };
    let version = change.order.map_or(1, |order| order.version());
    let _ = writeln!(
        report,
        "event: {} of {}{}{}",
        op_name(change.op.code()),
        if change.partial {
            "part of a row"
        } else {
            "a row"
        },
        if typed {
            ""
        } else {
            " (values as they came: no schema)"
        },
        change
            .order
            .map_or(String::new(), |_| format!(", version {version}")),
    );
    // What the transforms see: the row, or in the full row format the whole change.
    let seen = match job.source.row_format {
        RowFormat::Data => change.row.clone(),
        RowFormat::Full => full_row(&change),
    };
    let _ = writeln!(report, "  {}", Value::Object(seen.clone()));
    let mut row: Option<Map<String, Value>> = Some(seen);
    let mut lookups = Lookups::default();
    for (i, step) in job.transforms.iter().enumerate() {
        let Some(current) = row.take() else {
            break;
        };
        row = loop {
            match apply(step, current.clone(), &mut lookups) {
                // Offline, a lookup's reply is null.
                Err(Error::LookupsPending) => {
                    for command in std::mem::take(&mut lookups.wanted) {
                        let _ = writeln!(report, "  (offline: {} replies null)", as_cli(&command));
                        lookups.answer(&command, Value::Null);
                    }
                }
                other => break other?,
            }
        };
        let _ = match &row {
            Some(row) => writeln!(
                report,
                "transform {} ({}):\n  {}",
                i + 1,
                step_name(step),
                Value::Object(row.clone())
            ),
            None => writeln!(
                report,
                "transform {} ({}): the row is dropped",
                i + 1,
                step_name(step)
            ),
        };
    }
    let now = redsink_core::time::now_ms();
    // In the lane of the stream the job reads by default, as the worker would write.
    let stream_prefix = crate::config::Processors::default().stream_prefix;
    let lane = job
        .streams(&stream_prefix)
        .into_iter()
        .next()
        .unwrap_or_default();
    let position = Position {
        version: Version {
            number: version,
            lane: lane.into(),
        },
        stream_id: format!("{now}-0"),
        time_ms: now,
    };
    let writes = plan_with(job, &change, &position, &mut lookups)?;
    if writes.is_empty() {
        report.push_str("writes: none\n");
    } else {
        report.push_str("writes:\n");
        for write in &writes {
            let _ = writeln!(report, "  {}", as_cli(&module_command(write)));
        }
    }
    Ok(report)
}

fn op_name(code: &str) -> &'static str {
    match code {
        "c" => "an insert",
        "u" => "an update",
        "d" => "a delete",
        _ => "a snapshot read",
    }
}

fn step_name(step: &Transform) -> &'static str {
    match step {
        Transform::Filter(_) => "filter",
        Transform::AddFields(_) => "add_field",
        Transform::RemoveFields(_) => "remove_field",
        Transform::RenameFields(_) => "rename_field",
        Transform::Map(_) => "map",
        Transform::Lookup(_) => "redis.lookup",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Seed 001's job, verbatim.
    const SEED_001: &str = include_str!("../../examples/jobs/invoice-events.yaml");

    #[test]
    fn a_debezium_event_through_seed_001() {
        let job = Job::parse(SEED_001, Path::new("invoice.yaml")).unwrap();
        let event = r#"{"before":null,"after":{"InvoiceId":98,"BillingCountry":"Germany","Total":"3.96"},"source":{"connector":"postgresql","lsn":24023128},"op":"c","ts_ms":1}"#;
        let report = dry_run(&job, event).unwrap();
        assert!(
            report.starts_with(
                "event: an insert of a row (values as they came: no schema), version 24023128\n"
            ),
            "{report}"
        );
        assert!(
            report.contains(r#"  SINK.STREAM invoice:events "{\"message_id\":98,\"country\":\"Germany\",\"Total\":\"3.96\"}" OPCODE c ID "#),
            "{report}"
        );
        assert!(report.contains(" TTL 100\n"), "{report}");
    }

    #[test]
    fn transforms_are_shown_step_by_step() {
        let job = Job::parse(
            r#"source: {table: t}
transform:
  - uses: add_field
    with: {field: country, language: sql, expression: "UPPER(c)"}
  - uses: filter
    with: {expression: "n > `1`"}
output:
  - uses: redis.write
    with: {key: {expression: "concat(['k:', id])"}}
"#,
            Path::new("t.yaml"),
        )
        .unwrap();
        let kept = dry_run(&job, r#"{"id": 1, "c": "de", "n": 2}"#).unwrap();
        assert_eq!(
            kept,
            "event: an insert of a row\n  {\"id\":1,\"c\":\"de\",\"n\":2}\n\
             transform 1 (add_field):\n  {\"id\":1,\"c\":\"de\",\"n\":2,\"country\":\"DE\"}\n\
             transform 2 (filter):\n  {\"id\":1,\"c\":\"de\",\"n\":2,\"country\":\"DE\"}\n\
             writes:\n  SINK.HASH k:1 FIELDS 4 id 1 c de n 2 country DE REPLACE VERSION 1 LANE data:t\n"
        );
        let dropped = dry_run(&job, r#"{"id": 2, "c": "fr", "n": 0}"#).unwrap();
        assert!(
            dropped.contains("transform 2 (filter): the row is dropped\nwrites: none\n"),
            "{dropped}"
        );
        assert!(dry_run(&job, "[1]").is_err());
        // RDI's full row format, with the record key: the docs' album title example.
        let examples: Vec<Value> =
            serde_json::from_str(include_str!("../tests/data/rdi/examples.json")).unwrap();
        let titles = examples
            .iter()
            .find(|example| example["name"] == "Write album title to string")
            .unwrap();
        let job = Job::parse(
            titles["job_yaml"].as_str().unwrap(),
            Path::new("album.yaml"),
        )
        .unwrap();
        let report = dry_run(
            &job,
            r#"{"key": {"albumid": 42}, "value": {"before": null, "after": {"albumid": 42, "title": "Let There Be Rock"}, "source": {"table": "album"}, "op": "c"}}"#,
        )
        .unwrap();
        assert!(report.contains(r#""key":{"albumid":42}"#), "{report}");
        assert!(
            report.ends_with(
                "writes:\n  SINK.STRING AlbumTitle:42 \"Let There Be Rock\" VERSION 1 LANE data:album TTL 86400\n"
            ),
            "{report}"
        );
        assert!(dry_run(&job, "{not json")
            .unwrap_err()
            .to_string()
            .starts_with("the event is not JSON"));
    }
}
